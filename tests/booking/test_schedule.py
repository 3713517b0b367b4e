"""Booking's schedule data over REST: resources, staff skills, shifts, weekly patterns, time off, store
hours, closed days and the booking policy — their happy paths, store scoping, tenant isolation, bad input
(always a 4xx problem naming the field) and that a refused write leaves nothing behind."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx

from app.core.db import session_scope
from app.domain.booking.models import Appointment, AppointmentHold, Resource
from tests.factories import TenantKit, new_tenant, seal_audit

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROBLEM_JSON = "application/problem+json"


# ---------------------------------------------------------------- helpers


def _problem(r: httpx.Response, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    problem = r.json()
    assert problem["status"] == status and problem["code"], problem
    if code is not None:
        assert problem["code"] == code, problem
    if field is not None:
        named = [e["field"] for e in problem.get("errors", [])] + ([problem["field"]] if "field" in problem else [])
        assert any(n == field or n.startswith(field + ".") for n in named), f"{field} not in {named}: {problem}"
    return problem


def _day(days_ahead: int) -> date:
    return datetime.now(SHANGHAI).date() + timedelta(days=days_ahead)


def _at(days_ahead: int, hour: int, minute: int = 0) -> str:
    """A Shanghai wall-clock time some days from today, as RFC 3339 with its +08:00 offset."""
    return datetime.combine(_day(days_ahead), datetime.min.time(), SHANGHAI).replace(
        hour=hour, minute=minute).isoformat()


def _instant(text: str) -> datetime:
    assert text[-6] in "+-" or text.endswith("Z"), f"{text!r} has no offset"
    return datetime.fromisoformat(text)


async def _put(kit: TenantKit, path: str, json: dict, token: str | None = None) -> httpx.Response:
    return await kit.client.put(f"/api/v1{path}", json=json, headers=kit.auth(token))


async def _patch(kit: TenantKit, path: str, json: dict, token: str | None = None) -> httpx.Response:
    return await kit.client.patch(f"/api/v1{path}", json=json, headers=kit.auth(token))


async def _delete(kit: TenantKit, path: str, token: str | None = None) -> httpx.Response:
    return await kit.client.delete(f"/api/v1{path}", headers=kit.auth(token))


async def _chain(client) -> tuple[TenantKit, str, str, dict, dict]:
    """A tenant with two stores, a therapist in store 1 and a store manager of store 1."""
    kit = await new_tenant(client)
    store_1, store_2 = await kit.store("一号店"), await kit.store("二号店")
    therapist = await kit.staff(["therapist"], [store_1])
    manager = await kit.staff(["store_manager"], [store_1])
    return kit, store_1, store_2, therapist, manager


async def _service(kit: TenantKit, name: str = "推拿") -> str:
    r = await kit.post("/services", {"name": name, "duration_minutes": 60, "price": 19800})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def _resource(kit: TenantKit, store_id: str, name: str = "1号房", **extra) -> dict:
    r = await kit.post("/resources", {"store_id": store_id, "kind": "room", "name": name, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def _shift(kit: TenantKit, staff_id: str, store_id: str, starts: str, ends: str, token: str | None = None,
                 **extra) -> dict:
    r = await kit.post("/shifts", {"staff_id": staff_id, "store_id": store_id, "starts_at": starts, "ends_at": ends,
                                   **extra}, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def _book(kit: TenantKit, store_id: str, staff_id: str, starts: str, ends: str,
                resource_id: str | None = None) -> str:
    """An active appointment (with its holds) written straight to the tables: the appointment endpoints
    are another part of booking, and these tests need only what a booking leaves behind."""
    member = await kit.post("/members", {"name": "王小明", "phone": "139" + str(uuid.uuid4().int % 10**8).zfill(8)})
    assert member.status_code == 201, member.text
    service_id = await _service(kit, f"推拿{uuid.uuid4().hex[:6]}")
    tenant_id = UUID(kit.tenant_id)
    async with session_scope(tenant_id) as session:
        appointment = Appointment(tenant_id=tenant_id, member_id=UUID(member.json()["id"]), store_id=UUID(store_id),
                                  service_id=UUID(service_id), staff_id=UUID(staff_id), visit_id=uuid.uuid4(),
                                  starts_at=_instant(starts), ends_at=_instant(ends), blocked_until=_instant(ends),
                                  booked_by_kind="staff")
        appointment.visit_id = appointment.id
        session.add(appointment)
        await session.flush()
        if resource_id is not None:
            row = await session.get(Resource, (tenant_id, UUID(resource_id)))
            session.add(AppointmentHold(tenant_id=tenant_id, appointment_id=appointment.id, kind="resource",
                                        ref_id=row.id, bookable_no=row.bookable_no, starts_at=appointment.starts_at,
                                        ends_at=appointment.ends_at, exclusive=row.capacity == 1))
        return str(appointment.id)


async def _audit_actions(kit: TenantKit, target_id: str) -> list[str]:
    await seal_audit()  # what the worker does every two seconds
    r = await kit.get("/audit", params={"target_id": target_id, "limit": 200})
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["items"]]


# ---------------------------------------------------------------- resources


async def test_resource_create_read_list_and_update(client):
    kit, store_1, store_2, _, _ = await _chain(client)
    room = await _resource(kit, store_1)
    assert room["kind"] == "room" and room["capacity"] == 1 and room["pool"] is None and room["active"] is True
    assert _instant(room["created_at"]) and _instant(room["updated_at"])
    bed_1 = await _resource(kit, store_1, "推拿床1", kind="bed", pool="推拿床")
    bed_2 = await _resource(kit, store_1, "推拿床2", kind="bed", pool="推拿床")
    group = await _resource(kit, store_2, "团体室", capacity=3)
    assert group["capacity"] == 3

    got = (await kit.get(f"/resources/{room['id']}")).json()
    assert got == room
    listed = (await kit.get("/resources", params={"store_id": store_1})).json()
    assert {r["id"] for r in listed["items"]} == {room["id"], bed_1["id"], bed_2["id"]} and "next_cursor" in listed
    beds = (await kit.get("/resources", params={"kind": "bed"})).json()["items"]
    assert {r["id"] for r in beds} == {bed_1["id"], bed_2["id"]}
    pooled = (await kit.get("/resources", params={"pool": "推拿床", "store_id": store_1})).json()["items"]
    assert {r["id"] for r in pooled} == {bed_1["id"], bed_2["id"]}
    page = (await kit.get("/resources", params={"limit": 2})).json()
    rest = (await kit.get("/resources", params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert {r["id"] for r in page["items"] + rest["items"]} == {room["id"], bed_1["id"], bed_2["id"], group["id"]}

    r = await _patch(kit, f"/resources/{bed_2['id']}", {"name": "推拿床二", "pool": None, "capacity": 2})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["pool"], r.json()["capacity"]) == ("推拿床二", None, 2)
    r = await _patch(kit, f"/resources/{bed_2['id']}", {"active": False})
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["name"] == "推拿床二"
    inactive = (await kit.get("/resources", params={"active": "false"})).json()["items"]
    assert [r["id"] for r in inactive] == [bed_2["id"]]
    assert await _audit_actions(kit, bed_2["id"]) == ["resource.update", "resource.update", "resource.create"]


async def test_resource_bad_input_is_refused_naming_the_field(client):
    kit, store_1, _, _, _ = await _chain(client)
    base = {"store_id": store_1, "kind": "room", "name": "1号房"}
    for change, field in [({"capacity": 0}, "capacity"), ({"capacity": 101}, "capacity"),
                          ({"capacity": "2"}, "capacity"), ({"capacity": 1.0}, "capacity"),
                          ({"kind": "sofa"}, "kind"), ({"name": ""}, "name"), ({"pool": ""}, "pool"),
                          ({"store_id": "not-a-uuid"}, "store_id"), ({"colour": "red"}, "colour")]:
        _problem(await kit.post("/resources", base | change), 422, "validation_error", field)
    _problem(await kit.post("/resources", {"store_id": store_1, "name": "x"}), 422, "validation_error", "kind")
    assert (await kit.get("/resources")).json()["items"] == []

    room = await _resource(kit, store_1)
    _problem(await kit.post("/resources", base), 409, "resource_name_exists")
    for change, field in [({"capacity": 0}, "capacity"), ({"name": None}, "name"), ({"active": None}, "active"),
                          ({"kind": "bed"}, "kind")]:
        _problem(await _patch(kit, f"/resources/{room['id']}", change), 422, "validation_error", field)
    other = await _resource(kit, store_1, "2号房")
    _problem(await _patch(kit, f"/resources/{other['id']}", {"name": "1号房"}), 409, "resource_name_exists")
    listed = (await kit.get("/resources")).json()["items"]
    assert sorted((r["name"], r["capacity"]) for r in listed) == [("1号房", 1), ("2号房", 1)]


async def test_capacity_is_fixed_while_bookings_are_to_come(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    room = await _resource(kit, store_1)
    await _book(kit, store_1, therapist["id"], _at(3, 10), _at(3, 11), resource_id=room["id"])
    _problem(await _patch(kit, f"/resources/{room['id']}", {"capacity": 2}), 409, "resource_in_use", "capacity")
    assert (await kit.get(f"/resources/{room['id']}")).json()["capacity"] == 1
    # What does not change how bookings hold it stays allowed.
    r = await _patch(kit, f"/resources/{room['id']}", {"name": "VIP房", "capacity": 1})
    assert r.status_code == 200 and r.json()["name"] == "VIP房", r.text


async def test_resources_are_scoped_to_the_callers_stores(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    mine = await _resource(kit, store_1, "一号店房间")
    theirs = await _resource(kit, store_2, "二号店房间")

    r = await kit.post("/resources", {"store_id": store_1, "kind": "bed", "name": "床A"}, token=manager["token"])
    assert r.status_code == 201, r.text
    _problem(await kit.post("/resources", {"store_id": store_2, "kind": "bed", "name": "床B"},
                            token=manager["token"]), 403, "store_forbidden")
    _problem(await _patch(kit, f"/resources/{theirs['id']}", {"name": "改"}, manager["token"]), 403,
             "store_forbidden")
    _problem(await kit.get(f"/resources/{theirs['id']}", token=manager["token"]), 403, "store_forbidden")
    _problem(await kit.get("/resources", token=manager["token"], params={"store_id": store_2}), 403,
             "store_forbidden")
    listed = (await kit.get("/resources", token=manager["token"])).json()["items"]
    assert {r["store_id"] for r in listed} == {store_1}

    # A therapist reads the schedule of their store but changes nothing.
    assert (await kit.get(f"/resources/{mine['id']}", token=therapist["token"])).status_code == 200
    _problem(await kit.post("/resources", {"store_id": store_1, "kind": "bed", "name": "床C"},
                            token=therapist["token"]), 403, "permission_denied")
    # Finance sees money, not schedules.
    finance = await kit.staff(["finance"], [])
    _problem(await kit.get("/resources", token=finance["token"]), 403, "permission_denied")
    assert (await kit.get(f"/resources/{theirs['id']}")).json()["name"] == "二号店房间"
    assert sorted(r["name"] for r in (await kit.get("/resources")).json()["items"]) == ["一号店房间", "二号店房间",
                                                                                        "床A"]


async def test_another_tenants_resources_and_stores_are_not_found(client):
    kit, store_1, _, _, _ = await _chain(client)
    other = await new_tenant(client)
    foreign_store = await other.store()
    foreign = await _resource(other, foreign_store, "别人的房间")
    _problem(await kit.post("/resources", {"store_id": foreign_store, "kind": "room", "name": "x"}), 404,
             "store_not_found")
    _problem(await kit.get(f"/resources/{foreign['id']}"), 404, "resource_not_found")
    _problem(await _patch(kit, f"/resources/{foreign['id']}", {"name": "抢来的"}), 404, "resource_not_found")
    _problem(await kit.get("/resources", params={"store_id": foreign_store}), 404, "store_not_found")
    assert (await other.get(f"/resources/{foreign['id']}")).json()["name"] == "别人的房间"
    assert (await kit.get("/resources")).json()["items"] == []


# ---------------------------------------------------------------- staff skills


async def test_staff_skills_are_replaced_and_read(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    tuina, moxa = await _service(kit, "推拿"), await _service(kit, "艾灸")
    r = await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": [tuina, moxa, tuina]})
    assert r.status_code == 200, r.text
    assert r.json() == {"staff_id": therapist["id"], "service_ids": sorted([tuina, moxa])}
    r = await kit.get(f"/staff/{therapist['id']}/skills", token=therapist["token"])
    assert r.status_code == 200 and sorted(r.json()["service_ids"]) == sorted([tuina, moxa])
    r = await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": [moxa]})
    assert r.json()["service_ids"] == [moxa]
    assert (await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": []})).json()["service_ids"] == []
    assert (await _audit_actions(kit, therapist["id"]))[:3] == ["staff_skills.set"] * 3


async def test_staff_skills_refuse_unknown_services_and_foreign_staff(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    tuina = await _service(kit)
    await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": [tuina]})
    other = await new_tenant(client)
    foreign_service = await _service(other, "别家推拿")
    for ids, field in [([tuina, str(uuid.uuid4())], "service_ids.1"), ([foreign_service], "service_ids.0"),
                       (["not-a-uuid"], "service_ids.0"), ("x", "service_ids")]:
        _problem(await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": ids}), 422, "validation_error",
                 field)
    assert (await kit.get(f"/staff/{therapist['id']}/skills")).json()["service_ids"] == [tuina]

    foreign_staff = await other.staff(["therapist"], [await other.store()])
    _problem(await _put(kit, f"/staff/{foreign_staff['id']}/skills", {"service_ids": [tuina]}), 404,
             "staff_not_found")
    _problem(await kit.get(f"/staff/{foreign_staff['id']}/skills"), 404, "staff_not_found")
    # A store manager sets skills of staff in their stores only.
    elsewhere = await kit.staff(["therapist"], [store_2])
    _problem(await _put(kit, f"/staff/{elsewhere['id']}/skills", {"service_ids": [tuina]}, manager["token"]), 403,
             "store_forbidden")
    r = await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": []}, manager["token"])
    assert r.status_code == 200 and r.json()["service_ids"] == []
    _problem(await _put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": [tuina]}, therapist["token"]), 403,
             "permission_denied")
    assert (await kit.get(f"/staff/{elsewhere['id']}/skills")).json()["service_ids"] == []


# ---------------------------------------------------------------- single shifts


async def test_shift_create_list_and_delete(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    first = await _shift(kit, therapist["id"], store_1, _at(2, 9), _at(2, 18), note="早班")
    assert _instant(first["starts_at"]) == _instant(_at(2, 9)) and _instant(first["ends_at"]) == _instant(_at(2, 18))
    assert first["note"] == "早班" and first["store_id"] == store_1
    # Touching is not overlapping; an overnight shift is one shift.
    second = await _shift(kit, therapist["id"], store_1, _at(2, 18), _at(3, 2))
    third = await _shift(kit, therapist["id"], store_1, _at(5, 9), _at(5, 13))

    span = {"from": _at(0, 0), "to": _at(7, 0)}
    listed = (await kit.get("/shifts", params={"store_id": store_1, **span})).json()
    assert [s["id"] for s in listed["items"]] == [first["id"], second["id"], third["id"]]
    page = (await kit.get("/shifts", params={"staff_id": therapist["id"], "limit": 2, **span})).json()
    rest = (await kit.get("/shifts", params={"staff_id": therapist["id"], "limit": 2, "cursor": page["next_cursor"],
                                             **span})).json()
    assert [s["id"] for s in page["items"] + rest["items"]] == [first["id"], second["id"], third["id"]]
    # A range catches the shifts overlapping it, also one that began before it.
    night = (await kit.get("/shifts", params={"from": _at(3, 0), "to": _at(3, 12)})).json()["items"]
    assert [s["id"] for s in night] == [second["id"]]
    # Without a range: the week from now, seen by the therapist too.
    r = await kit.get("/shifts", token=therapist["token"])
    assert r.status_code == 200 and len(r.json()["items"]) == 3

    r = await _delete(kit, f"/shifts/{third['id']}")
    assert r.status_code == 204, r.text
    _problem(await _delete(kit, f"/shifts/{third['id']}"), 404, "shift_not_found")
    assert [s["id"] for s in (await kit.get("/shifts", params=span)).json()["items"]] == [first["id"], second["id"]]
    assert await _audit_actions(kit, third["id"]) == ["shift.delete", "shift.create"]


async def test_overlapping_shifts_of_one_staff_member_conflict(client):
    kit, store_1, store_2, therapist, _ = await _chain(client)
    both = await kit.staff(["therapist"], [store_1, store_2])
    first = await _shift(kit, both["id"], store_1, _at(2, 9), _at(2, 18))
    for starts, ends, store in [(_at(2, 9), _at(2, 18), store_1), (_at(2, 17), _at(2, 20), store_1),
                                (_at(2, 6), _at(2, 10), store_2), (_at(2, 12), _at(2, 13), store_2)]:
        problem = _problem(await kit.post("/shifts", {"staff_id": both["id"], "store_id": store, "starts_at": starts,
                                                      "ends_at": ends}), 409, "shift_overlap")
        assert problem["shift_id"] == first["id"]
    # Another staff member at the same time is no conflict.
    await _shift(kit, therapist["id"], store_1, _at(2, 9), _at(2, 18))
    listed = (await kit.get("/shifts", params={"staff_id": both["id"], "from": _at(0, 0), "to": _at(7, 0)})).json()
    assert [s["id"] for s in listed["items"]] == [first["id"]]


async def test_concurrent_overlapping_shifts_make_exactly_one(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    body = {"staff_id": therapist["id"], "store_id": store_1}
    answers = await asyncio.gather(*(
        kit.post("/shifts", body | {"starts_at": _at(4, 9 + i % 3), "ends_at": _at(4, 15 + i % 3)})
        for i in range(8)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    listed = (await kit.get("/shifts", params={"from": _at(4, 0), "to": _at(5, 0)})).json()["items"]
    assert len(listed) == 1


async def test_shift_bad_input_is_refused_and_writes_nothing(client):
    kit, store_1, store_2, therapist, _ = await _chain(client)
    base = {"staff_id": therapist["id"], "store_id": store_1, "starts_at": _at(2, 9), "ends_at": _at(2, 18)}
    for change, field in [
        ({"ends_at": _at(2, 8)}, "ends_at"),  # ends before it starts
        ({"ends_at": _at(2, 9)}, "ends_at"),  # empty
        ({"ends_at": _at(3, 10)}, "ends_at"),  # 25 hours
        ({"starts_at": "1900-01-02T09:00:00+08:00", "ends_at": "1900-01-02T18:00:00+08:00"}, "starts_at"),
        ({"starts_at": _at(365 * 3, 9), "ends_at": _at(365 * 3, 18)}, "starts_at"),  # three years ahead
        ({"starts_at": "2026-12-01T09:00:00"}, "starts_at"),  # no offset
        ({"starts_at": 1764550800}, "starts_at"),  # epoch seconds
        ({"starts_at": "next tuesday"}, "starts_at"),
        ({"note": "长" * 501}, "note"),
        ({"staff_id": str(uuid.uuid4())}, "staff_id"),  # no such staff member
        ({"store_id": store_2}, "staff_id"),  # not assigned to that store
    ]:
        _problem(await kit.post("/shifts", base | change), 422, "validation_error", field)
    other = await new_tenant(client)
    _problem(await kit.post("/shifts", base | {"store_id": await other.store()}), 404, "store_not_found")
    foreign = await other.staff(["therapist"], [])
    _problem(await kit.post("/shifts", base | {"staff_id": foreign["id"]}), 422, "validation_error", "staff_id")
    listed = (await kit.get("/shifts", params={"from": "2000-01-01T00:00:00Z", "to": "2000-02-01T00:00:00Z"}))
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert (await kit.get("/shifts", params={"from": _at(0, 0), "to": _at(60, 0)})).json()["items"] == []

    # The range of a list is bounded too.
    for params, field in [({"from": _at(0, 0), "to": _at(365 * 5, 0)}, "to"),
                          ({"from": "1900-01-01T00:00:00+08:00", "to": "1900-01-08T00:00:00+08:00"}, "from"),
                          ({"from": _at(3, 0), "to": _at(2, 0)}, "to"),
                          ({"from": "2026-12-01T00:00:00"}, "from"),
                          ({"to": "soon"}, "to")]:
        _problem(await kit.get("/shifts", params=params), 422, "validation_error", field)


async def test_shifts_are_scoped_to_the_managers_store(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    elsewhere = await kit.staff(["therapist"], [store_2])
    theirs = await _shift(kit, elsewhere["id"], store_2, _at(2, 9), _at(2, 18))
    mine = await _shift(kit, therapist["id"], store_1, _at(2, 9), _at(2, 18), token=manager["token"])
    _problem(await kit.post("/shifts", {"staff_id": elsewhere["id"], "store_id": store_2, "starts_at": _at(3, 9),
                                        "ends_at": _at(3, 18)}, token=manager["token"]), 403, "store_forbidden")
    _problem(await _delete(kit, f"/shifts/{theirs['id']}", manager["token"]), 403, "store_forbidden")
    _problem(await kit.get("/shifts", token=manager["token"], params={"store_id": store_2}), 403, "store_forbidden")
    listed = (await kit.get("/shifts", token=manager["token"])).json()["items"]
    assert [s["id"] for s in listed] == [mine["id"]]
    _problem(await _delete(kit, f"/shifts/{mine['id']}", therapist["token"]), 403, "permission_denied")
    all_shifts = (await kit.get("/shifts")).json()["items"]
    assert {s["id"] for s in all_shifts} == {mine["id"], theirs["id"]}

    other = await new_tenant(client)
    foreign_store = await other.store()
    foreign_staff = await other.staff(["therapist"], [foreign_store])
    foreign = await _shift(other, foreign_staff["id"], foreign_store, _at(2, 9), _at(2, 18))
    _problem(await _delete(kit, f"/shifts/{foreign['id']}"), 404, "shift_not_found")
    assert len((await other.get("/shifts")).json()["items"]) == 1


async def test_a_shift_with_appointments_is_not_deleted(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    shift = await _shift(kit, therapist["id"], store_1, _at(2, 9), _at(2, 18))
    appointment_id = await _book(kit, store_1, therapist["id"], _at(2, 10), _at(2, 11))
    problem = _problem(await _delete(kit, f"/shifts/{shift['id']}"), 409, "shift_has_appointments")
    assert problem["appointment_ids"] == [appointment_id]
    assert len((await kit.get("/shifts")).json()["items"]) == 1


# ---------------------------------------------------------------- weekly shift patterns


async def test_pattern_create_list_update_and_exceptions(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    start = _day(1)
    r = await kit.post("/shift-patterns", {"staff_id": therapist["id"], "store_id": store_1, "weekdays": [5, 1, 3],
                                           "starts": "09:00", "ends": "18:00", "valid_from": start.isoformat()})
    assert r.status_code == 201, r.text
    day_shift = r.json()
    assert day_shift["weekdays"] == [1, 3, 5] and (day_shift["starts"], day_shift["ends"]) == ("09:00", "18:00")
    assert day_shift["overnight"] is False and day_shift["valid_until"] is None and day_shift["exceptions"] == []
    r = await kit.post("/shift-patterns", {"staff_id": therapist["id"], "store_id": store_1, "weekdays": [6],
                                           "starts": "22:00", "ends": "06:00", "valid_from": start.isoformat(),
                                           "valid_until": (start + timedelta(days=60)).isoformat()})
    night = r.json()
    assert r.status_code == 201 and night["overnight"] is True

    listed = (await kit.get("/shift-patterns", params={"store_id": store_1})).json()["items"]
    assert [p["id"] for p in listed] == [day_shift["id"], night["id"]]
    assert (await kit.get("/shift-patterns", params={"staff_id": therapist["id"]},
                          token=therapist["token"])).status_code == 200

    monday = start + timedelta(days=(7 - start.weekday()) % 7)
    r = await kit.post(f"/shift-patterns/{day_shift['id']}/exceptions", {"day": monday.isoformat(), "reason": "培训"})
    assert r.status_code == 201, r.text
    assert r.json()["day"] == monday.isoformat() and r.json()["pattern_id"] == day_shift["id"]
    _problem(await kit.post(f"/shift-patterns/{day_shift['id']}/exceptions", {"day": monday.isoformat()}), 409,
             "shift_exception_exists")
    tuesday = monday + timedelta(days=1)
    _problem(await kit.post(f"/shift-patterns/{day_shift['id']}/exceptions", {"day": tuesday.isoformat()}), 422,
             "validation_error", "day")
    got = (await kit.get(f"/shift-patterns/{day_shift['id']}")).json()
    assert [(e["day"], e["reason"]) for e in got["exceptions"]] == [(monday.isoformat(), "培训")]

    r = await _delete(kit, f"/shift-patterns/{day_shift['id']}/exceptions/{monday.isoformat()}")
    assert r.status_code == 204, r.text
    _problem(await _delete(kit, f"/shift-patterns/{day_shift['id']}/exceptions/{monday.isoformat()}"), 404,
             "shift_exception_not_found")
    _problem(await _delete(kit, f"/shift-patterns/{day_shift['id']}/exceptions/2026-13-01"), 422,
             "validation_error", "day")
    _problem(await _delete(kit, f"/shift-patterns/{day_shift['id']}/exceptions/1900-01-01"), 422,
             "validation_error", "day")
    assert (await kit.get(f"/shift-patterns/{day_shift['id']}")).json()["exceptions"] == []

    until = (start + timedelta(days=30)).isoformat()
    r = await _patch(kit, f"/shift-patterns/{day_shift['id']}", {"valid_until": until})
    assert r.status_code == 200 and r.json()["valid_until"] == until and r.json()["active"] is True
    r = await _patch(kit, f"/shift-patterns/{day_shift['id']}", {"active": False, "valid_until": None})
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["valid_until"] is None
    active = (await kit.get("/shift-patterns", params={"active": "true"})).json()["items"]
    assert [p["id"] for p in active] == [night["id"]]
    assert await _audit_actions(kit, day_shift["id"]) == [
        "shift_pattern.update", "shift_pattern.update", "shift_exception.delete", "shift_exception.create",
        "shift_pattern.create"]


async def test_pattern_bad_input_is_refused_and_writes_nothing(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    base = {"staff_id": therapist["id"], "store_id": store_1, "weekdays": [1, 2], "starts": "09:00", "ends": "18:00",
            "valid_from": _day(1).isoformat()}
    for change, field in [({"weekdays": [1, 8]}, "weekdays.1"), ({"weekdays": [0]}, "weekdays.0"),
                          ({"weekdays": []}, "weekdays"), ({"weekdays": [1, 1]}, "weekdays"),
                          ({"weekdays": ["1"]}, "weekdays.0"), ({"starts": "9:00"}, "starts"),
                          ({"starts": "24:00"}, "starts"), ({"ends": "18:00:00"}, "ends"), ({"ends": 1800}, "ends"),
                          ({"valid_from": "1900-01-01"}, "valid_from"), ({"valid_from": "2026-02-30"}, "valid_from"),
                          ({"valid_until": _day(-1).isoformat()}, "valid_until"),
                          ({"valid_until": _day(365 * 5).isoformat()}, "valid_until"),
                          ({"store_id": store_2}, "staff_id")]:
        _problem(await kit.post("/shift-patterns", base | change), 422, "validation_error", field)
    _problem(await kit.post("/shift-patterns", base | {"store_id": store_2}, token=manager["token"]), 403,
             "store_forbidden")
    assert (await kit.get("/shift-patterns")).json()["items"] == []

    pattern = (await kit.post("/shift-patterns", base)).json()
    for change, field in [({"valid_until": _day(0).isoformat()}, "valid_until"), ({"active": None}, "active"),
                          ({"weekdays": [3]}, "weekdays")]:
        _problem(await _patch(kit, f"/shift-patterns/{pattern['id']}", change), 422, "validation_error", field)
    _problem(await kit.post(f"/shift-patterns/{pattern['id']}/exceptions", {"day": "1900-01-01"}), 422,
             "validation_error", "day")
    got = (await kit.get(f"/shift-patterns/{pattern['id']}")).json()
    assert got["valid_until"] is None and got["active"] is True and got["exceptions"] == []

    other = await new_tenant(client)
    _problem(await _patch(other, f"/shift-patterns/{pattern['id']}", {"active": False}), 404,
             "shift_pattern_not_found")
    _problem(await other.post(f"/shift-patterns/{pattern['id']}/exceptions", {"day": _day(7).isoformat()}), 404,
             "shift_pattern_not_found")
    _problem(await other.get(f"/shift-patterns/{pattern['id']}"), 404, "shift_pattern_not_found")


# ---------------------------------------------------------------- time off


async def test_time_off_create_list_and_delete(client):
    kit, store_1, _, therapist, manager = await _chain(client)
    r = await kit.post("/time-off", {"staff_id": therapist["id"], "kind": "leave", "starts_at": _at(3, 0),
                                     "ends_at": _at(5, 0), "reason": "年假"}, token=manager["token"])
    assert r.status_code == 201, r.text
    leave = r.json()
    assert (leave["kind"], leave["reason"]) == ("leave", "年假")
    assert _instant(leave["starts_at"]) == _instant(_at(3, 0))
    r = await kit.post("/time-off", {"staff_id": therapist["id"], "kind": "break", "starts_at": _at(2, 12),
                                     "ends_at": _at(2, 13)})
    lunch = r.json()
    listed = (await kit.get("/time-off", params={"staff_id": therapist["id"], "from": _at(0, 0),
                                                 "to": _at(10, 0)}, token=therapist["token"])).json()
    assert [t["id"] for t in listed["items"]] == [lunch["id"], leave["id"]]
    assert [t["id"] for t in (await kit.get("/time-off", token=manager["token"])).json()["items"]] == [
        lunch["id"], leave["id"]]
    inside = (await kit.get("/time-off", params={"from": _at(4, 0), "to": _at(4, 12)})).json()["items"]
    assert [t["id"] for t in inside] == [leave["id"]]
    r = await _delete(kit, f"/time-off/{lunch['id']}", manager["token"])
    assert r.status_code == 204, r.text
    _problem(await _delete(kit, f"/time-off/{lunch['id']}"), 404, "time_off_not_found")
    assert await _audit_actions(kit, lunch["id"]) == ["time_off.delete", "time_off.create"]


async def test_time_off_bad_input_and_scope(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    base = {"staff_id": therapist["id"], "kind": "break", "starts_at": _at(2, 12), "ends_at": _at(2, 13)}
    for change, field in [({"kind": "vacation"}, "kind"), ({"ends_at": _at(2, 11)}, "ends_at"),
                          ({"ends_at": _at(3, 13)}, "ends_at"),  # a break over 24 hours
                          ({"kind": "leave", "ends_at": _at(400, 13)}, "ends_at"),
                          ({"starts_at": "1900-05-01T12:00:00+08:00"}, "starts_at"),
                          ({"staff_id": str(uuid.uuid4())}, "staff_id"), ({"reason": ""}, "reason")]:
        _problem(await kit.post("/time-off", base | change), 422, "validation_error", field)
    elsewhere = await kit.staff(["therapist"], [store_2])
    _problem(await kit.post("/time-off", base | {"staff_id": elsewhere["id"]}, token=manager["token"]), 403,
             "store_forbidden")
    _problem(await kit.get("/time-off", params={"staff_id": elsewhere["id"]}, token=manager["token"]), 403,
             "store_forbidden")
    _problem(await kit.get("/time-off", params={"from": _at(0, 0), "to": _at(365 * 5, 0)}), 422,
             "validation_error", "to")
    assert (await kit.get("/time-off")).json()["items"] == []

    theirs = (await kit.post("/time-off", base | {"staff_id": elsewhere["id"]})).json()
    _problem(await _delete(kit, f"/time-off/{theirs['id']}", manager["token"]), 403, "store_forbidden")
    assert [t["id"] for t in (await kit.get("/time-off", token=manager["token"])).json()["items"]] == []
    other = await new_tenant(client)
    _problem(await _delete(other, f"/time-off/{theirs['id']}"), 404, "time_off_not_found")
    assert len((await kit.get("/time-off")).json()["items"]) == 1


# ---------------------------------------------------------------- store hours and closed days


async def test_store_hours_replace_the_week(client):
    kit, store_1, _, therapist, _ = await _chain(client)
    r = await kit.get(f"/stores/{store_1}/hours")
    assert r.status_code == 200 and r.json() == {"store_id": store_1, "timezone": "Asia/Shanghai", "hours": []}
    week = [{"weekday": 5, "opens": "10:00", "closes": "02:00"},  # Friday night past midnight
            {"weekday": 1, "opens": "14:00", "closes": "21:00"},
            {"weekday": 1, "opens": "09:00", "closes": "12:00"},  # a lunch break between
            {"weekday": 6, "opens": "02:00", "closes": "10:00"}]  # starts as Friday's night ends
    r = await _put(kit, f"/stores/{store_1}/hours", {"hours": week})
    assert r.status_code == 200, r.text
    assert [(h["weekday"], h["opens"], h["closes"]) for h in r.json()["hours"]] == [
        (1, "09:00", "12:00"), (1, "14:00", "21:00"), (5, "10:00", "02:00"), (6, "02:00", "10:00")]
    assert (await kit.get(f"/stores/{store_1}/hours", token=therapist["token"])).json() == r.json()

    r = await _put(kit, f"/stores/{store_1}/hours", {"hours": [{"weekday": 7, "opens": "08:00", "closes": "08:00"}]})
    assert r.status_code == 200 and r.json()["hours"] == [{"weekday": 7, "opens": "08:00", "closes": "08:00"}]
    assert (await _put(kit, f"/stores/{store_1}/hours", {"hours": []})).json()["hours"] == []
    assert await _audit_actions(kit, store_1) == ["store_hours.set"] * 3 + ["store.create"]


async def test_store_hours_bad_input_keeps_the_old_week(client):
    kit, store_1, store_2, _, manager = await _chain(client)
    week = [{"weekday": 1, "opens": "09:00", "closes": "18:00"}]
    await _put(kit, f"/stores/{store_1}/hours", {"hours": week})
    for hours, field in [
        ([{"weekday": 1, "opens": "09:00", "closes": "12:00"}, {"weekday": 1, "opens": "11:00", "closes": "15:00"}],
         "hours"),  # overlap within a day
        ([{"weekday": 1, "opens": "20:00", "closes": "03:00"}, {"weekday": 2, "opens": "02:00", "closes": "10:00"}],
         "hours"),  # Monday's night runs into Tuesday's morning
        ([{"weekday": 7, "opens": "20:00", "closes": "03:00"}, {"weekday": 1, "opens": "01:00", "closes": "10:00"}],
         "hours"),  # Sunday night into Monday, round the week
        ([{"weekday": 8, "opens": "09:00", "closes": "18:00"}], "hours.0.weekday"),
        ([{"weekday": 1, "opens": "9am", "closes": "18:00"}], "hours.0.opens"),
        ([{"weekday": 1, "opens": "09:00"}], "hours.0.closes"),
        ("Mon-Fri 9-6", "hours"),
    ]:
        _problem(await _put(kit, f"/stores/{store_1}/hours", {"hours": hours}), 422, "validation_error", field)
    _problem(await _put(kit, f"/stores/{store_2}/hours", {"hours": week}, manager["token"]), 403, "store_forbidden")
    other = await new_tenant(client)
    _problem(await _put(other, f"/stores/{store_1}/hours", {"hours": []}), 404, "store_not_found")
    _problem(await other.get(f"/stores/{store_1}/hours"), 404, "store_not_found")
    assert (await kit.get(f"/stores/{store_1}/hours")).json()["hours"] == week
    assert (await kit.get(f"/stores/{store_2}/hours")).json()["hours"] == []


async def test_store_closures(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    holiday, later = _day(20), _day(40)
    r = await kit.post(f"/stores/{store_1}/closures", {"day": holiday.isoformat(), "reason": "春节休息"},
                       token=manager["token"])
    assert r.status_code == 201, r.text
    assert (r.json()["day"], r.json()["reason"], r.json()["store_id"]) == (holiday.isoformat(), "春节休息", store_1)
    await kit.post(f"/stores/{store_1}/closures", {"day": later.isoformat()})
    _problem(await kit.post(f"/stores/{store_1}/closures", {"day": holiday.isoformat()}), 409, "store_closure_exists",
             "day")
    r = await kit.post(f"/stores/{store_2}/closures", {"day": holiday.isoformat()})  # another store: its own day
    assert r.status_code == 201, r.text

    listed = (await kit.get(f"/stores/{store_1}/closures", token=therapist["token"])).json()
    assert [c["day"] for c in listed["items"]] == [holiday.isoformat(), later.isoformat()]
    page = (await kit.get(f"/stores/{store_1}/closures", params={"limit": 1})).json()
    rest = (await kit.get(f"/stores/{store_1}/closures", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [c["day"] for c in page["items"] + rest["items"]] == [holiday.isoformat(), later.isoformat()]
    window = (await kit.get(f"/stores/{store_1}/closures", params={"from": _day(30).isoformat()})).json()["items"]
    assert [c["day"] for c in window] == [later.isoformat()]

    for body, field in [({"day": "1900-01-01"}, "day"), ({"day": _day(365 * 3).isoformat()}, "day"),
                        ({"day": "2026/12/25"}, "day"), ({}, "day"), ({"day": holiday.isoformat(), "reason": ""},
                                                                       "reason")]:
        _problem(await kit.post(f"/stores/{store_1}/closures", body), 422, "validation_error", field)
    _problem(await kit.post(f"/stores/{store_2}/closures", {"day": later.isoformat()}, token=manager["token"]), 403,
             "store_forbidden")
    _problem(await _delete(kit, f"/stores/{store_2}/closures/{holiday.isoformat()}", manager["token"]), 403,
             "store_forbidden")

    r = await _delete(kit, f"/stores/{store_1}/closures/{holiday.isoformat()}", manager["token"])
    assert r.status_code == 204, r.text
    _problem(await _delete(kit, f"/stores/{store_1}/closures/{holiday.isoformat()}"), 404, "store_closure_not_found")
    _problem(await _delete(kit, f"/stores/{store_1}/closures/christmas"), 422, "validation_error", "day")
    other = await new_tenant(client)
    _problem(await _delete(other, f"/stores/{store_1}/closures/{later.isoformat()}"), 404, "store_not_found")
    assert [c["day"] for c in (await kit.get(f"/stores/{store_1}/closures")).json()["items"]] == [later.isoformat()]
    assert len((await kit.get(f"/stores/{store_2}/closures")).json()["items"]) == 1


# ---------------------------------------------------------------- booking policy

POLICY = {"slot_step_minutes": 30, "lead_time_minutes": 120, "horizon_days": 60, "cancel_window_hours": 24,
          "late_cancel_action": "fee", "late_cancel_fee": 5000, "no_show_action": "deduct_session", "no_show_fee": 0,
          "reminder_hours_before": 12, "follow_up_hours_after": 48}


async def test_booking_policy_defaults_then_replaced(client):
    kit, store_1, store_2, therapist, manager = await _chain(client)
    r = await kit.get(f"/stores/{store_1}/booking-policy", token=therapist["token"])
    assert r.status_code == 200, r.text
    assert r.json() | {} == {"store_id": store_1, "slot_step_minutes": 15, "lead_time_minutes": 30,
                             "horizon_days": 30, "cancel_window_hours": 2, "late_cancel_action": "none",
                             "late_cancel_fee": 0, "no_show_action": "none", "no_show_fee": 0,
                             "reminder_hours_before": 24, "follow_up_hours_after": 24, "is_default": True,
                             "updated_at": None}
    r = await _put(kit, f"/stores/{store_1}/booking-policy", POLICY, manager["token"])
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in POLICY} == POLICY and r.json()["is_default"] is False
    assert _instant(r.json()["updated_at"])
    assert (await kit.get(f"/stores/{store_1}/booking-policy")).json() == r.json()
    r = await _put(kit, f"/stores/{store_1}/booking-policy", POLICY | {"slot_step_minutes": 5})
    assert r.json()["slot_step_minutes"] == 5
    assert (await kit.get(f"/stores/{store_2}/booking-policy")).json()["is_default"] is True
    _problem(await _put(kit, f"/stores/{store_2}/booking-policy", POLICY, manager["token"]), 403, "store_forbidden")
    _problem(await _put(kit, f"/stores/{store_1}/booking-policy", POLICY, therapist["token"]), 403,
             "permission_denied")
    assert await _audit_actions(kit, store_1) == ["booking_policy.set"] * 2 + ["store.create"]


async def test_booking_policy_bad_input_changes_nothing(client):
    kit, store_1, _, _, _ = await _chain(client)
    for change, field in [({"slot_step_minutes": 4}, "slot_step_minutes"),
                          ({"slot_step_minutes": 241}, "slot_step_minutes"),
                          ({"horizon_days": 0}, "horizon_days"), ({"horizon_days": 366}, "horizon_days"),
                          ({"lead_time_minutes": -1}, "lead_time_minutes"),
                          ({"lead_time_minutes": 10 * 1440, "horizon_days": 10}, "horizon_days"),
                          ({"late_cancel_action": "refund"}, "late_cancel_action"),
                          ({"late_cancel_fee": -1}, "late_cancel_fee"),
                          ({"late_cancel_fee": 0}, "late_cancel_fee"),  # a fee action with no fee
                          ({"no_show_fee": 10**12}, "no_show_fee"), ({"no_show_fee": 99.5}, "no_show_fee"),
                          ({"cancel_window_hours": "2"}, "cancel_window_hours"),
                          ({"reminder_hours_before": 10_000}, "reminder_hours_before")]:
        _problem(await _put(kit, f"/stores/{store_1}/booking-policy", POLICY | change), 422, "validation_error",
                 field)
    partial = {k: v for k, v in POLICY.items() if k != "no_show_action"}
    _problem(await _put(kit, f"/stores/{store_1}/booking-policy", partial), 422, "validation_error", "no_show_action")
    assert (await kit.get(f"/stores/{store_1}/booking-policy")).json()["is_default"] is True
    other = await new_tenant(client)
    _problem(await _put(other, f"/stores/{store_1}/booking-policy", POLICY), 404, "store_not_found")
    _problem(await other.get(f"/stores/{store_1}/booking-policy"), 404, "store_not_found")
