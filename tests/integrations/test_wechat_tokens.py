"""Access tokens shared through Redis: one fetch under concurrency, refresh on 40001/42001; subscribe 43101."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.redis import create_redis
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.mini_program import SUBSCRIBE_REFUSED, MiniProgramClient, MiniProgramConfig
from app.integrations.wechat.tokens import WeChatError
from app.integrations.wechat.wecom import WeComClient, WeComConfig


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


async def _fresh_mini(redis: Redis) -> MiniProgramClient:
    client = MiniProgramClient(MiniProgramConfig.from_settings(), redis)
    await client.tokens.forget(client.token_name)  # start without a cached token
    return client


async def test_twenty_concurrent_callers_fetch_one_token(wechat: FakeWeChat, redis: Redis):
    wechat.token_delay = 0.2  # the fetch is slow enough that every caller arrives while it runs
    before = wechat.token_requests["mini"]
    # Separate client objects, as separate requests or processes would have: only Redis is shared.
    clients = [await _fresh_mini(redis)] + [MiniProgramClient(MiniProgramConfig.from_settings(), redis)
                                            for _ in range(19)]
    tokens = await asyncio.gather(*(c.access_token() for c in clients))
    assert len(set(tokens)) == 1
    assert wechat.token_requests["mini"] - before == 1
    # Later callers use the cached token without asking WeChat again.
    assert await clients[0].access_token() == tokens[0]
    assert wechat.token_requests["mini"] - before == 1


async def test_rejected_token_is_refreshed_once_and_the_call_retried(wechat: FakeWeChat, redis: Redis):
    client = await _fresh_mini(redis)
    first = await client.access_token()
    tokens_before, sends_before = wechat.token_requests["mini"], wechat.calls["/cgi-bin/message/subscribe/send"]
    wechat.fail_token_once("mini", 40001)
    assert await client.send_subscribe_message("o-refresh", "tmpl-1", {"thing1": "推拿护理提醒"}) == 0
    assert wechat.token_requests["mini"] - tokens_before == 1
    assert wechat.calls["/cgi-bin/message/subscribe/send"] - sends_before == 2
    assert await client.access_token() != first
    assert wechat.subscribe_messages[-1]["data"] == {"thing1": {"value": "推拿护理提醒"}}


async def test_wecom_expired_token_42001_is_refreshed(wechat: FakeWeChat, redis: Redis):
    client = WeComClient(WeComConfig.from_settings(), redis)
    await client.tokens.forget(client.token_name)
    wechat.add_external_contact("wmRefreshContact00000000000001", "李女士", unionid="u-refresh")
    await client.access_token()
    before = wechat.token_requests["wecom"]
    wechat.fail_token_once("wecom", 42001)
    contact = await client.get_external_contact("wmRefreshContact00000000000001")
    assert contact is not None and contact.unionid == "u-refresh"
    assert wechat.token_requests["wecom"] - before == 1


async def test_subscribe_refusal_is_a_distinct_outcome(wechat: FakeWeChat, redis: Redis):
    client = MiniProgramClient(MiniProgramConfig.from_settings(), redis)
    wechat.refuse_subscribe("o-said-no")
    assert await client.send_subscribe_message("o-said-no", "tmpl-1", {"thing1": "x"}) == SUBSCRIBE_REFUSED
    with pytest.raises(WeChatError) as failure:  # any other error is a failure, not "no consent"
        await client.send_subscribe_message("o-other", "", {"thing1": "x"})
    assert failure.value.errcode == 47003
