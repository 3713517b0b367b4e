"""Channels as data, campaign codes with their mini-program QR code (from the fake WeChat), spend entries."""

from __future__ import annotations

import io

from PIL import Image

from app.core.settings import get_settings
from app.integrations.wechat.fake_server import FakeWeChat
from tests.growth.lead_helpers import campaign, channel, owner_sql, shop


async def test_channels_campaign_codes_and_spend(client):
    kit, store_id, staff = await shop(client, consultants=1)
    douyin = await channel(kit, "抖音", "platform", code="douyin")
    r = await kit.post("/channels", {"name": "抖音", "kind": "platform"})
    assert r.status_code == 409 and r.json()["code"] == "channel_exists"
    r = await kit.post("/channels", {"name": "微博", "kind": "ads"})
    assert r.status_code == 422 and "kind" in r.text
    r = await kit.get("/channels")
    assert [c["name"] for c in r.json()["items"]] == ["抖音"]
    r = await kit.client.patch(f"/api/v1/channels/{douyin}", json={"active": False}, headers=kit.auth())
    assert r.status_code == 200 and r.json()["active"] is False

    code = await campaign(kit, douyin, "DY-1212_a", store_id=store_id, page="pages/index/index")
    assert code["store_id"] == store_id
    r = await kit.post("/campaign-codes", {"channel_id": douyin, "code": "DY-1212_a", "name": "重复"})
    assert r.status_code == 409 and r.json()["code"] == "campaign_code_exists"
    r = await kit.post("/campaign-codes", {"channel_id": douyin, "code": "x" * 33, "name": "太长"})
    assert r.status_code == 422 and "code" in r.text
    r = await kit.post("/campaign-codes", {"channel_id": douyin, "code": "有中文", "name": "字符"})
    assert r.status_code == 422
    r = await kit.get(f"/campaign-codes?channel_id={douyin}")
    assert [c["code"] for c in r.json()["items"]] == ["DY-1212_a"]

    r = await kit.post(f"/channels/{douyin}/spend", {"period_start": "2026-11-01", "period_end": "2026-11-30",
                                                    "amount": 1_250_000, "note": "11月信息流"})
    assert r.status_code == 201 and r.json()["amount"] == 1_250_000
    for bad in ({"period_start": "2026-11-30", "period_end": "2026-11-01", "amount": 1},
                {"period_start": "2026-11-01", "period_end": "2026-11-30", "amount": 12.5},
                {"period_start": "2026-11-01", "period_end": "2026-11-30", "amount": -1}):
        r = await kit.post(f"/channels/{douyin}/spend", bad)
        assert r.status_code == 422, bad
    r = await kit.get(f"/channels/{douyin}/spend")
    assert [s["amount"] for s in r.json()["items"]] == [1_250_000]

    # A consultant reads channels and enters spend? Reading yes; defining channels is the owner's.
    r = await kit.get("/channels", staff[0]["token"])
    assert r.status_code == 200
    r = await kit.post("/channels", {"name": "美团", "kind": "platform"}, staff[0]["token"])
    assert r.status_code == 403
    manager = await kit.staff(["store_manager"], [store_id])
    r = await kit.post("/assignment-rules", {"name": "x"}, manager["token"])
    assert r.status_code == 403


async def test_campaign_qr_code_is_a_png_from_wechat_whose_scene_is_the_code(client, monkeypatch):
    kit, store_id, staff = await shop(client, consultants=1)
    xhs = await channel(kit, "小红书", "platform")
    code = await campaign(kit, xhs, "XHS-spring", page="pages/landing/index")
    r = await kit.get(f"/campaign-codes/{code['id']}/qr.png")
    assert r.status_code == 503 and r.json()["code"] == "wechat_not_configured"
    with FakeWeChat() as fake:
        for name, value in fake.settings().items():
            monkeypatch.setattr(get_settings(), name, value)
        r = await kit.get(f"/campaign-codes/{code['id']}/qr.png", params={"width": 300, "env_version": "trial"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(r.content))
        assert image.format == "PNG" and image.size == (300, 300)
        sent = fake.wxacodes[-1]
        assert sent["scene"] == "XHS-spring" and sent["page"] == "pages/landing/index"
        assert sent["check_path"] is False and sent["env_version"] == "trial"
        # WeChat's refusal of a scene (40129) comes back as 502 naming the errcode.
        await owner_sql("UPDATE growth_campaign_codes SET code = :c WHERE id = :i", c="bad scene!" + "x" * 30,
                        i=code["id"])
        r = await kit.get(f"/campaign-codes/{code['id']}/qr.png")
        assert r.status_code == 502 and r.json()["errcode"] == 40129
