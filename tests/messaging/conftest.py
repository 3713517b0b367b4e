"""Messaging fixtures: fake channels swapped in through the channel registry, and a way to run the
`message.send` events a test produced without a queue."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from uuid import UUID

import pytest
from sqlalchemy import text

from app.core.db import session_scope
from app.domain.messaging.channels import Delivery, channels
from app.domain.messaging.models import MessageChannel
from app.workers.dispatch import dispatch_event
from tests.factories import TenantKit, new_tenant


class FakeChannel:
    """Records what it was asked to send; `script` holds exceptions to raise on the next sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.script: list[Exception] = []
        self.always: Exception | None = None
        self.sent: list = []

    async def send(self, session, message) -> Delivery:
        self.sent.append(message)
        if self.always is not None:
            raise self.always
        if self.script:
            raise self.script.pop(0)
        return Delivery(provider_msg_id=f"fake-{len(self.sent)}")


@pytest.fixture
def fake_channels():
    fakes = {name: FakeChannel(name) for name in MessageChannel.ALL}
    with ExitStack() as stack:
        for fake in fakes.values():
            stack.enter_context(channels.override(fake))
        yield fakes


@pytest.fixture
async def kit(client) -> TenantKit:
    return await new_tenant(client)


async def pending_sends(tenant_id: UUID | str) -> list[UUID]:
    async with session_scope(system=True) as session:
        rows = await session.execute(text(
            "SELECT id FROM outbox WHERE tenant_id = :t AND topic = 'message.send' "
            "AND status IN ('pending', 'enqueued') ORDER BY created_at, id"), {"t": UUID(str(tenant_id))})
        return [r.id for r in rows]


async def deliver(tenant_id: UUID | str, *, rounds: int = 10) -> int:
    """Run the tenant's pending `message.send` events, ignoring their delay (each round runs what is
    pending now; a failed attempt's follow-up event runs in the next round)."""
    ran = 0
    for _ in range(rounds):
        events = await pending_sends(tenant_id)
        if not events:
            break
        for event_id in events:
            assert await dispatch_event(None, str(tenant_id), str(event_id)) == "done"
            ran += 1
    return ran


def phone() -> str:
    return "139" + str(uuid.uuid4().int % 10**8).zfill(8)


async def member(kit: TenantKit, name: str = "张三") -> str:
    r = await kit.post("/members", {"name": name, "phone": phone()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


CARE_TEMPLATE = {
    "key": "care_after_service", "name": "护理关怀", "channel": "sms",
    "body": "{{name}}您好，今天的{{service}}后注意保暖，24小时内避免冷水。",
    "variables": ["name", "service"],
}

SUBSCRIBE_TEMPLATE = {
    "key": "appointment_reminder", "name": "预约提醒", "channel": "mini_program_subscribe",
    "wechat_template_id": "tmpl-reminder-001", "page": "pages/appointments/index",
    "body": "{{name}}您好，您预约的{{service}}将于{{time}}开始。",
    "variables": ["name", "service", "time"],
    "wechat_fields": {"thing1": "{{service}}", "time2": "{{time}}", "thing3": "请提前10分钟到店"},
}


async def template(kit: TenantKit, body: dict) -> dict:
    r = await kit.post("/message-templates", body)
    assert r.status_code == 201, r.text
    return r.json()
