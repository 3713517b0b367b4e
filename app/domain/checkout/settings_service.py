"""Checkout settings per tenant: the refund approval threshold and the approval levels.

Reading needs `orders:read` (the front desk should know whether a refund will wait for approval);
changing needs `roles:write` and `refunds:approve`, which among the preset roles only the owner holds:
who may approve money going out is as sensitive as who holds which role. Every role named in a level
must exist and hold `refunds:approve`, so a configured level can always be decided by someone.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Unprocessable
from app.domain.checkout.models import CheckoutSettings
from app.domain.checkout.refund_schemas import CheckoutSettingsIn, CheckoutSettingsOut
from app.domain.iam import service as iam

APPROVE_PERMISSION = "refunds:approve"


async def load(session: AsyncSession, actor: Actor, *, for_update: bool = False) -> CheckoutSettings:
    """The tenant's row, or the defaults (not stored) when it has none."""
    row = await session.get(CheckoutSettings, actor.tenant_id, with_for_update=for_update)
    return row if row is not None else CheckoutSettings(tenant_id=actor.tenant_id)


def present(row: CheckoutSettings) -> CheckoutSettingsOut:
    return CheckoutSettingsOut(refund_approval_threshold=row.refund_approval_threshold,
                               approval_levels=[list(level) for level in row.approval_levels],
                               updated_at=row.updated_at)


async def get_settings(session: AsyncSession, actor: Actor) -> CheckoutSettingsOut:
    actor.require("orders:read")
    return present(await load(session, actor))


async def put_settings(session: AsyncSession, actor: Actor, data: CheckoutSettingsIn) -> CheckoutSettingsOut:
    actor.require("roles:write", APPROVE_PERMISSION)
    roles = {r.name: r for r in await iam.list_roles(session, actor)}
    for index, level in enumerate(data.approval_levels):
        field = f"approval_levels.{index}"
        if not level:
            raise Unprocessable(f"{field}: a level names at least one role", code="validation_error", field=field)
        if len(set(level)) != len(level) or len(level) > 20:
            raise Unprocessable(f"{field}: each role once, at most 20", code="validation_error", field=field)
        for name in level:
            if name not in roles:
                raise Unprocessable(f"{field}: unknown role {name!r}", code="unknown_role", field=field)
            if APPROVE_PERMISSION not in roles[name].permissions:
                raise Unprocessable(f"{field}: role {name!r} lacks {APPROVE_PERMISSION}, so it could never "
                                    "decide", code="role_cannot_approve", field=field)
    row = await session.get(CheckoutSettings, actor.tenant_id, with_for_update=True)
    before = present(row).model_dump(mode="json", exclude={"updated_at"}) if row else None
    if row is None:
        row = CheckoutSettings(tenant_id=actor.tenant_id)
    row.refund_approval_threshold = data.refund_approval_threshold
    row.approval_levels = [list(level) for level in data.approval_levels]
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    audit.record(session, "checkout_settings.update", "checkout_settings", actor.tenant_id, before=before,
                 after=data.model_dump(mode="json"))
    return present(row)
