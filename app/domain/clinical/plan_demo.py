"""Demo treatment plan: 李娜's 颈肩腰腿痛调理疗程 (推拿 × 10 + 拔罐 × 5, every 7 days) on her 推拿10次卡, with the
推拿 visits she already had counted against it (3 of 15 done), made by the demo doctor (张仲和) with the
therapist who treats her (陈晓明) in charge. Called from app.seed.seed_demo after cards and visits exist."""

from __future__ import annotations

from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.pagination import PageParams
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.clinical import plans
from app.domain.clinical.plan_schemas import PlanItemIn, TreatmentPlanCreate
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.visits import service as visits

DEMO_MEMBER = "李娜"
DEMO_PLAN = {
    "title": "颈肩腰腿痛调理疗程",
    "goals": "缓解颈肩及腰背部酸痛，VAS评分由6分降至3分以下；改善久坐引起的肌肉紧张，恢复颈部活动度",
    "items": [("推拿", 10), ("拔罐", 5)],
    "interval_days": 7,
}


async def seed_treatment_plans(session: AsyncSession, actor: Actor, staff_ids: dict[str, UUID]) -> list[str]:
    """The demo plan; one line per plan (for the seed summary)."""
    tenant_id = actor.tenant_id
    people = await members.member_ids_by_name(session, tenant_id, {DEMO_MEMBER})
    therapist = staff_ids.get("therapist.chen")
    if DEMO_MEMBER not in people or therapist is None or "doctor.zhang" not in staff_ids:
        return []
    member_id = people[DEMO_MEMBER]
    service_ids = {name: service_id for service_id, name in (await catalog.service_names(session, tenant_id)).items()}
    stores = sorted(await iam.staff_store_ids(session, tenant_id, therapist), key=str)
    if not stores or any(name not in service_ids for name, _ in DEMO_PLAN["items"]):
        return []
    doctor = Actor(tenant_id=tenant_id, kind="system", id=staff_ids["doctor.zhang"], store_ids=None,
                   roles=("system",), display_name="张仲和")
    card = next((c for c in await cards.member_cards(session, actor, member_id, include_shared=False)
                 if c.name == "推拿10次卡"), None)
    plan = await plans.create_plan(session, doctor, TreatmentPlanCreate(
        member_id=member_id, store_id=stores[0], title=DEMO_PLAN["title"], goals=DEMO_PLAN["goals"],
        items=[PlanItemIn(service_id=service_ids[name], sessions=n) for name, n in DEMO_PLAN["items"]],
        interval_days=DEMO_PLAN["interval_days"], responsible_staff_id=therapist,
        card_id=card.id if card else None))
    # Her visits so far, counted as the worker counts them from service.completed (which finds them counted).
    done, _ = await visits.completed_records_of(session, tenant_id, {member_id}, PageParams(limit=50))
    for record in sorted(done, key=lambda r: r.completed_at):
        await plans.count_visit(session, tenant_id, plans.CompletedVisit(
            service_record_id=record.id, member_id=member_id, service_id=record.service_id,
            staff_id=record.staff_id, completed_at=record.completed_at))
    return [f"{DEMO_MEMBER}: {plan.title} ({plan.sessions_done}/{plan.sessions_planned})"]
