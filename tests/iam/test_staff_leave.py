"""A staff member leaves: their members, open tasks and future appointments go to colleagues in one audited,
all-or-nothing operation (POST /staff/{id}/leave), and the account may be disabled with it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import text

from app.core.db import session_scope
from tests.booking.appointment_helpers import Shop, add_therapists, holds_of, make_shop, schedule
from tests.cards.helpers import assert_problem, make_member, owner_sql
from tests.factories import PASSWORD, login, seal_audit


async def leave(shop: Shop, staff_id: str, body: dict, token: str | None = None):
    return await shop.kit.post(f"/staff/{staff_id}/leave", body, token=token)


async def owner_of(shop: Shop, member_id: str) -> str | None:
    r = await shop.kit.get(f"/members/{member_id}")
    assert r.status_code == 200, r.text
    return r.json()["owner_staff_id"]


async def task_for(shop: Shop, assignee: str, title: str, **extra) -> dict:
    r = await shop.kit.post("/tasks", {"title": title, "assignee_id": assignee,
                                       "due_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(), **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def staff_of(shop: Shop, appointment_id: str) -> str:
    r = await shop.kit.get(f"/appointments/{appointment_id}")
    assert r.status_code == 200, r.text
    return r.json()["staff_id"]


async def leaver_with_work(shop: Shop) -> dict:
    """The first therapist looks after two members, has two open tasks (and one done) and two bookings."""
    leaver = shop.therapists[0]
    members = [shop.member, await make_member(shop.kit, "钱七")]
    for member_id in members:
        r = await shop.kit.client.patch(f"/api/v1/members/{member_id}", json={"owner_staff_id": leaver},
                                        headers=shop.kit.auth())
        assert r.status_code == 200, r.text
    tasks = [await task_for(shop, leaver, "术后回访", member_id=shop.member), await task_for(shop, leaver, "续卡跟进")]
    done = await task_for(shop, leaver, "已完成的回访")
    r = await shop.kit.client.patch(f"/api/v1/tasks/{done['id']}", json={"status": "done"}, headers=shop.kit.auth())
    assert r.status_code == 200, r.text
    bookings = [await shop.booked(shop.at(10)), await shop.booked(shop.at(15), member=members[1])]
    return {"id": leaver, "members": members, "tasks": [t["id"] for t in tasks], "done_task": done["id"],
            "bookings": [b["id"] for b in bookings]}


async def test_everything_moves_to_one_colleague_and_the_account_is_disabled(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    work = await leaver_with_work(shop)
    successor = shop.therapists[1]
    r = await leave(shop, work["id"], {"target_staff_id": successor, "deactivate": True, "reason": "离职"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["deactivated"] is True
    assert sorted(out["member_ids"]) == sorted(work["members"])
    assert sorted(out["task_ids"]) == sorted(work["tasks"])
    assert sorted(a["appointment_id"] for a in out["appointments"]) == sorted(work["bookings"])
    assert {a["staff_id"] for a in out["appointments"]} == {successor}

    for member_id in work["members"]:
        assert await owner_of(shop, member_id) == successor
    tasks = (await shop.kit.get("/tasks", params={"assignee_id": successor})).json()["items"]
    assert sorted(t["id"] for t in tasks) == sorted(work["tasks"])  # not the finished one
    done = (await shop.kit.get(f"/tasks/{work['done_task']}")).json()
    assert done["assignee_id"] == work["id"]
    for appointment_id in work["bookings"]:
        assert await staff_of(shop, appointment_id) == successor
        assert [ref for kind, ref, active in await holds_of(appointment_id) if kind == "staff" and active] == [
            successor]
    assert (await shop.kit.get(f"/staff/{work['id']}")).json()["active"] is False
    # The new assignee hears of each task (a WeCom alert per task.assigned).
    events = await owner_sql("SELECT payload FROM outbox WHERE tenant_id = :t AND topic = 'task.assigned' "
                             "AND payload->>'assignee_id' = :a", t=shop.tenant_id, a=successor)
    assert sorted(p["task_id"] for (p,) in events) == sorted(work["tasks"])
    moved = await owner_sql("SELECT count(*) FROM outbox WHERE tenant_id = :t AND topic = 'appointment.rescheduled'",
                            t=shop.tenant_id)
    assert moved[0][0] == 2

    await seal_audit()
    audited = await owner_sql("SELECT summary FROM audit_log WHERE tenant_id = :t AND action = 'staff.leave'",
                              t=shop.tenant_id)
    [(summary,)] = audited
    assert summary["reason"] == "离职" and summary["deactivated"] is True
    assert summary["members"] == 2 and summary["tasks"] == 2 and len(summary["appointments"]) == 2


async def test_a_target_per_kind(client):
    shop = await make_shop(client, therapists=3, rooms=2)
    work = await leaver_with_work(shop)
    consultant = (await shop.kit.staff(["consultant"], [shop.store]))["id"]
    r = await leave(shop, work["id"], {"members_to": consultant, "tasks_to": consultant,
                                       "appointments_to": shop.therapists[2]})
    assert r.status_code == 200, r.text
    assert r.json()["deactivated"] is False
    assert {await owner_of(shop, m) for m in work["members"]} == {consultant}
    assert {await staff_of(shop, a) for a in work["bookings"]} == {shop.therapists[2]}
    assert (await shop.kit.get(f"/staff/{work['id']}")).json()["active"] is True
    # Nothing is left: asking again moves nothing, and is not an error.
    r = await leave(shop, work["id"], {"target_staff_id": shop.therapists[1]})
    assert r.status_code == 200, r.text
    assert (r.json()["member_ids"], r.json()["task_ids"], r.json()["appointments"]) == ([], [], [])


async def test_an_appointment_that_cannot_move_refuses_the_whole_leave(client):
    shop = await make_shop(client, therapists=2, rooms=3)
    work = await leaver_with_work(shop)
    successor = shop.therapists[1]
    # The successor is busy at 15:00 (another member's booking) …
    await shop.booked(shop.at(15), staff=successor, member=await make_member(shop.kit, "孙八"))
    # … and a therapist who may not perform the service cannot take any of them.
    unskilled = (await add_therapists(shop.tenant_id, shop.store, 1, []))[0]
    r = await leave(shop, work["id"], {"target_staff_id": successor, "deactivate": True})
    problem = assert_problem(r, 409, "appointments_not_movable")
    assert [(a["appointment_id"], a["code"]) for a in problem["appointments"]] == [(work["bookings"][1], "staff_busy")]
    # Nothing changed: members, tasks, bookings, the account.
    assert {await owner_of(shop, m) for m in work["members"]} == {work["id"]}
    assert {await staff_of(shop, a) for a in work["bookings"]} == {work["id"]}
    assert (await shop.kit.get(f"/staff/{work['id']}")).json()["active"] is True
    tasks = (await shop.kit.get("/tasks", params={"assignee_id": work["id"], "status": "open"})).json()["items"]
    assert len(tasks) == 2

    problem = assert_problem(await leave(shop, work["id"], {"target_staff_id": unskilled}), 409,
                             "appointments_not_movable")
    assert {a["code"] for a in problem["appointments"]} == {"staff_lacks_skill"}
    assert len(problem["appointments"]) == 2


async def test_a_booking_racing_the_hand_over_never_double_books(client):
    for _ in range(3):
        shop = await make_shop(client, therapists=2, rooms=3)
        leaver, successor = shop.therapists
        moving = await shop.booked(shop.at(11), staff=leaver)
        rival = await make_member(shop.kit, "周九")
        booking, handover = await asyncio.gather(
            shop.book(shop.at(11), staff=successor, member=rival),
            leave(shop, leaver, {"target_staff_id": successor}))
        assert {booking.status_code, handover.status_code} in ({201, 409}, {200, 409}), (booking.text, handover.text)
        assert (booking.status_code == 201) != (handover.status_code == 200)
        if handover.status_code == 409:
            assert handover.json()["code"] == "appointments_not_movable"
            assert await staff_of(shop, moving["id"]) == leaver
        else:
            assert booking.json()["code"] == "staff_busy"
            assert await staff_of(shop, moving["id"]) == successor
        rows = await owner_sql("SELECT count(*) FROM appointment_holds WHERE tenant_id = :t AND ref_id = :s "
                               "AND active", t=shop.tenant_id, s=UUID(successor))
        assert rows[0][0] == 1


async def _waiting_on_locks() -> int:
    rows = await owner_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
    return rows[0][0]


async def test_a_booking_checked_while_the_hand_over_is_uncommitted_loses_to_the_constraint(client):
    """Both sides pass their availability checks (neither sees the other's uncommitted hold); the exclusion
    constraint on the holds makes the booking wait for the hand-over's transaction and then refuses it."""
    shop = await make_shop(client, therapists=1, rooms=3)
    successor = shop.therapists[0]
    leaver = await shop.kit.staff(["therapist"], [shop.store])  # signed in: a refresh token to revoke
    await schedule(shop.tenant_id, shop.store, [leaver["id"]], [shop.massage, shop.consult])
    moving = await shop.booked(shop.at(11), staff=leaver["id"])
    rival = await make_member(shop.kit, "周九")
    # Hold the leaver's sign-in row: the hand-over (deactivate: its sign-ins end) stops there, after it has
    # taken the successor's 11:00 — uncommitted — until this transaction ends.
    async with session_scope(system=True) as blocker:
        await blocker.execute(text("SELECT 1 FROM refresh_tokens WHERE subject_id = :s FOR UPDATE"),
                              {"s": UUID(leaver["id"])})
        handover = asyncio.create_task(leave(shop, leaver["id"], {"target_staff_id": successor, "deactivate": True}))
        await _until(lambda n: n >= 1)
        booking = asyncio.create_task(shop.book(shop.at(11), staff=successor, member=rival))
        await _until(lambda n: n >= 2)  # the booking now waits on the hand-over's hold
    handed, booked = await handover, await booking
    assert handed.status_code == 200, handed.text
    assert_problem(booked, 409, "staff_busy")
    assert await staff_of(shop, moving["id"]) == successor
    rows = await owner_sql("SELECT count(*) FROM appointment_holds WHERE tenant_id = :t AND ref_id = :s AND active",
                           t=shop.tenant_id, s=UUID(successor))
    assert rows[0][0] == 1


async def _until(condition) -> None:
    async with asyncio.timeout(20):  # the expected lock wait must happen
        while not condition(await _waiting_on_locks()):  # noqa: ASYNC110 - polling another server's state
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("case", ["unknown_leaver", "same_staff", "unknown_target", "no_target", "disabled_target",
                                  "bad_type"])
async def test_bad_input_is_refused_and_changes_nothing(client, case):
    shop = await make_shop(client, therapists=2, rooms=1)
    leaver, other = shop.therapists
    booking = await shop.booked(shop.at(10), staff=leaver)
    staff_id, body, status, field = {
        "unknown_leaver": (str(uuid.uuid4()), {"target_staff_id": other}, 404, None),
        "same_staff": (leaver, {"target_staff_id": other, "tasks_to": leaver}, 422, "tasks_to"),
        "unknown_target": (leaver, {"target_staff_id": str(uuid.uuid4())}, 422, "target_staff_id"),
        "no_target": (leaver, {"members_to": other, "deactivate": True}, 422, "target_staff_id"),
        "disabled_target": (leaver, {"target_staff_id": "DISABLED"}, 422, "target_staff_id"),
        "bad_type": (leaver, {"target_staff_id": other, "deactivate": "yes"}, 422, "deactivate"),
    }[case]
    if body.get("target_staff_id") == "DISABLED":
        disabled = (await shop.kit.staff(["therapist"], [shop.store]))["id"]
        r = await shop.kit.client.patch(f"/api/v1/staff/{disabled}", json={"active": False}, headers=shop.kit.auth())
        assert r.status_code == 200, r.text
        body["target_staff_id"] = disabled
    problem = assert_problem(await leave(shop, staff_id, body), status)
    if field:
        assert field in [e["field"] for e in problem.get("errors", [])] or problem.get("field") == field, problem
    assert await staff_of(shop, booking["id"]) == leaver
    assert (await shop.kit.get(f"/staff/{leaver}")).json()["active"] is True


async def test_who_may_hand_over(client):
    shop = await make_shop(client, therapists=2, rooms=1)
    other_store = await shop.kit.store("徐汇店")
    leaver, successor = shop.therapists
    manager = await shop.kit.staff(["store_manager"], [shop.store])
    elsewhere = await shop.kit.staff(["store_manager"], [other_store])
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    body = {"target_staff_id": successor}
    assert_problem(await leave(shop, leaver, body, token=therapist["token"]), 403, "permission_denied")
    assert_problem(await leave(shop, leaver, body, token=elsewhere["token"]), 403, "store_forbidden")
    r = await leave(shop, leaver, {**body, "deactivate": True}, token=manager["token"])
    assert r.status_code == 200, r.text
    # Their sign-ins end with the account.
    username = f"u{uuid.uuid4().hex[:8]}"
    r = await shop.kit.post("/staff", {"username": username, "password": PASSWORD, "display_name": "离职测试",
                                       "roles": ["therapist"], "store_ids": [shop.store]})
    departing = r.json()["id"]
    token = await login(client, shop.kit.code, username)
    assert (await shop.kit.get("/me", token=token)).status_code == 200
    r = await leave(shop, departing, {**body, "deactivate": True}, token=manager["token"])
    assert r.status_code == 200, r.text
    assert (await shop.kit.get("/me", token=token)).status_code == 401
