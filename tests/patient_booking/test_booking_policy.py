"""A patient books, moves and cancels within the store's policy: inside the horizon and lead time (outside is a
422 naming `starts_at`, nothing written), and changes only before the cancellation cut-off (after it the store
decides: 409 `cancel_window_passed`, the booking unchanged). Staff are not held to either."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.booking.appointment_helpers import set_policy
from tests.cards.helpers import row_counts
from tests.members.helpers import assert_problem, patient_token
from tests.patient_booking.helpers import ZONE, make_clinic
from tests.platform.test_graphql import gql

CANCEL = "mutation($id: ID!) { cancelAppointment(id: $id) { id status } }"
RULES = "query($s: ID!) { bookingRules(storeId: $s) { horizonDays cancelWindowHours bookableUntil } }"


async def test_a_booking_outside_the_patient_window_is_422_naming_starts_at(client):
    clinic = await make_clinic(client)
    await set_policy(clinic, horizon_days=7, lead_time_minutes=120)
    token = patient_token(clinic.kit, clinic.member)
    rules = (await clinic.kit.get(f"/stores/{clinic.store}/booking-rules", token=token)).json()
    assert (rules["horizon_days"], rules["lead_time_minutes"]) == (7, 120)
    until = datetime.fromisoformat(rules["bookable_until"])
    assert timedelta(days=6, hours=23) < until - datetime.now(ZONE) <= timedelta(days=7)

    before = await row_counts(clinic.tenant_id, "appointments", "appointment_holds")
    far = clinic.at(10, day=datetime.now(ZONE).date() + timedelta(days=10))
    assert_problem(await clinic.book(token, far), 422, "beyond_horizon", field="starts_at")
    soon = (datetime.now(ZONE) + timedelta(minutes=60)).replace(second=0, microsecond=0)
    soon = soon.replace(minute=soon.minute - soon.minute % 15)
    assert_problem(await clinic.book(token, soon), 422, "too_soon", field="starts_at")
    assert await row_counts(clinic.tenant_id, "appointments", "appointment_holds") == before
    # The store itself may book that far ahead (a regular's next course).
    staff = await clinic.kit.post("/appointments", clinic.booking(far))
    assert staff.status_code == 201, staff.text


async def test_patients_change_a_booking_only_before_the_cancellation_cutoff(client):
    clinic = await make_clinic(client, days_ahead=1)
    token = patient_token(clinic.kit, clinic.member)
    early = (await clinic.book(token, clinic.at(9))).json()
    late = (await clinic.book(token, clinic.at(15))).json()
    moved = await clinic.kit.post(f"/appointments/{early['id']}/reschedule", {"starts_at": clinic.iso(10)},
                                  token=token)
    assert moved.status_code == 200, moved.text
    # The appointments are a day away: a 72-hour cut-off has passed for both.
    await set_policy(clinic, cancel_window_hours=72, late_cancel_action="fee", late_cancel_fee=5000)
    problem = assert_problem(await clinic.kit.post(f"/appointments/{late['id']}/cancel", {}, token=token), 409,
                             "cancel_window_passed")
    assert problem["cancel_window_hours"] == 72 and problem["cutoff_at"]
    assert_problem(await clinic.kit.post(f"/appointments/{late['id']}/reschedule", {"starts_at": clinic.iso(16)},
                                         token=token), 409, "cancel_window_passed")
    graphql = await gql(clinic.kit, CANCEL, token, {"id": late["id"]})
    assert graphql["errors"][0]["extensions"]["code"] == "cancel_window_passed"
    rules = await gql(clinic.kit, RULES, token, {"s": clinic.store})
    assert rules["data"]["bookingRules"]["cancelWindowHours"] == 72
    got = (await clinic.kit.get(f"/appointments/{late['id']}", token=token)).json()
    assert (got["status"], got["starts_at"]) == ("booked", late["starts_at"])
    # The front desk can still cancel it; the store's late-cancellation policy then applies.
    desk = await clinic.kit.post(f"/appointments/{late['id']}/cancel", {"reason": "电话取消"})
    assert desk.status_code == 200 and desk.json()["status"] == "cancelled"
    # Before the cut-off the patient cancels themselves.
    await set_policy(clinic, cancel_window_hours=2)
    own = await clinic.kit.post(f"/appointments/{early['id']}/cancel", {"reason": "临时有事"}, token=token)
    assert own.status_code == 200 and own.json()["status"] == "cancelled"
