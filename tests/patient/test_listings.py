"""What staff publish to the mini-program: each store's, service's, staff member's and card template's listing,
with its permission, its audit entry, and bad input refused naming the field."""

from __future__ import annotations

import pytest

from tests.cards.helpers import owner_sql
from tests.factories import new_tenant, seal_audit
from tests.members.helpers import assert_problem
from tests.patient.helpers import JINGAN, make_storefront, ok, patch, put


async def test_listings_read_back_and_are_audited(client):
    shop = await make_storefront(client)
    kit = shop.kit
    store = ok(await kit.get(f"/stores/{shop.jingan}/listing"))
    assert store == {"store_id": shop.jingan, "published": True, "description": "地铁 2/7 号线静安寺站 3 号口",
                     "latitude": JINGAN[0], "longitude": JINGAN[1],
                     "photos": ["https://img.example.cn/jingan/front.jpg"]}
    assert ok(await kit.get(f"/stores/{shop.hidden_store}/listing"))["published"] is False
    assert ok(await kit.get(f"/services/{shop.moxa}/listing"))["aftercare_note"].startswith("艾灸后")
    staff = ok(await kit.get(f"/staff/{shop.therapist}/listing"))
    assert (staff["published"], staff["title"], staff["display_name"]) == (True, "主治中医师", "测试员工")
    assert ok(await kit.get(f"/card-templates/{shop.hidden_card}/listing")) == {
        "template_id": shop.hidden_card, "published": False, "description": None}

    # PUT replaces the whole listing: what is left out is cleared.
    cleared = ok(await put(kit, f"/stores/{shop.jingan}/listing", {"published": False}))
    assert cleared == {"store_id": shop.jingan, "published": False, "description": None, "latitude": None,
                       "longitude": None, "photos": []}
    await seal_audit()
    actions = [r[0] for r in await owner_sql(
        "SELECT action FROM audit_log WHERE target_id = :s ORDER BY seq", s=shop.jingan)]
    assert actions.count("store.listing") == 2


async def test_listings_need_their_permission_and_store(client):
    shop = await make_storefront(client)
    kit = shop.kit
    therapist = await kit.staff(["therapist"], [shop.jingan])
    manager = await kit.staff(["store_manager"], [shop.lujiazui])
    for path, body in ((f"/stores/{shop.jingan}/listing", {"published": True}),
                       (f"/services/{shop.moxa}/listing", {"published": True}),
                       (f"/staff/{shop.therapist}/listing", {"published": True}),
                       (f"/card-templates/{shop.card}/listing", {"published": True})):
        assert_problem(await put(kit, path, body, token=therapist["token"]), 403, "permission_denied")
    # A store manager shows their own store's staff, not those who also work elsewhere; the store itself is the
    # owner's to publish (stores:write, as for its name and address).
    local = await kit.staff(["therapist"], [shop.lujiazui])
    ok(await put(kit, f"/staff/{local['id']}/listing", {"published": True, "title": "推拿师"}, token=manager["token"]))
    assert_problem(await put(kit, f"/staff/{shop.therapist}/listing", {"published": False},
                             token=manager["token"]), 403, "store_forbidden")
    assert_problem(await put(kit, f"/stores/{shop.lujiazui}/listing", {"published": True}, token=manager["token"]),
                   403, "permission_denied")


async def test_closed_or_deactivated_things_cannot_be_published(client):
    shop = await make_storefront(client)
    kit = shop.kit
    ok(await patch(kit, f"/stores/{shop.hidden_store}", {"active": False}))
    assert_problem(await put(kit, f"/stores/{shop.hidden_store}/listing", {"published": True}), 409,
                   "store_inactive")
    ok(await patch(kit, f"/services/{shop.hidden_service}", {"active": False}))
    assert_problem(await put(kit, f"/services/{shop.hidden_service}/listing", {"published": True}), 409,
                   "service_inactive")
    ok(await patch(kit, f"/staff/{shop.hidden_therapist}", {"active": False}))
    assert_problem(await put(kit, f"/staff/{shop.hidden_therapist}/listing", {"published": True}), 409,
                   "staff_inactive")
    # Taking them off sale is always allowed.
    ok(await put(kit, f"/stores/{shop.hidden_store}/listing", {"published": False}))


@pytest.mark.parametrize("path, body, field", [
    ("store", {"published": True, "latitude": 31.2}, "longitude"),
    ("store", {"published": True, "longitude": 121.4}, "longitude"),
    ("store", {"published": True, "latitude": 95, "longitude": 121.4}, "latitude"),
    ("store", {"published": True, "latitude": 31.2, "longitude": -181}, "longitude"),
    ("store", {"published": True, "photos": ["http://img.example.cn/a.jpg"]}, "photos.0"),
    ("store", {"published": True, "photos": ["https://img.example.cn/a b.jpg"]}, "photos.0"),
    ("store", {"published": True, "photos": ["https://img.example.cn/a.jpg"] * 10}, "photos"),
    ("store", {"published": "yes"}, "published"),
    ("store", {"description": "无"}, "published"),
    ("store", {"published": True, "description": "长" * 501}, "description"),
    ("service", {"published": True, "aftercare_note": "长" * 1001}, "aftercare_note"),
    ("service", {"published": True, "photo_url": "javascript:alert(1)"}, "photo_url"),
    ("staff", {"published": True, "title": "主治\n医师"}, "title"),
    ("staff", {"published": True, "phone": "13800000000"}, "phone"),
    ("card", {"published": 1}, "published"),
])
async def test_bad_listings_are_422_naming_the_field(client, path, body, field):
    kit = await new_tenant(client)
    store = await kit.store()
    targets = {"store": f"/stores/{store}/listing"}
    if path == "service":
        r = await kit.post("/services", {"name": "艾灸", "duration_minutes": 45, "price": 16800})
        targets["service"] = f"/services/{ok(r, 201)['id']}/listing"
    if path == "staff":
        targets["staff"] = f"/staff/{(await kit.staff(['therapist'], [store]))['id']}/listing"
    if path == "card":
        r = await kit.post("/card-templates", {"name": "储值卡", "kind": "stored_value", "price": 100000,
                                               "face_value": 100000})
        targets["card"] = f"/card-templates/{ok(r, 201)['id']}/listing"
    assert_problem(await put(kit, targets[path], body), 422, "validation_error", field=field)
    assert ok(await kit.get(targets[path]))["published"] is False
