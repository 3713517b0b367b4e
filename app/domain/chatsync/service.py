"""Chat-record sync: pull from the archive from the tenant's cursor, decrypt, dedupe, map, store.

One batch = one transaction: take the tenant's sync lock, read the cursor, fetch the records after it,
decrypt every one (RSA for the random key, then the SDK's DecryptData), insert them (`ON CONFLICT (tenant,
msgid) DO NOTHING`) and move the cursor to the batch's highest seq. A crash anywhere in a batch rolls all of
it back, cursor included, so the next run fetches the same records again; one stored twice is impossible
(unique msgid). Any decryption failure (wrong or missing private key) stops the run before anything of that
batch is stored: skipping would move the cursor past records we could not read and lose them.

Concurrency: `pg_try_advisory_xact_lock` per tenant inside each batch transaction; a second run that
finds the lock taken stops at once ("busy"). It is a transaction lock, not a session lock, so it is safe
behind PgBouncer in transaction mode and cannot outlive a crashed worker.

Triggers (`handlers.py`, `jobs.py`): the WeCom callback's `wecom.msgaudit_notify` event, `POST /chat-sync/run`
(a `chat_sync.requested` event), and a cron every few minutes. Each batch is a transaction of the session
factory the worker hands in.

One archive, one tenant: the archive holds every chat of the corp (WECOM_CORP_ID), so it belongs to exactly one
tenant, named by WECOM_MSGAUDIT_TENANT. Any other tenant's sync is refused before anything is fetched
(`ChatArchiveNotBound`, noted on its cursor for GET /chat-sync/status); unset, no tenant syncs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.errors import Conflict, Forbidden
from app.core.events import OutboxEvent, emit
from app.core.ids import new_id
from app.core.pagination import PageParams, decode_cursor
from app.core.settings import get_settings
from app.domain.chatsync.archive import (
    ChatArchiveNotBound,
    ChatArchiveSource,
    ChatDecryptError,
    ChatSyncNotConfigured,
    PrivateKeys,
    RawRecord,
    archive_tenant_code,
    configured_source,
    decrypt_random_key,
    load_private_keys,
)
from app.domain.chatsync.events import CHAT_SYNC_REQUESTED
from app.domain.chatsync.models import ChatDirection, ChatRecord, ChatSyncCursor
from app.domain.members import policies as member_policies
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.tenancy import service as tenancy
from app.domain.wechat_links import service as wechat_links

MAX_BATCHES_PER_RUN = 20  # then hand over to a new event, so one job stays well inside the job timeout
# WeCom external_userids start with "wm" or "wo" (customers on WeChat); staff userids are the corp's own.
EXTERNAL_PREFIXES = ("wm", "wo")


@dataclass
class SyncResult:
    status: str = "done"  # done | busy | not_configured
    batches: int = 0
    fetched: int = 0
    stored: int = 0
    remapped: int = 0
    seq: int = 0
    more: bool = False
    errors: list[str] = field(default_factory=list)


def _lock_key(tenant_id: UUID) -> int:
    digest = hashlib.sha256(f"careloop:chat_sync:{tenant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def is_external(userid: str | None) -> bool:
    return bool(userid) and userid.startswith(EXTERNAL_PREFIXES)


# --------------------------------------------------------------------------------- decrypt and map


def _decrypt_batch(source: ChatArchiveSource, keys: PrivateKeys, records: list[RawRecord]) -> list[dict[str, Any]]:
    """Blocking (RSA and the SDK): the caller runs it in a thread."""
    out = []
    for record in records:
        try:
            message = source.decrypt(decrypt_random_key(keys, record), record.encrypt_chat_msg)
        except ChatDecryptError as exc:
            # A wrong RSA key mostly surfaces here: PKCS#1 v1.5 decryption with implicit rejection (a
            # Bleichenbacher defence in current OpenSSL) hands back random bytes instead of failing.
            raise ChatDecryptError(f"msgid {record.msgid}: {exc}; is the private key configured for "
                                   f"publickey_ver {record.publickey_ver} the right one?") from exc
        if not isinstance(message, dict):
            raise ChatDecryptError(f"msgid {record.msgid}: decrypted message is not a JSON object")
        out.append(message)
    return out


def _sent_at(message: dict[str, Any]) -> datetime:
    millis = message.get("msgtime") or message.get("time")  # "switch" records carry `time`
    try:
        return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return utcnow()


MEDIA_KEYS = ("sdkfileid", "md5sum", "filesize", "filename", "fileext", "voice_size", "play_length")


def _content_and_media(message: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    msgtype = message.get("msgtype")
    body = message.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype == "text" and isinstance(body, dict):
        return str(body.get("content", "")), None
    if msgtype == "markdown" and isinstance(body, dict):
        return str(body.get("content") or body.get("info", {}).get("content", "")), None
    if isinstance(body, dict):
        media = {k: body[k] for k in MEDIA_KEYS if k in body}
        if msgtype == "revoke":
            media["pre_msgid"] = body.get("pre_msgid")
        return None, media or None
    return None, None


def _row(tenant_id: UUID, record: RawRecord, message: dict[str, Any], links: dict[str, UUID]) -> dict[str, Any]:
    sender = str(message.get("from") or message.get("user") or "")
    receivers = [str(x) for x in message.get("tolist") or []]
    if is_external(sender):
        direction = ChatDirection.INBOUND
        external = sender
        staff = next((r for r in receivers if not is_external(r)), None)
    else:
        external = next((r for r in receivers if is_external(r)), None)
        direction = ChatDirection.OUTBOUND if external else ChatDirection.INTERNAL
        staff = sender or None
    content, media = _content_and_media(message)
    return {
        "tenant_id": tenant_id, "id": new_id(), "msgid": record.msgid or str(message.get("msgid")),
        "seq": record.seq, "member_id": links.get(external) if external else None, "external_userid": external,
        "staff_userid": staff, "sender": sender, "receivers": receivers, "room_id": message.get("roomid") or None,
        "direction": direction, "action": str(message.get("action") or "send"),
        "msgtype": str(message.get("msgtype") or message.get("action") or "unknown"),
        "content_encrypted": crypto.encrypt(content), "media": media, "publickey_ver": record.publickey_ver,
        "sent_at": _sent_at(message),
    }


# --------------------------------------------------------------------------------- the job


async def _cursor(session: AsyncSession, tenant_id: UUID) -> ChatSyncCursor:
    await session.execute(insert(ChatSyncCursor).values(tenant_id=tenant_id, seq=0)
                          .on_conflict_do_nothing(index_elements=["tenant_id"]))
    return (await session.exec(select(ChatSyncCursor).where(ChatSyncCursor.tenant_id == tenant_id)
                               .with_for_update())).one()


async def remap_unlinked(session: AsyncSession, tenant_id: UUID) -> int:
    """Records stored before their contact was linked to a member get the member now."""
    unmapped = set((await session.exec(select(ChatRecord.external_userid).distinct().where(
        ChatRecord.tenant_id == tenant_id, ChatRecord.member_id.is_(None),
        ChatRecord.external_userid.is_not(None)))).all())
    links = await wechat_links.members_of_external_contacts(session, tenant_id, unmapped)
    if not links:
        return 0
    result = await session.execute(text(
        "UPDATE chat_records c SET member_id = l.member_id "
        "FROM unnest(CAST(:ext AS text[]), CAST(:mem AS uuid[])) AS l (external_userid, member_id) "
        "WHERE c.tenant_id = :t AND c.member_id IS NULL AND c.external_userid = l.external_userid"),
        {"t": tenant_id, "ext": list(links), "mem": list(links.values())})
    return result.rowcount or 0


async def archive_tenant(sessions: SessionFactory) -> UUID | None:
    """The tenant the corp's archive belongs to (WECOM_MSGAUDIT_TENANT); None when unset or unknown."""
    try:
        code = archive_tenant_code()
    except ChatArchiveNotBound:
        return None
    async with sessions() as session:
        tenant = await tenancy.tenant_by_code(session, code)
    return tenant.id if tenant is not None else None


