"""The sidebar tests talk to the fake WeCom server over real HTTP, as tests/integrations does."""

from __future__ import annotations

from tests.integrations.conftest import fake_wechat, wechat

__all__ = ["fake_wechat", "wechat"]
