"""Builders for the checkout tests.

A `Shop` is the cards tests' `Clinic` (a tenant with a store, a therapist, three services at 198/98/50 yuan
and a member, made through the real API) plus a product in stock. Orders go through `POST /orders`;
tenders are built with `cash()`, `stored()`, `points()`, `coupon()`, `wechat()`. The WeChat Pay tests run
the fake Pay server (tests/fakes/wechat_pay.py) over real HTTP: `fake_pay` starts it once per session,
`wechat_pay` points the process settings at it for one test (fixtures in test_wechat_pay_flow.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

from app.core.settings import get_settings
from app.domain.checkout import tier_discounts as orders
from tests.cards.helpers import Clinic, in_tenant, make_clinic, make_template, owner_sql
from tests.factories import TenantKit

TEA_PRICE = 9800  # 养生茶, per 罐
SV_FACE, SV_BONUS = 100000, 20000  # 储值卡 充1000送200
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@dataclass
class Shop:
    clinic: Clinic
    tea: str

    @property
    def kit(self) -> TenantKit:
        return self.clinic.kit

    @property
    def store(self) -> str:
        return self.clinic.store

    @property
    def member(self) -> str:
        return self.clinic.member

    @property
    def tenant_id(self) -> UUID:
        return self.clinic.tenant_id


async def make_shop(client: httpx.AsyncClient, *, tea_stock: int = 10) -> Shop:
    clinic = await make_clinic(client)
    r = await clinic.kit.post("/products", {"name": "养生茶", "unit": "罐", "price": TEA_PRICE})
    assert r.status_code == 201, r.text
    tea = r.json()["id"]
    if tea_stock:
        r = await clinic.kit.post("/inventory/movements", {"store_id": clinic.store, "product_id": tea,
                                                           "kind": "receive", "quantity": tea_stock})
        assert r.status_code == 201, r.text
    return Shop(clinic, tea)


# ---------------------------------------------------------------- request pieces


def service_line(service_id: str, **extra: Any) -> dict:
    return {"type": "service", "service_id": service_id, **extra}


def product_line(product_id: str, quantity: int = 1, **extra: Any) -> dict:
    return {"type": "product", "product_id": product_id, "quantity": quantity, **extra}


def card_line(template_id: str, **extra: Any) -> dict:
    return {"type": "card", "card_template_id": template_id, **extra}


def top_up_line(card_id: str, amount: int, **extra: Any) -> dict:
    return {"type": "top_up", "card_id": card_id, "amount": amount, **extra}


def cash(amount: int, received: int | None = None) -> dict:
    return {"method": "cash", "amount": amount, **({"cash_received": received} if received is not None else {})}


def stored(amount: int, card_id: str) -> dict:
    return {"method": "stored_value", "amount": amount, "card_id": card_id}


def points(n: int) -> dict:
    return {"method": "points", "points": n}


def coupon(coupon_id: str, amount: int | None = None) -> dict:
    return {"method": "coupon", "coupon_id": coupon_id, **({"amount": amount} if amount is not None else {})}


async def bind_patient_wechat(shop: Shop, openid: str = OPENID) -> None:
    """The patient signed in to the merchant's mini-program with this WeChat account (what wx.login binds):
    WeChat Pay then charges it when the patient pays."""
    await owner_sql("INSERT INTO member_wechat_links (tenant_id, id, member_id, appid, openid, created_at) "
                    "VALUES (:t, gen_random_uuid(), :m, :a, :o, now()) ON CONFLICT DO NOTHING",
                    t=UUID(str(shop.tenant_id)), m=UUID(str(shop.member)), a=get_settings().wechat_pay_appid,
                    o=openid)


def wechat(amount: int, openid: str | None = OPENID) -> dict:
    return {"method": "wechat_pay", "amount": amount, **({"payer_openid": openid} if openid else {})}


async def post_order(shop: Shop, lines: list[dict], payments: list[dict], *, token: str | None = None,
                     member: str | None = None, **extra: Any) -> httpx.Response:
    body = {"member_id": member or shop.member, "store_id": shop.store, "lines": lines, "payments": payments,
            **extra}
    return await shop.kit.post("/orders", body, token=token)


async def paid_order(shop: Shop, lines: list[dict], payments: list[dict], **kw: Any) -> dict:
    r = await post_order(shop, lines, payments, **kw)
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------- what tenders draw on


async def stored_value_template(shop: Shop, *, face: int = SV_FACE, bonus: int = SV_BONUS, **extra: Any) -> str:
    return await make_template(shop.kit, kind="stored_value", price=face, face_value=face, bonus=bonus, **extra)


async def stored_value_card(shop: Shop, *, member: str | None = None, face: int = SV_FACE, bonus: int = SV_BONUS,
                            **extra: Any) -> str:
    """A stored-value card issued by staff (a migration from paper): principal `face`, bonus `bonus`."""
    template = await stored_value_template(shop, face=face, bonus=bonus, **extra)
    r = await shop.kit.post("/cards", {"member_id": member or shop.member, "template_id": template,
                                       "store_id": shop.store, "reason": "纸质卡迁移", "price_paid": face})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def give_points(shop: Shop, n: int, member: str | None = None) -> None:
    r = await shop.kit.post(f"/members/{member or shop.member}/points/adjust", {"delta": n, "reason": "开业赠送"})
    assert r.status_code == 201, r.text


async def points_balance(shop: Shop, member: str | None = None) -> int:
    r = await shop.kit.get(f"/members/{member or shop.member}/points")
    assert r.status_code == 200, r.text
    return r.json()["balance"]


async def issue_coupon(shop: Shop, *, member: str | None = None, kind: str = "fixed", value: int = 2000,
                       **template: Any) -> str:
    r = await shop.kit.post("/coupon-templates", {"name": "新客立减", "kind": kind, "value": value, **template})
    assert r.status_code == 201, r.text
    r = await shop.kit.post("/coupons", {"template_id": r.json()["id"], "member_id": member or shop.member})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def coupon_status(shop: Shop, coupon_id: str, member: str | None = None) -> str:
    r = await shop.kit.get(f"/members/{member or shop.member}/coupons", params={"limit": 200})
    assert r.status_code == 200, r.text
    return next(c["status"] for c in r.json()["items"] if c["id"] == coupon_id)


async def card_json(shop: Shop, card_id: str) -> dict:
    r = await shop.kit.get(f"/cards/{card_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def product_stock(shop: Shop, product_id: str | None = None) -> int:
    r = await shop.kit.get("/inventory/stock", params={"store_id": shop.store})
    assert r.status_code == 200, r.text
    return sum(i["quantity"] for i in r.json()["items"] if i.get("product_id") == (product_id or shop.tea))


async def set_tier(shop: Shop, tag: str, percent: int, line_types: list[str] | None = None) -> None:
    async with in_tenant(shop.tenant_id) as session:
        await orders.set_tier_discount(session, shop.clinic.actor, tag_name=tag, percent_off=percent,
                                       line_types=line_types)


async def tag_member(shop: Shop, tag: str, member: str | None = None) -> None:
    r = await shop.kit.post(f"/members/{member or shop.member}/tags", {"add": [tag]})
    assert r.status_code == 200, r.text


async def order_rows(tenant_id: UUID) -> dict[str, int]:
    rows = await owner_sql(
        "SELECT (SELECT count(*) FROM orders WHERE tenant_id = :t), (SELECT count(*) FROM payments WHERE "
        "tenant_id = :t), (SELECT count(*) FROM card_ledger WHERE tenant_id = :t), (SELECT count(*) FROM "
        "points_ledger WHERE tenant_id = :t), (SELECT count(*) FROM stock_movements WHERE tenant_id = :t)",
        t=tenant_id)
    return dict(zip(("orders", "payments", "card_ledger", "points_ledger", "stock_movements"), rows[0], strict=True))

