"""Growth's reactions to other contexts' events.

Referral (referrals.py): a new member's referral and welcome reward, the referrer's reward for the
referee's first paid order, and its reversal when that order is refunded. Each runs inside the dispatcher's
transaction and only flushes; delivery is at least once, and referrals.py makes each effect happen once
(unique keys on the referral and the reward rows, under the referrer's lock).
(The leads part of growth adds its own reactions below.)
"""

from __future__ import annotations

from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.events import OutboxEvent, on
from app.domain.checkout.events import ORDER_PAID, REFUND_COMPLETED
from app.domain.growth import referrals
from app.domain.members.events import MEMBER_CREATED


def _uuid(value: object) -> UUID | None:
    return UUID(str(value)) if value else None


@on(MEMBER_CREATED)
async def record_referral_of_new_member(session: AsyncSession, event: OutboxEvent) -> None:
    """A member who registered through a share link (referrer id or referral code) is recorded as referred."""
    await referrals.on_member_created(session, event.tenant_id, UUID(event.payload["member_id"]))


@on(ORDER_PAID)
async def reward_referrer_for_first_order(session: AsyncSession, event: OutboxEvent) -> None:
    """The referee's first paid order rewards their referrer (once, within the monthly limit)."""
    payload = event.payload
    if not payload.get("member_id"):
        return  # a walk-in order without a member refers no one
    await referrals.reward_first_paid_order(session, event.tenant_id, member_id=UUID(payload["member_id"]),
                                            order_id=UUID(payload["order_id"]),
                                            store_id=_uuid(payload.get("store_id")))


@on(REFUND_COMPLETED)
async def reverse_referral_reward(session: AsyncSession, event: OutboxEvent) -> None:
    """A refund of the order that earned a referral reward takes the reward back."""
    await referrals.reverse_on_refund(session, event.tenant_id, order_id=UUID(event.payload["order_id"]),
                                      refund_id=_uuid(event.payload.get("refund_id")))
