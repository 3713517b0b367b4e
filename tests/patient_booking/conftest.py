"""The fake WeChat servers the patient's journeys talk to over real HTTP: the mini-program API (sign-in,
subscribe messages) and WeChat Pay, both for one merchant app (the same appid signs in and pays)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from app.core.redis import create_redis
from app.core.settings import get_settings
from app.domain.messaging.channels import MiniProgramSubscribeChannel, channels
from app.integrations.wechat.fake_pay import FakeWeChatPay, fake_pay_thread, use_fake_pay
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.mini_program import MiniProgramClient, MiniProgramConfig


@pytest.fixture(scope="module")
def fake_wechat_server() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_pay_server(fake_wechat_server: FakeWeChat) -> Iterator[FakeWeChatPay]:
    with fake_pay_thread(appid=fake_wechat_server.appid) as fake:
        yield fake


@pytest.fixture
def wechat(fake_wechat_server: FakeWeChat, fake_pay_server: FakeWeChatPay,
           monkeypatch: pytest.MonkeyPatch) -> FakeWeChat:
    """Both fakes, with the process settings pointed at them for this test only."""
    settings = get_settings()
    for name, value in fake_wechat_server.settings().items():
        monkeypatch.setattr(settings, name, value)
    use_fake_pay(monkeypatch, fake_pay_server)
    fake_wechat_server.token_delay = 0.0
    return fake_wechat_server


@pytest.fixture
def pay(wechat: FakeWeChat, fake_pay_server: FakeWeChatPay) -> FakeWeChatPay:
    return fake_pay_server


@pytest.fixture
async def subscribe_channel(wechat: FakeWeChat, redis_url: str) -> AsyncIterator[FakeWeChat]:
    """Subscribe messages leave through the real mini-program client to the fake server."""
    redis = create_redis(redis_url)
    channel = MiniProgramSubscribeChannel(client_factory=lambda: MiniProgramClient(MiniProgramConfig.from_settings(),
                                                                                   redis))
    try:
        with channels.override(channel):
            yield wechat
    finally:
        await redis.aclose()
