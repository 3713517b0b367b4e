"""Checkout in GraphQL: the mini-program buys a card or tops one up with WeChat Pay, and lists its orders."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.core.pagination import PageParams
from app.domain.checkout import orders
from app.domain.checkout.schemas import OrderCreate, OrderOut
from app.graphql.context import Context, page_limit, parse_id, validated

EVERYONE = ("staff", "integration", "patient")


@strawberry.type
class OrderLine:
    type: str
    name: str
    amount: int


@strawberry.type
class Order:
    id: strawberry.ID
    order_no: str
    status: str
    total: int
    paid_total: int
    issued_cards: list[strawberry.ID]
    lines: list[OrderLine]
    wechat_pay_params: JSON | None = strawberry.field(description="Pass to wx.requestPayment while pending")
    expires_at: datetime | None
    created_at: datetime | None

    @classmethod
    def of(cls, out: OrderOut) -> Order:
        return cls(id=strawberry.ID(str(out.id)), order_no=out.order_no, status=out.status, total=out.total,
                   paid_total=out.paid_total, issued_cards=[strawberry.ID(str(c)) for c in out.issued_cards],
                   lines=[OrderLine(type=line.type, name=line.name, amount=line.amount) for line in out.lines],
                   wechat_pay_params=out.wechat_pay.mini_program_params if out.wechat_pay else None,
                   expires_at=out.expires_at, created_at=out.created_at)


@strawberry.type
class OrderPage:
    items: list[Order]
    next_cursor: str | None


@strawberry.type
class CheckoutQueries:
    @strawberry.field(description="Orders of a member (patients: themselves), newest first.")
    async def orders(self, info: Info[Context, None], member_id: strawberry.ID, limit: int = 20,
                     cursor: str | None = None) -> OrderPage:
        actor = await info.context.actor(audiences=EVERYONE)
        rows, next_cursor = await orders.list_orders(info.context.session, actor,
                                                     PageParams(limit=page_limit(limit), cursor=cursor),
                                                     member_id=parse_id(member_id, "member_id"))
        session = info.context.session
        return OrderPage(items=[Order.of(await orders.present(session, o)) for o in rows], next_cursor=next_cursor)


@strawberry.type
class CheckoutMutations:
    @strawberry.mutation(description="Buy a card (card_template_id) or top one up (card_id + amount) and pay "
                                     "with WeChat Pay: the order stays pending until WeChat notifies payment.")
    async def buy_with_wechat_pay(self, info: Info[Context, None], member_id: strawberry.ID,
                                  store_id: strawberry.ID, payer_openid: str | None = None,
                                  card_template_id: strawberry.ID | None = None, card_id: strawberry.ID | None = None,
                                  top_up_amount: int | None = None, amount: int = 0) -> Order:
        actor = await info.context.actor(audiences=EVERYONE)
        line = ({"type": "card", "card_template_id": str(card_template_id)} if card_template_id
                else {"type": "top_up", "card_id": str(card_id) if card_id else None, "amount": top_up_amount})
        data = validated(OrderCreate, member_id=str(member_id), store_id=str(store_id), lines=[line],
                         payments=[{"method": "wechat_pay", "amount": amount, "payer_openid": payer_openid}])
        result = await orders.create_order(info.context.session, actor, data)
        return Order.of(await orders.present(info.context.session, result.order, result.wechat_pay))
