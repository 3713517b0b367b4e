"""The patient portal: what the mini-program shows a patient, put together from the contexts that own it.

`storefront` is what the clinic published (stores, services, therapists, card templates on sale); `account`
is the patient's own record (profile and family, cards, points, coupons, orders, visits). The portal owns no
tables and no rules of its own: it reads every context through that context's service functions, and no
context reads it.
"""

from __future__ import annotations

from app.domain.portal.account import (
    add_child,
    card_ledger,
    coupons,
    member_cards,
    member_orders,
    member_visits,
    points,
    profile,
    update_profile,
)
from app.domain.portal.storefront import (
    card_templates_on_sale,
    distance_m,
    get_card_template,
    get_service,
    get_store,
    get_therapist,
    list_stores,
    store_services,
    store_therapists,
)

__all__ = [
    "add_child", "card_ledger", "coupons", "member_cards", "member_orders", "member_visits", "points", "profile",
    "update_profile",
    "card_templates_on_sale", "distance_m", "get_card_template", "get_service", "get_store", "get_therapist",
    "list_stores", "store_services", "store_therapists",
]
