"""Browsing in the mini-program (issue 13, item 1): a patient sees what the clinic published — stores nearest
first, services on sale with their aftercare note, therapists with their skills, card templates on sale — and
nothing else: unpublished or unknown ids are 404 and internal fields never appear. The staff endpoints stay
closed to patients."""

from __future__ import annotations

import uuid

import pytest

from app.domain.portal.service import distance_m
from tests.members.helpers import assert_problem, make_member, patient_token
from tests.patient.helpers import AFTERCARE, JINGAN, LUJIAZUI, PEOPLES_SQUARE, make_storefront, ok, put
from tests.platform.test_graphql import codes, gql

# What must never reach a patient, wherever it sits in an answer.
INTERNAL = {"commission", "consumables", "resource_requirements", "buffer_minutes", "username", "wecom_userid",
            "level", "roles", "cost", "spend_order", "active", "published"}


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value)) if value else set()
    return set()


async def _patient(shop) -> str:
    return patient_token(shop.kit, (await make_member(shop.kit, "林小姐"))["id"])


def test_distance_matches_a_known_pair():
    # 静安寺 → 陆家嘴 is about 5.3 km as the crow flies.
    assert 5000 < distance_m(*JINGAN, *LUJIAZUI) < 5700
    assert distance_m(*JINGAN, *JINGAN) == 0


async def test_published_stores_nearest_first_with_hours_and_photos(client):
    shop = await make_storefront(client)
    token = await _patient(shop)

    by_name = ok(await shop.kit.get("/patient/stores", token=token))
    assert [s["id"] for s in by_name["items"]] == [shop.lujiazui, shop.jingan]  # by name; 浦东仓库 is unpublished
    assert all(s["distance_m"] is None for s in by_name["items"]) and by_name["next_cursor"] is None

    near_lujiazui = ok(await shop.kit.get("/patient/stores", token=token,
                                          params={"latitude": LUJIAZUI[0] + 0.001, "longitude": LUJIAZUI[1]}))
    assert [s["id"] for s in near_lujiazui["items"]] == [shop.lujiazui, shop.jingan]
    near_jingan = ok(await shop.kit.get("/patient/stores", token=token,
                                        params={"latitude": JINGAN[0], "longitude": JINGAN[1] + 0.002}))
    assert [s["id"] for s in near_jingan["items"]] == [shop.jingan, shop.lujiazui]
    jingan = near_jingan["items"][0]
    assert 150 < jingan["distance_m"] < 250
    assert jingan["address"] == "上海市静安区南京西路 1515 号" and jingan["phone"] == "021-62880001"
    assert jingan["photos"] == ["https://img.example.cn/jingan/front.jpg"]
    assert jingan["description"] == "地铁 2/7 号线静安寺站 3 号口"
    assert len(jingan["hours"]) == 7 and jingan["hours"][0] == {"weekday": 1, "opens": "09:00", "closes": "21:00"}
    assert not _keys(near_jingan) & INTERNAL

    # A store without coordinates comes last when a location is sent.
    ok(await put(shop.kit, f"/stores/{shop.lujiazui}/listing", {"published": True}))
    near = ok(await shop.kit.get("/patient/stores", token=token,
                                 params={"latitude": PEOPLES_SQUARE[0], "longitude": PEOPLES_SQUARE[1]}))
    assert [(s["id"], s["distance_m"] is None) for s in near["items"]] == [(shop.jingan, False),
                                                                          (shop.lujiazui, True)]

    one = ok(await shop.kit.get(f"/patient/stores/{shop.jingan}", token=token))
    assert one["name"] == "静安店" and one["distance_m"] is None


