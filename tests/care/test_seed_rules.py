"""Each built-in rule fires once, at the right store-local time, for the right members (frozen clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from app.workers.scheduled import run_care_schedules
from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import complete_direct, count_card, make_clinic, make_member, owner_sql
from tests.care.helpers import (
    coupon_template,
    coupons,
    deliver,
    due_events,
    freeze,
    message_template,
    messages,
    patch_rule,
    runs,
    stamp,
    tasks,
)

SH = ZoneInfo("Asia/Shanghai")


def sh(day: int, hh: int, mm: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=SH)


async def test_new_tenants_start_with_task_rules_on_and_message_rules_off(client):
    clinic = await make_clinic(client)
    rules = {r["key"]: r["enabled"] for r in (await clinic.kit.get("/automation-rules")).json()["items"]}
    assert rules == {"care_after_treatment": False, "renewal_task": True, "wake_up_30d": False,
                     "birthday_coupon": False, "appointment_reminder": False, "aesthetics_follow_up_24h": True,
                     "aesthetics_follow_up_3d": True}


async def test_treatment_rules_renewal_care_message_and_aesthetics_follow_ups(client, monkeypatch):
    clinic = await make_clinic(client)
    kit, tenant = clinic.kit, clinic.tenant_id
    consultant = await kit.staff(["consultant"], [clinic.store])
    r = await client.patch(f"/api/v1/members/{clinic.member}", json={"owner_staff_id": consultant["id"]},
                           headers=kit.auth())
    assert r.status_code == 200, r.text
    other = await make_member(kit, "钱七")
    r = await kit.post("/services", {"name": "水光针", "duration_minutes": 45, "price": 98000, "category": "医美"})
    assert r.status_code == 201, r.text
    aesthetics = r.json()["id"]
    await message_template(kit, "care_after_treatment")
    await patch_rule(kit, "care_after_treatment", enabled=True)

    treated = sh(1, 14, 30)
    freeze(monkeypatch, treated)
    card = await count_card(clinic, 3)
    await complete_direct(clinic, card["id"])  # 2 left: renewal
    await complete_direct(clinic, card["id"])  # 1 left: the same cause, no second renewal task
    await complete_direct(clinic, None, service=aesthetics)
    await complete_direct(clinic, None, member=other)
    await stamp(tenant, "service.completed", treated)
    await stamp(tenant, "card.sessions_low", treated)
    assert await deliver(tenant, "card.sessions_low") == ["done", "done"]
    assert await deliver(tenant, "service.completed") == ["done"] * 4

    [renewal] = await runs(tenant, "renewal_task")
    assert renewal["run_at"] == treated and renewal["member_id"] == clinic.member
    care = await runs(tenant, "care_after_treatment")
    assert len(care) == 4 and {c["run_at"] for c in care} == {sh(2, 14, 30)}
    assert {c["member_id"] for c in care} == {clinic.member, other}
    [first] = await runs(tenant, "aesthetics_follow_up_24h")
    [third] = await runs(tenant, "aesthetics_follow_up_3d")
    assert first["run_at"] == sh(2, 14, 30) and third["run_at"] == sh(4, 10)
    assert first["member_id"] == third["member_id"] == clinic.member
    # The outbox holds each run until its time.
    assert sorted(a for _, a in await due_events(tenant)) == sorted(
        [treated] + [sh(2, 14, 30)] * 5 + [sh(4, 10)])

    freeze(monkeypatch, sh(4, 10))
    assert set(await deliver(tenant, "care.rule_due")) == {"done"}
    made = await tasks(tenant)
    assert sorted(t["kind"] for t in made) == ["follow_up", "follow_up", "renewal"]
    renewal_task = next(t for t in made if t["kind"] == "renewal")
    assert renewal_task["assignee_id"] == consultant["id"] and renewal_task["member_id"] == clinic.member
    assert "推拿" in renewal_task["title"] and "2" in renewal_task["title"]
    assert renewal_task["due_at"] == sh(4, 10) + timedelta(hours=48)
    assert {t["assignee_id"] for t in made} == {consultant["id"]}  # owner contact of the member
    sent = await messages(tenant)
    assert len(sent) == 4 and {k for k, _, _ in sent} == {"care_after_treatment"}
    assert {s for _, _, s in sent} == {"queued"}
    done = [r["status"] for key in ("renewal_task", "care_after_treatment") for r in await runs(tenant, key)]
    assert set(done) == {"done"}
    assert set(done) == {"done"}


async def test_schedule_rules_wake_up_and_birthday(client, monkeypatch):
    clinic = await make_clinic(client)
    kit, tenant = clinic.kit, clinic.tenant_id
    coupon = await coupon_template(kit)
    for key in ("wake_up", "birthday"):
        await message_template(kit, key)
    for key in ("wake_up_30d", "birthday_coupon"):
        rule = next(r for r in (await kit.get("/automation-rules")).json()["items"] if r["key"] == key)
        actions = [{**a, "coupon_template_id": coupon} if a["type"] == "issue_coupon" else a for a in rule["actions"]]
        await patch_rule(kit, key, enabled=True, actions=actions)
    lapsed, recent, born = [await make_member(kit, n) for n in ("孙一", "孙二", "孙三")]
    await owner_sql("UPDATE members SET last_visit_at = :at WHERE tenant_id = :t AND id = :m",
                    at=sh(1, 15, month=11), t=tenant, m=UUID(lapsed))
    await owner_sql("UPDATE members SET last_visit_at = :at WHERE tenant_id = :t AND id = :m",
                    at=sh(21, 15, month=11), t=tenant, m=UUID(recent))
    await owner_sql("UPDATE members SET birthday = '1990-12-01' WHERE tenant_id = :t AND id = :m", t=tenant,
                    m=UUID(born))
    await owner_sql("UPDATE members SET birthday = '1990-12-02' WHERE tenant_id = :t AND id = :m", t=tenant,
                    m=UUID(recent))

    now = sh(1, 0, 20)  # just after local midnight of Dec 1 (still Nov 30 in UTC)
    freeze(monkeypatch, now)
    await run_care_schedules(now=now)
    [wake] = await runs(tenant, "wake_up_30d")
    [birthday] = await runs(tenant, "birthday_coupon")
    assert wake["member_id"] == lapsed and wake["run_at"] == sh(1, 10)
    assert wake["cause_key"] == f"member:{lapsed}:inactive30d:since:2026-11-01"
    assert birthday["member_id"] == born and birthday["run_at"] == sh(1, 9)
    assert birthday["cause_key"] == f"member:{born}:birthday:2026"
    # The hourly rerun (and the catch-up days after) finds nothing new.
    await run_care_schedules(now=now + timedelta(hours=1))
    await run_care_schedules(now=sh(2, 11))
    assert len(await runs(tenant, "wake_up_30d")) == 1
    assert [r["member_id"] for r in await runs(tenant, "birthday_coupon")] == [born, recent]

    freeze(monkeypatch, sh(2, 11))
    assert set(await deliver(tenant, "care.rule_due")) == {"done"}
    assert sorted(await coupons(tenant)) == sorted([lapsed, born, recent])
    assert sorted((k, m) for k, m, _ in await messages(tenant)) == sorted(
        [("wake_up", lapsed), ("birthday", born), ("birthday", recent)])


async def test_appointment_reminder_fires_for_open_appointments_only(client, monkeypatch):
    shop = await make_shop(client, therapists=2)
    kit, tenant = shop.kit, shop.tenant_id
    await message_template(kit, "appointment_reminder")
    await patch_rule(kit, "appointment_reminder", enabled=True)
    kept = await shop.booked(shop.at(10))
    dropped = await shop.booked(shop.at(12), member=await make_member(kit, "周八"))
    assert (await shop.act(dropped["id"], "cancel", {"reason": "改天"})).status_code == 200
    due = shop.at(10) - timedelta(hours=24)
    freeze(monkeypatch, due)
    # Each reminder event comes due at its own time; here both are handled at the first one's.
    await stamp(tenant, "appointment.reminder_due", due)
    assert set(await deliver(tenant, "appointment.reminder_due")) == {"done"}
    [reminder] = await runs(tenant, "appointment_reminder")
    assert reminder["member_id"] == shop.member and reminder["run_at"] == due
    assert reminder["cause_key"].startswith(f"appointment:{kept['id']}:reminder:v")
    await deliver(tenant, "care.rule_due")
    assert [(k, m) for k, m, _ in await messages(tenant)] == [("appointment_reminder", shop.member)]
    assert due.astimezone(UTC) == reminder["run_at"]
