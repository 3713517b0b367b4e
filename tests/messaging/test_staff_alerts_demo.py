"""The demo tenant shows alert settings, a rule that messages staff, and alert records: one delivered to the
consultant (through the local fake WeCom), one skipped for a colleague without a WeCom account."""

from __future__ import annotations

from tests.factories import demo_reader


async def test_demo_shows_staff_alert_settings_and_alert_records(client):
    get = await demo_reader(client)

    settings = {i["kind"]: i["enabled"] for i in (await get("/staff-alert-settings"))["items"]}
    assert settings == {"task_assigned": True, "task_overdue": True, "refund_pending_approval": True,
                        "low_stock": False, "order_completion_failed": True}
    alerts = (await get("/messages", template_key="alert.task_assigned"))["items"]
    assert sorted((m["status"], m["reason"]) for m in alerts) == [("sent", None), ("skipped", "no_wecom_userid")]
    sent = next(m for m in alerts if m["status"] == "sent")
    assert "回访张伟" in sent["content"] and sent["provider_msg_id"]
    staff = {s["id"]: s["username"] for s in (await get("/staff", limit=50))["items"]}
    assert staff[sent["staff_id"]] == "consultant.zhao"
    rules = {r["key"]: r for r in (await get("/automation-rules"))["items"]}
    assert rules["renewal_reminder_wecom"]["enabled"]
    assert rules["renewal_reminder_wecom"]["actions"][0]["recipient"] == "consultant"
    keys = {t["key"] for t in (await get("/message-templates", limit=100))["items"]}
    assert {"renewal_reminder", "alert.task_assigned", "alert.low_stock"} <= keys
