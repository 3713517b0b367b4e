"""Bad input on every REST endpoint is a 4xx application/problem+json naming the problem: never a 500,
never a partial write.

The cases are generated from the app's own OpenAPI document, so a new field, query parameter or path
id is covered as soon as it exists. What cannot be generated is one *valid* request per endpoint (each
case breaks exactly one thing in it): that is the table `WRITES`, and every POST/PATCH/PUT route under
/api/v1 must have a row there (`test_every_write_endpoint_is_in_the_table`). Path ids are filled from
`TARGETS` by parameter name. (Routes are found through the OpenAPI document, so a route hidden from
it with include_in_schema=False is not covered.)

After each refused request the row count of every table must be unchanged.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.api.middleware import BodyLimitMiddleware
from app.core.security import issue_token
from app.core.settings import get_settings
from app.seed import create_tenant_with_owner
from tests.booking.appointment_helpers import (
    appointment_target,
    bookable_setup,
    booking_body,
    next_slot,
    tenant_of,
)
from tests.factories import PASSWORD, TenantKit, login

API = "/api/v1"
PROBLEM_JSON = "application/problem+json"
BODY_METHODS = {"POST", "PATCH", "PUT"}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

# Strings a careless backend mangles: quotes and SQL, markup, format strings, backslashes, emoji with
# joiners, right-to-left override and combining marks, CJK at full length.
HOSTILE = [
    "Robert'); DROP TABLE stores;--",
    "' OR '1'='1' --",
    "<script>alert('x')</script>&amp;",
    "%s %d {0} ${name} {{7*7}}",
    "C:\\temp\\new\\table \"quoted\"",
    "😀🏥💉 家👨‍👩‍👧‍👦 ok",
    "\u202eRTL\u202c and combining e\u0301",
    "康" * 5000,
]
GARBAGE_CURSORS = [
    "not-a-cursor!!",
    base64.urlsafe_b64encode(b"\xff\xfe\x00garbage").decode(),
    base64.urlsafe_b64encode(b'{"a": 1}').decode().rstrip("="),
    base64.urlsafe_b64encode(b"[]").decode().rstrip("="),
    base64.urlsafe_b64encode(b"[1, 2, 3]").decode().rstrip("="),
    base64.urlsafe_b64encode(b'"2020-01-01"').decode().rstrip("="),
    base64.urlsafe_b64encode(b'["2020-01-01", "x"]').decode().rstrip("="),
    base64.urlsafe_b64encode(b"123456789012345678901234567890").decode().rstrip("="),
]


# --------------------------------------------------------------------------- the table


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _phone() -> str:
    return "139" + str(uuid.uuid4().int % 10**8).zfill(8)


@dataclass
class Ctx:
    """A tenant with a store and two members, and whatever targets a case asks for (made on demand)."""

    client: httpx.AsyncClient
    kit: TenantKit
    store_id: str = ""
    member_id: str = ""
    member2_id: str = ""
    made: dict[str, str] = field(default_factory=dict)

    async def created(self, path: str, body: dict) -> str:
        r = await self.kit.post(path, body)
        assert r.status_code == 201, f"setup POST {path}: {r.status_code} {r.text}"
        return r.json()["id"]

    async def target(self, param: str) -> str:
        if param not in self.made:
            if param not in TARGETS:
                pytest.fail(f"no factory for path parameter {param!r}: add one to TARGETS")
            self.made[param] = await TARGETS[param](self)
        return self.made[param]


async def _member_target(ctx: Ctx) -> str:
    return ctx.member_id


async def _staff_target(ctx: Ctx) -> str:
    return (await ctx.kit.staff(["therapist"], [ctx.store_id]))["id"]


async def _family_target(ctx: Ctx) -> str:
    return await ctx.created("/families", {"name": "张家", "head_member_id": ctx.member_id})


async def _no_real_target(ctx: Ctx) -> str:
    # Outbox events are made by the system, not through the API; an unknown id still exercises the route.
    return UNKNOWN_ID


async def _import_target(ctx: Ctx) -> str:
    r = await ctx.client.post(f"{API}/member-imports", data={"dry_run": "true"}, files=_members_csv(ctx),
                              headers=ctx.kit.auth())
    assert r.status_code == 200, f"setup dry-run import: {r.status_code} {r.text}"
    return r.json()["id"]


async def _movement_target(ctx: Ctx) -> str:
    body = {"store_id": ctx.store_id, "consumable_id": await ctx.target("consumable_id"), "kind": "receive",
            "quantity": 100}
    return await ctx.created("/inventory/movements", body)


async def _template_target(ctx: Ctx) -> str:
    body = {"name": f"推拿十次卡{_uid()}", "kind": "count", "price": 150000,
            "items": [{"service_id": await ctx.target("service_id"), "sessions": 10}]}
    return await ctx.created("/card-templates", body)


async def _card_target(ctx: Ctx) -> str:
    body = {"member_id": ctx.member_id, "template_id": await ctx.target("template_id"), "store_id": ctx.store_id,
            "reason": "开业赠送"}
    return await ctx.created("/cards", body)


async def _record_target(ctx: Ctx) -> str:
    return await ctx.created("/service-records", await WRITES[("POST", "/service-records")].build(ctx))


def _days_ahead() -> str:
    """A day 1–700 days ahead, random so that repeated posts rarely clash (a clash is a clean 409)."""
    return (date.today() + timedelta(days=1 + uuid.uuid4().int % 700)).isoformat()


def _one_hour() -> dict:
    """An hour somewhere in the next two years, random so that one staff member's shifts rarely overlap."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=24 + uuid.uuid4().int % (700 * 24))
    return {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()}


async def _shift_target(ctx: Ctx) -> str:
    return await ctx.created("/shifts", {"staff_id": await ctx.target("staff_id"), "store_id": ctx.store_id,
                                         **_one_hour()})


