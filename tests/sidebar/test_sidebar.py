"""The therapist in the WeCom sidebar, over GraphQL: sign in through WeCom OAuth (the fake WeCom server, real
HTTP), open the member beside the chat by external_userid, book their next visit into one's own schedule, note,
complete a task, and take a message draft — and what a therapist who does not serve the member cannot do."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from app.integrations.wechat.fake_server import FakeWeChat
from tests.booking.appointment_helpers import Shop, make_shop, schedule, set_policy
from tests.cards.helpers import issue, make_member, make_template, owner_sql
from tests.factories import PASSWORD
from tests.members.helpers import audit_entries, patch, patient_token
from tests.platform.test_graphql import codes, gql, statements

MEMBER_360 = """query($x: String!) { sidebarMember(externalUserid: $x) {
  externalUserid inMyCare canBookNext points
  member { id name phone phoneMasked tags healthVisible health { allergyHistory } }
  cards { id name kind items { serviceId serviceName sessionsTotal remaining } }
  lastVisits { id serviceName storeName staffName notes status }
  upcoming { appointment { id startsAt staffId channel status } serviceName storeName staffName }
  openTasks { id title assigneeId status }
  drafts { templateKey templateName channel content }
} }"""
BOOK_NEXT = """mutation($i: BookingInput!) { bookNextVisit(input: $i) { id status staffId startsAt channel
  resourceIds } }"""
NOTE = "mutation($m: ID!, $b: String!) { addCareNote(memberId: $m, body: $b) { type id data } }"
COMPLETE_TASK = """mutation($id: ID!) { completeTask(id: $id, resultNote: "已回访，肩颈明显放松") {
  id status resultNote } }"""


def _external_userid() -> str:
    return f"wm{uuid.uuid4().hex}"[:32]


async def wecom_therapist(client: httpx.AsyncClient, wechat: FakeWeChat, shop: Shop, name: str) -> dict[str, Any]:
    """A therapist of the shop's store with a WeCom account, signed in through WeCom OAuth: the fake WeCom
    server answers the code with their userid, over real HTTP."""
    userid = f"wc{uuid.uuid4().hex[:20]}"
    r = await shop.kit.post("/staff", {"username": f"u{uuid.uuid4().hex[:10]}", "password": PASSWORD,
                                       "display_name": name, "roles": ["therapist"], "store_ids": [shop.store],
                                       "wecom_userid": userid})
    assert r.status_code == 201, r.text
    staff_id = r.json()["id"]
    await schedule(shop.tenant_id, shop.store, [staff_id], [shop.massage, shop.consult])
    code = f"oauth-{uuid.uuid4().hex}"
    wechat.add_wecom_code(code, userid)
    r = await client.post("/api/v1/auth/wecom", json={"tenant": shop.kit.code, "code": code})
    assert r.status_code == 200, r.text
    return {"id": staff_id, "token": r.json()["access_token"], "name": name}


async def link_contact(shop: Shop, wechat: FakeWeChat, member_id: str, name: str) -> str:
    external_userid = _external_userid()
    wechat.add_external_contact(external_userid, name)
    r = await shop.kit.client.put(f"/api/v1/wecom/external-contacts/{external_userid}/member",
                                  json={"member_id": member_id}, headers=shop.kit.auth())
    assert r.status_code == 200, r.text
    return external_userid


async def served_member(shop: Shop, therapist: dict[str, Any], *, cards: int = 1, visits: int = 1,
                        member: str | None = None, days_later: int = 0) -> tuple[str, list[str]]:
    """The therapist served the member (appointments completed on a 推拿 course card, from 09:00 on the shop's
    day plus `days_later`): that is the care relationship. Returns the member and the cards."""
    member = member or shop.member
    day = shop.day + timedelta(days=days_later)
    template = await make_template(shop.kit, kind="count", price=150000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": 10}])
    card_ids = [(await issue(shop.kit, member, template, shop.store, 150000))["id"] for _ in range(cards)]
    for n in range(visits):
        done = await shop.booked(shop.at(9 + 2 * n, day=day), staff=therapist["id"], member=member)
        r = await shop.act(done["id"], "complete", {"card_id": card_ids[0], "notes": "右肩胛紧，手法加重"})
        assert r.status_code == 200, r.text
    return member, card_ids


async def templates(shop: Shop) -> None:
    for body in (
        {"key": "next_visit", "name": "下次预约确认", "channel": "sms",
         "body": "{{member_name}}您好，已为您约好{{starts_at}}在{{store_name}}的{{service_name}}。",
         "variables": ["member_name", "starts_at", "store_name", "service_name"]},
        {"key": "sessions_left", "name": "卡项余次", "channel": "sms",
         "body": "{{member_name}}，您的卡项剩余：{{sessions_left}}。", "variables": ["member_name", "sessions_left"]},
        {"key": "renewal_staff", "name": "续卡提醒", "channel": "wecom_staff",  # to staff: never a chat draft
         "body": "{{member_name}}只剩{{remaining}}次", "variables": ["member_name", "remaining"]},
        {"key": "old_text", "name": "停用的话术", "channel": "sms", "body": "{{member_name}}您好", "active": False,
         "variables": ["member_name"]},
    ):
        r = await shop.kit.post("/message-templates", body)
        assert r.status_code == 201, r.text


async def appointment_count(shop: Shop) -> int:
    return (await owner_sql("SELECT count(*) FROM appointments WHERE tenant_id = :t", t=shop.tenant_id))[0][0]


async def test_therapist_opens_the_member_beside_the_chat_books_next_notes_completes_and_drafts(client, wechat):
    shop = await make_shop(client, therapists=1, rooms=2)
    chen = await wecom_therapist(client, wechat, shop, "陈晓明")
    other = await wecom_therapist(client, wechat, shop, "刘芳")
    member, (card,) = await served_member(shop, chen)
    r = await patch(shop.kit, f"/members/{member}", {"tags": ["颈椎病"], "health": {"allergy_history": "青霉素过敏"}})
    assert r.status_code == 200, r.text
    r = await shop.kit.post(f"/members/{member}/points/adjust", {"delta": 120, "reason": "老会员赠送"})
    assert r.status_code == 201, r.text
    r = await shop.kit.post("/tasks", {"title": "推拿后回访", "member_id": member, "assignee_id": chen["id"],
                                       "due_at": shop.iso(18)})
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    await templates(shop)
    external_userid = await link_contact(shop, wechat, member, "赵六")

    # The member 360 beside the chat.
    result = await gql(shop.kit, MEMBER_360, chen["token"], {"x": external_userid})
    assert "errors" not in result, result
    view = result["data"]["sidebarMember"]
    assert (view["externalUserid"], view["inMyCare"], view["canBookNext"], view["points"]) == \
        (external_userid, True, True, 120)
    profile = view["member"]
    assert profile["id"] == member and profile["tags"] == ["颈椎病"]
    assert profile["phoneMasked"] is True and "****" in profile["phone"]  # therapists see no contact data
    assert profile["healthVisible"] is True and profile["health"]["allergyHistory"] == "青霉素过敏"
    [shown_card] = view["cards"]
    assert shown_card["id"] == card and shown_card["kind"] == "count"
    massage_name = shown_card["items"][0]["serviceName"]
    assert massage_name.startswith("推拿")
    assert [(i["serviceId"], i["sessionsTotal"], i["remaining"]) for i in shown_card["items"]] == \
        [(shop.massage, 10, 9)]
    [visit] = view["lastVisits"]
    assert (visit["serviceName"], visit["storeName"], visit["staffName"], visit["notes"], visit["status"]) == \
        (massage_name, "静安店", "陈晓明", "右肩胛紧，手法加重", "completed")
    assert view["upcoming"] == []
    assert [(t["id"], t["assigneeId"], t["status"]) for t in view["openTasks"]] == [(task, chen["id"], "open")]
    drafts = {d["templateKey"]: d for d in view["drafts"]}
    # No next visit yet: the confirmation needs its time; the staff and the inactive templates are never drafts.
    assert set(drafts) == {"sessions_left"}
    assert drafts["sessions_left"]["content"] == f"赵六，您的卡项剩余：测试卡：{massage_name} 9次。"
    reads = await audit_entries(shop.kit, action="member.health.read", actor_id=chen["id"])
    assert reads and reads[0]["target_id"] == member

    # Book the next visit into the own schedule (staffId omitted: the therapist themself).
    next_day = shop.day + timedelta(days=2)
    booked = await gql(shop.kit, BOOK_NEXT, chen["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(15, day=next_day),
        "notes": "右肩继续加强"}})
    assert "errors" not in booked, booked
    appointment = booked["data"]["bookNextVisit"]
    assert (appointment["status"], appointment["staffId"], appointment["channel"]) == ("booked", chen["id"], "wecom")
    assert len(appointment["resourceIds"]) == 1

    # Another therapist's schedule is not theirs to fill; outside the store's booking window is refused too.
    before = await appointment_count(shop)
    theirs = await gql(shop.kit, BOOK_NEXT, chen["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(17, day=next_day),
        "staffId": other["id"]}})
    assert codes(theirs) == ["not_own_schedule"]
    assert theirs["errors"][0]["extensions"]["status"] == 403
    await set_policy(shop, horizon_days=14)
    far = await gql(shop.kit, BOOK_NEXT, chen["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage,
        "startsAt": shop.iso(15, day=shop.day + timedelta(days=20))}})
    assert codes(far) == ["beyond_horizon"]
    assert far["errors"][0]["extensions"]["status"] == 422
    assert far["errors"][0]["extensions"]["field"] == "starts_at"
    assert await appointment_count(shop) == before

    # A note, and the follow-up task done.
    noted = await gql(shop.kit, NOTE, chen["token"], {"m": member, "b": "企业微信沟通：最近加班多，右肩又紧"})
    assert "errors" not in noted, noted
    assert noted["data"]["addCareNote"]["data"]["body"] == "企业微信沟通：最近加班多，右肩又紧"
    r = await shop.kit.get(f"/members/{member}/timeline", params={"type": "note"})
    assert r.status_code == 200, r.text
    assert [i["data"]["body"] for i in r.json()["items"]] == ["企业微信沟通：最近加班多，右肩又紧"]
    done = await gql(shop.kit, COMPLETE_TASK, chen["token"], {"id": task})
    assert done["data"]["completeTask"]["status"] == "done", done

    # The 360 now shows the booked visit, no open task, and a confirmation draft naming time and store.
    view = (await gql(shop.kit, MEMBER_360, chen["token"], {"x": external_userid}))["data"]["sidebarMember"]
    [upcoming] = view["upcoming"]
    assert (upcoming["appointment"]["id"], upcoming["serviceName"], upcoming["storeName"], upcoming["staffName"]) == \
        (appointment["id"], massage_name, "静安店", "陈晓明")
    assert view["openTasks"] == []
    drafts = {d["templateKey"]: d for d in view["drafts"]}
    assert set(drafts) == {"next_visit", "sessions_left"}
    local = shop.at(15, day=next_day).strftime("%Y-%m-%d %H:%M")
    assert drafts["next_visit"] == {"templateKey": "next_visit", "templateName": "下次预约确认", "channel": "sms",
                                    "content": f"赵六您好，已为您约好{local}在静安店的{massage_name}。"}
    # Drafts are for the sidebar to send: nothing went out from the server.
    assert (await owner_sql("SELECT count(*) FROM outbound_messages WHERE tenant_id = :t", t=shop.tenant_id))[0][0] == 0


async def test_a_therapist_who_does_not_serve_the_member_sees_no_health_and_cannot_book_or_note(client, wechat):
    shop = await make_shop(client, therapists=1, rooms=2)
    chen = await wecom_therapist(client, wechat, shop, "陈晓明")
    stranger = await wecom_therapist(client, wechat, shop, "黄志强")
    member, _ = await served_member(shop, chen)
    r = await patch(shop.kit, f"/members/{member}", {"health": {"allergy_history": "青霉素过敏"}})
    assert r.status_code == 200, r.text
    external_userid = await link_contact(shop, wechat, member, "赵六")

    result = await gql(shop.kit, MEMBER_360, stranger["token"], {"x": external_userid})
    assert "errors" not in result, result
    view = result["data"]["sidebarMember"]
    assert (view["inMyCare"], view["canBookNext"]) == (False, False)
    assert view["member"]["healthVisible"] is False and view["member"]["health"] is None
    assert [v["notes"] for v in view["lastVisits"]] == [None]  # the therapist's remarks follow the health rule
    assert await audit_entries(shop.kit, action="member.health.read", actor_id=stranger["id"]) == []

    before = await appointment_count(shop)
    refused = await gql(shop.kit, BOOK_NEXT, stranger["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(15)}})
    assert codes(refused) == ["not_in_care"]
    assert refused["errors"][0]["extensions"]["status"] == 403
    assert await appointment_count(shop) == before
    assert codes(await gql(shop.kit, NOTE, stranger["token"], {"m": member, "b": "我也想记一笔"})) == ["not_in_care"]

    # The store's own booking desk (appointments:write) may book anyone with any therapist.
    manager = await shop.kit.staff(["store_manager"], [shop.store])
    booked = await gql(shop.kit, BOOK_NEXT, manager["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(16),
        "staffId": stranger["id"]}})
    assert "errors" not in booked, booked
    assert booked["data"]["bookNextVisit"]["staffId"] == stranger["id"]


async def test_bad_input_is_a_problem_code_and_writes_nothing(client, wechat):
    shop = await make_shop(client, therapists=1, rooms=2)
    chen = await wecom_therapist(client, wechat, shop, "陈晓明")
    member, _ = await served_member(shop, chen)
    external_userid = await link_contact(shop, wechat, member, "赵六")
    token = chen["token"]

    unknown = _external_userid()  # neither we nor WeCom know it
    assert codes(await gql(shop.kit, MEMBER_360, token, {"x": unknown})) == ["external_contact_not_found"]
    stranger = _external_userid()
    wechat.add_external_contact(stranger, "路人甲")  # WeCom knows them; no member is linked
    assert codes(await gql(shop.kit, MEMBER_360, token, {"x": stranger})) == ["external_contact_not_linked"]
    malformed = await gql(shop.kit, MEMBER_360, token, {"x": "wm not an id!"})
    assert codes(malformed) == ["validation_error"]
    assert malformed["errors"][0]["extensions"]["field"] == "externalUserid"
    assert codes(await gql(shop.kit, MEMBER_360, patient_token(shop.kit, member), {"x": external_userid})) == \
        ["wrong_audience"]
    limited = await gql(shop.kit, "query($x: String!) { sidebarMember(externalUserid: $x) { lastVisits(limit: 0) "
                                  "{ id } } }", token, {"x": external_userid})
    assert codes(limited) == ["validation_error"]
    bad_status = await gql(shop.kit, "query($x: String!) { sidebarMember(externalUserid: $x) { cards(status: "
                                     "\"gone\") { id } } }", token, {"x": external_userid})
    assert codes(bad_status) == ["validation_error"]

    before = await appointment_count(shop)
    body = {"memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(15)}
    for change, code in (({"memberId": "nope"}, "validation_error"),
                         ({"memberId": str(uuid.uuid4())}, "member_not_found"),
                         ({"serviceId": str(uuid.uuid4())}, "service_not_found"),
                         ({"startsAt": shop.iso(15, day=shop.day - timedelta(days=10))}, "in_the_past"),
                         ({"startsAt": shop.iso(15, 7)}, "not_on_slot_grid"),
                         ({"notes": "长" * 3000}, "validation_error")):
        assert codes(await gql(shop.kit, BOOK_NEXT, token, {"i": body | change})) == [code], change
    assert await appointment_count(shop) == before
    for note in ("", "   ", "长" * 4001):
        assert codes(await gql(shop.kit, NOTE, token, {"m": member, "b": note})) == ["validation_error"], note
    assert codes(await gql(shop.kit, NOTE, token, {"m": str(uuid.uuid4()), "b": "备注"})) == ["member_not_found"]
    notes = await owner_sql("SELECT count(*) FROM member_notes WHERE tenant_id = :t", t=shop.tenant_id)
    assert notes[0][0] == 0


async def test_the_member_360_costs_the_same_statements_for_one_card_or_many(client, wechat):
    """DataLoaders and batched reads: more cards, visits and appointments add rows, not queries."""
    shop = await make_shop(client, therapists=1, rooms=2)
    chen = await wecom_therapist(client, wechat, shop, "陈晓明")
    small, _ = await served_member(shop, chen, cards=1, visits=1)
    big, _ = await served_member(shop, chen, cards=3, visits=3, member=await make_member(shop.kit, "钱七"),
                                 days_later=2)
    await shop.booked(shop.at(16, day=shop.day + timedelta(days=1)), staff=chen["id"], member=small)
    for n in range(3):
        await shop.booked(shop.at(10 + 2 * n, day=shop.day + timedelta(days=1)), staff=chen["id"], member=big)
    contacts = {m: await link_contact(shop, wechat, m, "客户") for m in (small, big)}

    async def cost(member: str) -> int:
        await gql(shop.kit, MEMBER_360, chen["token"], {"x": contacts[member]})  # the caller's actor is cached
        with statements() as seen:
            result = await gql(shop.kit, MEMBER_360, chen["token"], {"x": contacts[member]})
        assert "errors" not in result, result
        return len(seen)

    assert await cost(small) == await cost(big)
