"""Member import, writing: new members in batches, existing ones updated row by row, every write through the
member use cases so an imported member is validated, audited and announced like any other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import crypto
from app.core.actor import Actor
from app.core.errors import AppError, Unprocessable
from app.domain.members.import_rows import RowPlan
from app.domain.members.models import Member
from app.domain.members.normalize import normalize_id_number
from app.domain.members.profiles import add_member, add_members, apply_member_update, other_phone_index
from app.domain.members.schemas import ImportedMember, ImportRowError, ImportRowExisting, MemberUpdate, TagChange
from app.domain.members.tags import apply_tag_change

ImportMode = Literal["all_or_nothing", "per_row"]
OnExisting = Literal["skip", "update"]
# New members are written this many at a time; a refused batch is retried row by row to find the bad row.
CREATE_BATCH = 500


# ---------------------------------------------------------------- writing


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    existing: list[ImportRowExisting] = field(default_factory=list)


def _differs(member: Member, key: str, value: Any) -> Any:
    """The part of `value` the member does not have yet (None when nothing differs)."""
    if key == "custom_fields":
        return {k: v for k, v in value.items() if member.custom_fields.get(k) != v} or None
    if key == "health":
        return {k: v for k, v in value.items() if getattr(member, k) != v} or None
    if key == "id_number":
        index = crypto.blind_index(normalize_id_number(value), purpose="id_number")
        return value if index != member.id_number_index else None
    if key == "other_phone":
        return value if other_phone_index(value) != member.other_phone_index else None
    return value if getattr(member, key) != value else None


def _update_data(plan: RowPlan) -> tuple[MemberUpdate | None, list[str]]:
    """What the file says and the member does not have: empty cells leave values alone, tags are added
    (never removed), and a row that changes nothing writes nothing (no update, no audit entry)."""
    # Rows matching a member are planned with the member loaded when on_existing=update (load_existing).
    assert plan.existing is not None and plan.existing.row is not None
    changes = {}
    for key, value in plan.values.items():
        if key not in ("phone", "tags") and (changed := _differs(plan.existing.row, key, value)) is not None:
            changes[key] = changed
    new_tags = [t for t in plan.values.get("tags", []) if t not in plan.existing.tags]
    return (MemberUpdate.model_validate(changes) if changes else None), new_tags


def planned_action(plan: RowPlan, on_existing: OnExisting) -> str:
    """created | updated | skipped (on_existing=skip, or nothing to change) for a valid row."""
    if plan.existing is None:
        return "created"
    if on_existing == "skip":
        return "skipped"
    update, new_tags = _update_data(plan)
    return "updated" if update is not None or new_tags else "skipped"


async def _write_row(session: AsyncSession, actor: Actor, plan: RowPlan, external_ref: str) -> str:
    """One row through the member use cases: a new member, or (on_existing=update) the member with its phone.
    The import checked members:write (and members.health:write for health columns) once for the file."""
    if plan.existing_id is None:
        await add_member(session, actor, ImportedMember.model_validate(plan.values), tag_source="import",
                         external_ref=external_ref)
        return "created"
    update, tags = _update_data(plan)
    if update is not None:
        await apply_member_update(session, actor, plan.existing_id, update)
    if tags:
        await apply_tag_change(session, actor, plan.existing_id, TagChange(add=tags), source="import")
    return "updated"


def _failure_message(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, AppError):
        return str(exc.extra.get("field") or "row"), exc.detail
    return "row", "the database refused this row (it conflicts with a change made meanwhile)"


async def _in_savepoint(session: AsyncSession, write: Callable[[], Awaitable[Any]]) -> Any:
    """Run `write` in a savepoint: a refusal undoes only its own part (and voids the audit entries it queued),
    and comes back as the exception instead of breaking the transaction."""
    mark = len(session.info.setdefault("audit_pending", []))
    try:
        async with session.begin_nested():
            return await write()
    except (AppError, IntegrityError, DataError) as exc:
        del session.info.setdefault("audit_pending", [])[mark:]
        return exc


def _external_ref(import_id: UUID, plan: RowPlan) -> str:
    """The member's number in the old system when the file has one (later imports find the member by it)."""
    return plan.external_ref or f"import:{import_id}:{plan.row}"


async def _create_batch(session: AsyncSession, actor: Actor, plans: list[RowPlan], import_id: UUID) -> bool:
    items = [(ImportedMember.model_validate(p.values), _external_ref(import_id, p)) for p in plans]
    result = await _in_savepoint(session, lambda: add_members(session, actor, items, tag_source="import"))
    return not isinstance(result, Exception)


async def _write_one(session: AsyncSession, actor: Actor, plan: RowPlan, *, mode: ImportMode, import_id: UUID,
                     outcome: Outcome) -> None:
    async def write() -> str:
        return await _write_row(session, actor, plan, _external_ref(import_id, plan))

    if mode == "per_row":
        result = await _in_savepoint(session, write)
    else:
        try:
            result = await write()
        except AppError as exc:
            result = exc
    if isinstance(result, Exception):
        member_field, message = _failure_message(result)
        plan.errors.append(ImportRowError(row=plan.row, field=member_field, column=None, message=message))
        outcome.errors.extend(plan.errors)
        if mode == "all_or_nothing":
            raise rejected(f"row {plan.row} could not be imported: {message}; nothing was imported", outcome)
        return
    setattr(outcome, result, getattr(outcome, result) + 1)


async def write_rows(session: AsyncSession, actor: Actor, plans: list[RowPlan], *, mode: ImportMode,
                     on_existing: OnExisting, import_id: UUID, outcome: Outcome) -> None:
    """New members in batches (a few queries per batch rather than per row); rows for existing members, and
    any batch the service refused (to find the refused row), one by one."""
    actions = {p.row: planned_action(p, on_existing) for p in plans if p.ok}
    new = [p for p in plans if actions.get(p.row) == "created"]
    one_by_one = [p for p in plans if actions.get(p.row) == "updated"]
    outcome.skipped += sum(1 for action in actions.values() if action == "skipped")
    for start in range(0, len(new), CREATE_BATCH):
        batch = new[start:start + CREATE_BATCH]
        if await _create_batch(session, actor, batch, import_id):
            outcome.created += len(batch)
        else:
            one_by_one.extend(batch)
    for plan in sorted(one_by_one, key=lambda p: p.row):
        await _write_one(session, actor, plan, mode=mode, import_id=import_id, outcome=outcome)


def rejected(detail: str, outcome: Outcome) -> Unprocessable:
    """The import refused as a whole (all_or_nothing), with the rows' errors as the report."""
    return Unprocessable(detail, code="import_rejected", errors_in_rows=sorted({e.row for e in outcome.errors}),
                         report={"errors": [e.model_dump(mode="json") for e in outcome.errors]})
