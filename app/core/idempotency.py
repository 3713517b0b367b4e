"""`Idempotency-Key` on POST: the same key with the same request returns the first answer.

The key row is inserted in the request's own transaction before the handler runs and filled with
the response before commit, so "did the work" and "remembered the answer" commit together. A
concurrent request with the same key waits on the row's unique index until the first one finishes.
A failed request (4xx/5xx) rolls back, key included: nothing was done, so a retry runs afresh.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Column, Integer, LargeBinary, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import BadRequest, Unprocessable
from app.core.models import TENANT_TABLES, created_at_field

MAX_KEY_LENGTH = 200
REPLAYED_HEADERS = ("content-type", "location")


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    principal: str = Field(primary_key=True, sa_type=Text)
    key: str = Field(primary_key=True, sa_type=Text)
    request_hash: str = Field(sa_type=Text)
    status_code: int | None = Field(default=None, sa_type=Integer)
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)
    response_headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = created_at_field()


TENANT_TABLES.add("idempotency_keys")


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} printable characters",
            code="invalid_idempotency_key",
        )
    return key


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


async def claim(
    session: AsyncSession, tenant_id: UUID, principal: str, key: str, fingerprint: str
) -> IdempotencyRecord | None:
    """Take the key for this request; return the stored record when it was already used."""
    inserted = await session.execute(
        text(
            "INSERT INTO idempotency_keys (tenant_id, principal, key, request_hash, response_headers)"
            " VALUES (:t, :p, :k, :h, '{}') ON CONFLICT DO NOTHING RETURNING key"
        ),
        {"t": tenant_id, "p": principal, "k": key, "h": fingerprint},
    )
    if inserted.first() is not None:
        return None
    record = await session.get(IdempotencyRecord, (tenant_id, principal, key))
    if record is None:  # pragma: no cover - a row we just conflicted with cannot vanish in-transaction
        raise BadRequest("idempotency key could not be claimed; retry", code="idempotency_retry")
    if record.request_hash != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
        )
    return record


async def remember(
    session: AsyncSession,
    tenant_id: UUID,
    principal: str,
    key: str,
    status_code: int,
    body: bytes,
    headers: dict[str, str],
) -> None:
    await session.execute(
        text(
            "UPDATE idempotency_keys SET status_code = :s, response_body = :b,"
            " response_headers = CAST(:h AS jsonb) WHERE tenant_id = :t AND principal = :p AND key = :k"
        ),
        {
            "s": status_code,
            "b": body,
            "h": json.dumps(headers),
            "t": tenant_id,
            "p": principal,
            "k": key,
        },
    )
