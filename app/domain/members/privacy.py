"""Privacy: a member's access request (everything held about them), erasure, and re-encrypting contact
data under the current key."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, update
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden
from app.core.events import emit
from app.core.pagination import PageParams
from app.domain.members import policies
from app.domain.members.events import MEMBER_ERASED
from app.domain.members.families import dissolve_headed_family, family_member_ids
from app.domain.members.loading import load_member
from app.domain.members.models import Member, MemberNote, MemberStatus, MemberTag
from app.domain.members.profiles import HEALTH_COLUMNS, present
from app.domain.members.schemas import HealthOut
from app.domain.members.timeline import timeline

ERASED_NAME = "已注销会员"

# ---------------------------------------------------------------- access requests and erasure


async def export_member_data(session: AsyncSession, actor: Actor, member_id: UUID) -> dict[str, Any]:
    """Everything held about one member (a PIPL access request), health data included."""
    actor.require("members:export", "members.contact:read")
    member = await load_member(session, actor, member_id)
    if not await policies.can_see_health(session, actor, member):
        raise Forbidden("an export holds the member's health data, which you may not see", code="permission_denied")
    profile = await present(session, actor, member, audit_reads=False)
    profile_data = profile.model_dump(mode="json")
    profile_data["health"] = HealthOut(**{c: getattr(member, c) for c in HEALTH_COLUMNS}).model_dump(mode="json")
    profile_data["custom_fields"] = member.custom_fields
    notes = (await session.exec(select(MemberNote).where(MemberNote.tenant_id == actor.tenant_id,
                                                         MemberNote.member_id == member.id)
                                .order_by(MemberNote.created_at))).all()
    items, _ = await timeline(session, actor, member.id, PageParams(limit=200))
    audit.record(session, "member.export", "member", member.id)
    return {"exported_at": utcnow().isoformat(), "member": profile_data,
            "notes": [{"body": n.body, "created_at": n.created_at.isoformat()} for n in notes],
            "timeline": [i.model_dump(mode="json") for i in items]}


PERSONAL_COLUMNS = ("phone_encrypted", "phone_index", "phone_masked", "id_number_encrypted", "id_number_index",
                    "id_number_masked", "gender", "birthday", "address", "notes", "allergy_history", "past_history",
                    "family_history", "health_summary", "family_group_id", "family_role", "family_relation",
                    "external_ref", "source_channel", "other_phone_encrypted", "other_phone_index",
                    "other_phone_masked")


def _scrub(member: Member) -> None:
    """Remove the personal data from one row; the row, and every ledger pointing at it, stays."""
    member.name = ERASED_NAME
    member.pinyin_initials = member.pinyin_full = ""
    for column in PERSONAL_COLUMNS:
        setattr(member, column, None)
    member.constitution = []
    member.share_health_with_family = False
    member.custom_fields = {}
    member.erased_at = member.updated_at = utcnow()


async def _folded_into(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[Member]:
    """Every record merged into the member, directly or into one merged into it (A into B, B into C)."""
    folded: list[Member] = []
    targets = [member_id]
    while targets:
        rows = (await session.exec(select(Member).where(Member.tenant_id == tenant_id,
                                                        Member.merged_into_id.in_(targets))
                                   .with_for_update())).all()
        folded += rows
        targets = [row.id for row in rows]
    return folded


async def erase_member(session: AsyncSession, actor: Actor, member_id: UUID, reason: str) -> Member:
    """Anonymise personal data; keep the row (and so every ledger, order and total that points at it)."""
    actor.require("members:erase")
    member = await load_member(session, actor, member_id, for_update=True)
    if member.status == MemberStatus.ERASED:
        raise Conflict("this member was already erased", code="member_erased")
    if member.family_group_id is not None and member.family_role == "head":
        others = await family_member_ids(session, actor.tenant_id, member.id)
        if len(others) > 1:
            raise Conflict("make another family member head before erasing this one", code="family_head")
    # Records merged into this one (also through earlier merges) hold the same person's data.
    rows = [member, *await _folded_into(session, actor.tenant_id, member.id)]
    for row in rows:
        _scrub(row)
    member.status = MemberStatus.ERASED
    session.add_all(rows)
    ids = [row.id for row in rows]
    await session.execute(update(MemberNote).where(MemberNote.tenant_id == actor.tenant_id,
                                                   MemberNote.member_id.in_(ids)).values(body="[已删除]"))
    await session.execute(delete(MemberTag).where(MemberTag.tenant_id == actor.tenant_id,
                                                  MemberTag.member_id.in_(ids)))
    await dissolve_headed_family(session, actor.tenant_id, member.id)
    await session.flush()
    audit.record(session, "member.erase", "member", member.id, reason=reason)
    await emit(session, MEMBER_ERASED, {"member_id": str(member.id)})
    return member


# ---------------------------------------------------------------- key rotation


async def reencrypt_batch(session: AsyncSession, tenant_id: UUID, batch: int = 500) -> int:
    """Re-encrypt up to `batch` members whose phone or ID number uses an older key; returns how many."""
    keys = crypto.field_keys()
    prefix = keys.active_kid + ":"
    stale_phone = and_(Member.phone_encrypted.is_not(None), ~Member.phone_encrypted.startswith(prefix))
    stale_id = and_(Member.id_number_encrypted.is_not(None), ~Member.id_number_encrypted.startswith(prefix))
    stale_other = and_(Member.other_phone_encrypted.is_not(None), ~Member.other_phone_encrypted.startswith(prefix))
    stmt = (select(Member).where(Member.tenant_id == tenant_id, or_(stale_phone, stale_id, stale_other))
            .limit(batch).with_for_update(skip_locked=True))
    rows = (await session.exec(stmt)).all()
    for member in rows:
        member.phone_encrypted = crypto.encrypt(crypto.decrypt(member.phone_encrypted))
        member.id_number_encrypted = crypto.encrypt(crypto.decrypt(member.id_number_encrypted))
        member.other_phone_encrypted = crypto.encrypt(crypto.decrypt(member.other_phone_encrypted))
        session.add(member)
    await session.flush()
    return len(rows)
