"""Subscribe-message consent and waitlist offers, over real HTTP to the fake WeChat server: the patient's answers
are recorded per template; a slot freed by a cancellation is held for the first waiter and offered to them as a
subscribe message with a deep link (only with their consent); taking it books, and an offer not taken in time
expires and goes to the next waiter."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from app.workers.scheduled import run_waitlist_offer_expiry
from tests.cards.helpers import owner_sql, row_counts
from tests.factories import deliver
from tests.members.helpers import assert_problem, make_member, new_phone, patient_token
from tests.patient_booking.helpers import Clinic, login, make_clinic
from tests.platform.test_graphql import gql

OFFER_TEMPLATE = {
    "key": "waitlist_offer", "name": "候补空位通知", "channel": "mini_program_subscribe",
    "wechat_template_id": "tmpl-waitlist-offer", "page": "pages/waitlist/offer",
    "body": "{{member_name}}您好，{{service_name}}有空位：{{store_name}} {{starts_at}}，保留到{{hold_until}}",
    "variables": ["member_name", "store_name", "service_name", "starts_at", "hold_until"],
    "wechat_fields": {"thing1": "{{service_name}}", "time2": "{{starts_at}}", "thing3": "保留至{{hold_until}}"}}
REMINDER_TEMPLATE = {
    "key": "appointment_reminder", "name": "预约提醒", "channel": "mini_program_subscribe",
    "wechat_template_id": "tmpl-reminder", "page": "pages/appointments/index", "body": "{{member_name}}您好",
    "variables": ["member_name"], "wechat_fields": {"thing1": "{{member_name}}"}}
ENTRY = "query($id: ID!) { waitlistEntry(id: $id) { status offeredStartsAt holdExpiresAt appointmentId } }"


async def _templates(clinic: Clinic) -> None:
    for body in (OFFER_TEMPLATE, REMINDER_TEMPLATE):
        r = await clinic.kit.post("/message-templates", body)
        assert r.status_code == 201, r.text


async def _wait(clinic: Clinic, member: str, token: str | None = None) -> dict:
    r = await clinic.kit.post("/waitlist", {"member_id": member, "store_id": clinic.store,
                                            "service_id": clinic.massage, "day": clinic.day.isoformat()}, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def _entry(clinic: Clinic, entry_id: str) -> dict:
    r = await clinic.kit.get("/waitlist", params={"store_id": clinic.store, "day": clinic.day.isoformat()})
    return next(e for e in r.json()["items"] if e["id"] == entry_id)


async def _free_the_ten_oclock_slot(clinic: Clinic) -> None:
    """Someone else's 10:00 with the only therapist is cancelled by the front desk."""
    other = (await make_member(clinic.kit, "周晴"))["id"]
    booked = await clinic.kit.post("/appointments", clinic.booking(clinic.at(10), member=other))
    assert booked.status_code == 201, booked.text
    cancelled = await clinic.kit.post(f"/appointments/{booked.json()['id']}/cancel", {"reason": "临时出差"})
    assert cancelled.status_code == 200, cancelled.text
    assert set(await deliver(clinic.tenant_id, "appointment.cancelled")) == {"done"}


async def test_subscribe_answers_are_recorded_per_template(client, wechat):
    clinic = await make_clinic(client)
    await _templates(clinic)
    token, _ = await login(clinic, wechat)
    r = await clinic.kit.post("/patient/message-consents", {
        "results": {"tmpl-waitlist-offer": "accept", "tmpl-reminder": "reject"}, "scene": "waitlist"}, token=token)
    assert r.status_code == 200, r.text
    assert {c["wechat_template_id"]: c["granted"] for c in r.json()["consents"]} == {"tmpl-waitlist-offer": 1}
    assert sorted((x["wechat_template_id"], x["result"], x["template_key"]) for x in r.json()["recorded"]) == [
        ("tmpl-reminder", "reject", "appointment_reminder"), ("tmpl-waitlist-offer", "accept", "waitlist_offer")]
    again = await gql(clinic.kit, "mutation($r: JSON!) { reportSubscribeResults(results: $r) { wechatTemplateId "
                                  "granted } }", token, {"r": {"tmpl-waitlist-offer": "accept"}})
    assert again["data"]["reportSubscribeResults"] == [{"wechatTemplateId": "tmpl-waitlist-offer", "granted": 2}]
    mine = (await clinic.kit.get("/patient/message-consents", token=token)).json()
    assert mine == [{"wechat_template_id": "tmpl-waitlist-offer", "granted": 2}]

    before = await row_counts(clinic.tenant_id, "message_consent_records", "message_consents")
    bad = await clinic.kit.post("/patient/message-consents", {
        "results": {"tmpl-waitlist-offer": "accept", "tmpl-not-ours": "accept"}}, token=token)
    assert_problem(bad, 422, "unknown_wechat_template", field="results.tmpl-not-ours")
    assert_problem(await clinic.kit.post("/patient/message-consents", {"results": {"tmpl-reminder": "maybe"}},
                                         token=token), 422, "validation_error")
    assert await row_counts(clinic.tenant_id, "message_consent_records", "message_consents") == before
    assert_problem(await clinic.kit.post("/patient/message-consents", {"results": {"tmpl-reminder": "accept"}}),
                   401, "wrong_audience")


