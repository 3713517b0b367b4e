"""What a family head sees of the family's health data in the mini-program: a minor's (as their guardian),
an adult's only with that adult's recorded consent."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from app.domain.members.policies import is_minor
from tests.factories import new_tenant
from tests.members.helpers import assert_problem, audit_entries, delete, make_member, patient_token
from tests.platform.test_graphql import codes, gql

MEMBER = "query($id: ID!) { member(id: $id) { id name health { allergyHistory } healthVisible customFields } }"
SHARE = """mutation($m: ID!, $s: Boolean!) { setHealthSharing(memberId: $m, shareWithFamily: $s) {
  healthSharedWithFamily health { allergyHistory } } }"""


def years_ago(years: int, *, days_later: int = 0) -> str:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    born = date(today.year - years, today.month, 28 if (today.month, today.day) == (2, 29) else today.day)
    return date.fromordinal(born.toordinal() + days_later).isoformat()


async def share(kit, member_id: str, value: bool, token: str | None = None):
    return await kit.client.put(f"/api/v1/members/{member_id}/health-sharing", json={"share_with_family": value},
                                headers=kit.auth(token))


async def family_of_three(kit):
    """A head, an adult spouse and a ten-year-old child, each with health data and a health-flagged field."""
    r = await kit.post("/member-fields", {"key": "tongue", "label": "舌象", "type": "text", "health": True})
    assert r.status_code == 201, r.text
    head, spouse, child = [
        await make_member(kit, name, birthday=birthday, health={"allergy_history": f"{name}的过敏史"},
                          custom_fields={"tongue": f"{name}舌淡"})
        for name, birthday in (("周父", years_ago(40)), ("周母", years_ago(38)), ("周子", years_ago(10)))]
    family = (await kit.post("/families", {"name": "周家", "head_member_id": head["id"]})).json()
    for member, relation in ((spouse, "spouse"), (child, "child")):
        r = await kit.post(f"/families/{family['id']}/members", {"member_id": member["id"], "relation": relation})
        assert r.status_code == 200, r.text
    return family, head, spouse, child


async def test_a_head_sees_a_minors_health_but_not_an_adults_without_consent(client):
    kit = await new_tenant(client)
    family, head, spouse, child = await family_of_three(kit)
    head_token, spouse_token = patient_token(kit, head["id"]), patient_token(kit, spouse["id"])

    own = (await kit.get(f"/members/{head['id']}", token=head_token)).json()
    assert own["health"]["allergy_history"] == "周父的过敏史" and own["custom_fields"] == {"tongue": "周父舌淡"}
    minor = (await kit.get(f"/members/{child['id']}", token=head_token)).json()
    assert minor["health_visible"] and minor["health"]["allergy_history"] == "周子的过敏史"
    assert minor["custom_fields"] == {"tongue": "周子舌淡"}

    adult = await kit.get(f"/members/{spouse['id']}", token=head_token)
    assert adult.status_code == 200, adult.text
    assert adult.json()["name"] == "周母", "the head still reaches the adult's profile"
    assert adult.json()["health"] is None and adult.json()["health_visible"] is False
    assert adult.json()["custom_fields"] == {}, "health-flagged custom fields follow the health rule"
    assert adult.json()["health_shared_with_family"] is False
    # The same over GraphQL.
    seen = (await gql(kit, MEMBER, head_token, {"id": spouse["id"]}))["data"]["member"]
    assert seen["health"] is None and seen["healthVisible"] is False and seen["customFields"] == {}
    seen = (await gql(kit, MEMBER, head_token, {"id": child["id"]}))["data"]["member"]
    assert seen["health"]["allergyHistory"] == "周子的过敏史"

    # The adult themself consents; from then on the head sees their health data.
    r = await share(kit, spouse["id"], True, spouse_token)
    assert r.status_code == 200, r.text
    assert r.json()["health_shared_with_family"] is True and r.json()["health"]["allergy_history"] == "周母的过敏史"
    shared = (await kit.get(f"/members/{spouse['id']}", token=head_token)).json()
    assert shared["health"]["allergy_history"] == "周母的过敏史" and shared["custom_fields"] == {"tongue": "周母舌淡"}
    seen = (await gql(kit, MEMBER, head_token, {"id": spouse["id"]}))["data"]["member"]
    assert seen["health"]["allergyHistory"] == "周母的过敏史"
    # A family head reading another member's health data is audited like a staff read.
    reads = await audit_entries(kit, action="member.health.read")
    assert any(e["target_id"] == spouse["id"] and e["actor_type"] == "patient" for e in reads), reads

    # Withdrawn: hidden again.
    assert (await share(kit, spouse["id"], False, spouse_token)).status_code == 200
    assert (await kit.get(f"/members/{spouse['id']}", token=head_token)).json()["health"] is None

    # The mini-program does the same over GraphQL; the head cannot do it for the adult.
    assert codes(await gql(kit, SHARE, head_token, {"m": spouse["id"], "s": True})) == ["permission_denied"]
    done = await gql(kit, SHARE, spouse_token, {"m": spouse["id"], "s": True})
    assert done["data"]["setHealthSharing"]["healthSharedWithFamily"] is True, done
    seen = (await gql(kit, MEMBER, head_token, {"id": spouse["id"]}))["data"]["member"]
    assert seen["health"]["allergyHistory"] == "周母的过敏史"

    entries = await audit_entries(kit, action="member.health_sharing")
    assert [(e["target_id"], e["actor_type"], e["summary"]["share_with_family"]) for e in entries] == [
        (spouse["id"], "patient", True), (spouse["id"], "patient", False), (spouse["id"], "patient", True)]


async def test_only_the_adult_or_health_staff_record_the_consent(client):
    kit = await new_tenant(client)
    family, head, spouse, child = await family_of_three(kit)
    head_token = patient_token(kit, head["id"])
    outsider = await make_member(kit, "外人")

    # The head cannot consent for another adult; a stranger cannot even find them.
    assert_problem(await share(kit, spouse["id"], True, head_token), 403, "permission_denied")
    assert_problem(await share(kit, spouse["id"], True, patient_token(kit, outsider["id"])), 404, "member_not_found")
    assert (await kit.get(f"/members/{spouse['id']}", token=head_token)).json()["health"] is None

    # Staff need members.health:write: the front desk has none, the owner has it.
    store = await kit.store()
    front_desk = await kit.staff(["front_desk"], [store])
    assert_problem(await share(kit, spouse["id"], True, front_desk["token"]), 403, "permission_denied")
    r = await share(kit, spouse["id"], True)
    assert r.status_code == 200 and r.json()["health_shared_with_family"] is True, r.text
    assert (await kit.get(f"/members/{spouse['id']}", token=head_token)).json()["health"] is not None
    entries = await audit_entries(kit, action="member.health_sharing")
    assert [(e["actor_type"], e["summary"]["share_with_family"]) for e in entries] == [("staff", True)]

    # Leaving the family ends the consent: it was given to this family.
    assert (await delete(kit, f"/families/{family['id']}/members/{spouse['id']}")).status_code == 200
    assert (await kit.get(f"/members/{spouse['id']}")).json()["health_shared_with_family"] is False


async def test_age_decides_who_is_a_minor(client):
    today = date(2026, 12, 1)
    assert is_minor(date(2008, 12, 2), today), "turns 18 tomorrow"
    assert not is_minor(date(2008, 12, 1), today), "18 today"
    assert not is_minor(None, today), "unknown age: an adult, whose health data needs their consent"
    assert is_minor(date(2008, 2, 29), date(2026, 2, 28))
    assert not is_minor(date(2008, 2, 29), date(2026, 3, 1))

    kit = await new_tenant(client)
    head = await make_member(kit, "吴父", birthday=years_ago(45))
    almost = await make_member(kit, "吴长子", birthday=years_ago(18, days_later=1), health={"past_history": "哮喘"})
    adult = await make_member(kit, "吴次子", birthday=years_ago(18), health={"past_history": "鼻炎"})
    unknown = await make_member(kit, "吴母", health={"past_history": "胃炎"})
    family = (await kit.post("/families", {"name": "吴家", "head_member_id": head["id"]})).json()
    for member in (almost, adult, unknown):
        await kit.post(f"/families/{family['id']}/members", {"member_id": member["id"], "relation": "x"})
    token = patient_token(kit, head["id"])
    seen = {m["name"]: (await kit.get(f"/members/{m['id']}", token=token)).json()["health"]
            for m in (almost, adult, unknown)}
    assert seen == {"吴长子": {"allergy_history": None, "past_history": "哮喘", "family_history": None,
                              "constitution": [], "health_summary": None},
                    "吴次子": None, "吴母": None}