async def test_services_therapists_and_cards_on_sale(client):
    shop = await make_storefront(client)
    token = await _patient(shop)

    services = ok(await shop.kit.get(f"/patient/stores/{shop.jingan}/services", token=token))["items"]
    assert {s["name"] for s in services} == {"艾灸", "推拿"}  # 内部培训 is not published
    moxa = next(s for s in services if s["id"] == shop.moxa)
    assert moxa == {"id": shop.moxa, "name": "艾灸", "category": None, "description": "艾灸（60 分钟）",
                    "duration_minutes": 60, "price": 12800, "aftercare_note": AFTERCARE,
                    "photo_url": "https://img.example.cn/moxa.jpg"}
    detail = ok(await shop.kit.get(f"/patient/services/{shop.moxa}", token=token))
    assert sorted(detail["store_ids"]) == sorted([shop.jingan, shop.lujiazui])
    # 陆家嘴 has the published therapist too; a store where nobody performs a service does not sell it.
    assert {s["id"] for s in ok(await shop.kit.get(f"/patient/stores/{shop.lujiazui}/services",
                                                   token=token))["items"]} == {shop.moxa, shop.massage}

    therapists = ok(await shop.kit.get(f"/patient/stores/{shop.jingan}/therapists", token=token))["items"]
    assert [t["id"] for t in therapists] == [shop.therapist]  # the unpublished one is not listed
    chen = therapists[0]
    assert chen["title"] == "主治中医师" and chen["bio"].startswith("从事针灸推拿")
    assert chen["photo_url"] == "https://img.example.cn/staff/chen.jpg"
    assert {s["name"] for s in chen["skills"]} == {"艾灸", "推拿"}  # not the unpublished 内部培训
    assert sorted(chen["store_ids"]) == sorted([shop.jingan, shop.lujiazui])
    assert ok(await shop.kit.get(f"/patient/therapists/{shop.therapist}", token=token)) == chen

    cards = ok(await shop.kit.get("/patient/card-templates", token=token))["items"]
    assert [c["id"] for c in cards] == [shop.card]
    assert cards[0]["items"] == [{"service_id": shop.moxa, "service_name": "艾灸", "sessions": 10,
                                  "gifted_sessions": 1}]
    assert cards[0]["price"] == 98000 and cards[0]["description"] == "十次艾灸，送一次"
    assert ok(await shop.kit.get("/patient/card-templates", token=token,
                                 params={"store_id": shop.jingan}))["items"] == cards
    assert ok(await shop.kit.get(f"/patient/card-templates/{shop.card}", token=token)) == cards[0]

    for answer in (services, detail, therapists, cards):
        assert not _keys(answer) & INTERNAL, _keys(answer) & INTERNAL


async def test_unknown_and_unpublished_ids_are_404(client):
    shop = await make_storefront(client)
    other = await make_storefront(client)  # another tenant's published store, service, therapist and card
    token = await _patient(shop)
    unknown = str(uuid.uuid4())
    for path, code in (
        (f"/patient/stores/{shop.hidden_store}", "store_not_found"),
        (f"/patient/stores/{other.jingan}", "store_not_found"),
        (f"/patient/stores/{unknown}", "store_not_found"),
        (f"/patient/stores/{shop.hidden_store}/services", "store_not_found"),
        (f"/patient/stores/{shop.hidden_store}/therapists", "store_not_found"),
        (f"/patient/services/{shop.hidden_service}", "service_not_found"),
        (f"/patient/services/{other.moxa}", "service_not_found"),
        (f"/patient/therapists/{shop.hidden_therapist}", "therapist_not_found"),
        (f"/patient/therapists/{other.therapist}", "therapist_not_found"),
        (f"/patient/card-templates/{shop.hidden_card}", "card_template_not_found"),
        (f"/patient/card-templates/{other.card}", "card_template_not_found"),
    ):
        assert_problem(await shop.kit.get(path, token=token), 404, code)
    assert_problem(await shop.kit.get("/patient/card-templates", token=token, params={"store_id": unknown}),
                   404, "store_not_found")

    # Taking something off sale, closing a store or deactivating a service hides it at once.
    ok(await put(shop.kit, f"/services/{shop.massage}/listing", {"published": False}))
    assert_problem(await shop.kit.get(f"/patient/services/{shop.massage}", token=token), 404, "service_not_found")
    r = await shop.kit.client.patch(f"/api/v1/services/{shop.moxa}", json={"active": False},
                                    headers=shop.kit.auth())
    assert r.status_code == 200, r.text
    assert ok(await shop.kit.get(f"/patient/stores/{shop.jingan}/services", token=token))["items"] == []
    r = await shop.kit.client.patch(f"/api/v1/stores/{shop.lujiazui}", json={"active": False},
                                    headers=shop.kit.auth())
    assert r.status_code == 200, r.text
    assert [s["id"] for s in ok(await shop.kit.get("/patient/stores", token=token))["items"]] == [shop.jingan]