async def test_a_freed_slot_is_held_and_offered_with_a_deep_link_and_taking_it_books(client, subscribe_channel):
    wechat = subscribe_channel
    clinic = await make_clinic(client, therapists=1)
    await _templates(clinic)
    token, openid = await login(clinic, wechat)
    r = await clinic.kit.post("/patient/message-consents", {"results": {"tmpl-waitlist-offer": "accept"}},
                              token=token)
    assert r.status_code == 200, r.text
    entry = await _wait(clinic, clinic.member, token)
    await _free_the_ten_oclock_slot(clinic)

    offered = await _entry(clinic, entry["id"])
    assert offered["status"] == "offered"
    assert datetime.fromisoformat(offered["offered_starts_at"]) == clinic.at(10)
    assert offered["hold_expires_at"] and offered["offered_staff_id"] == clinic.therapists[0]
    # The slot is held for the offered member: nobody else can book it meanwhile.
    walk_in = (await make_member(clinic.kit, "郑雪"))["id"]
    assert_problem(await clinic.kit.post("/appointments", clinic.booking(clinic.at(10), member=walk_in)), 409,
                   "staff_busy")
    slots = (await clinic.kit.get("/availability", token=token, params={
        "store_id": clinic.store, "service_id": clinic.massage, "date": clinic.day.isoformat()})).json()["slots"]
    assert clinic.iso(10) not in [s["starts_at"] for s in slots]

    # The offer reaches the patient as a subscribe message whose page opens this offer.
    assert set(await deliver(clinic.tenant_id, "waitlist.slot_offered")) == {"done"}
    assert set(await deliver(clinic.tenant_id, "message.send")) == {"done"}
    sent = [m for m in wechat.subscribe_messages if m["touser"] == openid]
    assert len(sent) == 1, wechat.subscribe_messages
    assert sent[0]["template_id"] == "tmpl-waitlist-offer"
    assert sent[0]["page"] == f"pages/waitlist/offer?entry_id={entry['id']}"
    assert sent[0]["data"]["time2"]["value"] == f"{clinic.day.isoformat()} 10:00"
    consents = (await clinic.kit.get("/patient/message-consents", token=token)).json()
    assert consents == [{"wechat_template_id": "tmpl-waitlist-offer", "granted": 0}]  # one consent, one message

    shown = await gql(clinic.kit, ENTRY, token, {"id": entry["id"]})
    assert shown["data"]["waitlistEntry"]["status"] == "offered"
    taken = await clinic.kit.post(f"/waitlist/{entry['id']}/accept", {}, token=token)
    assert taken.status_code == 201, taken.text
    booked = taken.json()
    assert (booked["member_id"], booked["staff_id"], booked["channel"]) == (clinic.member, clinic.therapists[0],
                                                                            "mini_program")
    assert booked["starts_at"] == (await clinic.kit.get(f"/appointments/{booked['id']}")).json()["starts_at"]
    closed = await _entry(clinic, entry["id"])
    assert (closed["status"], closed["appointment_id"], closed["hold_expires_at"]) == ("booked", booked["id"], None)
    assert_problem(await clinic.kit.post(f"/waitlist/{entry['id']}/accept", {}, token=token), 409, "invalid_status")
    holds = await owner_sql("SELECT count(*) FROM appointment_holds WHERE waitlist_entry_id = :e AND active",
                            e=UUID(entry["id"]))
    assert holds[0][0] == 0


async def test_an_offer_not_taken_in_time_expires_and_goes_to_the_next_waiter(client, subscribe_channel):
    wechat = subscribe_channel
    clinic = await make_clinic(client, therapists=1)
    await _templates(clinic)
    token, openid = await login(clinic, wechat)  # no subscribe consent given
    first = await _wait(clinic, clinic.member, token)
    second_member = (await make_member(clinic.kit, "孙悦", phone=new_phone()))["id"]
    second = await _wait(clinic, second_member)
    await _free_the_ten_oclock_slot(clinic)
    assert (await _entry(clinic, first["id"]))["status"] == "offered"
    assert (await _entry(clinic, second["id"]))["status"] == "waiting"

    # Without consent nothing is sent: the message is recorded as skipped.
    assert set(await deliver(clinic.tenant_id, "waitlist.slot_offered")) == {"done"}
    messages = (await clinic.kit.get("/messages", params={"member_id": clinic.member})).json()["items"]
    assert [(m["template_key"], m["status"], m["reason"]) for m in messages] == [
        ("waitlist_offer", "skipped", "no_subscription_consent")]
    assert [m for m in wechat.subscribe_messages if m["touser"] == openid] == []

    # The hold runs out before the patient takes it: taking it now is refused, and the job expires it.
    await owner_sql("UPDATE waitlist_entries SET hold_expires_at = now() - interval '1 minute' WHERE id = :e",
                    e=UUID(first["id"]))
    assert_problem(await clinic.kit.post(f"/waitlist/{first['id']}/accept", {}, token=token), 409, "offer_expired")
    assert (await run_waitlist_offer_expiry())[str(clinic.tenant_id)] == 1
    assert (await _entry(clinic, first["id"]))["status"] == "expired"
    nxt = await _entry(clinic, second["id"])
    assert nxt["status"] == "offered" and nxt["offered_staff_id"] == clinic.therapists[0]
    assert await run_waitlist_offer_expiry() == {}  # nothing due: a second run changes nothing

    # The second waiter declines by leaving the waitlist: the hold is released and, nobody else waiting, the
    # slot is free for anyone.
    left = await clinic.kit.post(f"/waitlist/{second['id']}/cancel", {})
    assert left.status_code == 200 and left.json()["status"] == "cancelled"
    walk_in = (await make_member(clinic.kit, "郑雪"))["id"]
    taken = await clinic.kit.post("/appointments", clinic.booking(clinic.at(10), member=walk_in))
    assert taken.status_code == 201, taken.text
    assert_problem(await clinic.kit.post(f"/waitlist/{second['id']}/accept", {},
                                         token=patient_token(clinic.kit, second_member)), 409, "invalid_status")