async def _pattern_target(ctx: Ctx) -> str:
    return await ctx.created("/shift-patterns", {
        "staff_id": await ctx.target("staff_id"), "store_id": ctx.store_id, "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "starts": "09:00", "ends": "18:00", "valid_from": date.today().isoformat()})


async def _time_off_target(ctx: Ctx) -> str:
    return await ctx.created("/time-off", {"staff_id": await ctx.target("staff_id"), "kind": "break", **_one_hour()})


async def _day_target(ctx: Ctx) -> str:
    return _days_ahead()


_waitlist_days = itertools.count(1)


def _waitlist_body(ctx: Ctx) -> dict:
    # A new day each time: the same member waiting twice for one day is a conflict.
    day = date.today() + timedelta(days=1 + next(_waitlist_days) % 80)
    return {"member_id": ctx.member_id, "store_id": ctx.store_id, "service_id": ctx.made["booking_service_id"],
            "day": day.isoformat()}


async def _waitlist_target(ctx: Ctx) -> str:
    await ctx.target("booking_service_id")
    return await ctx.created("/waitlist", _waitlist_body(ctx))


async def _feed_token_target(ctx: Ctx) -> str:
    r = await ctx.kit.post(f"/staff/{await ctx.target('staff_id')}/calendar-feed", {})
    assert r.status_code == 201, r.text
    return r.json()["token"]


async def _tenant_target(ctx: Ctx) -> str:
    return str(tenant_of(ctx.kit))


def _coupon_template_body(ctx: Ctx) -> dict:
    return {"name": f"满300减50{_uid()}", "kind": "threshold", "value": 5000, "threshold_fen": 30000,
            "valid_days": 30, "description": "全场通用"}


async def _coupon_template_target(ctx: Ctx) -> str:
    return await ctx.created("/coupon-templates", _coupon_template_body(ctx))


async def _coupon_target(ctx: Ctx) -> str:
    return await ctx.created("/coupons", {"template_id": await ctx.target("coupon_template_id"),
                                          "member_id": ctx.member_id, "reason": "新客礼"})


def _publication_body(ctx: Ctx) -> dict:
    return {"template_id": ctx.made["coupon_template_id"], "title": "新客立减50元", "description": "每人限领1张",
            "total_quantity": 1000, "per_member_limit": 1}


async def _publication_target(ctx: Ctx) -> str:
    await ctx.target("coupon_template_id")
    return await ctx.created("/coupon-publications", _publication_body(ctx))


def _patient_order_body(ctx: Ctx) -> dict:
    """The first member pays for a service in the mini-program (the service is not published: refused 404)."""
    return {"store_id": ctx.store_id, "note": "小程序预付", "lines": [{"type": "service",
                                                                   "service_id": ctx.made["service_id"]}],
            "payments": [{"method": "points", "points": 100}, {"method": "wechat_pay", "amount": 19700}]}


async def _message_template_target(ctx: Ctx) -> str:
    """A message template's key (the path parameter of /message-templates/{key})."""
    key = f"care_{_uid()}"
    await ctx.created("/message-templates", {"key": key, "name": "护理关怀", "channel": "sms",
                                             "body": "{{name}}您好，今天的{{service}}后注意保暖",
                                             "variables": ["name", "service"]})
    return key


async def _subscribe_template_target(ctx: Ctx) -> str:
    """Not a path parameter: the WeChat template id of a subscribe template, for consent reports."""
    wechat_id = f"tmpl-{_uid()}"
    await ctx.created("/message-templates", {"key": f"remind_{_uid()}", "name": "预约提醒",
                                             "channel": "mini_program_subscribe", "wechat_template_id": wechat_id,
                                             "body": "{{name}}您好", "variables": ["name"],
                                             "wechat_fields": {"thing1": "{{name}}"}})
    return wechat_id


def _message_body(ctx: Ctx) -> dict:
    return {"template_key": ctx.made["key"], "member_id": ctx.member_id,
            "variables": {"name": "王小明", "service": "推拿"}}


async def _message_target(ctx: Ctx) -> str:
    await ctx.target("key")
    return await ctx.created("/messages", _message_body(ctx))


async def _external_contact_target(ctx: Ctx) -> str:
    # WeCom external contacts come from WeCom (callbacks, lookups), not from a POST: store one directly.
    from app.core.db import session_scope
    from app.domain.wechat_links.models import WecomExternalContact

    tenant_id = tenant_of(ctx.kit)
    external_userid = f"wm{uuid.uuid4().hex[:30]}"
    async with session_scope(tenant_id) as session:
        session.add(WecomExternalContact(tenant_id=tenant_id, external_userid=external_userid, name="王先生",
                                         follow_userids=["therapist"]))
    return external_userid


async def _page_url_target(ctx: Ctx) -> str:
    return "https://sidebar.example.com/member?from=chat"


async def _order_target(ctx: Ctx) -> str:
    """A paid cash order (cancelling it is a clean 409; it exists for reads and receipts)."""
    return await ctx.created("/orders", _order_body(ctx, await ctx.target("service_id")))


def _order_body(ctx: Ctx, service_id: str) -> dict:
    return {"member_id": ctx.member_id, "store_id": ctx.store_id, "note": "肩颈放松",
            "lines": [{"type": "service", "service_id": service_id}],
            "payments": [{"method": "cash", "amount": 19800, "cash_received": 20000}]}


def _wechat_notification(ctx: Ctx) -> dict:
    """The shape of WeChat Pay's notification envelope (unsigned here: every case must be refused)."""
    return {"id": str(uuid.uuid4()), "create_time": "2026-11-28T10:00:00+08:00", "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(b"x" * 48).decode(), "associated_data": "transaction",
                         "nonce": "abcdef012345"}}


async def _refund_target(ctx: Ctx) -> str:
    """A refund waiting for one approval that the owner may give (a front desk clerk requested it)."""
    r = await ctx.client.put(f"{API}/checkout/settings", json={"refund_approval_threshold": 100,
                                                               "approval_levels": [["owner"]]},
                             headers=ctx.kit.auth())
    assert r.status_code == 200, f"setup PUT /checkout/settings: {r.status_code} {r.text}"
    desk = await ctx.kit.staff(["front_desk"], [ctx.store_id])
    r = await ctx.kit.post(f"/orders/{await ctx.target('order_id')}/refunds", {"amount": 10000, "reason": "不满意"},
                           token=desk["token"])
    assert r.status_code == 201, f"setup POST refund: {r.status_code} {r.text}"
    return r.json()["id"]


def _days_ago() -> str:
    """A past day (a day closes once; random so repeated closes rarely clash, and a clash is a clean 409)."""
    return (date.today() - timedelta(days=2 + uuid.uuid4().int % 3000)).isoformat()


def _wechat_refund_notification(ctx: Ctx) -> dict:
    return {**_wechat_notification(ctx), "event_type": "REFUND.SUCCESS", "summary": "退款成功"}


def _rule_body(ctx: Ctx) -> dict:
    return {"key": f"renewal_{_uid()}", "name": "续卡提醒", "description": "剩余2次时提醒顾问",
            "trigger": {"type": "event", "topic": "card.sessions_low", "filter": {"remaining": {"lte": 2}}},
            "delay": {"minutes": 60}, "quiet_hours": {"start": "21:00", "end": "09:00"},
            "actions": [{"type": "create_task", "kind": "renewal", "assignee": "consultant", "title": "续卡跟进"}]}


def _task_body(ctx: Ctx) -> dict:
    return {"kind": "follow_up", "title": "术后回访", "description": "询问恢复情况", "member_id": ctx.member_id,
            "due_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}


async def _form_template_target(ctx: Ctx) -> str:
    r = await ctx.kit.get("/form-templates", params={"code": "pain_vas"})
    assert r.status_code == 200, f"setup GET /form-templates: {r.status_code} {r.text}"
    return r.json()["items"][0]["id"]


PAIN_VALUES = {"regions": ["neck", "shoulder_left"], "vas": 6, "character": ["aching"]}


async def _clinical_record_target(ctx: Ctx) -> str:
    """A signed record (the amendments need one; a draft's edit is refused by its body check first)."""
    record_id = await ctx.created("/clinical-records", {"member_id": ctx.member_id, "template_code": "pain_vas",
                                                        "values": PAIN_VALUES})
    r = await ctx.kit.post(f"/clinical-records/{record_id}/sign", {})
    assert r.status_code == 200, f"setup sign: {r.status_code} {r.text}"
    return record_id


def _photo_file(ctx: Ctx) -> dict:
    """A small JPEG, as a phone would send it."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (210, 160, 130)).save(out, format="JPEG")
    return {"file": ("face.jpg", out.getvalue(), "image/jpeg")}


def _photo_fields(ctx: Ctx) -> dict:
    return {"member_id": ctx.member_id, "treatment_area": "face", "phase": "before", "taken_on": "2026-11-20",
            "kind": "photo", "staff_only": "false", "note": "光子嫩肤前，双颊色斑"}


async def _clinical_photo_target(ctx: Ctx) -> str:
    """A photo of the first member (the patient of the /patient/ routes)."""
    r = await ctx.client.post(f"{API}/clinical-photos", data=_photo_fields(ctx), files=_photo_file(ctx),
                              headers=ctx.kit.auth())
    assert r.status_code == 201, f"setup upload: {r.status_code} {r.text}"
    return r.json()["id"]


def _treatment_plan_body(ctx: Ctx) -> dict:
    return {"member_id": ctx.member_id, "store_id": ctx.store_id, "title": "颈肩腰腿痛调理疗程",
            "goals": "缓解颈肩酸痛，VAS降至3分以下", "interval_days": 7, "responsible_staff_id": ctx.made["staff_id"],
            "items": [{"service_id": ctx.made["service_id"], "sessions": 10}]}


async def _treatment_plan_target(ctx: Ctx) -> str:
    await ctx.target("service_id")
    await ctx.target("staff_id")
    return await ctx.created("/treatment-plans", _treatment_plan_body(ctx))


@lru_cache
def _consent_signature() -> str:
    """A drawn signature as the signing canvas sends it: a base64 PNG."""
    from app.domain.clinical.consent_demo import drawn_signature

    return base64.b64encode(drawn_signature()).decode()


async def _consent_template_target(ctx: Ctx) -> str:
    """A consent text of its own (other cases add versions to theirs: only the latest is signed)."""
    return await ctx.created("/consent-templates", {"code": f"consent_{_uid()}", "title": "拔罐治疗知情同意书",
                                                    "body": "拔罐后局部皮肤可能出现瘀斑，数日可自行消退。"})


def _consent_body(ctx: Ctx) -> dict:
    return {"template_id": ctx.made["consent_template_id"], "signature_png": _consent_signature(),
            "device": {"device_model": "iPad (10th generation)", "system": "iPadOS 17.5"}}


async def _consent_target(ctx: Ctx) -> str:
    """A consent of the first member (the patient of the /patient/ routes), recorded by the owner."""
    await ctx.target("consent_template_id")
    return await ctx.created("/consents", {"member_id": ctx.member_id, **_consent_body(ctx)})


async def _campaign_code_target(ctx: Ctx) -> str:
    return await ctx.created("/campaign-codes", {"channel_id": await ctx.target("channel_id"), "code": f"c{_uid()}",
                                                 "name": "双十二投放"})


async def _tenant_code_target(ctx: Ctx) -> str:
    return ctx.kit.code


# Path parameters that name something by text, not by id (the UUID cases do not apply to them).
TEXT_PATH_PARAMS = {"tenant_code"}


# Existing resources for path parameters, by parameter name.
TARGETS: dict[str, Callable[[Ctx], Awaitable[str]]] = {
    "store_id": lambda ctx: ctx.created("/stores", {"name": f"徐汇店{_uid()}"}),
    "staff_id": _staff_target,
    "role_id": lambda ctx: ctx.created("/roles", {"name": f"r{_uid()}", "permissions": ["members:read"]}),
    "client_uuid": lambda ctx: ctx.created("/api-clients", {"name": "HIS", "scopes": ["members:read"]}),
    "member_id": _member_target,
    "family_id": _family_target,
    "field_id": lambda ctx: ctx.created("/member-fields", {"key": f"k{_uid()}", "label": "喜好", "type": "text"}),
    "event_id": _no_real_target,
    "subscription_id": lambda ctx: ctx.created("/webhook-subscriptions", {
        "url": "https://his.example.com/careloop/hooks", "event_types": ["member.created"]}),
    "delivery_id": _no_real_target,  # deliveries are made by the worker; an unknown id still exercises the route
    "import_id": _import_target,
    "consumable_id": lambda ctx: ctx.created("/consumables", {"name": f"艾条{_uid()}", "unit": "根"}),
    "product_id": lambda ctx: ctx.created("/products", {"name": f"养生茶{_uid()}", "unit": "罐", "price": 9800}),
    "service_id": lambda ctx: ctx.created("/services", {"name": f"推拿{_uid()}", "duration_minutes": 60,
                                                        "price": 19800}),
    "movement_id": _movement_target,
    "template_id": _template_target,
    "card_id": _card_target,
    "record_id": _record_target,
    "appointment_id": appointment_target,
    "booking_service_id": bookable_setup,  # not a path parameter: the appointments' set-up
    "resource_id": lambda ctx: ctx.created("/resources", {"store_id": ctx.store_id, "kind": "room",
                                                          "name": f"房间{_uid()}"}),
    "shift_id": _shift_target,
    "pattern_id": _pattern_target,
    "time_off_id": _time_off_target,
    "day": _day_target,
    "entry_id": _waitlist_target,
    "token": _feed_token_target,
    "tenant_id": _tenant_target,
    "rule_id": lambda ctx: ctx.created("/automation-rules", _rule_body(ctx)),
    "task_id": lambda ctx: ctx.created("/tasks", _task_body(ctx)),
    "order_id": _order_target,
    "key": _message_template_target,
    "message_id": _message_target,
    "wechat_template_id": _subscribe_template_target,  # not a path parameter: consent reports' set-up
    "coupon_template_id": _coupon_template_target,
    "coupon_id": _coupon_target,
    "publication_id": _publication_target,
    "refund_id": _refund_target,
    "external_userid": _external_contact_target,
    "url": _page_url_target,  # not a path parameter: the JS-SDK signature's required ?url=
    "successor_id": _staff_target,  # not a path parameter: who takes over a leaving staff member's work
    "form_template_id": _form_template_target,
    "clinical_record_id": _clinical_record_target,
    "clinical_photo_id": _clinical_photo_target,
    "treatment_plan_id": _treatment_plan_target,
    "consent_template_id": _consent_template_target,
    "consent_id": _consent_target,
    "channel_id": lambda ctx: ctx.created("/channels", {"name": f"抖音{_uid()}", "kind": "platform"}),
    "campaign_code_id": _campaign_code_target,
    "lead_id": lambda ctx: ctx.created("/leads", {"name": "高敏", "phone": _phone()}),
    "assignment_rule_id": lambda ctx: ctx.created("/assignment-rules", {"name": "轮流分配"}),
    "tenant_code": _tenant_code_target,
}


@dataclass(frozen=True)
class Write:
    """How to make one valid request to a POST/PATCH endpoint."""

    body: Callable[[Ctx], dict] | None  # JSON body or form fields; None: the endpoint takes no body
    # "json", "form" (application/x-www-form-urlencoded), "multipart", or "signed": a payment platform's
    # notification, read as raw bytes and verified by signature before anything else; its refusals use the
    # platform's format ({"code": "FAIL", "message": …}), not problem+json (see _signed_cases).
    kind: str = "json"
    files: Callable[[Ctx], dict] | None = None  # multipart files, as httpx takes them
    own_session: bool = False  # the request ends the caller's sign-in: use a fresh one each time
    hostile: bool = True  # run the hostile-strings round trip
    needs: tuple[str, ...] = ()  # TARGETS the body refers to (made first, then read from ctx.made)
    patient: bool = False  # a mini-program endpoint: sent with the first member's patient token

    async def build(self, ctx: Ctx) -> dict:
        for name in self.needs:
            await ctx.target(name)
        return self.body(ctx) if self.body else {}


MEDIA = {"json": "application/json", "form": "application/x-www-form-urlencoded", "multipart": "multipart/form-data",
         "signed": "application/json", "hmac": "application/json"}


def _members_csv(ctx: Ctx) -> dict:
    return {"file": ("members.csv", f"姓名,手机号\n李四,{_phone()}\n".encode(), "text/csv")}


WRITES: dict[tuple[str, str], Write] = {
    # Not the owner: failed sign-ins lock an account out, and the tests sign in as the owner.
    ("POST", "/auth/token"): Write(lambda c: {"tenant": c.kit.code, "username": "nobody", "password": PASSWORD}),
    ("POST", "/auth/refresh"): Write(lambda c: {"refresh_token": "r" * 43}),
    ("POST", "/auth/logout"): Write(lambda c: {}, own_session=True, hostile=False),
    ("POST", "/oauth/token"): Write(lambda c: {"grant_type": "client_credentials", "client_id": "his-client",
                                               "client_secret": "s" * 40}, kind="form"),
    ("POST", "/stores"): Write(lambda c: {"name": f"静安店{_uid()}", "address": "南京西路1号"}),
    ("PATCH", "/stores/{store_id}"): Write(lambda c: {"name": "静安旗舰店"}),
    ("POST", "/staff"): Write(lambda c: {"username": f"u{_uid()}", "password": PASSWORD, "display_name": "陈晓明",
                                         "roles": ["therapist"], "store_ids": [c.store_id]}),
    ("PATCH", "/staff/{staff_id}"): Write(lambda c: {"display_name": "陈晓明"}),
    ("POST", "/roles"): Write(lambda c: {"name": f"r{_uid()}", "description": "前台",
                                         "permissions": ["members:read"]}),
    ("PATCH", "/roles/{role_id}"): Write(lambda c: {"description": "前台"}),
    ("POST", "/api-clients"): Write(lambda c: {"name": "HIS", "scopes": ["members:read"]}),
    ("POST", "/api-clients/{client_uuid}/revoke"): Write(None),
    ("POST", "/orders"): Write(lambda c: _order_body(c, c.made["service_id"]), needs=("service_id",)),
    ("POST", "/orders/{order_id}/cancel"): Write(lambda c: {"reason": "顾客改主意"}),
    # Raw bytes verified against WeChat's signature; refusals are answered in WeChat's own format.
    ("POST", "/payments/wechat/notify"): Write(_wechat_notification, kind="signed", hostile=False),
    ("POST", "/outbox/{event_id}/retry"): Write(None),
    ("POST", "/message-templates"): Write(lambda c: {"key": f"care_{_uid()}", "name": "护理关怀", "channel": "sms",
                                                     "body": "{{name}}您好，注意保暖", "variables": ["name"],
                                                     "page": "pages/index/index"}),
    ("PATCH", "/message-templates/{key}"): Write(lambda c: {"name": "护理关怀", "body": "{{name}}您好，注意保暖"}),
    ("POST", "/members/{member_id}/message-consents"): Write(lambda c: {"template_ids": [c.made["wechat_template_id"]]},
                                                             needs=("wechat_template_id",)),
    ("POST", "/messages"): Write(_message_body, needs=("key",)),
    ("POST", "/messages/{message_id}/retry"): Write(None),
    ("POST", "/members"): Write(lambda c: {"name": "张三", "phone": _phone()}),
    ("PATCH", "/members/{member_id}"): Write(lambda c: {"name": "张三丰"}),
    ("PUT", "/members/{member_id}/health-sharing"): Write(lambda c: {"share_with_family": True}),
    ("PUT", "/members/{member_id}/identifiers"): Write(lambda c: {"system": "urn:his:renji", "value": f"P{_uid()}"}),
    ("POST", "/members/{member_id}/referral"): Write(lambda c: {"referrer_id": c.member2_id}),
    ("PUT", "/referral-reward-rules"): Write(lambda c: {"enabled": True, "max_rewards_per_referrer_per_month": 5,
                                                       "referrer_reward": {"kind": "points", "points": 2000},
                                                       "referee_welcome": {"kind": "points", "points": 300}}),
    ("POST", "/members/{member_id}/tags"): Write(lambda c: {"add": ["颈椎病"]}),
    ("POST", "/members/{member_id}/notes"): Write(lambda c: {"body": "肩颈酸痛，建议每周两次推拿"}),
    ("POST", "/members/{member_id}/erase"): Write(lambda c: {"reason": "客户要求删除"}),
    ("POST", "/members/{member_id}/merge"): Write(lambda c: {"duplicate_id": c.member2_id, "reason": "重复建档"}),
    ("POST", "/tag-groups"): Write(lambda c: {"name": f"体质{_uid()}"}),
    ("POST", "/tags"): Write(lambda c: {"name": f"标签{_uid()}"}),
    ("POST", "/tag-synonyms"): Write(lambda c: {"synonym": f"落枕{_uid()}", "tag_name": "颈椎病"}),
    ("POST", "/member-fields"): Write(lambda c: {"key": f"k{_uid()}", "label": "喜好", "type": "text"}),
    ("PATCH", "/member-fields/{field_id}"): Write(lambda c: {"label": "喜好"}),
    ("POST", "/families"): Write(lambda c: {"name": "张家", "head_member_id": c.member_id}),
    ("POST", "/families/{family_id}/members"): Write(lambda c: {"member_id": c.member2_id, "relation": "spouse"}),
    ("POST", "/member-imports"): Write(lambda c: {"dry_run": "true", "mode": "per_row"}, kind="multipart",
                                       files=_members_csv),
    ("POST", "/card-imports"): Write(lambda c: {"dry_run": "true", "skip_bad_rows": "false",
                                                "store_id": c.store_id}, kind="multipart",
                                     files=lambda c: {"file": ("cards.csv", "卡号,手机号,卡名称\n".encode(),
                                                               "text/csv")}),
    ("POST", "/consumables"): Write(lambda c: {"name": f"艾条{_uid()}", "unit": "根", "category": "灸疗耗材"}),
    ("PATCH", "/consumables/{consumable_id}"): Write(lambda c: {"name": "艾条"}),
    ("POST", "/products"): Write(lambda c: {"name": f"养生茶{_uid()}", "unit": "罐", "price": 9800}),
    ("PATCH", "/products/{product_id}"): Write(lambda c: {"name": "养生茶"}),
    ("POST", "/services"): Write(lambda c: {"name": f"推拿{_uid()}", "duration_minutes": 60, "price": 19800}),
    ("PATCH", "/services/{service_id}"): Write(lambda c: {"name": "推拿"}),
    ("POST", "/inventory/movements"): Write(lambda c: {"store_id": c.store_id, "consumable_id": c.made["consumable_id"],
                                                       "kind": "receive", "quantity": 10, "reason": "到货"},
                                            needs=("consumable_id",)),
    ("POST", "/inventory/movements/{movement_id}/reverse"): Write(lambda c: {"reason": "录错了"}),
    ("POST", "/inventory/transfers"): Write(lambda c: {"from_store_id": c.store_id, "to_store_id": c.made["store_id"],
                                                       "lines": [{"consumable_id": c.made["consumable_id"],
                                                                  "quantity": 1}], "reason": "调拨"},
                                            needs=("store_id", "consumable_id")),
    ("PUT", "/inventory/thresholds"): Write(lambda c: {"store_id": c.store_id, "consumable_id": c.made["consumable_id"],
                                                      "low_stock_threshold": 5}, needs=("consumable_id",)),
    ("POST", "/card-templates"): Write(lambda c: {"name": f"推拿十次卡{_uid()}", "kind": "count", "price": 150000,
                                                  "items": [{"service_id": c.made["service_id"], "sessions": 10}]},
                                       needs=("service_id",)),
    ("POST", "/cards"): Write(lambda c: {"member_id": c.member_id, "template_id": c.made["template_id"],
                                         "store_id": c.store_id, "reason": "开业赠送"}, needs=("template_id",)),
    ("POST", "/cards/{card_id}/freeze"): Write(lambda c: {"reason": "出差两个月"}),
    ("POST", "/cards/{card_id}/unfreeze"): Write(lambda c: {"reason": "回来了"}),
    ("POST", "/cards/{card_id}/transfer"): Write(lambda c: {"reason": "转给家人", "to_member_id": c.member2_id}),
    ("POST", "/cards/{card_id}/extend"): Write(lambda c: {"reason": "疫情顺延", "days": 30}),
    ("POST", "/service-records"): Write(lambda c: {"member_id": c.member_id, "store_id": c.store_id,
                                                   "service_id": c.made["service_id"], "staff_id": c.made["staff_id"],
                                                   "notes": "肩颈放松"}, needs=("service_id", "staff_id")),
    ("POST", "/service-records/{record_id}/reverse"): Write(lambda c: {"reason": "记错了技师"}),
    ("POST", "/appointments"): Write(booking_body, needs=("booking_service_id",)),
    ("POST", "/waitlist"): Write(_waitlist_body, needs=("booking_service_id",)),
    ("POST", "/waitlist/{entry_id}/cancel"): Write(None),
    ("POST", "/automation-rules"): Write(_rule_body),
    ("PATCH", "/automation-rules/{rule_id}"): Write(lambda c: {"name": "续卡提醒", "enabled": False}),
    ("POST", "/tasks"): Write(_task_body),
    ("PATCH", "/tasks/{task_id}"): Write(lambda c: {"result_note": "已电话回访", "status": "done"}),
    ("POST", "/staff/{staff_id}/calendar-feed"): Write(None),
    ("POST", "/appointments/{appointment_id}/reschedule"): Write(lambda c: {"starts_at": next_slot()}),
    ("POST", "/appointments/{appointment_id}/cancel"): Write(lambda c: {"reason": "临时出差"}),
    ("POST", "/appointments/{appointment_id}/check-in"): Write(None),
    ("POST", "/appointments/{appointment_id}/no-show"): Write(lambda c: {"reason": "电话未接"}),
    ("POST", "/appointments/{appointment_id}/complete"): Write(lambda c: {"notes": "手法偏轻"}),
    ("POST", "/resources"): Write(lambda c: {"store_id": c.store_id, "kind": "bed", "name": f"推拿床{_uid()}",
                                             "capacity": 1, "pool": "推拿床"}),
    ("PATCH", "/resources/{resource_id}"): Write(lambda c: {"name": f"房间{_uid()}", "pool": "理疗室"}),
    ("PUT", "/staff/{staff_id}/skills"): Write(lambda c: {"service_ids": [c.made["service_id"]]},
                                               needs=("service_id",)),
    ("POST", "/shifts"): Write(lambda c: {"staff_id": c.made["staff_id"], "store_id": c.store_id, **_one_hour(),
                                          "note": "早班"}, needs=("staff_id",)),
    ("POST", "/shift-patterns"): Write(lambda c: {"staff_id": c.made["staff_id"], "store_id": c.store_id,
                                                  "weekdays": [1, 3, 5], "starts": "22:00", "ends": "06:00",
                                                  "valid_from": date.today().isoformat()}, needs=("staff_id",)),
    ("PATCH", "/shift-patterns/{pattern_id}"): Write(lambda c: {"valid_until": _days_ahead(), "active": True}),
    ("POST", "/shift-patterns/{pattern_id}/exceptions"): Write(lambda c: {"day": _days_ahead(), "reason": "培训"}),
    ("POST", "/time-off"): Write(lambda c: {"staff_id": c.made["staff_id"], "kind": "leave", **_one_hour(),
                                            "reason": "年假"}, needs=("staff_id",)),
    ("PUT", "/stores/{store_id}/hours"): Write(lambda c: {"hours": [
        {"weekday": 1, "opens": "09:00", "closes": "12:00"}, {"weekday": 1, "opens": "14:00", "closes": "02:00"}]}),
    ("POST", "/stores/{store_id}/closures"): Write(lambda c: {"day": _days_ahead(), "reason": "春节休息"}),
    ("PUT", "/stores/{store_id}/booking-policy"): Write(lambda c: {
        "slot_step_minutes": 15, "lead_time_minutes": 30, "horizon_days": 30, "cancel_window_hours": 2,
        "late_cancel_action": "fee", "late_cancel_fee": 5000, "no_show_action": "none", "no_show_fee": 0,
        "reminder_hours_before": 24, "follow_up_hours_after": 24}),
    ("PUT", "/tier-discounts"): Write(lambda c: {"tag_name": "金卡会员", "percent_off": 10,
                                                 "line_types": ["service", "product"]}),
    ("PUT", "/loyalty/settings"): Write(lambda c: {"enabled": True, "earn_points_per_yuan": 1,
                                                   "redeem_fen_per_point": 1, "max_redeem_percent": 50}),
    ("POST", "/members/{member_id}/points/adjust"): Write(lambda c: {"delta": 100, "reason": "老客积分补录"}),
    ("POST", "/coupon-templates"): Write(_coupon_template_body),
    ("POST", "/coupons"): Write(lambda c: {"template_id": c.made["coupon_template_id"], "member_id": c.member_id,
                                           "reason": "新客礼"}, needs=("coupon_template_id",)),
    ("POST", "/coupons/{coupon_id}/revoke"): Write(lambda c: {"reason": "发错了"}),
    ("POST", "/coupon-publications"): Write(_publication_body, needs=("coupon_template_id",)),
    ("POST", "/coupon-publications/{publication_id}/close"): Write(None),
    ("POST", "/coupon-publications/{publication_id}/claim"): Write(None, patient=True),
    ("POST", "/patient/orders"): Write(_patient_order_body, needs=("service_id",), patient=True),
    ("POST", "/patient/message-consents"): Write(lambda c: {"results": {c.made["wechat_template_id"]: "accept"},
                                                            "scene": "booking_done"},
                                                 needs=("wechat_template_id",), patient=True),
    ("POST", "/waitlist/{entry_id}/accept"): Write(lambda c: {"channel": "phone"}),
    ("POST", "/orders/{order_id}/refunds"): Write(lambda c: {"amount": 100, "reason": "客户不满意"}),
    ("POST", "/refunds/{refund_id}/approve"): Write(lambda c: {"note": "同意", "level": 1}),
    ("POST", "/refunds/{refund_id}/reject"): Write(lambda c: {"note": "金额不对"}),
    ("PUT", "/checkout/settings"): Write(lambda c: {"refund_approval_threshold": 50000,
                                                    "approval_levels": [["store_manager"], ["finance"]]}),
    ("POST", "/payments/wechat/refund-notify"): Write(_wechat_refund_notification, kind="signed", hostile=False),
    ("POST", "/reports/daily-close"): Write(lambda c: {"store_id": c.store_id, "date": _days_ago()}),
    ("POST", "/auth/wechat/mini-program"): Write(lambda c: {
        "tenant": c.kit.code, "code": "0716AVll20uHk94SLDml27etM946AVlq",
        "phone_code": "e31968a7f94cc5ee25fafc2aef2773f0bb8c3937b22520eb8ee345274d00c144"}),
    ("POST", "/auth/wecom"): Write(lambda c: {"tenant": c.kit.code, "code": "CODEfromWeComOAuth123"}),
    # Sign-up calls WeChat before a free-text name is stored (tests/patient covers it over the fake server).
    ("POST", "/patient/registrations"): Write(lambda c: {
        "tenant": c.kit.code, "code": "0716AVll20uHk94SLDml27etM946AVlq", "phone_code": "e31968a7f94cc5ee25fafc2a",
        "privacy_policy_version": "2026-03", "name": "林晓", "scene": 1007, "channel": "meituan"}, hostile=False),
    ("PATCH", "/patient/me"): Write(lambda c: {"name": "张三丰", "address": "上海市静安区南京西路1266号"},
                                    patient=True),
    ("POST", "/patient/me/children"): Write(lambda c: {"name": f"小明{_uid()}", "birthday": "2020-05-01"},
                                            patient=True),
    ("PUT", "/stores/{store_id}/listing"): Write(lambda c: {
        "published": True, "description": "地铁2号线静安寺站", "latitude": 31.2235, "longitude": 121.4456,
        "photos": ["https://img.example.cn/store.jpg"]}),
    ("PUT", "/services/{service_id}/listing"): Write(lambda c: {
        "published": True, "aftercare_note": "4小时内不要洗澡", "photo_url": "https://img.example.cn/moxa.jpg"}),
    ("PUT", "/staff/{staff_id}/listing"): Write(lambda c: {
        "published": True, "title": "主治中医师", "bio": "从事推拿十五年", "photo_url": "https://img.example.cn/s.jpg"}),
    ("PUT", "/card-templates/{template_id}/listing"): Write(lambda c: {"published": True, "description": "十次推拿"}),
    ("PUT", "/wecom/external-contacts/{external_userid}/member"): Write(lambda c: {"member_id": c.member_id}),
    ("POST", "/chat-sync/run"): Write(None),
    ("POST", "/webhook-subscriptions"): Write(lambda c: {"url": "https://his.example.com/careloop/hooks",
                                                         "event_types": ["member.created", "order.paid"],
                                                         "description": "HIS 对接"}),
    ("PATCH", "/webhook-subscriptions/{subscription_id}"): Write(lambda c: {"description": "HIS 对接",
                                                                            "active": False}),
    ("POST", "/webhook-deliveries/{delivery_id}/replay"): Write(None),
    ("PATCH", "/staff-alert-settings"): Write(lambda c: {"low_stock": True, "task_overdue": True}),
    ("POST", "/staff/{staff_id}/leave"): Write(lambda c: {"target_staff_id": c.made["successor_id"], "reason": "离职"},
                                               needs=("successor_id",)),
    ("POST", "/form-templates"): Write(lambda c: {"code": f"form_{_uid()}", "name": "针灸记录", "kind": "tcm",
                                                  "sections": [{"key": "main", "title": "针灸", "fields": [
                                                      {"key": "points", "label": "穴位", "type": "text",
                                                       "required": True}]}]}),
    ("POST", "/form-templates/{form_template_id}/versions"): Write(lambda c: {"name": "疼痛评分", "sections": [
        {"key": "pain", "title": "疼痛评估", "fields": [
            {"key": "vas", "label": "VAS评分", "type": "scale", "min": 0, "max": 10, "required": True}]}]}),
    ("POST", "/clinical-photos"): Write(_photo_fields, kind="multipart", files=_photo_file),
    ("POST", "/channels"): Write(lambda c: {"name": f"小红书{_uid()}", "kind": "platform"}),
    ("PATCH", "/channels/{channel_id}"): Write(lambda c: {"name": f"大众点评{_uid()}", "active": True}),
    ("POST", "/channels/{channel_id}/spend"): Write(lambda c: {"period_start": "2026-11-01", "period_end": "2026-11-30",
                                                               "amount": 1250000, "note": "11月信息流"}),
    ("POST", "/campaign-codes"): Write(lambda c: {"channel_id": c.made["channel_id"], "code": f"c{_uid()}",
                                                  "name": "双十二投放"}, needs=("channel_id",)),
    ("POST", "/leads"): Write(lambda c: {"name": "林小雨", "phone": _phone(), "interests": ["失眠调理"]}),
    ("PATCH", "/leads/{lead_id}"): Write(lambda c: {"status": "contacted", "comment": "已电话沟通"}),
    ("POST", "/assignment-rules"): Write(lambda c: {"name": "新线索轮流分配", "strategy": "round_robin"}),
    ("PATCH", "/assignment-rules/{assignment_rule_id}"): Write(lambda c: {"strategy": "least_open"}),
    ("POST", "/lead-intake-secret"): Write(None),
    ("POST", "/lead-intake/{tenant_code}"): Write(lambda c: {"name": "何佳", "phone": _phone()}, kind="hmac",
                                                   hostile=False),
    ("POST", "/clinical-records"): Write(lambda c: {"member_id": c.member_id, "template_code": "pain_vas",
                                                    "values": PAIN_VALUES}),
    ("PATCH", "/clinical-records/{clinical_record_id}"): Write(lambda c: {"values": PAIN_VALUES}),
    ("POST", "/clinical-records/{clinical_record_id}/sign"): Write(None),
    ("POST", "/clinical-records/{clinical_record_id}/amendments"): Write(lambda c: {"reason": "VAS误记",
                                                                                    "values": PAIN_VALUES}),
    ("POST", "/appointments/{appointment_id}/complete-with-record"): Write(lambda c: {
        "notes": "颈部放松", "record": {"template_code": "pain_vas", "values": PAIN_VALUES, "sign": True}}),
    ("POST", "/treatment-plans"): Write(_treatment_plan_body, needs=("service_id", "staff_id")),
    ("POST", "/treatment-plans/{treatment_plan_id}/cancel"): Write(lambda c: {"reason": "患者转外院继续治疗"}),
    ("POST", "/consent-templates"): Write(lambda c: {"code": f"consent_{_uid()}", "title": "艾灸治疗知情同意书",
                                                     "body": "艾灸时如感灼热请立即告知，以免烫伤。"}),
    ("POST", "/consent-templates/{consent_template_id}/versions"): Write(lambda c: {
        "title": "拔罐治疗知情同意书", "body": "拔罐后局部皮肤可能出现瘀斑或水疱，数日可自行消退。"}),
    ("POST", "/consents"): Write(lambda c: {"member_id": c.member_id, **_consent_body(c)},
                                 needs=("consent_template_id",)),
    ("POST", "/consents/{consent_id}/withdraw"): Write(lambda c: {"reason": "患者来电要求撤回"}),
    ("PUT", "/services/{service_id}/consent-requirement"): Write(lambda c: {"template_code": "acupuncture",
                                                                            "required_before": "booking"}),
    ("POST", "/patient/consents"): Write(_consent_body, needs=("consent_template_id",), patient=True),
    ("POST", "/patient/consents/{consent_id}/withdraw"): Write(lambda c: {"reason": "暂不做针灸"}, patient=True),
}


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
async def api(app) -> httpx.AsyncClient:
    """A client that sees a 500 as a response (to report it) rather than as the app's exception."""
    address = f"10.1.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://careloop.test") as c:
        yield c


@pytest.fixture(scope="module")
async def tenant_code(app) -> str:
    """One tenant for the module (making one costs a password hash); each test signs in afresh."""
    code = f"t{uuid.uuid4().hex[:12]}"
    await create_tenant_with_owner(code=code, name="坏输入诊所", owner_username="owner", owner_password=PASSWORD)
    return code


@pytest.fixture
async def ctx(api, tenant_code) -> Ctx:
    kit = TenantKit(client=api, code=tenant_code, tenant_id="", owner_token=await login(api, tenant_code, "owner"))
    c = Ctx(client=api, kit=kit)
    c.store_id = await c.created("/stores", {"name": f"静安店{_uid()}"})
    c.member_id = await c.created("/members", {"name": "王小明", "phone": _phone()})
    c.member2_id = await c.created("/members", {"name": "王晓明", "phone": _phone()})
    return c


@pytest.fixture
async def row_counts(database_url):
    """Rows in every table (as the superuser, so row-level security hides nothing)."""
    u = make_url(database_url)
    conn = await asyncpg.connect(user=u.username, password=u.password, database=u.database,
                                 host=u.query.get("host") or u.host, port=u.port)
    tables = [r["t"] for r in await conn.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'")]
    query = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)

    async def count() -> dict[str, int]:
        return {r["t"]: r["n"] for r in await conn.fetch(query)}

    yield count
    await conn.close()


@lru_cache
def _app_for_collection():
    """The routes to parametrize over, known before the session's app fixture exists (no start-up runs)."""
    from app.main import create_app

    return create_app()


def _openapi(app) -> dict:
    return app.openapi()


def _routes(app, methods: set[str]) -> list[tuple[str, str]]:
    """(METHOD, path under /api/v1) of the app's REST routes, from its OpenAPI document."""
    # FHIR answers bad input as OperationOutcome, not problem+json, with FHIR ids and search parameters:
    # tests/clinical/test_fhir.py covers it.
    found = sorted((method.upper(), path.removeprefix(API)) for path, item in app.openapi()["paths"].items()
                   if path.startswith(API + "/") and not path.startswith(API + "/fhir/")
                   for method in item if method.upper() in methods)
    assert found, "no /api/v1 routes found"
    return found


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) == 1:
            return {**_resolve(doc, options[0]), **{k: v for k, v in schema.items() if k not in ("anyOf",)}}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(doc, schema["allOf"][0])
    return schema


