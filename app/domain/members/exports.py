"""Members out to .xlsx: the filtered member list, and the empty import template.

The list uses the same search as `GET /members`, so the filters mean the same thing; contact data
follows the caller's contact permission (masked otherwise) and health data is never exported in bulk.
Every text cell goes through `spreadsheets.cell_value`: a member named `=HYPERLINK(...)` is text, and a
control character stored before names were checked is left out rather than failing the export.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE
from app.core.errors import Unprocessable
from app.core.pagination import PageParams
from app.domain.members import policies
from app.domain.members.import_columns import DEFAULT_HEADERS, template_headers
from app.domain.members.import_rows import load_context
from app.domain.members.models import CustomFieldDefinition, Member, MemberStatus
from app.domain.members.schemas import MemberSummary
from app.domain.members.search import MemberFilter, search_members
from app.domain.members.spreadsheets import Sheet, build_workbook

MAX_EXPORT_ROWS = 100_000
EXPORT_PAGE = 1000
GENDER_LABELS = {"male": "男", "female": "女", "other": "其他"}
STATUS_LABELS = {MemberStatus.ACTIVE: "正常", MemberStatus.MERGED: "已合并", MemberStatus.ERASED: "已注销"}
# Local times in the sheet: Excel has no time zones, and the chains this serves run on China time.
SHEET_TIMEZONE = ZoneInfo(DEFAULT_TIMEZONE)


async def _matching_members(session: AsyncSession, actor: Actor, filters: MemberFilter) -> list[MemberSummary]:
    """Every member the list endpoint would page through, up to the export cap."""
    found: list[MemberSummary] = []
    params = PageParams(limit=EXPORT_PAGE)
    while True:
        page, cursor = await search_members(session, actor, params, **asdict(filters))
        found.extend(page)
        if len(found) > MAX_EXPORT_ROWS:
            raise Unprocessable(f"more than {MAX_EXPORT_ROWS} members match; narrow the filters",
                                code="export_too_large", max_rows=MAX_EXPORT_ROWS)
        if cursor is None:
            return found
        params = PageParams(limit=EXPORT_PAGE, cursor=cursor)


# The columns the sheet needs beyond the list's summary; plain rows, not ORM objects, as there may be many.
_EXTRA_COLUMNS = (Member.id, Member.id_number_encrypted, Member.id_number_masked, Member.address,
                  Member.source_channel, Member.notes, Member.custom_fields, Member.created_at)


async def _extra_columns(session: AsyncSession, tenant_id: UUID, ids: list[UUID]) -> dict[UUID, Any]:
    rows: dict[UUID, Any] = {}
    for start in range(0, len(ids), EXPORT_PAGE):
        chunk = ids[start:start + EXPORT_PAGE]
        result = await session.exec(select(*_EXTRA_COLUMNS).where(Member.tenant_id == tenant_id,
                                                                   Member.id.in_(chunk)))
        rows.update({row.id: row for row in result.all()})
    return rows


def _local(moment: datetime | None) -> datetime | None:
    return moment.astimezone(SHEET_TIMEZONE).replace(tzinfo=None, microsecond=0) if moment else None


def _custom_cell(value: Any) -> Any:
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return value


def _names(lookup: dict[str, UUID | None]) -> dict[UUID, str]:
    """id → a name, from an import lookup (which also holds ids as keys)."""
    names: dict[UUID, str] = {}
    for key, value in lookup.items():
        if value is not None and key != str(value):
            names.setdefault(value, key)
    return names


EXPORT_HEADERS = ["会员ID", DEFAULT_HEADERS["name"][0], DEFAULT_HEADERS["phone"][0], DEFAULT_HEADERS["gender"][0],
                  DEFAULT_HEADERS["birthday"][0], DEFAULT_HEADERS["id_number"][0], DEFAULT_HEADERS["address"][0],
                  DEFAULT_HEADERS["source_channel"][0], DEFAULT_HEADERS["notes"][0], DEFAULT_HEADERS["tags"][0],
                  DEFAULT_HEADERS["home_store"][0], DEFAULT_HEADERS["owner_staff"][0], "最近到店", "状态", "建档时间"]


async def export_members(session: AsyncSession, actor: Actor, filters: MemberFilter) -> tuple[bytes, int]:
    """The members matching `filters` as an .xlsx, and how many rows it holds."""
    actor.require("members:export")
    members = await _matching_members(session, actor, filters)
    extras = await _extra_columns(session, actor.tenant_id, [m.id for m in members])
    context = await load_context(session, actor.tenant_id)
    # Health-flagged fields need a per-member care check and an audited read: not in a bulk sheet.
    definitions = [d for d in context.definitions if d.active and not d.health]
    store_names, staff_names = _names(context.stores), _names(context.staff)
    contact = policies.can_see_contact(actor)

    def rows():
        for summary in members:
            extra = extras[summary.id]
            id_number = extra.id_number_encrypted and (
                crypto.decrypt(extra.id_number_encrypted) if contact else extra.id_number_masked)
            yield [str(summary.id), summary.name, summary.phone,
                   GENDER_LABELS.get(summary.gender or "", summary.gender), summary.birthday, id_number or None,
                   extra.address if contact else None, extra.source_channel, extra.notes, "、".join(summary.tags),
                   store_names.get(summary.home_store_id), staff_names.get(summary.owner_staff_id),
                   _local(summary.last_visit_at), STATUS_LABELS.get(summary.status, summary.status),
                   _local(extra.created_at), *[_custom_cell((extra.custom_fields or {}).get(d.key))
                                               for d in definitions]]

    header = EXPORT_HEADERS + [h for h, f in template_headers(definitions) if f.startswith("custom.")]
    workbook = build_workbook([Sheet("会员", header, rows())])
    audit.record(session, "member.export_list", "member", None, filter=filters.for_audit(), rows=len(members),
                 contact_visible=contact)
    return workbook, len(members)


TYPE_LABELS = {"text": "文本", "number": "数字", "date": "日期", "single_select": "单选",
               "multi_select": "多选（用、分隔）", "scale": "分值", "boolean": "是 / 否"}


def _field_hint(member_field: str, definition: CustomFieldDefinition | None) -> str:
    hints = {"name": "必填", "phone": "必填；大陆手机号11位，或 +国家码号码", "gender": "男 / 女",
             "birthday": "2024-03-05、2024/3/5 或 20240305", "id_number": "18位居民身份证号",
             "tags": "多个标签用 、 或 , 分隔；同义词自动归并为标准标签", "home_store": "门店名称",
             "owner_staff": "顾问的登录名或姓名"}
    if definition is None:
        return hints.get(member_field, "")
    parts = [TYPE_LABELS.get(definition.type, definition.type)]
    if definition.required:
        parts.append("必填")
    options = [o.get("label") or o["value"] for o in definition.options if not o.get("retired")]
    if options:
        parts.append("可选：" + "、".join(options))
    if definition.min_value is not None or definition.max_value is not None:
        parts.append(f"范围 {definition.min_value if definition.min_value is not None else ''}"
                     f"–{definition.max_value if definition.max_value is not None else ''}")
    return "；".join(parts)


async def import_template(session: AsyncSession, actor: Actor) -> bytes:
    """An empty sheet with the headers an import recognises (custom fields included), and a sheet of hints."""
    actor.require("members:write")
    context = await load_context(session, actor.tenant_id)
    by_key = {d.key: d for d in context.definitions}
    headers = template_headers(context.definitions)
    hints = [[header, member_field, _field_hint(member_field, by_key.get(member_field.removeprefix("custom."))
                                                if member_field.startswith("custom.") else None)]
             for header, member_field in headers]
    return build_workbook([Sheet("会员", [h for h, _ in headers], []),
                           Sheet("填写说明", ["列", "字段", "说明"], hints, column_width=40)])
