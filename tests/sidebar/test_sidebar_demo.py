"""The demo tenant shows the sidebar: 张伟 is a WeCom contact of his therapist 陈晓明, who opens him beside the chat
(signed in through WeCom OAuth), sees the next visit booked there, the note, and drafts to send."""

from __future__ import annotations

from app.domain.wechat_links.demo import DEMO_CONTACTS, DEMO_WECOM_USERIDS
from app.seed import DEMO_TENANT, seed_demo
from tests.factories import TenantKit
from tests.platform.test_graphql import gql
from tests.sidebar.test_sidebar import MEMBER_360


async def test_demo_therapist_opens_zhang_wei_beside_the_chat(client, wechat):
    await seed_demo(if_missing=True)
    wechat.add_wecom_code("demo-sidebar-code", DEMO_WECOM_USERIDS["therapist.chen"])
    r = await client.post("/api/v1/auth/wecom", json={"tenant": DEMO_TENANT, "code": "demo-sidebar-code"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    kit = TenantKit(client=client, code=DEMO_TENANT, tenant_id="", owner_token=token)
    name, external_userid, *_ = DEMO_CONTACTS[0]

    result = await gql(kit, MEMBER_360, token, {"x": external_userid})
    assert "errors" not in result, result
    view = result["data"]["sidebarMember"]
    assert view["member"]["name"] == name == "张伟"
    assert view["inMyCare"] is True and view["member"]["healthVisible"] is True
    assert any(i["serviceName"] == "推拿" and i["remaining"] < i["sessionsTotal"]
               for c in view["cards"] for i in c["items"])
    assert any(u["appointment"]["channel"] == "wecom" and u["staffName"] == "陈晓明" for u in view["upcoming"])
    drafts = {d["templateKey"]: d["content"] for d in view["drafts"]}
    assert "sidebar_sessions_left" in drafts and drafts["sidebar_sessions_left"].startswith("张伟您好")
    assert "肩颈调理疗程卡：推拿" in drafts["sidebar_sessions_left"]
    assert "sidebar_next_visit" in drafts
