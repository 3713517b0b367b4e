"""The bigint numbers the holds' exclusion constraint keys on, one per bookable staff member or resource."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession


async def bookable_no(session: AsyncSession, tenant_id: UUID, kind: str, ref_id: UUID) -> int:
    """The number of this staff member (`kind="staff"`) or resource, made on first use."""
    found = (await session.execute(text(
        "SELECT bookable_no FROM bookables WHERE tenant_id = :t AND kind = :k AND ref_id = :r"),
        {"t": tenant_id, "k": kind, "r": ref_id})).scalar()
    if found is not None:
        return found
    # Two first bookings of one therapist at once: both insert, one waits on the unique key and then
    # reads the other's number through DO UPDATE (DO NOTHING would return no row).
    return (await session.execute(text(
        "INSERT INTO bookables (tenant_id, kind, ref_id) VALUES (:t, :k, :r) "
        "ON CONFLICT (tenant_id, kind, ref_id) DO UPDATE SET kind = EXCLUDED.kind RETURNING bookable_no"),
        {"t": tenant_id, "k": kind, "r": ref_id})).scalar_one()