async def _is_archive_tenant(session: AsyncSession, tenant_id: UUID) -> bool:
    try:
        code = archive_tenant_code()
    except ChatArchiveNotBound:
        return False
    tenant = await tenancy.tenant_row(session, tenant_id)
    return tenant is not None and tenant.code == code


async def _require_archive_tenant(sessions: SessionFactory, tenant_id: UUID) -> None:
    """The corp's archive is one tenant's: any other tenant is refused before anything is fetched."""
    archive_tenant_code()  # raises when bound to no tenant
    async with sessions(tenant_id) as session:
        bound = await _is_archive_tenant(session, tenant_id)
    if not bound:
        raise ChatArchiveNotBound("the WeCom chat archive of this deployment's corp belongs to another tenant "
                                  "(WECOM_MSGAUDIT_TENANT): it is not copied into this one")


def is_configured() -> bool:
    """Whether this deployment can read the archive at all (the SDK and the private keys are set)."""
    try:
        configured_source()
        load_private_keys()
    except ChatSyncNotConfigured:
        return False
    return True


async def _note_outcome(sessions: SessionFactory, tenant_id: UUID, error: str | None) -> None:
    async with sessions(tenant_id) as session:
        cursor = await _cursor(session, tenant_id)
        cursor.last_run_at = cursor.updated_at = utcnow()
        cursor.last_error = error[:2000] if error else None
        if error is None:
            cursor.last_success_at = cursor.last_run_at
        session.add(cursor)


