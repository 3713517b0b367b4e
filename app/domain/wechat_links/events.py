"""The topics the WeChat/WeCom integration emits (from WeCom's callback)."""

from __future__ import annotations

from app.core.events import topic

WECOM_EXTERNAL_CONTACT_CHANGED = topic(
    "wecom.external_contact_changed", "A WeCom customer contact was added, edited or removed by a staff member",
    "change_type", "external_userid", "staff_userid", "member_id", "state", "welcome_code", "create_time")
WECOM_MSGAUDIT_NOTIFY = topic(
    "wecom.msgaudit_notify", "WeCom says new chat records are waiting in the archive", "agent_id", "create_time")
WECOM_EXTERNAL_CONTACT_LINKED = topic(
    "wecom.external_contact_linked", "A WeCom customer contact was linked to a member (by unionid, once WeCom "
    "named the contact, or by a staff member)", "external_userid", "member_id", "source")