@pytest.mark.parametrize("params, field", [
    ({"latitude": 31.2}, "longitude"),
    ({"longitude": 121.4}, "latitude"),
    ({"latitude": 91, "longitude": 121.4}, "latitude"),
    ({"latitude": 31.2, "longitude": "东经"}, "longitude"),
])
async def test_a_bad_location_is_422_naming_the_field(client, params, field):
    shop = await make_storefront(client)
    r = await shop.kit.get("/patient/stores", token=await _patient(shop), params=params)
    assert_problem(r, 422, "validation_error", field=field)


async def test_staff_endpoints_stay_closed_and_the_storefront_takes_only_patients(client):
    shop = await make_storefront(client)
    token = await _patient(shop)
    for path in ("/stores", f"/stores/{shop.jingan}", "/services", f"/staff/{shop.therapist}",
                 f"/stores/{shop.jingan}/listing"):
        assert_problem(await shop.kit.get(path, token=token), 401, "wrong_audience")
    assert_problem(await put(shop.kit, f"/stores/{shop.jingan}/listing", {"published": False}, token=token), 401,
                   "wrong_audience")
    # The storefront is the patient's: a staff token is refused there (staff read the full records instead).
    assert_problem(await shop.kit.get("/patient/stores"), 401, "wrong_audience")
    assert_problem(await shop.kit.client.get("/api/v1/patient/stores"), 401, "not_authenticated")


STOREFRONT = """
query($lat: Float, $lng: Float, $store: ID!, $service: ID!, $staff: ID!, $card: ID!) {
  publishedStores(latitude: $lat, longitude: $lng) { id name distanceM photos hours { weekday opens closes } }
  publishedStore(id: $store) { id name address }
  storeServices(storeId: $store) { id name price aftercareNote }
  serviceOnSale(id: $service) { id storeIds }
  storeTherapists(storeId: $store) { id name title skills { name } }
  therapist(id: $staff) { id storeIds }
  cardTemplatesOnSale(storeId: $store) { id name items { serviceName sessions } }
  cardTemplateOnSale(id: $card) { id price }
}"""


async def test_the_same_storefront_over_graphql(client):
    shop = await make_storefront(client)
    token = await _patient(shop)
    variables = {"lat": JINGAN[0], "lng": JINGAN[1], "store": shop.jingan, "service": shop.moxa,
                 "staff": shop.therapist, "card": shop.card}
    result = await gql(shop.kit, STOREFRONT, token, variables)
    assert "errors" not in result, result
    data = result["data"]
    assert [s["id"] for s in data["publishedStores"]] == [shop.jingan, shop.lujiazui]
    assert data["publishedStores"][0]["distanceM"] == 0 and len(data["publishedStores"][0]["hours"]) == 7
    assert {s["name"] for s in data["storeServices"]} == {"艾灸", "推拿"}
    assert next(s for s in data["storeServices"] if s["id"] == shop.moxa)["aftercareNote"] == AFTERCARE
    assert sorted(data["serviceOnSale"]["storeIds"]) == sorted([shop.jingan, shop.lujiazui])
    assert data["storeTherapists"][0]["title"] == "主治中医师"
    assert data["cardTemplatesOnSale"] == [{"id": shop.card, "name": "艾灸10次卡",
                                            "items": [{"serviceName": "艾灸", "sessions": 10}]}]

    hidden = await gql(shop.kit, "query($id: ID!) { publishedStore(id: $id) { id } }", token,
                       {"id": shop.hidden_store})
    assert codes(hidden) == ["store_not_found"]
    half = await gql(shop.kit, "{ publishedStores(latitude: 31.2) { id } }", token)
    assert codes(half) == ["validation_error"] and half["errors"][0]["extensions"]["field"] == "longitude"
    # Staff fields stay closed to the patient; the patient's fields are closed to staff.
    assert codes(await gql(shop.kit, "{ stores { items { id } } }", token)) == ["wrong_audience"]
    assert codes(await gql(shop.kit, "{ publishedStores { id } }", shop.kit.owner_token)) == ["wrong_audience"]
