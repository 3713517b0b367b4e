"""The outbox topics integrators may subscribe to.

Publishing a topic makes its payload a public contract, so topics are listed here on purpose rather than
every internal event being exposed (`wecom.msgaudit_notify`, reminders due, …). A context that wants its
event delivered adds it here; the payload is the outbox payload as emitted.
"""

from __future__ import annotations

WEBHOOK_TOPICS: dict[str, str] = {
    "member.created": "A member was created",
    "member.merged": "A duplicate member was merged into another",
    "member.erased": "A member's personal data was erased",
    "appointment.booked": "An appointment was booked",
    "appointment.rescheduled": "An appointment was moved",
    "appointment.cancelled": "An appointment was cancelled",
    "appointment.checked_in": "A member checked in",
    "appointment.no_show": "A member did not come",
    "appointment.completed": "An appointment was completed",
    "service.completed": "A service was completed (sessions, stock and commission booked)",
    "service.reversed": "A completed service was reversed",
    "card.issued": "A course or stored-value card was issued",
    "card.transferred": "A card moved to another member",
    "card.expiring": "A card expires within a week",
    "card.expired": "A card expired",
    "card.closed": "A card was closed",
    "card.sessions_low": "A card has few sessions left",
    "order.paid": "An order was paid",
    "order.cancelled": "An order was cancelled",
    "order.completion_failed": "A paid order could not be completed (its cards or services were not issued)",
    "order.paid_after_cancel": "WeChat Pay reported payment for an order already cancelled: refund it",
    "refund.requested": "A refund was requested (it may wait for approval)",
    "refund.approved": "A refund was approved",
    "refund.rejected": "A refund was rejected",
    "refund.completed": "A refund went back to its tenders",
    "refund.failed": "A refund could not be paid back (WeChat refused it); finance settles it by hand",
    "points.earned": "Points were earned",
    "points.redeemed": "Points were spent",
    "points.reversed": "Points were given back or taken back by a refund",
    "coupon.issued": "A coupon was issued",
    "coupon.used": "A coupon was used",
    "coupon.restored": "A used coupon was given back by a refund",
    "inventory.low_stock": "A consumable fell to or below its reorder level in a store",
    "task.overdue": "A follow-up task passed its due time undone",
    "waitlist.slot_offered": "A freed slot was offered to a member on the waitlist",
    "clinical_record.signed": "A clinical record was signed and locked (no values in the payload)",
    "clinical_record.amended": "A signed clinical record was amended (no values in the payload)",
    "consent.signed": "A member's consent was signed (no text or signature in the payload)",
    "consent.withdrawn": "A signed consent was withdrawn (no reason in the payload)",
    "treatment_plan.created": "A treatment plan was made for a member (no goals in the payload)",
    "treatment_plan.progressed": "A visit counted against a treatment plan, or a reversed one was taken back",
    "treatment_plan.completed": "Every planned session of a treatment plan is done",
    "treatment_plan.cancelled": "A treatment plan was cancelled",
    "clinical_photo.uploaded": "A clinical photo or attachment was stored (no note, file or URL in the payload)",
}
