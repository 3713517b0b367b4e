"""WeCom chat-record sync (会话内容存档): records pulled from the archive, decrypted, put on the timeline."""
