"""A tenant with a store, services, a product and members, built through the services (no HTTP), for tests
that call loyalty's functions directly as checkout will, each in its own transaction."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import AppError
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ProductCreate, ServiceCreate
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.schemas import CouponTemplateCreate
from app.domain.members import service as members
from app.domain.members.schemas import MemberCreate
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.schemas import StoreCreate
from app.seed import create_tenant_with_owner
from tests.factories import PASSWORD

_serial = itertools.count(random.randrange(10_000_000))


def new_phone() -> str:
    return f"137{next(_serial) % 100_000_000:08d}"


def new_ref() -> str:
    return str(uuid.uuid4())


@dataclass
class World:
    tenant_id: UUID
    code: str
    actor: Actor
    store: UUID
    massage: UUID  # 推拿 19800
    moxa: UUID  # 艾灸 9800
    tea: UUID  # 养生茶 (product) 8800
    member: UUID
    other: UUID  # another member of the same tenant


async def make_world() -> World:
    code = f"loy{uuid.uuid4().hex[:10]}"
    tenant = await create_tenant_with_owner(code=code, name="积分测试", owner_username="owner",
                                            owner_password=PASSWORD)
    actor = Actor.system(tenant.id)
    async with session_scope(tenant.id) as session:
        store = await tenancy.create_store(session, actor, StoreCreate(name="静安店"))
        massage = await catalog.create_service(session, actor, ServiceCreate(name="推拿", duration_minutes=60,
                                                                             price=19800))
        moxa = await catalog.create_service(session, actor, ServiceCreate(name="艾灸", duration_minutes=30, price=9800))
        tea = await catalog.create_product(session, actor, ProductCreate(name="养生茶", unit="罐", price=8800))
        member = await members.create_member(session, actor, MemberCreate(name="李四", phone=new_phone()))
        other = await members.create_member(session, actor, MemberCreate(name="王五", phone=new_phone()))
    return World(tenant.id, code, actor, store.id, massage.id, moxa.id, tea.id, member.id, other.id)


async def run(world: World, fn, **kwargs: Any) -> Any:
    """One loyalty call in a transaction of its own (its own database connection)."""
    async with session_scope(world.tenant_id) as session:
        return await fn(session, world.actor, **kwargs)


async def balance(world: World, member_id: UUID | None = None) -> int:
    async with session_scope(world.tenant_id) as session:
        return await loyalty.points_balance(session, world.actor, member_id or world.member)


async def consistent(world: World, member_id: UUID | None = None) -> list[str]:
    async with session_scope(world.tenant_id) as session:
        return await loyalty.check_points_consistency(session, world.tenant_id, member_id or world.member)


async def template(world: World, **body: Any) -> UUID:
    async with session_scope(world.tenant_id) as session:
        t = await loyalty.create_template(session, world.actor, CouponTemplateCreate(**{"name": "券", **body}))
        return t.id


async def coupon(world: World, template_id: UUID, member_id: UUID | None = None) -> UUID:
    async with session_scope(world.tenant_id) as session:
        c = await loyalty.issue_coupon(session, world.actor, template_id=template_id,
                                       member_id=member_id or world.member, reason="测试")
        return c.id


def outcomes(results: list) -> tuple[list, list[str]]:
    """The successes, and the codes of the refusals (anything else is re-raised)."""
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, AppError):
            raise r
    return [r for r in results if not isinstance(r, BaseException)], sorted(
        r.code for r in results if isinstance(r, AppError))


async def gather(*aws) -> list:
    return await asyncio.gather(*aws, return_exceptions=True)
