"""Builders for the cards and completion tests.

A `Clinic` is a tenant with a store, a therapist working there, a consumable in stock, three services
and a member, made through the real API. Tests then sell cards over HTTP, or call the card and visit
services directly inside their own transactions (`in_tenant`), as the checkout and booking
capabilities will.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.cards import service as cards
from app.domain.cards.models import Card, CardItem, CardLedgerEntry
from app.domain.visits import service as visits
from app.domain.visits.schemas import ServiceCompletion
from tests.factories import TenantKit, new_tenant

PROBLEM_JSON = "application/problem+json"
MASSAGE_PRICE, MOXA_PRICE, CUPPING_PRICE = 19800, 9800, 5000
OIL_PER_MASSAGE = 10  # ml of 按摩精油 one 推拿 uses

_serial = itertools.count(random.randrange(10_000_000))


def new_phone() -> str:
    """A mainland mobile number no other test of this run uses."""
    return f"138{next(_serial) % 100_000_000:08d}"


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """An RFC 9457 answer with this status (and code)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    return body


@dataclass
class Clinic:
    kit: TenantKit
    tenant_id: UUID
    store: str
    therapist: dict  # {id, username, token}; works in `store`
    oil: str  # 按摩精油, ml
    massage: str  # 推拿: 19800 fen, uses 10 ml oil, 10 % commission
    moxa: str  # 艾灸: 9800 fen, no recipe, fixed 1000 fen commission
    cupping: str  # 拔罐: 5000 fen, no recipe, no commission
    member: str

    @property
    def actor(self) -> Actor:
        return Actor.system(self.tenant_id)


async def make_clinic(client: httpx.AsyncClient, *, oil_stock: int = 1000) -> Clinic:
    kit = await new_tenant(client)
    store = await kit.store()
    therapist = await kit.staff(["therapist"], [store])
    oil = (await kit.post("/consumables", {"name": "按摩精油", "unit": "ml"})).json()["id"]
    if oil_stock:
        await receive(kit, store, oil, oil_stock)
    massage = await make_service(kit, "推拿", MASSAGE_PRICE, recipe={oil: OIL_PER_MASSAGE},
                                 commission={"type": "percent", "value": 10})
    moxa = await make_service(kit, "艾灸", MOXA_PRICE, commission={"type": "fixed", "value": 1000})
    cupping = await make_service(kit, "拔罐", CUPPING_PRICE)
    member = await make_member(kit, "李四")
    return Clinic(kit, UUID(kit.tenant_id), store, therapist, oil, massage, moxa, cupping, member)


async def receive(kit: TenantKit, store: str, consumable: str, quantity: int) -> None:
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": consumable, "kind": "receive",
                                                "quantity": quantity})
    assert r.status_code == 201, r.text