def _body_schema(doc: dict, method: str, path: str) -> tuple[dict | None, str | None]:
    operation = doc["paths"][API + path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    for media, entry in content.items():
        return _resolve(doc, entry["schema"]), media
    return None, None


def _is_free_text(schema: dict) -> bool:
    return (schema.get("type") == "string" and not {"format", "pattern", "enum", "const"} & set(schema))


def _wrong_type(schema: dict) -> Any:
    kind = schema.get("type")
    if kind == "string" or "enum" in schema or "const" in schema:
        return 12345  # a number for a string
    if kind in ("integer", "number"):
        return "not-a-number"  # a string for a number
    if kind == "boolean":
        return "not-a-bool"
    if kind == "array":
        return "not-a-list"
    return "not-an-object"


def _oversized(schema: dict) -> list[Any]:
    """Values longer than the schema allows (or, with no limit stated, longer than anything sensible)."""
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and schema.get("format") != "binary":
        return ["长" * (schema["maxLength"] + 1) if "maxLength" in schema else "x" * 100_000]
    if kind == "array":
        items = schema.get("items", {})
        values = []
        if items.get("type") == "string" and "maxLength" not in items and "enum" not in items:
            values.append(["x" * 100_000])
        if "maxItems" in schema:
            values.append(["x"] * (schema["maxItems"] + 1))
        return values
    if kind in ("integer", "number") and ("maximum" in schema or "exclusiveMaximum" in schema):
        return [10**30]
    return []


def _fields(doc: dict, schema: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """Every property (with nested object models one level down) as (path, schema)."""
    found = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(doc, prop)
        found.append(((*prefix, name), resolved))
        if resolved.get("type") == "object" and "properties" in resolved and not prefix:
            found.extend(_fields(doc, resolved, (name,)))
    return found


def _with(body: dict, path: tuple[str, ...], value: Any) -> dict:
    out = dict(body)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _with(out.get(path[0]) or {}, path[1:], value)
    return out


def _without(body: dict, name: str) -> dict:
    return {k: v for k, v in body.items() if k != name}


def _without_files(body: dict, files: dict | None) -> dict:
    return {k: v for k, v in body.items() if k not in (files or {})}


@dataclass
class Case:
    label: str
    status: set[int]
    code: str | None = None
    names: str | None = None  # errors[].field must name this input (or a part of it)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    wechat: bool = False  # refused in WeChat Pay's format, not problem+json


def _body_limit(app, path: str) -> int:
    """The body size limit the app applies to this path (BodyLimitMiddleware's, with its per-path overrides)."""
    for middleware in app.user_middleware:
        if middleware.cls is BodyLimitMiddleware:
            return BodyLimitMiddleware(None, **middleware.kwargs).limit_for(API + path)
    raise AssertionError("BodyLimitMiddleware is not installed")


def _signed_cases(base: dict, limit: int, *, wechat: bool = True) -> list[Case]:
    """A signed notification endpoint: whatever arrives without a valid signature is a 4xx that changes
    nothing (the generic field cases do not apply: the body is not looked at before the signature)."""
    refused = set(range(400, 500))
    return [
        Case("unsigned envelope", refused, json=base, wechat=wechat),
        Case("malformed JSON", refused, content=b'{"id": "unterminated', wechat=wechat,
             headers={"content-type": "application/json"}),
        Case("a JSON array", refused, json=[base], wechat=wechat),
        Case("empty body", refused, content=b"", wechat=wechat),
        Case("forged signature headers", refused, json=base, wechat=wechat, headers={
            "Wechatpay-Timestamp": "1700000000", "Wechatpay-Nonce": "n" * 32, "Wechatpay-Serial": "PUB_KEY_ID_X",
            "Wechatpay-Signature": base64.b64encode(b"s" * 256).decode()}),
        Case("body over the size limit", {413}, "payload_too_large", json={**base, "padding": "x" * (limit + 10)}),
    ]


def _body_cases(doc: dict, schema: dict, base: dict, write: Write, limit: int, files: dict | None) -> list[Case]:
    if write.kind in ("signed", "hmac"):  # hmac: our own signed intake, refused in problem+json
        return _signed_cases(base, limit, wechat=write.kind == "signed")
    cases: list[Case] = []
    form = write.kind != "json"
    if form:
        def send(fields: dict, *, with_files: dict | None = files) -> dict:
            return {"form": {k: v for k, v in fields.items() if k not in (with_files or {})}, "files": with_files}
        base = {**base, **(files or {})}  # so that required files count as fields of the schema
        cases.append(Case("JSON instead of a form", {422, 415}, json=_without_files(base, files)))
    else:
        def send(fields: dict) -> dict:
            return {"json": fields}

        cases += [
            Case("malformed JSON", {400}, "malformed_json", content=b'{"name": "unterminated',
                 headers={"content-type": "application/json"}),
            Case("a JSON array", {422}, "validation_error", "body", json=[base]),
            Case("a JSON string", {422}, "validation_error", "body", json="hello"),
            Case("unknown extra field", {422}, "validation_error", "unexpected_field",
                 json={**base, "unexpected_field": "x"}),
            Case("wrong content type", {415, 422}, content=json.dumps(base).encode(),
                 headers={"content-type": "text/plain"}),
            Case("NUL in a key", {422}, "validation_error", json={**base, "na\u0000me": "x"}),
        ]
    cases.append(Case("body over the size limit", {413}, "payload_too_large",
                      **send({**base, "padding": "x" * (limit + 10)})))
    for name in schema.get("required", []):
        if form:
            missing = send(_without(base, name), with_files=_without(files or {}, name) or None)
        else:
            missing = send(_without(base, name))
        cases.append(Case(f"missing {name}", {422}, "validation_error", name, **missing))
    for path, prop in _fields(doc, schema):
        dotted = ".".join(path)
        kind = prop.get("type")
        if prop.get("format") == "binary" or dotted in (files or {}):
            continue
        if not form or kind != "string" or "enum" in prop:  # in a form every value is text
            wrong = _wrong_type(prop) if not form else "not-valid-here"
            cases.append(Case(f"wrong type for {dotted}", {422}, "validation_error", dotted,
                              **send(_with(base, path, wrong))))
        for big in _oversized(prop):
            cases.append(Case(f"oversized {dotted}", {413, 422}, None, None, **send(_with(base, path, big))))
        if kind == "string" and write.kind != "multipart":  # multipart text fields may be files in disguise
            cases.append(Case(f"NUL in {dotted}", {422}, "validation_error", dotted,
                              **send(_with(base, path, "a\u0000b"))))
        if kind == "array" and prop.get("items", {}).get("type") == "string" and not form:
            cases.append(Case(f"NUL in {dotted}[0]", {422}, "validation_error", f"{dotted}.0",
                              json=_with(base, path, ["a\u0000b"])))
    return cases


def _check(r: httpx.Response, case: Case) -> str | None:
    """Why the answer is wrong for the case, or None."""
    if r.status_code not in case.status:
        return f"{r.status_code} (wanted {sorted(case.status)}): {r.text[:300]}"
    if case.wechat:
        answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        if not isinstance(answer, dict) or answer.get("code") != "FAIL" or not answer.get("message"):
            return f"not WeChat's failure format: {r.text[:300]}"
        return None
    if not r.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return f"content-type {r.headers.get('content-type')!r}, not {PROBLEM_JSON}"
    problem = r.json()
    missing = {"type", "title", "status", "detail", "code"} - set(problem)
    if missing or problem["status"] != r.status_code:
        return f"not a problem document: {problem}"
    if case.code and problem["code"] != case.code:
        return f"code {problem['code']!r}, wanted {case.code!r}: {problem['detail']}"
    if case.names:
        named = [e.get("field", "") for e in problem.get("errors", [])]
        if not any(n == case.names or n.startswith(case.names + ".") for n in named):
            return f"errors[] name {named}, not {case.names!r}"
    return None


async def _headers(ctx: Ctx, write: Write | None, path: str = "") -> dict[str, str]:
    if write is not None and write.own_session:
        return ctx.kit.auth(await login(ctx.client, ctx.kit.code, "owner"))
    # The mini-program's reads under /patient/ take patient tokens only (writes say so with Write.patient).
    if (write is not None and write.patient) or (write is None and path.startswith("/patient/")):
        token, _ = issue_token(subject=ctx.member_id, tenant_id=str(tenant_of(ctx.kit)), audience="patient",
                               ttl_seconds=600)
        return ctx.kit.auth(token)
    return ctx.kit.auth()


async def _fill(ctx: Ctx, path: str) -> str:
    for param in re.findall(r"{(\w+)}", path):
        path = path.replace("{" + param + "}", await ctx.target(param))
    return API + path


async def _send(ctx: Ctx, method: str, url: str, case: Case, headers: dict[str, str]) -> httpx.Response:
    headers = {**headers, **case.headers}
    if case.content is not None:
        return await ctx.client.request(method, url, content=case.content, headers=headers)
    if case.form is not None or case.files is not None:
        return await ctx.client.request(method, url, data=case.form, files=case.files, headers=headers)
    return await ctx.client.request(method, url, json=case.json, headers=headers)


# --------------------------------------------------------------------------- the tests


def test_every_write_endpoint_is_in_the_table(app):
    routes = set(_routes(app, BODY_METHODS))
    missing = sorted(routes - set(WRITES))
    assert not missing, f"add these endpoints to WRITES in {__file__}: {missing}"
    stale = sorted(set(WRITES) - routes)
    assert not stale, f"WRITES names endpoints that no longer exist: {stale}"
    params = {p for _, path in _routes(app, {"GET", "POST", "PATCH", "PUT", "DELETE"})
              for p in re.findall(r"{(\w+)}", path)}
    assert params <= set(TARGETS), f"add factories to TARGETS for path parameters {sorted(params - set(TARGETS))}"


@pytest.mark.parametrize("endpoint", sorted(WRITES), ids=lambda e: f"{e[0]} {e[1]}")
async def test_bad_bodies_are_refused_without_writing(app, ctx: Ctx, row_counts, endpoint):
    method, path = endpoint
    write = WRITES[endpoint]
    if write.body is None:
        pytest.skip("takes no body")
    doc = _openapi(app)
    schema, media = _body_schema(doc, method, path)
    assert schema is not None, f"{method} {path} documents no request body, but WRITES gives one"
    assert media == MEDIA[write.kind], f"{method} {path} takes {media}; set Write(kind=...)"
    url = await _fill(ctx, path)
    files = write.files(ctx) if write.files else None
    failures = []
    for case in _body_cases(doc, schema, await write.build(ctx), write, _body_limit(app, path), files):
        headers = await _headers(ctx, write)
        before = await row_counts()
        r = await _send(ctx, method, url, case, headers)
        why = _check(r, case)
        after = await row_counts()
        if after != before:
            changed = {t: (before[t], after[t]) for t in after if after[t] != before.get(t)}
            why = (why + "; " if why else "") + f"rows changed: {changed}"
        if why:
            failures.append(f"{method} {path} — {case.label}: {why}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("endpoint", sorted(k for k, w in WRITES.items() if w.body and w.hostile),
                         ids=lambda e: f"{e[0]} {e[1]}")
async def test_hostile_strings_are_stored_intact_or_refused(app, ctx: Ctx, endpoint):
    method, path = endpoint
    write = WRITES[endpoint]
    doc = _openapi(app)
    schema, _ = _body_schema(doc, method, path)
    url = await _fill(ctx, path)
    item_route = next((p for m, p in _routes(app, {"GET"}) if m == "GET" and (
        p == path if method == "PATCH" else re.fullmatch(re.escape(path) + r"/{\w+}", p))), None)
    failures = []
    for field_path, prop in _fields(doc, schema):
        dotted = ".".join(field_path)
        if not _is_free_text(prop) or "password" in dotted or "secret" in dotted:
            continue  # secrets are hashed, never returned (and hashing is slow); NUL and length are checked above
        for raw in HOSTILE:
            value = raw[: prop.get("maxLength", len(raw))].rstrip()  # schemas strip outer whitespace, by design
            body = _with(await write.build(ctx), field_path, value)
            if write.kind == "json":
                kwargs: dict[str, Any] = {"json": body}
            else:
                kwargs = {"data": body, "files": write.files(ctx) if write.files else None}
            r = await ctx.client.request(method, url, headers=await _headers(ctx, write), **kwargs)
            label = f"{method} {path} — {dotted}={value[:40]!r}"
            if r.status_code >= 500:
                failures.append(f"{label}: {r.status_code} {r.text[:200]}")
            elif r.status_code >= 400:
                if not r.headers.get("content-type", "").startswith(PROBLEM_JSON):
                    failures.append(f"{label}: {r.status_code} without problem+json")
            elif len(field_path) == 1 and isinstance(r.json(), dict) and dotted in r.json():
                if r.json()[dotted] != value:
                    failures.append(f"{label}: answered {r.json()[dotted]!r}")
                elif item_route and "id" in r.json():
                    g = await ctx.client.get(API + re.sub(r"{\w+}", r.json()["id"], item_route),
                                             headers=ctx.kit.auth())
                    if g.status_code == 200 and g.json().get(dotted) != value:
                        failures.append(f"{label}: read back as {g.json().get(dotted)!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("route", [r for r in _routes(_app_for_collection(), {"GET", "POST", "PATCH", "PUT", "DELETE"})
                                   if "{" in r[1]], ids=lambda e: f"{e[0]} {e[1]}")
async def test_path_ids_must_be_uuids_of_existing_resources(app, ctx: Ctx, row_counts, route):
    method, path = route
    write = WRITES.get(route)
    body = await write.build(ctx) if write and write.body else None
    params = re.findall(r"{(\w+)}", path)
    if set(params) <= TEXT_PATH_PARAMS:
        pytest.skip("named by text, not by id")
    failures = []
    for param in params:
        url = API + path
        for other in params:
            url = url.replace("{" + other + "}", "not-a-uuid" if other == param else await ctx.target(other))
        case = Case(f"{param}=not-a-uuid", {422}, "validation_error", param, json=body)
        before = await row_counts()
        why = _check(await _send(ctx, method, url, case, await _headers(ctx, write, path)), case)
        if await row_counts() != before:
            why = (why or "") + " rows changed"
        if why:
            failures.append(f"{method} {path} — {case.label}: {why}")
    url = API + re.sub(r"{\w+}", UNKNOWN_ID, path)
    case = Case("unknown ids", {404}, json=body)
    before = await row_counts()
    why = _check(await _send(ctx, method, url, case, await _headers(ctx, write, path)), case)
    if await row_counts() != before:
        why = (why or "") + " rows changed"
    if why:
        failures.append(f"{method} {path} — {case.label}: {why}")
    assert not failures, "\n".join(failures)


def _query_routes() -> list[tuple[str, str]]:
    doc = _app_for_collection().openapi()
    return [(m, p) for m, p in _routes(_app_for_collection(), {"GET", "POST", "PATCH", "PUT", "DELETE"})
            if any(x["in"] == "query" for x in doc["paths"][API + p][m.lower()].get("parameters", []))]


async def _valid_query_value(ctx: Ctx, name: str, schema: dict) -> str:
    """A value for a required query parameter: a resource's id by name, else one its type allows."""
    if name in TARGETS:
        return await ctx.target(name)
    if schema.get("examples"):  # a pattern no rule here can satisfy (a URI of an identifier system)
        return str(schema["examples"][0])
    if schema.get("format") == "date":
        return "2026-01-01"
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00+08:00"
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") in ("integer", "number"):
        return str(int(schema.get("minimum", 1)))
    if schema.get("type") == "boolean":
        return "true"
    pytest.fail(f"no valid value known for required query parameter {name!r}: teach _valid_query_value")
    raise AssertionError  # unreachable


@pytest.mark.parametrize("route", _query_routes(), ids=lambda e: f"{e[0]} {e[1]}")
async def test_bad_query_parameters_are_refused(app, ctx: Ctx, route):
    method, path = route
    doc = _openapi(app)
    operation = doc["paths"][API + path][method.lower()]
    url = await _fill(ctx, path)
    headers = await _headers(ctx, WRITES.get(route), path)
    query = [p for p in operation["parameters"] if p["in"] == "query"]
    required = {p["name"]: await _valid_query_value(ctx, p["name"], _resolve(doc, p["schema"]))
                for p in query if p.get("required")}
    cases: list[tuple[dict[str, str], Case]] = []
    for param in query:
        name, schema = param["name"], _resolve(doc, param["schema"])
        if schema.get("type") == "array":
            schema = _resolve(doc, schema.get("items", {}))
        kind = schema.get("type")
        if name == "limit":
            for value in ("0", "100000", "-1", "ten"):
                cases.append(({name: value}, Case(f"limit={value}", {422}, "validation_error", "limit")))
        elif name == "cursor":
            for value in GARBAGE_CURSORS:
                cases.append(({name: value}, Case(f"cursor={value}", {400}, "invalid_cursor")))
        elif kind in ("integer", "number") or schema.get("format") in ("uuid", "date", "date-time") \
                or "enum" in schema or "pattern" in schema:
            cases.append(({name: "not-valid-here"}, Case(f"{name}=not-valid-here", {422}, "validation_error", name)))
        if kind == "string":
            cases.append(({name: "a\u0000b"}, Case(f"NUL in {name}", {422}, "validation_error", name)))
            if "maxLength" in schema:
                cases.append(({name: "长" * (schema["maxLength"] + 1)},
                              Case(f"oversized {name}", {422}, "validation_error", name)))
            if _is_free_text(schema):
                for raw in HOSTILE:  # a filter value is data, never SQL: an answer or a clean refusal
                    cases.append(({name: raw[: schema.get("maxLength", len(raw))].rstrip()},
                                  Case(f"{name}={raw[:30]!r}", set(range(200, 500)))))
    failures = []
    for params, case in cases:
        r = await ctx.client.request(method, url, params={**required, **params}, headers=headers)
        if case.status == set(range(200, 500)):
            why = f"{r.status_code}: {r.text[:200]}" if r.status_code >= 500 else None
            if why is None and r.status_code >= 400:
                why = _check(r, Case(case.label, {r.status_code}))
        else:
            why = _check(r, case)
        if why:
            failures.append(f"{method} {path} — {case.label}: {why}")
    assert not failures, "\n".join(failures)


async def test_hostile_store_names_round_trip(ctx: Ctx):
    """The values come back exactly as sent, from the list as well as the item."""
    sent = {}
    for raw in HOSTILE:
        value = raw[:100].rstrip()
        r = await ctx.kit.post("/stores", {"name": value})
        assert r.status_code == 201, r.text
        sent[r.json()["id"]] = value
    listed, cursor = {}, None
    while True:
        page = (await ctx.kit.get("/stores", params={"limit": 200, **({"cursor": cursor} if cursor else {})})).json()
        listed.update({s["id"]: s["name"] for s in page["items"]})
        if not (cursor := page["next_cursor"]):
            break
    for store_id, value in sent.items():
        assert listed[store_id] == value
        assert (await ctx.kit.get(f"/stores/{store_id}")).json()["name"] == value


async def test_chunked_body_over_the_limit_is_413(ctx: Ctx, row_counts):
    """Without Content-Length the size is counted as the body arrives; the answer is still 413."""
    limit = get_settings().max_request_body_bytes

    async def chunks():
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    before = await row_counts()
    r = await ctx.client.post(f"{API}/stores", content=chunks(),
                              headers={**ctx.kit.auth(), "content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["code"] == "payload_too_large"
    assert await row_counts() == before


async def test_nul_in_a_string_is_a_422_naming_the_field(ctx: Ctx, row_counts):
    before = await row_counts()
    r = await ctx.kit.post("/members", {"name": "张\u0000三", "phone": _phone(), "health": {"past_history": "x\u0000"}})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert {e["field"] for e in problem["errors"]} == {"name", "health.past_history"}
    assert await row_counts() == before
    # A literal backslash-u in text is not a NUL and is stored as sent.
    r = await ctx.kit.post("/stores", {"name": "C:\\u0000dir"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "C:\\u0000dir"
