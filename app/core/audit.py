"""Append-only, hash-chained audit log.

Services call `record()` as they change things (and as they read health data). An entry is written with
the transaction that made it, into `audit_pending`, without waiting for anything: no lock, no chain.
`seal_pending()` (the worker, every two seconds) moves pending entries into the chain, `audit_log`, in the
order they were written: the tenant's chain head is locked, each entry gets the next sequence number and
`hash = sha256(prev_hash + canonical entry)`. Changing, removing or reordering any sealed row breaks every
later hash, which `verify_chain()` reports. UPDATE and DELETE are refused by a trigger on the chain and not
granted to the application role on either table (it can only append).

Why not chain at commit: the head is one row per tenant, so every write transaction of a tenant queued on
its lock through its COMMIT (~20 writes a second per tenant was the ceiling). The guarantee now: an entry
of a transaction that committed (and so of every answer a client received) is durable; it is in the chain
once the next sealing pass ran; `verify_chain()` reports the entries not sealed yet and the age of the
oldest, so a sealer that stopped shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.clock import utcnow
from app.core.context import current_context
from app.core.db import SessionFactory, current_tenant, execute
from app.core.ids import new_id
from app.core.models import TENANT_TABLES

GENESIS_HASH = "0" * 64
# Never copied into an audit summary.
SECRET_FIELDS = frozenset({"password", "password_hash", "secret", "secret_hash", "token_hash"})


class _EntryFields(SQLModel):
    """What an entry says, sealed or not (hashed over, with its place in the chain: ENTRY_FIELDS)."""

    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    actor_type: str = Field(sa_type=Text)
    actor_id: str | None = Field(default=None, sa_type=Text)
    action: str = Field(sa_type=Text)
    target_type: str = Field(sa_type=Text)
    target_id: str | None = Field(default=None, sa_type=Text)
    summary: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB, nullable=False)
    request_id: str | None = Field(default=None, sa_type=Text)
    ip: str | None = Field(default=None, sa_type=Text)


class AuditEntry(_EntryFields, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        Index("ix_audit_log_target", "tenant_id", "target_type", "target_id"),
        Index("ix_audit_log_action", "tenant_id", "action", "seq"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    seq: int = Field(sa_type=BigInteger, primary_key=True)
    id: UUID = Field(default_factory=new_id)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class AuditHead(SQLModel, table=True):
    __tablename__ = "audit_heads"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    last_seq: int = Field(default=0, sa_type=BigInteger)
    last_hash: str = Field(default=GENESIS_HASH, sa_type=Text)


class AuditPending(_EntryFields, table=True):
    """An entry written with its transaction and not sealed into the chain yet (the worker does, in order)."""

    __tablename__ = "audit_pending"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: UUID = Field(default_factory=new_id, primary_key=True)
    # Write order (an identity column: unique and increasing), so entries of one transaction keep theirs.
    position: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), nullable=False,
                                                                  index=True))


TENANT_TABLES.update({"audit_log", "audit_heads", "audit_pending"})
# The fields an entry is hashed over (besides its place in the chain).
ENTRY_FIELDS = ("tenant_id", "occurred_at", "actor_type", "actor_id", "action", "target_type", "target_id",
                "summary", "request_id", "ip")


def snapshot(obj: Any, *, fields: list[str] | None = None) -> dict[str, Any]:
    """A JSON-safe picture of a model for the audit summary, without secrets."""
    data = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    if fields is not None:
        data = {k: data.get(k) for k in fields}
    return {k: _jsonable(v) for k, v in data.items() if k not in SECRET_FIELDS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def record(
    session: AsyncSession,
    action: str,
    target_type: str,
    target_id: Any = None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    tenant_id: UUID | None = None,
    **details: Any,
) -> None:
    """Record an entry: written with this transaction (with its next flush, batched with the others; an
    entry recorded in a savepoint that rolls back goes with it), sealed into the chain by `seal_pending`
    soon after."""
    session.add(AuditPending(**_entry(session, action, target_type, target_id, before=before, after=after,
                                      tenant_id=tenant_id, details=details)))


_INSERT_PENDING = (f"INSERT INTO audit_pending (id, {', '.join(ENTRY_FIELDS)}) "
                   f"VALUES ({', '.join(f'${n}' for n in range(1, len(ENTRY_FIELDS) + 2))})")
_ENTRY_TYPES = {"id": "uuid", "tenant_id": "uuid", "occurred_at": "timestamptz", "summary": "jsonb"}


async def record_read(session: AsyncSession, action: str, target_type: str, target_id: Any = None, *,
                      tenant_id: UUID | None = None, **details: Any) -> None:
    """Record that protected data was read: inserted at once, in one prepared statement. A read that
    happened stays recorded even if a savepoint around it rolls back, unlike a change."""
    await execute(session, _INSERT_PENDING, *read_entry_args(session, action, target_type, target_id,
                                                              tenant_id=tenant_id, **details))


def read_entry_args(session: AsyncSession, action: str, target_type: str, target_id: Any = None, *,
                    tenant_id: UUID | None = None, **details: Any) -> tuple[Any, ...]:
    """The parameters of a read entry (id first, then `ENTRY_FIELDS`), for `_INSERT_PENDING` or
    `read_entry_cte`."""
    entry = _entry(session, action, target_type, target_id, tenant_id=tenant_id, details=details)
    return (new_id(), *(json.dumps(entry[f], ensure_ascii=False) if f == "summary" else entry[f]
                        for f in ENTRY_FIELDS))


def read_entry_cte(first_param: int, *, when: str) -> str:
    """`read_entry AS (INSERT ...)`: a data-modifying CTE with which the statement that reads protected
    data also records the read (its parameters, from `read_entry_args`, start at `$first_param`; it is
    recorded only `when` that condition holds, e.g. the row exists). One round trip instead of two on the
    hottest audited read, a member 360 with health fields."""
    columns = ("id", *ENTRY_FIELDS)
    values = ", ".join(f"${first_param + n}::{_ENTRY_TYPES.get(c, 'text')}" for n, c in enumerate(columns))
    return f"read_entry AS (INSERT INTO audit_pending ({', '.join(columns)}) SELECT {values} WHERE {when})"


def _entry(session: AsyncSession, action: str, target_type: str, target_id: Any, *,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           tenant_id: UUID | None = None, details: dict[str, Any]) -> dict[str, Any]:
    tenant = tenant_id or current_tenant(session)
    if tenant is None:
        raise RuntimeError("an audit entry needs a tenant")
    ctx = current_context()
    summary: dict[str, Any] = {}
    if before is not None:
        summary["before"] = _jsonable(before)
    if after is not None:
        summary["after"] = _jsonable(after)
    if details:
        summary.update(_jsonable(details))
    return {
        "tenant_id": tenant,
        "occurred_at": utcnow(),
        "actor_type": ctx.actor_type,
        "actor_id": ctx.actor_id,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "summary": summary,
        "request_id": ctx.request_id,
        "ip": ctx.ip,
    }


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    canonical = json.dumps(
        {
            "tenant_id": str(entry["tenant_id"]),
            "seq": entry["seq"],
            "occurred_at": entry["occurred_at"].isoformat(),
            "actor_type": entry["actor_type"],
            "actor_id": entry["actor_id"],
            "action": entry["action"],
            "target_type": entry["target_type"],
            "target_id": entry["target_id"],
            "summary": entry["summary"],
            "request_id": entry["request_id"],
            "ip": entry["ip"],
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


_LOCK_HEAD = text(
    "INSERT INTO audit_heads (tenant_id, last_seq, last_hash) VALUES (:tenant_id, 0, :genesis) "
    "ON CONFLICT (tenant_id) DO UPDATE SET last_seq = audit_heads.last_seq "
    "RETURNING last_seq, last_hash"
)


async def _chain(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    """Append entries to their tenants' chains, in the given order, under each head's row lock."""
    by_tenant: dict[UUID, list[dict[str, Any]]] = {}
    for entry in entries:
        by_tenant.setdefault(entry["tenant_id"], []).append(entry)
    for tenant_id, own in by_tenant.items():
        row = (
            await session.execute(_LOCK_HEAD, {"tenant_id": tenant_id, "genesis": GENESIS_HASH})
        ).one()
        seq, prev = row.last_seq, row.last_hash
        for entry in own:
            seq += 1
            entry["seq"] = seq
            entry["prev_hash"] = prev
            entry["hash"] = prev = entry_hash(prev, entry)
            session.add(AuditEntry(**entry))
        await session.execute(
            text("UPDATE audit_heads SET last_seq = :seq, last_hash = :hash WHERE tenant_id = :t"),
            {"seq": seq, "hash": prev, "t": tenant_id},
        )
    await session.flush()


_TAKE_PENDING = text(
    "SELECT tenant_id, id, " + ", ".join(f for f in ENTRY_FIELDS if f != "tenant_id") +
    " FROM audit_pending ORDER BY position LIMIT :batch FOR UPDATE SKIP LOCKED"
)
_DELETE_SEALED = text(
    "DELETE FROM audit_pending WHERE (tenant_id, id) IN "
    "(SELECT unnest(CAST(:t AS uuid[])), unnest(CAST(:i AS uuid[])))"
)


async def seal_pending(sessions: SessionFactory, *, batch: int = 2000) -> int:
    """Move pending entries into the chain in the order they were written, in batches; returns how many.

    Each batch is one owner transaction: the entries are taken with SKIP LOCKED (two sealers never take
    the same rows), chained, and deleted from `audit_pending` together, so a crash leaves them to the next
    pass."""
    sealed = 0
    while True:
        async with sessions(system=True) as session:
            rows = (await session.execute(_TAKE_PENDING, {"batch": batch})).mappings().all()
            if not rows:
                return sealed
            await _chain(session, [{field: row[field] for field in ENTRY_FIELDS} for row in rows])
            await session.execute(_DELETE_SEALED, {"t": [r["tenant_id"] for r in rows],
                                                   "i": [r["id"] for r in rows]})
            sealed += len(rows)
        if len(rows) < batch:
            return sealed


@dataclass
class ChainReport:
    ok: bool
    checked: int
    broken_at_seq: int | None = None
    reason: str | None = None
    # Entries recorded but not sealed into the chain yet (normal for a few seconds; growing means no sealer).
    unsealed_entries: int = 0
    oldest_unsealed_seconds: float | None = None


async def _chain_head(session: AsyncSession, tenant_id: UUID) -> AuditHead | None:
    stmt = select(AuditHead).where(AuditHead.tenant_id == tenant_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def verify_chain(session: AsyncSession, tenant_id: UUID) -> ChainReport:
    """Recompute every hash in order; report the first row that does not match, and the entries waiting to
    be sealed."""
    report = await _verify_sealed(session, tenant_id)
    unsealed, oldest = (await session.execute(
        select(func.count(), func.min(AuditPending.occurred_at)).where(AuditPending.tenant_id == tenant_id))).one()
    report.unsealed_entries = unsealed
    report.oldest_unsealed_seconds = None if oldest is None else round((utcnow() - oldest).total_seconds(), 1)
    return report


async def _verify_sealed(session: AsyncSession, tenant_id: UUID) -> ChainReport:
    prev, expected_seq, checked = GENESIS_HASH, 1, 0
    # Each statement sees its own snapshot, and a row always commits together with its head: so the
    # head is read first and the rows it covers are chained, while rows that a transaction commits
    # meanwhile lie beyond this head (they are chained next time) instead of looking like removals.
    head = await _chain_head(session, tenant_id)
    stmt = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(col(AuditEntry.seq))
    if head is not None:
        stmt = stmt.where(AuditEntry.seq <= head.last_seq)
    result = await session.stream(stmt.execution_options(yield_per=500))
    async for (row,) in result:
        entry = row.model_dump()
        if row.seq != expected_seq:
            return ChainReport(False, checked, expected_seq, f"row {expected_seq} is missing")
        if row.prev_hash != prev:
            return ChainReport(False, checked, row.seq, "prev_hash does not match the row before")
        if entry_hash(prev, entry) != row.hash:
            return ChainReport(False, checked, row.seq, "row content does not match its hash")
        prev, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
    if head is not None and (head.last_seq != checked or head.last_hash != prev):
        return ChainReport(False, checked, checked + 1, "rows after the last one were removed")
    # A row beyond the head must be one a transaction committed with its head since: the newest row is
    # read before the head is read again, so a legitimate one is always covered by that head.
    newest = (await session.execute(
        select(func.max(AuditEntry.seq)).where(AuditEntry.tenant_id == tenant_id))).scalar_one()
    if newest is not None and newest > checked:
        now = await _chain_head(session, tenant_id)
        covered = now.last_seq if now is not None else checked
        if newest > covered:
            return ChainReport(False, checked, covered + 1, "rows were added outside the chain")
    return ChainReport(True, checked)
