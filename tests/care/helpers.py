"""Builders for the care tests: a clinic with its built-in rules, a frozen clock, and the worker's steps.

The care engine reads time through `app.core.clock.utcnow` (the module attribute), so `freeze()` fixes
"now" for it; events are given the instant they happened by setting their `created_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from app.core import clock
from app.workers import dispatch as _dispatch  # noqa: F401  discovers the handlers, as the worker process does
from tests.cards.helpers import make_clinic, owner_sql
from tests.factories import TenantKit, deliver  # noqa: F401  (deliver: re-exported for the care tests)


def freeze(monkeypatch, instant: datetime) -> None:
    monkeypatch.setattr(clock, "utcnow", lambda: instant)


async def stamp(tenant_id: UUID, topic: str, at: datetime) -> None:
    """The pending events of `topic` happened at `at` (as if the clock had said so when they were written)."""
    await owner_sql("UPDATE outbox SET created_at = :at, available_at = :at WHERE tenant_id = :t AND topic = :p "
                    "AND status <> 'done'", at=at, t=tenant_id, p=topic)


async def due_events(tenant_id: UUID) -> list[tuple[dict, datetime]]:
    rows = await owner_sql("SELECT payload, available_at FROM outbox WHERE tenant_id = :t AND topic = 'care.rule_due' "
                           "ORDER BY id", t=tenant_id)
    return [(p, a) for p, a in rows]


async def runs(tenant_id: UUID, key: str) -> list[dict[str, Any]]:
    rows = await owner_sql(
        "SELECT r.id, r.cause_key, r.member_id, r.status, r.run_at, r.result FROM rule_runs r "
        "JOIN automation_rules a ON a.tenant_id = r.tenant_id AND a.id = r.rule_id "
        "WHERE r.tenant_id = :t AND a.key = :k ORDER BY r.id", t=tenant_id, k=key)
    return [{"id": i, "cause_key": c, "member_id": str(m) if m else None, "status": s, "run_at": r, "result": res}
            for i, c, m, s, r, res in rows]


async def tasks(tenant_id: UUID) -> list[dict[str, Any]]:
    rows = await owner_sql("SELECT kind, member_id, assignee_id, title, due_at, rule_id FROM tasks "
                           "WHERE tenant_id = :t ORDER BY id", t=tenant_id)
    return [{"kind": k, "member_id": str(m) if m else None, "assignee_id": str(a) if a else None, "title": ti,
             "due_at": d, "rule_id": r} for k, m, a, ti, d, r in rows]


async def rule_id(kit: TenantKit, key: str) -> str:
    items = (await kit.get("/automation-rules", params={"limit": 200})).json()["items"]
    return next(r["id"] for r in items if r["key"] == key)


async def patch_rule(kit: TenantKit, key: str, **changes: Any) -> dict:
    r = await kit.client.patch(f"/api/v1/automation-rules/{await rule_id(kit, key)}", json=changes,
                               headers=kit.auth())
    assert r.status_code == 200, r.text
    return r.json()


async def message_template(kit: TenantKit, key: str) -> None:
    r = await kit.post("/message-templates", {"key": key, "name": key, "channel": "sms",
                                              "body": "{{member_name}}您好，感谢光临", "variables": ["member_name"]})
    assert r.status_code == 201, r.text


async def coupon_template(kit: TenantKit) -> str:
    r = await kit.post("/coupon-templates", {"name": "回店礼券", "kind": "fixed", "value": 2000,
                                                    "valid_days": 30})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def messages(tenant_id: UUID) -> list[tuple[str, str, str]]:
    rows = await owner_sql("SELECT template_key, member_id, status FROM outbound_messages WHERE tenant_id = :t "
                           "ORDER BY created_at", t=tenant_id)
    return [(k, str(m), s) for k, m, s in rows]


async def coupons(tenant_id: UUID) -> list[str]:
    rows = await owner_sql("SELECT member_id FROM coupons WHERE tenant_id = :t", t=tenant_id)
    return [str(m) for (m,) in rows]


__all__ = ["make_clinic"]
