"""Builders for the patient tests: a clinic that published part of what it has, set up through the staff API,
and patients who sign up through the fake WeChat server over real HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.integrations.wechat.fake_server import FakeWeChat
from tests.factories import TenantKit, new_tenant
from tests.members.helpers import new_phone

REGISTER = "/api/v1/patient/registrations"
# 静安寺 and 人民广场 (GCJ-02), about 3 km apart; 陆家嘴 is across the river, about 5 km from 人民广场.
JINGAN = (31.2235, 121.4456)
PEOPLES_SQUARE = (31.2323, 121.4758)
LUJIAZUI = (31.2397, 121.4998)
AFTERCARE = "艾灸后 4 小时内不要洗澡，注意保暖，多喝温水。"


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


async def put(kit: TenantKit, path: str, body: Any, token: str | None = None) -> httpx.Response:
    return await kit.client.put(f"/api/v1{path}", json=body, headers=kit.auth(token))


async def patch(kit: TenantKit, path: str, body: Any, token: str | None = None) -> httpx.Response:
    return await kit.client.patch(f"/api/v1{path}", json=body, headers=kit.auth(token))


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@dataclass
class Storefront:
    """Two published stores (静安, 陆家嘴) and one that is not (浦东仓库); a published 艾灸 with an aftercare
    note, a published 推拿, and an unpublished 内部培训; a published therapist in 静安 skilled for all three, an
    unpublished one; a published card template and an unpublished one."""

    kit: TenantKit
    jingan: str
    lujiazui: str
    hidden_store: str
    moxa: str
    massage: str
    hidden_service: str
    therapist: str
    hidden_therapist: str
    card: str
    hidden_card: str
    extra: dict[str, Any] = field(default_factory=dict)


async def make_storefront(client: httpx.AsyncClient) -> Storefront:
    kit = await new_tenant(client)
    jingan = await kit.store("静安店", address="上海市静安区南京西路 1515 号", phone="021-62880001")
    lujiazui = await kit.store("陆家嘴店", address="上海市浦东新区世纪大道 8 号", phone="021-58880002")
    hidden_store = await kit.store("浦东仓库")
    ok(await put(kit, f"/stores/{jingan}/listing", {
        "published": True, "description": "地铁 2/7 号线静安寺站 3 号口", "latitude": JINGAN[0],
        "longitude": JINGAN[1], "photos": ["https://img.example.cn/jingan/front.jpg"]}))
    ok(await put(kit, f"/stores/{lujiazui}/listing", {"published": True, "latitude": LUJIAZUI[0],
                                                      "longitude": LUJIAZUI[1]}))
    ok(await put(kit, f"/stores/{jingan}/hours", {"hours": [
        {"weekday": d, "opens": "09:00", "closes": "21:00"} for d in range(1, 8)]}))

    services = {}
    for name, price in (("艾灸", 12800), ("推拿", 19800), ("内部培训", 0)):
        r = await kit.post("/services", {"name": name, "duration_minutes": 60, "price": price,
                                         "description": f"{name}（60 分钟）",
                                         "commission": {"type": "percent", "value": 12}})
        services[name] = ok(r, 201)["id"]
    ok(await put(kit, f"/services/{services['艾灸']}/listing", {
        "published": True, "aftercare_note": AFTERCARE, "photo_url": "https://img.example.cn/moxa.jpg"}))
    ok(await put(kit, f"/services/{services['推拿']}/listing", {"published": True}))

    therapist = await kit.staff(["therapist"], [jingan, lujiazui])
    hidden = await kit.staff(["therapist"], [jingan])
    for staff in (therapist, hidden):
        ok(await put(kit, f"/staff/{staff['id']}/skills", {"service_ids": list(services.values())}))
    ok(await put(kit, f"/staff/{therapist['id']}/listing", {
        "published": True, "title": "主治中医师", "bio": "从事针灸推拿十五年，擅长颈肩腰腿痛。",
        "photo_url": "https://img.example.cn/staff/chen.jpg"}))

    r = await kit.post("/card-templates", {"name": "艾灸10次卡", "kind": "count", "price": 98000,
                                           "items": [{"service_id": services["艾灸"], "sessions": 10,
                                                      "gifted_sessions": 1}], "valid_days": 365})
    card = ok(r, 201)["id"]
    ok(await put(kit, f"/card-templates/{card}/listing", {"published": True, "description": "十次艾灸，送一次"}))
    r = await kit.post("/card-templates", {"name": "员工内部卡", "kind": "stored_value", "price": 100,
                                           "face_value": 100})
    hidden_card = ok(r, 201)["id"]
    return Storefront(kit, jingan, lujiazui, hidden_store, services["艾灸"], services["推拿"], services["内部培训"],
                      therapist["id"], hidden["id"], card, hidden_card)


async def sign_up(client: httpx.AsyncClient, wechat: FakeWeChat, tenant: str, *, phone: str | None = None,
                  expect: int = 201, **extra: Any) -> dict:
    """Register through the fake WeChat server: a fresh wx.login code and phone code each time."""
    phone = phone or new_phone()
    code, phone_code = uid("c"), uid("p")
    wechat.add_login_code(code, extra.pop("openid", None) or uid("o"))
    wechat.add_phone_code(phone_code, phone)
    body = {"tenant": tenant, "code": code, "phone_code": phone_code, "privacy_policy_version": "2026-03",
            **extra}
    r = await client.post(REGISTER, json=body)
    assert r.status_code == expect, r.text
    return r.json() | {"phone": phone}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
