"""The patient's own account in the mini-program (issue 13, item 3): edit their profile, add a child, see their
cards (sessions left, balance, expiry, ledger), points, coupons, orders, and upcoming and past visits with the
aftercare note. A patient reaches themselves and the family they head; anyone else's ids are 404."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import make_member
from tests.members.helpers import assert_problem, patient_token
from tests.patient.helpers import AFTERCARE, ok, patch, put
from tests.platform.test_graphql import codes, gql


async def _account(client):
    """A shop whose member has a card (one session used at a past visit), an upcoming appointment, points, a
    coupon and a paid order; and another member of the tenant with a card of their own."""
    shop = await make_shop(client, therapists=2, rooms=2)
    kit = shop.kit
    ok(await put(kit, f"/services/{shop.massage}/listing", {"published": True, "aftercare_note": AFTERCARE}))
    template = ok(await kit.post("/card-templates", {"name": "推拿5次卡", "kind": "count", "price": 90000,
                                                     "items": [{"service_id": shop.massage, "sessions": 5}],
                                                     "valid_days": 180}), 201)["id"]
    card = ok(await kit.post("/cards", {"member_id": shop.member, "template_id": template, "store_id": shop.store,
                                        "reason": "老客户迁移", "price_paid": 90000}), 201)["id"]
    done = await shop.booked(shop.at(10))
    ok(await shop.act(done["id"], "complete", {"card_id": card, "notes": "右肩胛提肌紧张，建议热敷"}))
    upcoming = await shop.booked(shop.at(15), staff=shop.therapists[1])
    ok(await kit.post(f"/members/{shop.member}/points/adjust", {"delta": 300, "reason": "开业活动赠送"}), 201)
    coupon_template = ok(await kit.post("/coupon-templates", {"name": "满200减30", "kind": "threshold", "value": 3000,
                                                              "threshold_fen": 20000, "valid_days": 30}), 201)["id"]
    ok(await kit.post("/coupons", {"template_id": coupon_template, "member_id": shop.member}), 201)
    order = ok(await kit.post("/orders", {"member_id": shop.member, "store_id": shop.store,
                                          "lines": [{"type": "service", "service_id": shop.consult}],
                                          "payments": [{"method": "cash", "amount": 19800}]}), 201)
    stranger = await make_member(kit, "隔壁王先生")
    stranger_card = ok(await kit.post("/cards", {"member_id": stranger, "template_id": template,
                                                 "store_id": shop.store, "reason": "赠送"}), 201)["id"]
    shop.extra.update(card=card, done=done, upcoming=upcoming, order=order, stranger=stranger,
                      stranger_card=stranger_card, token=patient_token(kit, shop.member))
    return shop


async def test_cards_points_coupons_orders_and_visits(client):
    shop = await _account(client)
    kit, token = shop.kit, shop.extra["token"]

    cards = ok(await kit.get("/patient/me/cards", token=token))["items"]
    (card,) = cards
    assert card["id"] == shop.extra["card"] and card["status"] == "active" and card["kind"] == "count"
    assert card["expires_at"] is not None and card["member_id"] == shop.member
    (item,) = card["items"]
    assert item["service_name"].startswith("推拿") and item["service_id"] == shop.massage
    assert (item["sessions_total"], item["gifted_sessions"], item["remaining"]) == (5, 0, 4)
    ledger = ok(await kit.get(f"/patient/me/cards/{card['id']}/ledger", token=token))["items"]
    assert [(e["kind"], e["sessions_delta"]) for e in ledger] == [("deduct", -1), ("issue", 5)]
    assert ledger[0]["service_id"] == shop.massage
    assert not {"actor_id", "actor_type", "reason", "details"} & set(ledger[0])

    points = ok(await kit.get("/patient/me/points", token=token))
    # 300 given, and what the paid order earned (newest first); the balance is the ledger's sum.
    assert [e["kind"] for e in points["items"]] == ["earn", "adjust"] and points["items"][1]["delta"] == 300
    assert points["balance"] == sum(e["delta"] for e in points["items"]) > 300
    coupons = ok(await kit.get("/patient/me/coupons", token=token, params={"status": "issued"}))["items"]
    assert [c["name"] for c in coupons] == ["满200减30"]
    orders = ok(await kit.get("/patient/me/orders", token=token))["items"]
    assert [(o["id"], o["status"], o["total"]) for o in orders] == [(shop.extra["order"]["id"], "paid", 19800)]

    visits = ok(await kit.get("/patient/me/visits", token=token))
    (upcoming,) = visits["upcoming"]
    assert upcoming["kind"] == "appointment" and upcoming["id"] == shop.extra["upcoming"]["id"]
    assert upcoming["status"] == "booked" and upcoming["staff_id"] == shop.therapists[1]
    assert upcoming["store_name"] == "静安店" and upcoming["aftercare_note"] == AFTERCARE
    (past,) = visits["past"]
    assert past["kind"] == "service_record" and past["status"] == "completed"
    assert past["service_id"] == shop.massage and past["aftercare_note"] == AFTERCARE
    assert past["staff_name"] == "技师" and visits["next_cursor"] is None
    assert "notes" not in past and "右肩胛" not in str(visits)  # the therapist's remarks stay with the clinic


async def test_another_members_ids_are_404(client):
    shop = await _account(client)
    kit, token = shop.kit, shop.extra["token"]
    stranger, unknown = shop.extra["stranger"], str(uuid.uuid4())
    for member_id in (stranger, unknown):
        for path in ("/patient/me/cards", "/patient/me/orders", "/patient/me/visits"):
            assert_problem(await kit.get(path, token=token, params={"member_id": member_id}), 404,
                           "member_not_found")
    assert_problem(await kit.get(f"/patient/me/cards/{shop.extra['stranger_card']}/ledger", token=token), 404,
                   "card_not_found")
    assert_problem(await kit.get(f"/patient/me/cards/{unknown}/ledger", token=token), 404, "card_not_found")
    # The stranger, signed in, sees only their own.
    theirs = patient_token(kit, stranger)
    assert [c["id"] for c in ok(await kit.get("/patient/me/cards", token=theirs))["items"]] == \
        [shop.extra["stranger_card"]]
    assert ok(await kit.get("/patient/me/visits", token=theirs)) == {"upcoming": [], "past": [], "next_cursor": None}
    assert_problem(await kit.get("/patient/me/visits", token=theirs, params={"member_id": shop.member}), 404,
                   "member_not_found")
    assert_problem(await kit.get("/patient/me/cards", token=token, params={"member_id": "张三"}), 422,
                   "validation_error", field="member_id")


async def test_profile_changes_and_their_bad_input(client):
    shop = await make_shop(client, therapists=1, rooms=1)
    kit, token = shop.kit, patient_token(shop.kit, shop.member)
    me = ok(await kit.get("/patient/me", token=token))
    assert me["name"] == "赵六" and me["consents"] == [] and me["family"] is None

    changed = ok(await patch(kit, "/patient/me", {"name": "赵小六", "gender": "female", "birthday": "1990-05-20",
                                                  "address": "上海市徐汇区漕溪北路 88 号"}, token=token))
    assert (changed["name"], changed["gender"], changed["birthday"], changed["address"]) == \
        ("赵小六", "female", "1990-05-20", "上海市徐汇区漕溪北路 88 号")
    assert ok(await patch(kit, "/patient/me", {"address": None}, token=token))["address"] is None
    unchanged = ok(await patch(kit, "/patient/me", {}, token=token))
    assert unchanged["name"] == "赵小六" and unchanged["birthday"] == "1990-05-20"
    staff_view = ok(await kit.get(f"/members/{shop.member}"))
    assert staff_view["name"] == "赵小六" and staff_view["gender"] == "female"

    for body, field in (({"name": None}, "name"), ({"name": ""}, "name"), ({"gender": "unknown"}, "gender"),
                        ({"birthday": (date.today() + timedelta(days=1)).isoformat()}, "birthday"),
                        ({"birthday": None}, "birthday"), ({"address": "长" * 301}, "address"),
                        ({"phone": "13900000000"}, "phone"), ({"tags": ["VIP"]}, "tags")):
        assert_problem(await patch(kit, "/patient/me", body, token=token), 422, "validation_error", field=field)
    assert ok(await kit.get("/patient/me", token=token))["name"] == "赵小六"
    # Staff use their own endpoints: the patient's account takes patient tokens only.
    assert_problem(await kit.get("/patient/me"), 401, "wrong_audience")


async def test_a_parent_adds_a_child_and_sees_their_cards_and_visits(client):
    shop = await make_shop(client, therapists=1, rooms=1)
    kit, token = shop.kit, patient_token(shop.kit, shop.member)
    birthday = date(date.today().year - 6, 3, 1).isoformat()
    added = ok(await kit.post("/patient/me/children", {"name": "赵小宝", "birthday": birthday, "gender": "male"},
                              token=token), 201)
    child = added["member_id"]
    family = added["family"]
    assert family["head_member_id"] == shop.member and family["name"] == "赵六的家庭"
    assert sorted((m["name"], m["role"], m["relation"]) for m in family["members"]) == \
        [("赵六", "head", "self"), ("赵小宝", "member", "child")]
    assert ok(await kit.get("/patient/me", token=token))["family"]["id"] == family["id"]
    staff_view = ok(await kit.get(f"/members/{child}"))
    assert staff_view["phone"] is None and staff_view["birthday"] == birthday

    # The parent reads the child's cards and visits by member_id; the child has no sign-in of their own.
    template = ok(await kit.post("/card-templates", {"name": "小儿推拿3次", "kind": "count", "price": 30000,
                                                     "items": [{"service_id": shop.massage, "sessions": 3}]}),
                  201)["id"]
    card = ok(await kit.post("/cards", {"member_id": child, "template_id": template, "store_id": shop.store,
                                        "reason": "家长购买"}), 201)["id"]
    appointment = await shop.booked(shop.at(11), member=child)
    assert [c["id"] for c in ok(await kit.get("/patient/me/cards", token=token,
                                              params={"member_id": child}))["items"]] == [card]
    assert [v["id"] for v in ok(await kit.get("/patient/me/visits", token=token,
                                              params={"member_id": child}))["upcoming"]] == [appointment["id"]]
    assert ok(await kit.get(f"/patient/me/cards/{card}/ledger", token=token))["items"][0]["kind"] == "issue"

    # A second child joins the same family; the same child twice, or an adult, is refused.
    second = ok(await kit.post("/patient/me/children", {"name": "赵小妹", "birthday": birthday}, token=token), 201)
    assert second["family"]["id"] == family["id"] and len(second["family"]["members"]) == 3
    assert_problem(await kit.post("/patient/me/children", {"name": "赵小宝", "birthday": birthday}, token=token),
                   409, "child_exists")
    adult = date(date.today().year - 20, 1, 1).isoformat()
    for body, field in (({"name": "赵大宝", "birthday": adult}, "birthday"),
                        ({"name": "赵小宝"}, "birthday"), ({"birthday": birthday}, "name"),
                        ({"name": "赵小宝", "birthday": "2020-02-30"}, "birthday"),
                        ({"name": "赵小宝", "birthday": birthday, "gender": "boy"}, "gender")):
        assert_problem(await kit.post("/patient/me/children", body, token=token), 422, "validation_error",
                       field=field)
    assert len(ok(await kit.get("/patient/me", token=token))["family"]["members"]) == 3


async def test_a_family_member_who_is_not_the_head_reaches_only_themselves(client):
    shop = await make_shop(client, therapists=1, rooms=1)
    kit = shop.kit
    spouse = await make_member(kit, "钱女士")
    family = ok(await kit.post("/families", {"name": "赵家", "head_member_id": shop.member}), 201)
    ok(await kit.post(f"/families/{family['id']}/members", {"member_id": spouse, "relation": "spouse"}))
    token = patient_token(kit, spouse)
    assert_problem(await kit.get("/patient/me/cards", token=token, params={"member_id": shop.member}), 404,
                   "member_not_found")
    assert_problem(await kit.post("/patient/me/children", {"name": "赵小宝", "birthday": "2020-01-01"},
                                  token=token), 403, "not_family_head")
    me = ok(await kit.get("/patient/me", token=token))
    assert me["family"]["id"] == family["id"] and {m["relation"] for m in me["family"]["members"]} == \
        {"self", "spouse"}


ACCOUNT = """
query($child: ID) {
  myProfile { id name family { members { name relation } } consents { version } }
  myCards { id items { serviceName remaining } }
  myPoints { balance }
  myCoupons { items { name status } }
  myOrders { items { total status } }
  myVisits(memberId: $child) { upcoming { id aftercareNote } past { serviceName aftercareNote staffName } }
}"""


async def test_the_same_account_over_graphql(client):
    shop = await _account(client)
    kit, token = shop.kit, shop.extra["token"]
    result = await gql(kit, ACCOUNT, token)
    assert "errors" not in result, result
    data = result["data"]
    assert data["myProfile"]["id"] == shop.member and data["myProfile"]["family"] is None
    assert data["myCards"][0]["items"][0]["remaining"] == 4
    assert data["myPoints"]["balance"] > 300
    assert data["myCoupons"]["items"] == [{"name": "满200减30", "status": "issued"}]
    assert data["myOrders"]["items"] == [{"total": 19800, "status": "paid"}]
    assert data["myVisits"]["upcoming"] == [{"id": shop.extra["upcoming"]["id"], "aftercareNote": AFTERCARE}]
    assert data["myVisits"]["past"][0]["aftercareNote"] == AFTERCARE

    changed = await gql(kit, "mutation { updateMyProfile(address: \"上海市长宁区\", gender: \"male\") "
                             "{ address gender name } }", token)
    assert changed["data"]["updateMyProfile"] == {"address": "上海市长宁区", "gender": "male", "name": "赵六"}
    cleared = await gql(kit, "mutation { updateMyProfile(address: null) { address } }", token)
    assert cleared["data"]["updateMyProfile"] == {"address": None}
    bad = await gql(kit, "mutation { updateMyProfile(name: null) { name } }", token)
    assert codes(bad) == ["validation_error"] and bad["errors"][0]["extensions"]["field"] == "name"

    child = await gql(kit, "mutation($b: Date!) { addChild(name: \"赵小宝\", birthday: $b) "
                           "{ memberId family { members { name } } } }", token,
                      {"b": date(date.today().year - 4, 6, 1).isoformat()})
    assert "errors" not in child, child
    child_id = child["data"]["addChild"]["memberId"]
    assert {m["name"] for m in child["data"]["addChild"]["family"]["members"]} == {"赵六", "赵小宝"}
    adult = await gql(kit, "mutation { addChild(name: \"赵大宝\", birthday: \"1990-01-01\") { memberId } }", token)
    assert codes(adult) == ["validation_error"] and adult["errors"][0]["extensions"]["field"] == "birthday"
    theirs = await gql(kit, ACCOUNT, token, {"child": child_id})
    assert "errors" not in theirs and theirs["data"]["myVisits"] == {"upcoming": [], "past": []}

    stranger = await gql(kit, "query($m: ID) { myCards(memberId: $m) { id } }", token,
                         {"m": shop.extra["stranger"]})
    assert codes(stranger) == ["member_not_found"]
    # Staff tokens are refused by the patient's own fields.
    assert codes(await gql(kit, "{ myProfile { id } }", kit.owner_token)) == ["wrong_audience"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor"}])
async def test_bad_paging_is_refused(client, params):
    shop = await make_shop(client, therapists=1, rooms=1)
    r = await shop.kit.get("/patient/me/visits", token=patient_token(shop.kit, shop.member), params=params)
    assert r.status_code in (400, 422), r.text