async def sync_chat_records(sessions: SessionFactory, tenant_id: UUID, *, source: ChatArchiveSource | None = None,
                            keys: PrivateKeys | None = None, batch_size: int | None = None,
                            max_batches: int = MAX_BATCHES_PER_RUN) -> SyncResult:
    """Fetch and store everything after the tenant's cursor (up to `max_batches` batches, each in a
    transaction of its own from `sessions`).

    Raises ChatSyncNotConfigured, ArchiveError or ChatDecryptError after recording the error on the
    cursor (GET /chat-sync/status shows it); what earlier batches stored stays stored."""
    result = SyncResult()
    try:
        await _require_archive_tenant(sessions, tenant_id)
        source = source or configured_source()
        keys = keys if keys is not None else load_private_keys()
    except ChatArchiveNotBound as exc:
        await _note_outcome(sessions, tenant_id, f"refused: {exc}")
        raise
    except ChatSyncNotConfigured as exc:
        await _note_outcome(sessions, tenant_id, f"not configured: {exc}")
        raise
    limit = max(1, min(batch_size or get_settings().chat_sync_batch_size, 1000))
    try:
        for _ in range(max_batches):
            async with sessions(tenant_id) as session:
                locked = (await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                                {"k": _lock_key(tenant_id)})).scalar_one()
                if not locked:
                    result.status = "busy"
                    return result
                cursor = await _cursor(session, tenant_id)
                if result.batches == 0:
                    result.remapped = await remap_unlinked(session, tenant_id)
                result.seq = cursor.seq
                records = await source.fetch(cursor.seq, limit)
                records = [r for r in records if r.seq > cursor.seq]  # never move backwards
                if not records:
                    break
                messages = await asyncio.to_thread(_decrypt_batch, source, keys, records)
                externals = {str(p) for m in messages
                             for p in [m.get("from"), *(m.get("tolist") or [])] if is_external(str(p or ""))}
                links = await wechat_links.members_of_external_contacts(session, tenant_id, externals)
                rows = {}
                for record, message in zip(records, messages, strict=True):
                    row = _row(tenant_id, record, message, links)
                    rows.setdefault(row["msgid"], row)  # the same msgid twice in one batch: keep the first
                inserted = await session.execute(
                    insert(ChatRecord).values(list(rows.values()))
                    .on_conflict_do_nothing(index_elements=["tenant_id", "msgid"]).returning(ChatRecord.id))
                stored = len(inserted.all())
                cursor.seq = max(r.seq for r in records)
                cursor.records_stored += stored
                cursor.updated_at = utcnow()
                session.add(cursor)
                result.batches += 1
                result.fetched += len(records)
                result.stored += stored
                result.seq = cursor.seq
                if len(records) < limit:
                    break
        else:
            result.more = True
    except Exception as exc:  # ArchiveError, ChatDecryptError, or a crash: noted, then raised
        await _note_outcome(sessions, tenant_id, f"{type(exc).__name__}: {exc}")
        raise
    await _note_outcome(sessions, tenant_id, None)
    return result