async def make_service(kit: TenantKit, name: str, price: int, *, recipe: dict[str, int] | None = None,
                       commission: dict | None = None) -> str:
    body: dict[str, Any] = {"name": name, "duration_minutes": 60, "price": price, "resource_requirements": [],
                            "consumables": [{"consumable_id": c, "quantity": q} for c, q in (recipe or {}).items()]}
    if commission is not None:
        body["commission"] = commission
    r = await kit.post("/services", body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def make_member(kit: TenantKit, name: str = "王五") -> str:
    r = await kit.post("/members", {"name": name, "phone": new_phone()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def make_template(kit: TenantKit, *, on_sale: bool = False, **body: Any) -> str:
    """A card template; `on_sale` also publishes it in the mini-program (patients see and buy only those)."""
    r = await kit.post("/card-templates", {"name": "测试卡", **body})
    assert r.status_code == 201, r.text
    template = r.json()["id"]
    if on_sale:
        listed = await kit.client.put(f"/api/v1/card-templates/{template}/listing", json={"published": True},
                                      headers=kit.auth())
        assert listed.status_code == 200, listed.text
    return template


async def issue(kit: TenantKit, member: str, template: str, store: str, price_paid: int | None = None,
                token: str | None = None) -> dict:
    body: dict[str, Any] = {"member_id": member, "template_id": template, "store_id": store, "reason": "测试开卡"}
    if price_paid is not None:
        body["price_paid"] = price_paid
    r = await kit.post("/cards", body, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def count_card(clinic: Clinic, sessions: int, *, price: int | None = None, member: str | None = None,
                     service: str | None = None, **template: Any) -> dict:
    """A count card of `sessions` sessions of 推拿 (or `service`) sold to the clinic's member."""
    price = sessions * 15000 if price is None else price
    template_id = await make_template(clinic.kit, kind="count", price=price, valid_days=template.pop("valid_days", 365),
                                      items=[{"service_id": service or clinic.massage, "sessions": sessions,
                                              **template.pop("item", {})}], **template)
    return await issue(clinic.kit, member or clinic.member, template_id, clinic.store, price)


async def complete(clinic: Clinic, card_id: str | None = None, *, service: str | None = None,
                   member: str | None = None, staff: dict | None = None, store: str | None = None,
                   token: str | None = None, **extra: Any) -> httpx.Response:
    """POST /service-records as the therapist (or `token`)."""
    staff = staff or clinic.therapist
    body = {"member_id": member or clinic.member, "store_id": store or clinic.store,
            "service_id": service or clinic.massage, "staff_id": staff["id"], **extra}
    if card_id is not None:
        body["card_id"] = card_id
    return await clinic.kit.post("/service-records", body, token=token or staff["token"])


async def complete_direct(clinic: Clinic, card_id: str | UUID | None, *, service: str | None = None,
                          member: str | None = None) -> tuple[Any, int | None, int]:
    """visits.complete_service in a transaction of its own (its own database connection)."""
    data = ServiceCompletion(member_id=member or clinic.member, store_id=clinic.store,
                             service_id=service or clinic.massage, staff_id=clinic.therapist["id"],
                             card_id=card_id)
    async with in_tenant(clinic.tenant_id) as session:
        return await visits.complete_service(session, clinic.actor, data)


# ---------------------------------------------------------------- reading and changing rows directly


@asynccontextmanager
async def in_tenant(tenant_id: UUID | str) -> AsyncIterator[AsyncSession]:
    """One transaction as the application role, scoped to the tenant (committed unless it raises)."""
    async with session_scope(UUID(str(tenant_id))) as session:
        yield session


async def owner_sql(sql: str, **params: Any) -> list[Any]:
    """Run SQL as the table owner (a system session: no row-level security)."""
    async with session_scope(system=True) as session:
        result = await session.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def card_state(tenant_id: UUID, card_id: str | UUID) -> tuple[Card, list[CardItem]]:
    async with in_tenant(tenant_id) as session:
        card = await session.get(Card, (tenant_id, UUID(str(card_id))))
        items = (await session.exec(select(CardItem).where(CardItem.tenant_id == tenant_id,
                                                           CardItem.card_id == card.id)
                                    .order_by(CardItem.id))).all()
        return card, list(items)


async def ledger_rows(tenant_id: UUID, card_id: str | UUID) -> list[CardLedgerEntry]:
    async with in_tenant(tenant_id) as session:
        stmt = select(CardLedgerEntry).where(CardLedgerEntry.tenant_id == tenant_id,
                                             CardLedgerEntry.card_id == UUID(str(card_id)))
        return list((await session.exec(stmt.order_by(CardLedgerEntry.created_at, CardLedgerEntry.id))).all())


async def consistency(tenant_id: UUID, card_id: str | UUID) -> list[str]:
    async with in_tenant(tenant_id) as session:
        return await cards.check_consistency(session, tenant_id, UUID(str(card_id)))


async def events(tenant_id: UUID, topic: str | None = None) -> list[tuple[str, dict]]:
    """The tenant's outbox rows (topic, payload), oldest first."""
    rows = await owner_sql("SELECT topic, payload FROM outbox WHERE tenant_id = :t ORDER BY id", t=tenant_id)
    return [(t, p) for t, p in rows if topic is None or t == topic]


async def row_counts(tenant_id: UUID, *tables: str) -> dict[str, int]:
    async with session_scope(system=True) as session:
        return {t: (await session.execute(text(f"SELECT count(*) FROM {t} WHERE tenant_id = :t"),
                                          {"t": tenant_id})).scalar_one() for t in tables}


async def stock_of(kit: TenantKit, store: str, consumable: str) -> int:
    r = await kit.get("/inventory/stock", params={"store_id": store})
    assert r.status_code == 200, r.text
    return sum(i["quantity"] for i in r.json()["items"] if i.get("consumable_id") == consumable)


async def set_card_times(card_id: str | UUID, **times: datetime | None) -> None:
    """Move a card's expires_at / frozen_at (what the passing of time would do)."""
    assignments = ", ".join(f"{column} = :{column}" for column in times)
    await owner_sql(f"UPDATE cards SET {assignments} WHERE id = :id", id=UUID(str(card_id)), **times)


async def set_staff_level(staff_id: str, level: str | None) -> None:
    await owner_sql("UPDATE staff SET level = :level WHERE id = :id", id=UUID(staff_id), level=level)


async def last_visit_at(member_id: str) -> datetime | None:
    rows = await owner_sql("SELECT last_visit_at FROM members WHERE id = :id", id=UUID(member_id))
    return rows[0][0]


def new_ref() -> str:
    return str(uuid.uuid4())
