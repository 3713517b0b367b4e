"""Appointments over HTTP: booking (one service and multi-service visits), reschedule, cancel with its
policy, check-in, no-show, completion through the cards capability's completion service, the status
history, the outbox events, who may do what, and bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from app.core.actor import Actor
from app.core.errors import Conflict
from app.domain.booking import appointments as service
from app.domain.booking.schemas import AppointmentNoShow, AppointmentReschedule
from tests.booking.appointment_helpers import (
    add_rooms,
    add_therapists,
    holds_of,
    make_service,
    make_shop,
    schedule,
    set_policy,
)
from tests.cards.helpers import (
    assert_problem,
    events,
    in_tenant,
    issue,
    ledger_rows,
    make_member,
    make_template,
    new_phone,
    row_counts,
)
from tests.factories import new_tenant
from tests.members.helpers import patient_token

WRITTEN = ("appointments", "appointment_holds", "appointment_status_history", "service_records", "commissions",
           "card_ledger", "outbox")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def history(shop, appointment_id: str) -> list[dict]:
    r = await shop.kit.get(f"/appointments/{appointment_id}/history")
    assert r.status_code == 200, r.text
    return r.json()["items"]


# ---------------------------------------------------------------- booking


async def test_booking_takes_the_therapist_and_a_room_and_announces_itself(client):
    shop = await make_shop(client, rooms=2, buffer=15)
    r = await shop.book(shop.at(10), channel="phone", notes="左肩酸痛")
    assert r.status_code == 201, r.text
    booked = r.json()
    assert booked["status"] == "booked" and booked["channel"] == "phone" and booked["notes"] == "左肩酸痛"
    assert parse(booked["starts_at"]) == shop.at(10) and parse(booked["ends_at"]) == shop.at(11)
    assert parse(booked["blocked_until"]) == shop.at(11, 15)  # the cleanup buffer
    assert booked["visit_id"] == booked["id"] and booked["schedule_version"] == 1
    assert len(booked["resource_ids"]) == 1 and booked["resource_ids"][0] in shop.rooms
    assert [a["id"] for a in booked["appointments"]] == [booked["id"]]
    assert await holds_of(booked["id"]) == [("staff", shop.therapists[0], True),
                                            ("resource", booked["resource_ids"][0], True)]

    got = (await shop.kit.get(f"/appointments/{booked['id']}")).json()
    assert {k: got[k] for k in ("status", "resource_ids", "staff_id", "member_id")} == \
        {k: booked[k] for k in ("status", "resource_ids", "staff_id", "member_id")}
    assert [(h["from_status"], h["to_status"]) for h in await history(shop, booked["id"])] == [(None, "booked")]

    (topic, payload), = await events(shop.tenant_id, "appointment.booked")
    assert payload["appointment_id"] == booked["id"] and payload["store_id"] == shop.store
    assert payload["resource_ids"] == booked["resource_ids"] and payload["schedule_version"] == 1
    reminders = await reminder_times(shop)
    assert reminders == [(shop.at(10) - timedelta(hours=24), 1)]

    # The therapist is taken (staff_busy), the other room is not: another therapist gets it.
    r = await shop.book(shop.at(10, 30), member=await make_member(shop.kit))
    problem = assert_problem(r, 409, "staff_busy")
    assert problem["conflict"] == {"kind": "staff", "id": shop.therapists[0]}
    other = await shop.booked(shop.at(10, 30), staff=shop.therapists[1], member=await make_member(shop.kit))
    assert other["resource_ids"] != booked["resource_ids"]
    # Both rooms taken: a third therapist finds none (the first room's buffer runs to 11:15).
    third = (await add_therapists(shop.tenant_id, shop.store, 1, [shop.massage]))[0]
    assert_problem(await shop.book(shop.at(11), staff=third), 409, "resource_unavailable")
    assert (await shop.book(shop.at(11, 15), staff=third)).status_code == 201


async def reminder_times(shop) -> list[tuple[datetime, int]]:
    from tests.cards.helpers import owner_sql

    rows = await owner_sql("SELECT available_at, payload FROM outbox WHERE tenant_id = :t AND topic = "
                           "'appointment.reminder_due' ORDER BY id", t=shop.tenant_id)
    return [(at, payload["schedule_version"]) for at, payload in rows]


async def test_a_booking_less_than_a_reminder_ahead_gets_no_reminder(client):
    shop = await make_shop(client, days_ahead=0)
    # The next whole hour at least an hour away that is in opening hours: always less than a day ahead.
    start = (datetime.now(shop.tz) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    if start.hour < 8:
        start = start.replace(hour=8)
    elif start.hour > 20:
        start = (start + timedelta(days=1)).replace(hour=8)
    await set_policy(shop, reminder_hours_before=24)
    await shop.booked(start, service=shop.consult)
    assert await reminder_times(shop) == []


async def test_any_therapist_when_none_is_named(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    first = await shop.booked(shop.at(9), staff=None)
    second = await shop.booked(shop.at(9), staff=None, member=await make_member(shop.kit))
    assert {first["staff_id"], second["staff_id"]} == set(shop.therapists)
    assert_problem(await shop.book(shop.at(9), staff=None, member=await make_member(shop.kit)), 409, "staff_busy")


async def test_a_multi_service_visit_is_back_to_back_and_all_or_nothing(client):
    shop = await make_shop(client, therapists=2, rooms=1, buffer=15)
    first, second = shop.therapists
    body = shop.body(shop.at(14), staff=None, service=None)
    body.pop("service_id")
    body["services"] = [{"service_id": shop.massage, "staff_id": first},
                        {"service_id": shop.consult, "staff_id": second}]
    r = await shop.kit.post("/appointments", body)
    assert r.status_code == 201, r.text
    visit = r.json()["appointments"]
    assert r.json()["id"] == visit[0]["id"]
    assert [a["service_id"] for a in visit] == [shop.massage, shop.consult]
    assert {a["visit_id"] for a in visit} == {visit[0]["id"]}
    # The second begins when the first's time, cleanup included, is over.
    assert parse(visit[1]["starts_at"]) == parse(visit[0]["blocked_until"]) == shop.at(15, 15)
    assert visit[1]["resource_ids"] == [] and len(visit[0]["resource_ids"]) == 1

    # The same visit right after: the second therapist is busy at 16:30, so nothing at all is booked.
    await shop.booked(shop.at(16, 30), staff=second, service=shop.consult, member=await make_member(shop.kit))
    body["starts_at"] = shop.iso(15, 15)
    body["member_id"] = await make_member(shop.kit)
    before = await row_counts(shop.tenant_id, *WRITTEN)
    problem = assert_problem(await shop.kit.post("/appointments", body), 409, "staff_busy")
    assert problem["service_index"] == 1 and problem["conflict"] == {"kind": "staff", "id": second}
    assert await row_counts(shop.tenant_id, *WRITTEN) == before


# ---------------------------------------------------------------- reschedule


async def test_reschedule_moves_the_holds_and_a_refused_move_changes_nothing(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    first, second = shop.therapists
    booked = await shop.booked(shop.at(10))
    blocker = await shop.booked(shop.at(13), staff=first, member=await make_member(shop.kit))

    # Overlapping its own old time is fine: the old holds are released in the same step.
    r = await shop.act(booked["id"], "reschedule", {"starts_at": shop.iso(10, 30)})
    assert r.status_code == 200, r.text
    moved = r.json()
    assert parse(moved["starts_at"]) == shop.at(10, 30) and moved["schedule_version"] == 2
    holds = await holds_of(booked["id"])
    assert [(k, a) for k, _, a in holds] == [("staff", False), ("resource", False), ("staff", True),
                                             ("resource", True)]
    assert moved["resource_ids"] == [holds[3][1]]

    before = await row_counts(shop.tenant_id, *WRITTEN)
    problem = assert_problem(await shop.act(booked["id"], "reschedule", {"starts_at": shop.iso(12, 30)}), 409,
                             "staff_busy")
    assert problem["conflict"]["id"] == first
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    assert [a for _, _, a in await holds_of(booked["id"])] == [False, False, True, True]
    assert parse((await shop.kit.get(f"/appointments/{booked['id']}")).json()["starts_at"]) == shop.at(10, 30)

    # To another therapist at the blocker's time.
    r = await shop.act(booked["id"], "reschedule", {"starts_at": shop.iso(13), "staff_id": second})
    assert r.status_code == 200, r.text
    assert r.json()["staff_id"] == second and r.json()["schedule_version"] == 3
    assert blocker["status"] == "booked"
    changes = await history(shop, booked["id"])
    assert [c["to_status"] for c in changes] == ["booked"] * 3
    assert changes[2]["details"]["previous_staff_id"] == first
    moves = [p for _, p in await events(shop.tenant_id, "appointment.rescheduled")]
    assert [m["schedule_version"] for m in moves] == [2, 3]
    assert parse(moves[0]["previous_starts_at"]) == shop.at(10)
    assert [v for _, v in await reminder_times(shop)] == [1, 1, 2, 3]


async def test_a_refused_reschedule_keeps_the_old_booking_for_a_caller_that_goes_on(client):
    """Directly through the service, inside one transaction that continues after the refusal."""
    shop = await make_shop(client, therapists=1, rooms=1)
    booked = await shop.booked(shop.at(10))
    await shop.booked(shop.at(12), member=await make_member(shop.kit))
    async with in_tenant(shop.tenant_id) as session:
        actor = Actor.system(shop.tenant_id)
        try:
            await service.reschedule(session, actor, UUID(booked["id"]),
                                     AppointmentReschedule(starts_at=shop.iso(11, 30)))
        except Conflict as exc:
            assert exc.code == "staff_busy"
        else:
            raise AssertionError("the move into a busy time was accepted")
        appointment = await service.get(session, actor, UUID(booked["id"]))
        assert appointment.starts_at == shop.at(10) and appointment.schedule_version == 1
    assert [a for _, _, a in await holds_of(booked["id"])] == [True, True]


# ---------------------------------------------------------------- cancel and its policy


async def test_cancelling_frees_the_slot_and_offers_it(client):
    shop = await make_shop(client, rooms=1)
    booked = await shop.booked(shop.at(10))
    other = await make_member(shop.kit)
    assert_problem(await shop.book(shop.at(10), member=other), 409, "staff_busy")
    r = await shop.act(booked["id"], "cancel", {"reason": "临时出差"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "临时出差"
    assert r.json()["resource_ids"] == booked["resource_ids"]  # what it had occupied
    assert [a for _, _, a in await holds_of(booked["id"])] == [False, False]
    assert (await shop.book(shop.at(10), member=other)).status_code == 201

    (_, payload), = await events(shop.tenant_id, "appointment.cancelled")
    assert {k: payload[k] for k in ("store_id", "service_id", "staff_id")} == \
        {"store_id": shop.store, "service_id": shop.massage, "staff_id": shop.therapists[0]}
    assert parse(payload["starts_at"]) == shop.at(10) and payload["late"] is False
    assert payload["penalty"] == {"action": "none"}
    # Cancelled is final.
    assert_problem(await shop.act(booked["id"], "cancel"), 409, "invalid_status")


async def test_a_late_cancel_applies_the_store_policy(client):
    shop = await make_shop(client, rooms=3, days_ahead=2)
    await set_policy(shop, cancel_window_hours=24 * 7, late_cancel_action="fee", late_cancel_fee=5000)
    fee = await shop.booked(shop.at(9))
    r = await client.post(f"/api/v1/appointments/{fee['id']}/cancel", headers=shop.kit.auth())  # no body at all
    assert r.status_code == 200, r.text
    change = (await history(shop, fee["id"]))[-1]
    assert change["details"] == {"late": True, "penalty": {"action": "fee", "amount": 5000}}

    waived = await shop.booked(shop.at(11))
    await shop.act(waived["id"], "cancel", {"waive_penalty": True, "reason": "技师病假"})
    assert (await history(shop, waived["id"]))[-1]["details"]["penalty"] == {"action": "waived"}

    await set_policy(shop, late_cancel_action="deduct_session")
    requested = await shop.booked(shop.at(13))
    await shop.act(requested["id"], "cancel")
    penalty = (await history(shop, requested["id"]))[-1]["details"]["penalty"]
    assert penalty["action"] == "deduct_session" and penalty["requested"] and not penalty["deducted"]

    template = await make_template(shop.kit, kind="count", price=30000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": 2}])
    card = await issue(shop.kit, shop.member, template, shop.store, 30000)
    deducted = await shop.booked(shop.at(15))
    r = await shop.act(deducted["id"], "cancel", {"card_id": card["id"]})
    assert r.status_code == 200, r.text
    penalty = (await history(shop, deducted["id"]))[-1]["details"]["penalty"]
    assert penalty["deducted"] and penalty["card_id"] == card["id"] and penalty["card_remaining"] == 1
    entry = (await ledger_rows(shop.tenant_id, card["id"]))[-1]
    assert (entry.kind, entry.ref_type, entry.ref_id) == ("deduct", "appointment_penalty", deducted["id"])
    # Not late (outside the window): no policy at all.
    await set_policy(shop, cancel_window_hours=1)
    early = await shop.booked(shop.at(17))
    await shop.act(early["id"], "cancel", {"card_id": card["id"]})
    assert (await history(shop, early["id"]))[-1]["details"] == {"late": False, "penalty": {"action": "none"}}


# ---------------------------------------------------------------- check-in, no-show, complete


async def test_status_transitions(client):
    shop = await make_shop(client, rooms=2)
    a = await shop.booked(shop.at(9))
    r = await shop.act(a["id"], "check-in")
    assert r.status_code == 200 and r.json()["status"] == "checked_in"
    for action, body in (("check-in", None), ("reschedule", {"starts_at": shop.iso(15)}), ("no-show", None)):
        problem = assert_problem(await shop.act(a["id"], action, body), 409, "invalid_status")
        assert problem["current_status"] == "checked_in"
    r = await shop.act(a["id"], "complete", {"notes": "手法偏轻"})
    assert r.status_code == 200, r.text
    for action in ("cancel", "complete", "check-in", "no-show"):
        assert_problem(await shop.act(a["id"], action), 409, "invalid_status")
    assert [(c["from_status"], c["to_status"]) for c in await history(shop, a["id"])] == \
        [(None, "booked"), ("booked", "checked_in"), ("checked_in", "completed")]
    topics = [t for t, _ in await events(shop.tenant_id) if t.startswith("appointment.")]
    assert topics == ["appointment.booked", "appointment.reminder_due", "appointment.checked_in",
                      "appointment.completed"]
    # A completed appointment keeps its time: nothing else goes into it.
    assert [a for _, _, a in await holds_of(a["id"])] == [True, True]
    assert_problem(await shop.book(shop.at(9), member=await make_member(shop.kit)), 409, "staff_busy")


async def test_no_show_is_explicit_and_only_after_the_start(client):
    shop = await make_shop(client, rooms=1)
    await set_policy(shop, no_show_action="fee", no_show_fee=8000)
    a = await shop.booked(shop.at(10))
    problem = assert_problem(await shop.act(a["id"], "no-show"), 409, "not_started")
    assert parse(problem["starts_at"]) == shop.at(10)
    # Once the start has passed (the clock moved on):
    async with in_tenant(shop.tenant_id) as session:
        done = await service.no_show(session, Actor.system(shop.tenant_id), UUID(a["id"]),
                                     AppointmentNoShow(reason="电话未接"), now=shop.at(10, 20))
        assert done.status == "no_show"
    assert [a for _, _, a in await holds_of(a["id"])] == [False, False]
    change = (await history(shop, a["id"]))[-1]
    assert (change["from_status"], change["to_status"], change["reason"]) == ("booked", "no_show", "电话未接")
    assert change["details"]["penalty"] == {"action": "fee", "amount": 8000}
    (_, payload), = await events(shop.tenant_id, "appointment.no_show")
    assert payload["penalty"]["amount"] == 8000


async def test_complete_deducts_a_card_session_or_changes_nothing(client):
    shop = await make_shop(client, rooms=2)
    template = await make_template(shop.kit, kind="count", price=20000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": 1}])
    card = await issue(shop.kit, shop.member, template, shop.store, 20000)
    first = await shop.booked(shop.at(9))
    r = await shop.act(first["id"], "complete", {"card_id": card["id"], "notes": "肩颈放松"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and done["card_remaining"] == 0 and done["notes"] == "肩颈放松"
    record = (await shop.kit.get(f"/service-records/{done['service_record_id']}")).json()
    assert record["appointment_id"] == first["id"] and record["card_id"] == card["id"]
    assert record["staff_id"] == shop.therapists[0]
    got = (await shop.kit.get(f"/appointments/{first['id']}")).json()
    assert got["status"] == "completed" and got["service_record_id"] == done["service_record_id"]
    (_, completed), = [e for e in await events(shop.tenant_id, "service.completed")]
    assert completed["service_record_id"] == done["service_record_id"]

    second = await shop.booked(shop.at(11))
    before = await row_counts(shop.tenant_id, *WRITTEN)
    assert_problem(await shop.act(second["id"], "complete", {"card_id": card["id"]}), 409, "no_sessions_left")
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    assert (await shop.kit.get(f"/appointments/{second['id']}")).json()["status"] == "booked"
    # Without a card the service waits for checkout.
    r = await shop.act(second["id"], "complete")
    assert r.status_code == 200 and r.json()["card_id"] is None


# ---------------------------------------------------------------- who may do what


async def test_patients_book_for_themselves_and_their_family_only(client):
    shop = await make_shop(client, rooms=3)
    head, child, outsider = shop.member, await make_member(shop.kit, "小明"), await make_member(shop.kit, "路人")
    family = (await shop.kit.post("/families", {"name": "赵家", "head_member_id": head})).json()
    await shop.kit.post(f"/families/{family['id']}/members", {"member_id": child, "relation": "child"})
    head_token, child_token = patient_token(shop.kit, head), patient_token(shop.kit, child)

    own = await shop.booked(shop.at(9), token=head_token, channel="phone")
    assert own["channel"] == "mini_program"  # whatever the patient says
    for_child = await shop.booked(shop.at(9), token=head_token, member=child, staff=shop.therapists[1])
    assert for_child["member_id"] == child
    assert_problem(await shop.book(shop.at(11), token=head_token, member=outsider), 404, "member_not_found")
    assert_problem(await shop.book(shop.at(11), token=child_token, member=head), 404, "member_not_found")

    # The store's window binds patients: not sooner than the lead time, not beyond the horizon.
    soon = shop.at(10, day=datetime.now(shop.tz).date() + timedelta(days=1))
    await set_policy(shop, lead_time_minutes=3 * 24 * 60, horizon_days=30)
    assert_problem(await shop.book(soon, token=head_token, staff=shop.therapists[1]), 422, "too_soon")
    assert_problem(await shop.book(shop.at(10, day=shop.day + timedelta(days=40)), token=head_token), 422,
                   "beyond_horizon")
    # ... staff are not (a walk-in, a booking far ahead).
    assert (await shop.book(soon, staff=shop.therapists[1], member=outsider)).status_code == 201

    # A patient sees, lists, moves and cancels their own (and family's) appointments, nobody else's.
    assert (await shop.kit.get(f"/appointments/{for_child['id']}", token=head_token)).status_code == 200
    assert_problem(await shop.kit.get(f"/appointments/{own['id']}", token=child_token), 404, "appointment_not_found")
    listed = await shop.kit.get("/appointments", token=head_token, params={"member_id": head})
    assert [a["id"] for a in listed.json()["items"]] == [own["id"]]
    assert_problem(await shop.kit.get("/appointments", token=head_token), 422, "validation_error")
    await set_policy(shop, lead_time_minutes=30)
    r = await shop.act(own["id"], "reschedule", {"starts_at": shop.iso(12)}, token=head_token)
    assert r.status_code == 200, r.text
    assert_problem(await shop.act(own["id"], "cancel", {"waive_penalty": True}, token=head_token), 403)
    assert_problem(await shop.act(own["id"], "cancel", token=child_token), 404, "appointment_not_found")
    assert (await shop.act(own["id"], "cancel", {"reason": "有事"}, token=head_token)).status_code == 200
    # Check-in, no-show and completion are the store's.
    for action in ("check-in", "no-show", "complete"):
        assert_problem(await shop.act(for_child["id"], action, token=head_token), 401, "wrong_audience")


async def test_staff_need_the_permission_and_the_store(client):
    shop = await make_shop(client, rooms=2)
    other_store = await shop.kit.store("徐汇店")
    therapist = await shop.kit.staff(["therapist"], [shop.store])  # no appointments:write
    front_desk = await shop.kit.staff(["front_desk"], [shop.store])
    elsewhere = await shop.kit.staff(["front_desk"], [other_store])
    assert_problem(await shop.book(shop.at(9), token=therapist["token"]), 403, "permission_denied")
    assert_problem(await shop.book(shop.at(9), token=elsewhere["token"]), 403, "store_forbidden")
    booked = await shop.booked(shop.at(9), token=front_desk["token"])
    assert booked["channel"] == "front_desk"
    assert_problem(await shop.kit.get(f"/appointments/{booked['id']}", token=elsewhere["token"]), 403)
    assert_problem(await shop.act(booked["id"], "cancel", token=elsewhere["token"]), 403)
    assert (await shop.kit.get(f"/appointments/{booked['id']}", token=therapist["token"])).status_code == 200
    # The therapist may not book or check in, but completes the service (visits:complete).
    assert_problem(await shop.act(booked["id"], "check-in", token=therapist["token"]), 403)
    assert (await shop.act(booked["id"], "complete", token=therapist["token"])).status_code == 200
    listed = (await shop.kit.get("/appointments", token=elsewhere["token"])).json()["items"]
    assert listed == []  # another store's front desk sees none of this store's


# ---------------------------------------------------------------- bad input


async def test_bad_input_is_a_clear_4xx_naming_the_field(client):
    shop = await make_shop(client, rooms=1)
    other_store = await shop.kit.store("徐汇店")
    stranger = (await add_therapists(shop.tenant_id, other_store, 1, [shop.massage]))[0]
    foreign_room = (await add_rooms(shop.tenant_id, other_store, 1))[0]
    pinned = await make_service(shop.kit, "指定房间推拿", 60, requirements=[{"kind": "room",
                                                                     "resource_ids": [foreign_room]}])
    await schedule(shop.tenant_id, shop.store, shop.therapists, [pinned])
    elsewhere = await new_tenant(client)
    foreign_member = await make_member(elsewhere)
    before = await row_counts(shop.tenant_id, *WRITTEN)

    def field_of(problem: dict) -> set[str]:
        return {e["field"] for e in problem.get("errors") or []} | ({problem["field"]} if "field" in problem else set())

    cases = [
        (shop.body(shop.at(10), service="00000000-0000-4000-8000-000000000000"), 404, "service_not_found",
         "service_id"),
        (shop.body(shop.at(10), member=foreign_member), 404, "member_not_found", "member_id"),
        (shop.body(shop.at(10), staff=stranger), 422, "validation_error", "staff_id"),
        (shop.body("1900-01-01T10:00:00+08:00"), 422, "in_the_past", "starts_at"),
        (shop.body("2026-13-01T10:00:00+08:00"), 422, "validation_error", "starts_at"),
        (shop.body("2030-01-01T10:00:00"), 422, "validation_error", "starts_at"),  # no offset
        (shop.body(shop.at(10, day=shop.day + timedelta(days=5 * 365))), 422, "beyond_horizon", "starts_at"),
        (shop.body(shop.at(10)) | {"services": [{"service_id": shop.consult}]}, 422, "validation_error",
         "services"),
        ({k: v for k, v in shop.body(shop.at(10)).items() if k != "service_id"}, 422, "validation_error",
         "service_id"),
        (shop.body(shop.at(10)) | {"store_id": "00000000-0000-4000-8000-000000000000"}, 404, "store_not_found",
         "store_id"),
        (shop.body(shop.at(10)) | {"channel": "fax"}, 422, "validation_error", "channel"),
    ]
    for body, status, code, field in cases:
        r = await shop.kit.post("/appointments", {k: v for k, v in body.items() if v is not None})
        problem = assert_problem(r, status, code)
        assert field in field_of(problem), (body, problem)
    # Another store's room (through a service pinned to it): the slot has no usable room.
    problem = assert_problem(await shop.book(shop.at(10), service=pinned), 409, "resource_unavailable")
    assert problem["conflict"]["kind"] == "resource"
    # Another store as the booking's store, for staff of this one: the staff member does not work there.
    assert_problem(await shop.kit.post("/appointments", shop.body(shop.at(10)) | {"store_id": other_store}), 422)
    assert await row_counts(shop.tenant_id, *WRITTEN) == before

    r = await shop.kit.get("/appointments", params={"from": "2026-01-01T00:00:00+08:00",
                                                     "to": "2031-01-01T00:00:00+08:00"})
    assert "to" in field_of(assert_problem(r, 422, "validation_error"))
    r = await shop.kit.get("/appointments", params={"from": "2026-02-01T00:00:00+08:00",
                                                     "to": "2026-01-01T00:00:00+08:00"})
    assert "to" in field_of(assert_problem(r, 422, "validation_error"))


# ---------------------------------------------------------------- reading, and members' hooks


async def test_listing_filters_and_pages_by_start_time(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    made = [await shop.booked(shop.at(h), staff=shop.therapists[h % 2], member=await make_member(shop.kit))
            for h in (15, 9, 12, 10)]
    r = await shop.kit.get("/appointments", params={"store_id": shop.store, "limit": 3})
    page = r.json()
    assert [parse(a["starts_at"]) for a in page["items"]] == [shop.at(9), shop.at(10), shop.at(12)]
    rest = (await shop.kit.get("/appointments", params={"store_id": shop.store, "limit": 3,
                                                        "cursor": page["next_cursor"]})).json()
    assert [parse(a["starts_at"]) for a in rest["items"]] == [shop.at(15)] and rest["next_cursor"] is None
    mine = (await shop.kit.get("/appointments", params={"staff_id": shop.therapists[0]})).json()["items"]
    assert {parse(a["starts_at"]) for a in mine} == {shop.at(10), shop.at(12)}
    await shop.act(made[0]["id"], "cancel")
    cancelled = (await shop.kit.get("/appointments", params={"status": "cancelled"})).json()["items"]
    assert [a["id"] for a in cancelled] == [made[0]["id"]]
    window = {"from": shop.iso(10), "to": shop.iso(12)}
    assert len((await shop.kit.get("/appointments", params=window)).json()["items"]) == 1
    member = (await shop.kit.get("/appointments", params={"member_id": made[1]["member_id"]})).json()["items"]
    assert [a["id"] for a in member] == [made[1]["id"]]
    assert_problem(await shop.kit.get("/appointments", params={"cursor": "bm90LWEtY3Vyc29y"}), 400, "invalid_cursor")


async def test_timeline_care_relationship_and_merge(client):
    shop = await make_shop(client, rooms=1)
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    await schedule(shop.tenant_id, shop.store, [therapist["id"]], [shop.massage])
    member = (await shop.kit.post("/members", {"name": "孙七", "phone": new_phone(),
                                               "health": {"allergy_history": "青霉素"}})).json()["id"]
    seen = (await shop.kit.get(f"/members/{member}", token=therapist["token"])).json()
    assert seen["health_visible"] is False
    booked = await shop.booked(shop.at(10), member=member, staff=therapist["id"], notes="内部备注")
    seen = (await shop.kit.get(f"/members/{member}", token=therapist["token"])).json()
    assert seen["health_visible"] is True and seen["health"]["allergy_history"] == "青霉素"

    items = (await shop.kit.get(f"/members/{member}/timeline")).json()["items"]
    entry = next(i for i in items if i["type"] == "appointment")
    assert entry["id"] == f"appointment:{booked['id']}" and parse(entry["occurred_at"]) == shop.at(10)
    assert entry["data"]["notes"] == "内部备注" and items[0] == entry  # upcoming: the newest item
    own = (await shop.kit.get(f"/members/{member}/timeline", token=patient_token(shop.kit, member))).json()
    assert "notes" not in next(i for i in own["items"] if i["type"] == "appointment")["data"]
    paged = (await shop.kit.get(f"/members/{member}/timeline", params={"limit": 1})).json()
    assert paged["items"] == [entry] and paged["next_cursor"]

    # A cancelled booking is no care relationship.
    await shop.act(booked["id"], "cancel")
    assert (await shop.kit.get(f"/members/{member}", token=therapist["token"])).json()["health_visible"] is False

    duplicate = await make_member(shop.kit, "孙七")
    moved = await shop.booked(shop.at(12), member=duplicate)
    r = await shop.kit.post(f"/members/{member}/merge", {"duplicate_id": duplicate, "reason": "重复建档"})
    assert r.status_code == 200, r.text
    assert r.json()["moved"]["appointments"] == {"appointments": 1}
    assert (await shop.kit.get(f"/appointments/{moved['id']}")).json()["member_id"] == member
