"""Issue 13's therapist journey end to end, over real HTTP to the fake WeChat/WeCom server: the therapist signs in
through WeCom OAuth → after her visit the patient adds the therapist on WeCom (an encrypted
change_external_contact callback) and the worker links the contact to the member by the unionid of her
mini-program sign-in → the sidebar opens the member 360 by external_userid over GraphQL → the therapist books
the next visit into her own schedule → the message drafts confirm that visit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from app.domain.wechat_links import service as wechat_links
from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import owner_sql
from tests.factories import deliver
from tests.members.helpers import make_member, new_phone
from tests.platform.test_graphql import gql
from tests.sidebar.test_sidebar import BOOK_NEXT, MEMBER_360, served_member, templates, wecom_therapist

MINI_LOGIN = "/api/v1/auth/wechat/mini-program"
CALLBACK = "/api/v1/wecom/callback/{code}"


async def test_sign_in_contact_member_360_book_next_and_draft(client, wechat, redis_url, monkeypatch):
    monkeypatch.setattr(wechat_links, "_redis_url", redis_url)  # the worker's Redis, for WeCom's access token
    shop = await make_shop(client, therapists=1, rooms=2)
    kit, tenant_id = shop.kit, shop.tenant_id
    await templates(shop)

    # 1. The therapist signs in to the sidebar through WeCom OAuth (the fake WeCom server answers the code).
    chen = await wecom_therapist(client, wechat, shop, "陈晓明")
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {chen['token']}"})
    assert me.status_code == 200, me.text
    assert (me.json()["kind"], me.json()["id"]) == ("staff", chen["id"])
    chen_userid = (await kit.get(f"/staff/{chen['id']}")).json()["wecom_userid"]
    assert chen_userid

    # The patient: a member who signed in to the mini-program (so her unionid is known) and whom the therapist
    # served on a course card today.
    phone, openid, unionid = new_phone(), f"o{uuid.uuid4().hex}", f"u{uuid.uuid4().hex}"
    member = (await make_member(kit, "周婷", phone=phone))["id"]
    wechat.add_login_code("login-" + openid, openid, unionid=unionid)
    wechat.add_phone_code("phone-" + openid, phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "login-" + openid,
                                            "phone_code": "phone-" + openid})
    assert r.status_code == 200, r.text
    assert (r.json()["member_id"], r.json()["bound"]) == (member, True)
    _, (card,) = await served_member(shop, chen, member=member)

    # 2. At the end of the visit she adds the therapist on WeCom: WeCom calls back, encrypted and signed.
    external_userid = f"wm{uuid.uuid4().hex}"[:32]
    wechat.add_external_contact(external_userid, "周婷", unionid=unionid, follow_userids=[chen_userid])
    query, body = wechat.callback_request(wechat.external_contact_event("add_external_contact", external_userid,
                                                                       chen_userid, state="jingan-counter"))
    r = await client.post(CALLBACK.format(code=kit.code), params=query, content=body)
    assert r.status_code == 200 and r.text == "", r.text
    (changed,) = await owner_sql("SELECT payload FROM outbox WHERE tenant_id = :t AND "
                                 "topic = 'wecom.external_contact_changed'", t=tenant_id)
    assert (changed[0]["change_type"], changed[0]["staff_userid"], changed[0]["member_id"]) == \
        ("add_external_contact", chen_userid, None)  # not known yet: WeCom is asked after the answer
    # The worker asks WeCom who the contact is and links them to the member by unionid.
    assert await deliver(tenant_id, "wecom.external_contact_changed") == ["done"]
    links = await owner_sql("SELECT member_id, source FROM member_wecom_links WHERE tenant_id = :t AND "
                            "external_userid = :e", t=tenant_id, e=external_userid)
    assert [(str(m), s) for m, s in links] == [(member, "unionid")]
    contacts = await owner_sql("SELECT name, follow_userids, status FROM wecom_external_contacts WHERE "
                               "tenant_id = :t AND external_userid = :e", t=tenant_id, e=external_userid)
    assert [tuple(c) for c in contacts] == [("周婷", [chen_userid], "active")]

    # 3. The sidebar opens the member beside the chat by external_userid.
    result = await gql(kit, MEMBER_360, chen["token"], {"x": external_userid})
    assert "errors" not in result, result
    view = result["data"]["sidebarMember"]
    assert (view["externalUserid"], view["inMyCare"], view["canBookNext"]) == (external_userid, True, True)
    assert view["member"]["id"] == member and view["member"]["name"] == "周婷"
    assert view["member"]["phoneMasked"] is True and phone not in str(view)
    [shown] = view["cards"]
    massage_name = shown["items"][0]["serviceName"]
    assert (shown["id"], shown["items"][0]["sessionsTotal"], shown["items"][0]["remaining"]) == (card, 10, 9)
    [visit] = view["lastVisits"]
    assert (visit["staffName"], visit["status"], visit["serviceName"]) == ("陈晓明", "completed", massage_name)
    assert view["upcoming"] == []
    # Without a next visit there is nothing to confirm: only the sessions-left draft is offered.
    assert [d["templateKey"] for d in view["drafts"]] == ["sessions_left"]

    # 4. She books the next visit, a week later at 15:00, into her own schedule from the sidebar.
    next_day = shop.day + timedelta(days=7)
    booked = await gql(kit, BOOK_NEXT, chen["token"], {"i": {
        "memberId": member, "storeId": shop.store, "serviceId": shop.massage, "startsAt": shop.iso(15, day=next_day),
        "notes": "右肩继续加强"}})
    assert "errors" not in booked, booked
    appointment = booked["data"]["bookNextVisit"]
    assert (appointment["status"], appointment["staffId"], appointment["channel"]) == ("booked", chen["id"], "wecom")
    stored = (await kit.get(f"/appointments/{appointment['id']}")).json()
    assert (stored["member_id"], stored["service_id"], stored["status"]) == (member, shop.massage, "booked")
    assert datetime.fromisoformat(stored["starts_at"]) == datetime.fromisoformat(appointment["startsAt"]) == \
        shop.at(15, day=next_day)

    # 5. The drafts now confirm the booked visit (time, store, service) for her to send from the chat.
    view = (await gql(kit, MEMBER_360, chen["token"], {"x": external_userid}))["data"]["sidebarMember"]
    [upcoming] = view["upcoming"]
    assert (upcoming["appointment"]["id"], upcoming["staffName"]) == (appointment["id"], "陈晓明")
    drafts = {d["templateKey"]: d["content"] for d in view["drafts"]}
    local = shop.at(15, day=next_day).strftime("%Y-%m-%d %H:%M")
    assert drafts == {"next_visit": f"周婷您好，已为您约好{local}在静安店的{massage_name}。",
                      "sessions_left": f"周婷，您的卡项剩余：测试卡：{massage_name} 9次。"}
    # Drafts are sent by the sidebar itself: the server queued nothing.
    sent = await owner_sql("SELECT count(*) FROM outbound_messages WHERE tenant_id = :t", t=tenant_id)
    assert sent[0][0] == 0