# --------------------------------------------------------------------------------- reading


async def request_sync(session: AsyncSession, actor: Actor) -> OutboxEvent:
    actor.require("chat_sync:run")
    try:
        archive_tenant_code()
    except ChatArchiveNotBound:
        pass  # not configured at all: the run notes it on the status, as when the SDK is missing
    else:
        if not await _is_archive_tenant(session, actor.tenant_id):
            raise Conflict("this deployment's WeCom chat archive belongs to another tenant: it is not synced "
                           "into this one", code="chat_archive_not_bound")
    event = await emit(session, CHAT_SYNC_REQUESTED, {"requested_by": str(actor.id)})
    audit.record(session, "chat_sync.request", "chat_sync", actor.tenant_id)
    return event


async def sync_status(session: AsyncSession, actor: Actor) -> tuple[ChatSyncCursor | None, bool]:
    """The tenant's cursor, and whether the corp's archive is this tenant's (only that tenant syncs)."""
    actor.require("chat_sync:run")
    return await session.get(ChatSyncCursor, actor.tenant_id), await _is_archive_tenant(session, actor.tenant_id)


def _encode_cursor(record: ChatRecord) -> str:
    raw = json.dumps([record.sent_at.isoformat(), str(record.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple[datetime, UUID]:
    def convert(v: Any) -> tuple[datetime, UUID]:
        ts, rid = v
        return datetime.fromisoformat(ts), UUID(rid)

    return decode_cursor(value, convert)


async def list_member_chat_records(session: AsyncSession, actor: Actor, member_id: UUID,
                                   params: PageParams) -> tuple[list[ChatRecord], str | None]:
    """The member's chats, newest first. Chats carry health details (symptoms, photos of a treated area),
    so they follow the health-data rule: `members.health:read` for members in the reader's care, or
    `members.health:all`; every read is audited."""
    member = await members.get_member_row(session, actor, member_id)
    if not await member_policies.can_see_health(session, actor, member):
        raise Forbidden("chat records hold health details: they need members.health:read for a member in "
                        "your care, or members.health:all", code="permission_denied")
    stmt = select(ChatRecord).where(ChatRecord.tenant_id == actor.tenant_id, ChatRecord.member_id == member.id)
    if params.cursor:
        ts, rid = _decode_cursor(params.cursor)
        stmt = stmt.where(or_(ChatRecord.sent_at < ts, and_(ChatRecord.sent_at == ts, ChatRecord.id < rid)))
    rows = list((await session.exec(stmt.order_by(ChatRecord.sent_at.desc(), ChatRecord.id.desc())
                                    .limit(params.limit + 1))).all())
    next_cursor = _encode_cursor(rows[params.limit - 1]) if len(rows) > params.limit else None
    rows = rows[: params.limit]
    await audit.record_read(session, "member.chat_records.read", "member", member.id, records=len(rows))
    return rows, next_cursor


def content_of(record: ChatRecord) -> str | None:
    return crypto.decrypt(record.content_encrypted)


# --------------------------------------------------------------------------------- member hooks


@members.timeline_source("chat", patient_visible=False)
async def _chat_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                         before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    # Metadata only: the timeline is open to every members:read role (front desk, marketing), the chat
    # text is not; it is served, audited, by GET /members/{id}/chat-records.
    stmt = select(ChatRecord).where(ChatRecord.tenant_id == tenant_id, ChatRecord.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(ChatRecord.sent_at, ChatRecord.id, before, "chat:"))
    rows = (await session.exec(stmt.order_by(ChatRecord.sent_at.desc(), ChatRecord.id.desc()).limit(limit))).all()
    return [TimelineItem(type="chat", occurred_at=r.sent_at, id=f"chat:{r.id}",
                         title="企业微信会话" if r.direction != ChatDirection.INBOUND else "客户发来消息",
                         data={"direction": r.direction, "msgtype": r.msgtype, "staff_userid": r.staff_userid,
                               "action": r.action}) for r in rows]


@members.merge_mover("chat_records")
async def _move_chat_records(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                             survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(ChatRecord).where(ChatRecord.tenant_id == tenant_id,
                                                           ChatRecord.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    return {"chat_records": moved.rowcount}
