"""Builders for the clinical tests."""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from app.core.db import session_scope
from tests.factories import TenantKit, seal_audit

_serial = itertools.count(random.randrange(10_000_000))

TCM_VALUES: dict[str, Any] = {
    "tongue_body": ["pale_red", "tooth_marked"], "tongue_coating": ["thin_white"], "pulse": ["wiry", "thready"],
    "chief_complaint": "颈肩酸痛两周", "pulse_rate": 72, "constitution": ["qi_deficiency"],
}


def phone() -> str:
    return f"137{next(_serial) % 100_000_000:08d}"


async def member(kit: TenantKit, name: str = "李娜", **extra: Any) -> str:
    r = await kit.post("/members", {"name": name, "phone": phone(), **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def draft(kit: TenantKit, member_id: str, code: str = "tcm_four_exams", values: dict | None = None,
                token: str | None = None, **extra: Any) -> dict:
    r = await kit.post("/clinical-records", {"member_id": member_id, "template_code": code,
                                             "values": TCM_VALUES if values is None else values, **extra}, token)
    assert r.status_code == 201, r.text
    return r.json()


def field_names(r: httpx.Response) -> set[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["field"] for e in r.json().get("errors", [])}


async def audit_rows(tenant_id: str, action: str) -> list[dict]:
    await seal_audit()
    async with session_scope(system=True) as session:
        rows = (await session.execute(text(
            "SELECT actor_id, target_id, summary FROM audit_log WHERE tenant_id = :t AND action = :a ORDER BY seq"),
            {"t": uuid.UUID(tenant_id), "a": action})).mappings().all()
    return [dict(r) for r in rows]
