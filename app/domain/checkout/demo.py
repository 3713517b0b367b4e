"""Demo data for checkout: member-tier discounts and a few paid orders of the demo members.

Called by app/seed.py after catalog, members and cards are seeded, inside the seed's transaction. It goes
through `orders.create_order` like the front desk would, so the orders carry real ledger entries (cards
issued, stored value topped up and charged, stock sold, points earned and redeemed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.pagination import PageParams
from app.domain.cards import service as cards
from app.domain.cards import templates as card_templates
from app.domain.catalog import service as catalog
from app.domain.checkout import orders, tier_discounts
from app.domain.checkout.schemas import OrderCreate
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

# The demo catalog and card range are a dozen rows each: one page holds them.
EVERYTHING = PageParams(limit=200)

TIERS = [("金卡会员", 10, ["service", "product"]), ("银卡会员", 5, ["service", "product"])]


async def seed_checkout(session: AsyncSession, actor: Actor, stores: list[Store],
                        staff_ids: dict[str, Any]) -> list[str]:
    """Returns one line per order made (for the seed's summary)."""
    for tag, percent, line_types in TIERS:
        await tier_discounts.set_tier_discount(session, actor, tag_name=tag, percent_off=percent,
                                               line_types=line_types)
    people = await members.member_ids_by_name(session, actor.tenant_id, {"黄磊", "王芳"})
    templates = {t.name: t for t in (await card_templates.list_templates(session, actor, EVERYTHING,
                                                                          active=None))[0]}
    services = {s.name: s for s in (await catalog.list_services(session, actor, EVERYTHING))[0]}
    products = {p.name: p for p in (await catalog.list_products(session, actor, EVERYTHING))[0]}
    store = stores[0]
    made: list[str] = []

    async def order(member: str, lines: list[dict], payments: list[dict], note: str) -> None:
        data = OrderCreate.model_validate({"member_id": people[member], "store_id": store.id, "lines": lines,
                                           "payments": payments, "note": note})
        result = await orders.create_order(session, actor, data)
        made.append(f"{member}: {note} {result.order.order_no} ¥{result.order.total / 100:.2f}")

    # A 推拿10次卡 bought with cash (the till gives change from 1600 yuan).
    count_card = templates.get("推拿10次卡")
    if count_card is not None and "黄磊" in people:
        await order("黄磊", [{"type": "card", "card_template_id": count_card.id}],
                    [{"method": "cash", "amount": count_card.price, "cash_received": count_card.price + 2000}],
                    "现金购卡")
    # 王芳 tops up her 储值卡 by 1000 yuan (200 bonus), paying cash.
    wang = people.get("王芳")
    stored = next((card for card in await cards.member_cards(session, actor, wang, include_shared=False)
                   if card.kind == "stored_value"), None) if wang else None
    if stored is not None:
        await order("王芳", [{"type": "top_up", "card_id": stored.id, "amount": 100000}],
                    [{"method": "cash", "amount": 100000}], "储值充值")
        # …then buys 养生茶 and has 艾灸, paid with stored value and 300 points (银卡会员: 95折).
        await loyalty.adjust_points(session, actor, wang, 800, "开业积分赠送")
        tea, moxa = products.get("养生茶"), services.get("艾灸")
        if tea is not None and moxa is not None:
            lines = [{"type": "product", "product_id": tea.id, "quantity": 2},
                     {"type": "service", "service_id": moxa.id}]
            total = sum(_tier_price(amount, 5) for amount in (tea.price * 2, moxa.price))
            await order("王芳", lines, [{"method": "points", "points": 300},
                                       {"method": "stored_value", "amount": total - 300, "card_id": stored.id}],
                        "储值+积分消费")
    return made


def _tier_price(amount: int, percent: int) -> int:
    # The same rule as pricing.percent_discount: the discount floors to the fen per line.
    return amount - amount * percent // 100
