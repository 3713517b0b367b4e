"""Demo data for clinical: a signed TCM four-examinations record, a signed aesthetics skin assessment
corrected by an amendment, a signed pain score and a draft post-treatment check. Called from
app.seed.seed_demo after members and staff exist; written as the demo doctor (张仲和) so the records show a
real signer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.clinical import service as clinical
from app.domain.clinical.schemas import AmendmentCreate, ClinicalRecordCreate
from app.domain.members import service as members

TCM_VALUES: dict[str, Any] = {
    "complexion": "sallow", "tongue_body": ["pale_red", "tooth_marked"], "tongue_coating": ["white_greasy"],
    "voice_breath": "语声低微，无异常气味", "chief_complaint": "颈肩酸痛3个月，伴头晕乏力，久坐加重",
    "sleep": "dream_disturbed", "appetite": "poor", "pulse": ["soggy", "thready"], "pulse_rate": 68,
    "constitution": ["qi_deficiency", "phlegm_dampness"], "pattern": "脾虚湿阻，经络不通",
    "treatment_advice": "推拿配合艾灸，每周两次；少食生冷油腻，晚间11点前入睡",
}
PAIN_VALUES: dict[str, Any] = {"regions": ["neck", "shoulder_right"], "vas": 6, "character": ["aching", "distending"],
                               "onset_date": "2026-09-01"}
SKIN_VALUES: dict[str, Any] = {
    "skin_type": "combination", "fitzpatrick": "iii", "concerns": ["pigmentation", "enlarged_pores"],
    "areas": ["cheek", "forehead"], "hydration": 38, "pregnant": False, "recent_isotretinoin": False,
    "allergies": False,
}
SKIN_CORRECTED: dict[str, Any] = SKIN_VALUES | {"concerns": ["melasma", "enlarged_pores"], "allergies": True,
                                                "allergy_detail": "对酒精类爽肤水过敏，局部泛红"}
POST_CHECK_VALUES: dict[str, Any] = {"reaction": "mild_soreness", "vas_after": 3, "next_visit_advice": "一周后复诊"}


async def seed_clinical(session: AsyncSession, actor: Actor, staff_ids: dict[str, UUID]) -> list[str]:
    """The demo records; one line per record (for the seed summary)."""
    doctor = Actor(tenant_id=actor.tenant_id, kind="system", id=staff_ids["doctor.zhang"], store_ids=None,
                   roles=("system",), display_name="张仲和")
    people = await members.member_ids_by_name(session, actor.tenant_id, {"张伟", "王芳", "刘洋"})
    made: list[str] = []

    async def fill(member: str, code: str, values: dict[str, Any], *, sign: bool = True) -> UUID | None:
        if member not in people:
            return None
        record = await clinical.create_record(session, doctor, ClinicalRecordCreate(
            member_id=people[member], template_code=code, values=values))
        if sign:
            await clinical.sign_record(session, doctor, record.id)
        made.append(f"{member}: {code} ({'signed' if sign else 'draft'})")
        return record.id

    await fill("张伟", "tcm_four_exams", TCM_VALUES)
    await fill("张伟", "pain_vas", PAIN_VALUES)
    skin = await fill("王芳", "aesthetic_skin", SKIN_VALUES)
    if skin is not None:
        await clinical.amend_record(session, doctor, skin, AmendmentCreate(
            reason="复诊时确认为黄褐斑而非一般色斑，并补记酒精过敏史", values=SKIN_CORRECTED))
        made.append("王芳: aesthetic_skin amended")
    await fill("刘洋", "post_treatment_check", POST_CHECK_VALUES, sign=False)
    return made
