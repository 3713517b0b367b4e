"""Tenant creation and the demo tenant (`careloop seed-demo`). Each capability adds its part here."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from app.core.actor import Actor
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.domain.iam import service as iam
from app.domain.iam.models import Staff
from app.domain.iam.schemas import StaffCreate
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.models import Store, Tenant
from app.domain.tenancy.schemas import StoreCreate

DEMO_TENANT = "demo"
DEMO_PASSWORD = "careloop-demo"

DEMO_STORES = [
    {"name": "康悦堂·静安旗舰店", "address": "上海市静安区南京西路1266号3楼", "phone": "021-62881234"},
    {"name": "康悦堂·徐汇店", "address": "上海市徐汇区漕溪北路88号2楼", "phone": "021-64385566"},
]

# username, display name, roles, indexes of DEMO_STORES
DEMO_STAFF = [
    ("manager", "李秀英", ["store_manager"], [0]),
    ("doctor.zhang", "张仲和", ["doctor"], [0, 1]),
    ("therapist.chen", "陈晓明", ["therapist"], [0]),
    ("therapist.liu", "刘芳", ["therapist"], [0]),
    ("therapist.huang", "黄志强", ["therapist"], [1]),
    ("consultant.zhao", "赵丽", ["consultant"], [0]),
    ("frontdesk", "孙悦", ["front_desk"], [0]),
    ("marketing", "周敏", ["marketing"], []),
    ("finance", "吴静", ["finance"], []),
]


async def create_tenant_with_owner(*, code: str, name: str, owner_username: str, owner_password: str) -> Tenant:
    token = set_context(RequestContext(actor_type="system", actor_id="cli"))
    try:
        async with session_scope(system=True) as session:
            tenant = await tenancy.create_tenant(session, code=code, name=name)
            await iam.install_preset_roles(session, tenant.id)
            await iam.create_owner(session, tenant.id, owner_username, owner_password)
        return tenant
    finally:
        reset_context(token)


async def seed_demo(*, if_missing: bool = False) -> dict[str, Any]:
    login = {"tenant": DEMO_TENANT, "username": "owner", "password": DEMO_PASSWORD}
    summary: dict[str, Any] = {"login": login, "staff": [u for u, *_ in DEMO_STAFF]}
    async with session_scope(system=True) as session:
        existing = await tenancy.get_tenant_by_code(session, DEMO_TENANT)
    if existing is not None:
        if if_missing:
            return summary | {"created": False}
        from app.core.errors import Conflict

        raise Conflict("the demo tenant already exists", code="tenant_exists")
    tenant = await create_tenant_with_owner(code=DEMO_TENANT, name="康悦堂中医养生连锁",
                                            owner_username="owner", owner_password=DEMO_PASSWORD)
    token = set_context(RequestContext(actor_type="system", actor_id="seed-demo"))
    try:
        async with session_scope(tenant.id) as session:
            actor = Actor.system(tenant.id)
            stores: list[Store] = [await tenancy.create_store(session, actor, StoreCreate(**s)) for s in DEMO_STORES]
            for username, display_name, roles, store_indexes in DEMO_STAFF:
                await iam.create_staff(session, actor, StaffCreate(
                    username=username, password=DEMO_PASSWORD, display_name=display_name, roles=roles,
                    store_ids=[stores[i].id for i in store_indexes]))
            owner = (await session.exec(select(Staff).where(Staff.username == "owner"))).one()
            owner.display_name = "王建国"
            session.add(owner)
    finally:
        reset_context(token)
    return summary | {"created": True, "tenant_id": str(tenant.id), "stores": [s.name for s in stores]}
