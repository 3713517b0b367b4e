"""Builders for the patient's booking and paying journeys.

A `Clinic` is a tenant with a store open 08:00–22:00 every day, two therapists on shift and skilled for
both services, the services published in the mini-program (推拿 198 yuan, 艾灸 98 yuan, 60 minutes each), and
a member who signs in to the mini-program through the fake WeChat server (`login`), as the patient does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx

from app.integrations.wechat.fake_server import FakeWeChat
from tests.booking.appointment_helpers import add_therapists, open_store, set_policy
from tests.factories import TenantKit, new_tenant
from tests.members.helpers import make_member, new_phone

MASSAGE_PRICE, MOXA_PRICE = 19800, 9800
MINI_LOGIN = "/api/v1/auth/wechat/mini-program"
NOTIFY = "/api/v1/payments/wechat/notify"
ZONE = ZoneInfo("Asia/Shanghai")


@dataclass
class Clinic:
    kit: TenantKit
    tenant_id: UUID
    store: str
    therapists: list[str]
    massage: str
    moxa: str
    member: str
    phone: str
    day: date

    def at(self, hh: int, mm: int = 0, day: date | None = None) -> datetime:
        return datetime.combine(day or self.day, time(hh, mm)).replace(tzinfo=ZONE)

    def iso(self, hh: int, mm: int = 0, day: date | None = None) -> str:
        return self.at(hh, mm, day).isoformat()

    def booking(self, start: datetime | str, *, member: str | None = None, service: str | None = None,
                staff: str | None = "") -> dict[str, Any]:
        body = {"member_id": member or self.member, "store_id": self.store, "service_id": service or self.massage,
                "staff_id": self.therapists[0] if staff == "" else staff,
                "starts_at": start if isinstance(start, str) else start.isoformat()}
        return {k: v for k, v in body.items() if v is not None}

    async def book(self, token: str, start: datetime | str, **kw: Any) -> httpx.Response:
        return await self.kit.post("/appointments", self.booking(start, **kw), token=token)


async def publish(kit: TenantKit, service_id: str, aftercare: str = "24小时内注意保暖，多喝温水") -> None:
    r = await kit.client.put(f"/api/v1/services/{service_id}/listing", headers=kit.auth(),
                             json={"published": True, "aftercare_note": aftercare})
    assert r.status_code == 200, r.text


async def make_service(kit: TenantKit, name: str, price: int) -> str:
    r = await kit.post("/services", {"name": name, "duration_minutes": 60, "price": price})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def make_clinic(client: httpx.AsyncClient, *, therapists: int = 2, days_ahead: int = 2) -> Clinic:
    kit = await new_tenant(client)
    tenant_id = UUID(kit.tenant_id)
    store = await kit.store("静安店")
    massage = await make_service(kit, f"推拿{uuid.uuid4().hex[:4]}", MASSAGE_PRICE)
    moxa = await make_service(kit, f"艾灸{uuid.uuid4().hex[:4]}", MOXA_PRICE)
    for service in (massage, moxa):
        await publish(kit, service)
    await open_store(tenant_id, store)
    staff = await add_therapists(tenant_id, store, therapists, [massage, moxa])
    phone = new_phone()
    member = (await make_member(kit, "王芳", phone=phone))["id"]
    return Clinic(kit, tenant_id, store, staff, massage, moxa, member, phone,
                  datetime.now(ZONE).date() + timedelta(days=days_ahead))


async def login(clinic: Clinic, wechat: FakeWeChat, *, member_phone: str | None = None,
                openid: str | None = None) -> tuple[str, str]:
    """The mini-program signs in: wx.login's code and the phone-number button's code, exchanged with the fake
    WeChat server. Returns the patient token and the WeChat account (openid) it was issued for."""
    openid = openid or f"o{uuid.uuid4().hex[:27]}"
    code, phone_code = f"c-{uuid.uuid4().hex}", f"p-{uuid.uuid4().hex}"
    wechat.add_login_code(code, openid)
    wechat.add_phone_code(phone_code, member_phone or clinic.phone)
    r = await clinic.kit.client.post(MINI_LOGIN, json={"tenant": clinic.kit.code, "code": code,
                                                       "phone_code": phone_code})
    assert r.status_code == 200, r.text
    return r.json()["access_token"], openid


async def stored_value_card(clinic: Clinic, *, face: int = 10000, bonus: int = 0, member: str | None = None,
                            family_shareable: bool = False) -> str:
    body: dict[str, Any] = {"name": f"储值卡{uuid.uuid4().hex[:4]}", "kind": "stored_value", "price": face,
                            "face_value": face, "bonus": bonus}
    if family_shareable:
        body["family_shareable"] = True
    r = await clinic.kit.post("/card-templates", body)
    assert r.status_code == 201, r.text
    r = await clinic.kit.post("/cards", {"member_id": member or clinic.member, "template_id": r.json()["id"],
                                         "store_id": clinic.store, "reason": "纸质卡迁移", "price_paid": face})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def give_points(clinic: Clinic, points: int, member: str | None = None) -> None:
    r = await clinic.kit.post(f"/members/{member or clinic.member}/points/adjust",
                              {"delta": points, "reason": "开业赠送"})
    assert r.status_code == 201, r.text


async def coupon_publication(clinic: Clinic, *, value: int = 2000, total: int | None = None, per_member: int = 1,
                             services: list[str] | None = None, **template: Any) -> str:
    body = {"name": f"立减{value // 100}元", "kind": "fixed", "value": value, "valid_days": 30, **template}
    if services:
        body["item_service_ids"] = services
    r = await clinic.kit.post("/coupon-templates", body)
    assert r.status_code == 201, r.text
    publication: dict[str, Any] = {"template_id": r.json()["id"], "title": body["name"], "per_member_limit": per_member}
    if total is not None:
        publication["total_quantity"] = total
    r = await clinic.kit.post("/coupon-publications", publication)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def claim(clinic: Clinic, token: str, publication: str) -> str:
    r = await clinic.kit.post(f"/coupon-publications/{publication}/claim", {}, token=token)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def service_line(service_id: str, **extra: Any) -> dict:
    return {"type": "service", "service_id": service_id, **extra}


def stored(amount: int, card_id: str) -> dict:
    return {"method": "stored_value", "amount": amount, "card_id": card_id}


def wechat_pay(amount: int) -> dict:
    return {"method": "wechat_pay", "amount": amount}


def points(n: int) -> dict:
    return {"method": "points", "points": n}


def coupon(coupon_id: str, amount: int | None = None) -> dict:
    return {"method": "coupon", "coupon_id": coupon_id, **({"amount": amount} if amount is not None else {})}


async def pay_order(clinic: Clinic, token: str, lines: list[dict], payments: list[dict],
                    **extra: Any) -> httpx.Response:
    body = {"store_id": clinic.store, "lines": lines, "payments": payments, **extra}
    return await clinic.kit.post("/patient/orders", body, token=token)


def out_trade_no(order: dict) -> str:
    return next(p["out_trade_no"] for p in order["payments"] if p["method"] == "wechat_pay")


__all__ = ["set_policy"]
