"""Fixtures for the WeChat/WeCom tests: one fake server per module (real HTTP), settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.settings import get_settings
from app.integrations.wechat.fake_server import FakeWeChat


@pytest.fixture(scope="module")
def fake_wechat() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
def wechat(fake_wechat: FakeWeChat, monkeypatch: pytest.MonkeyPatch) -> FakeWeChat:
    """The fake, with the process-wide settings pointing at it for this test only."""
    settings = get_settings()
    for name, value in fake_wechat.settings().items():
        monkeypatch.setattr(settings, name, value)
    fake_wechat.token_delay = 0.0
    return fake_wechat
