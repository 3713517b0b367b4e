"""The demo tenant shows every capability with data: checkout, loyalty, messaging and the care loop rules."""

from __future__ import annotations

from tests.factories import demo_reader


async def test_demo_shows_checkout_loyalty_and_the_care_loop(client):
    get = await demo_reader(client)

    orders = (await get("/orders"))["items"]
    assert len(orders) >= 3 and {o["status"] for o in orders} == {"paid"}
    templates = (await get("/coupon-templates"))["items"]
    assert {"新客立减30元", "满300减50"} <= {t["name"] for t in templates}
    rules = {r["key"]: r["enabled"] for r in (await get("/automation-rules"))["items"]}
    assert rules["renewal_task"] and rules["care_after_treatment"] and rules["appointment_reminder"]
    message_templates = (await get("/message-templates"))
    keys = {t["key"] for t in (message_templates["items"] if isinstance(message_templates, dict)
                                else message_templates)}
    assert {"care_after_treatment", "appointment_reminder"} <= keys
