"""Demo data for a visit completed with its form: 黄磊's coming 拔罐 visit at the second store is completed by
its therapist from the sidebar in one call, with a signed post-treatment check (and a staff-only remark the
patient never sees in the mini-program). Called once from app.seed.seed_demo after the bookings exist."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.booking import service as booking
from app.domain.clinical.visit_forms import VisitCompletionWithRecord, VisitForm, complete_with_record
from app.domain.iam import service as iam
from app.domain.members import service as members

MEMBER = "黄磊"
CHECK_VALUES = {"reaction": "redness", "vas_after": 2, "next_visit_advice": "背部罐印3至5天消退，一周后复诊",
                "clinician_remark": "背部皮肤较敏感，下次留罐时间缩短至8分钟"}


async def seed_visit_with_form(session: AsyncSession, actor: Actor) -> list[str]:
    """One line per completed visit (for the seed summary)."""
    people = await members.member_ids_by_name(session, actor.tenant_id, {MEMBER})
    if MEMBER not in people:
        return []
    coming = await booking.active_appointments_of(session, actor.tenant_id, {people[MEMBER]},
                                                  ending_after=utcnow() - timedelta(days=1), limit=1)
    if not coming:
        return []
    appointment = coming[0]
    therapist = await iam.load_staff_actor(session, actor.tenant_id, appointment.staff_id, None)
    visit = await complete_with_record(session, therapist, appointment.id, VisitCompletionWithRecord(
        notes="拔罐10分钟，背部膀胱经走罐", record=VisitForm(template_code="post_treatment_check",
                                                        values=CHECK_VALUES, sign=True)))
    return [f"{MEMBER}: appointment completed by {therapist.display_name} with a signed post_treatment_check "
            f"({visit.clinical_record.id})"]
