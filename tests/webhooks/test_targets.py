"""Webhook targets (SSRF): loopback and private addresses in any spelling are refused when a subscription is
saved, names are resolved and checked again at every delivery, and the request goes to the checked address."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text

from app.core.db import session_scope
from app.core.settings import get_settings
from app.domain.webhooks import service
from tests.factories import new_tenant
from tests.webhooks.test_webhooks import deliveries, drain

PUBLIC = "93.184.216.34"

LOOPBACK_IN_DISGUISE = [
    "https://127.1/hook", "https://2130706433/hook", "https://0x7f000001/hook", "https://0/hook",
    "https://0177.0.0.1/hook", "https://0x7f.1/hook", "https://localhost/hook", "https://127.0.0.1/hook",
    "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://[::ffff:7f00:1]/hook",
    "https://[2002:7f00:1::]/hook", "https://api.localhost/hook", "https://0x7f000001./hook", "https://LOCALHOST./x",
]
PRIVATE_AND_SPECIAL = [
    "https://10.0.0.5/hook", "https://172.16.3.4/hook", "https://192.168.1.10/hook", "https://169.254.169.254/latest",
    "https://100.64.0.1/hook", "https://224.0.0.1/hook", "https://0.0.0.0/hook", "https://[fe80::1]/hook",
    "https://[fc00::5]/hook", "https://240.0.0.1/hook", "https://255.255.255.255/hook", "https://012.0.0.1/hook",
]


@pytest.fixture
def no_local_receivers(monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_allow_http_localhost", False)


async def _create(kit, url: str):
    return await kit.post("/webhook-subscriptions", {"url": url, "event_types": ["member.created"]})


def _refused_on_url(r: httpx.Response, url: str) -> None:
    assert r.status_code == 422, (url, r.status_code, r.text)
    assert r.json()["code"] == "validation_error", r.text
    assert [e["field"] for e in r.json()["errors"]] == ["url"], r.text


async def test_loopback_and_private_addresses_in_any_spelling_are_refused(client, dns, no_local_receivers):
    kit = await new_tenant(client)
    for url in LOOPBACK_IN_DISGUISE + PRIVATE_AND_SPECIAL:
        _refused_on_url(await _create(kit, url), url)
    # Names are resolved when saved: one that points home is refused too.
    dns.names["localtest.me"] = ["127.0.0.1"]
    dns.names["intranet.example.com"] = [PUBLIC, "10.1.2.3"]  # one private address is enough to refuse
    for url in ("https://localtest.me/hook", "https://intranet.example.com/hook"):
        _refused_on_url(await _create(kit, url), url)
    dns.names["his.example.com"] = [PUBLIC]
    assert (await _create(kit, "https://his.example.com/hook")).status_code == 201
    assert (await _create(kit, f"https://{PUBLIC}:8443/hook")).status_code == 201
    # A name that does not resolve yet is accepted: it is checked again at every delivery.
    assert (await _create(kit, "https://not-yet.example.com/hook")).status_code == 201
    # The same rules on a change of URL.
    sub = (await _create(kit, "https://his.example.com/hook")).json()
    r = await kit.client.patch(f"/api/v1/webhook-subscriptions/{sub['id']}", json={"url": "https://127.1/x"},
                               headers=kit.auth())
    _refused_on_url(r, "https://127.1/x")


async def test_production_refuses_plain_http_and_this_machine(client, monkeypatch):
    kit = await new_tenant(client)
    monkeypatch.setattr(get_settings(), "environment", "production")
    monkeypatch.setattr(get_settings(), "webhook_allow_http_localhost", True)  # refused at start-up; ignored here
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "https://localhost/hook",
                "https://127.0.0.1/hook", "https://[::1]/hook"):
        _refused_on_url(await _create(kit, url), url)
    monkeypatch.setattr(get_settings(), "environment", "development")
    assert (await _create(kit, "http://127.0.0.1:8080/hook")).status_code == 201  # a developer's receiver
    _refused_on_url(await _create(kit, f"http://{PUBLIC}/hook"), "http to a public address")


async def test_allowed_private_networks_open_an_intranet_receiver(client, monkeypatch, no_local_receivers):
    kit = await new_tenant(client)
    monkeypatch.setattr(get_settings(), "webhook_allowed_private_networks", "10.20.0.0/16, 192.168.8.10/32")
    assert (await _create(kit, "https://10.20.3.4/hook")).status_code == 201
    assert (await _create(kit, "https://192.168.8.10/hook")).status_code == 201
    for url in ("https://10.21.0.1/hook", "https://192.168.8.11/hook", "http://10.20.3.4/hook",
                "https://127.0.0.1/hook"):
        _refused_on_url(await _create(kit, url), url)
    with pytest.raises(ValueError, match="not a CIDR"):
        type(get_settings())(webhook_allowed_private_networks="10.0.0.0/8,intranet")


async def _one_delivery(kit, url: str) -> tuple[UUID, UUID]:
    """A subscription to `url`, stored as is (as one saved before these rules were), and one delivery due."""
    sub = (await _create(kit, "https://placeholder.example.com/hook")).json()
    tenant, delivery_id = UUID(kit.tenant_id), uuid4()
    async with session_scope(tenant) as session:
        await session.execute(text("UPDATE webhook_subscriptions SET url = :u WHERE id = :i"),
                              {"u": url, "i": UUID(sub["id"])})
        await session.execute(text(
            "INSERT INTO webhook_deliveries (tenant_id, id, subscription_id, event_id, topic, payload, status, "
            "attempts, next_attempt_at, created_at, updated_at) VALUES (:t, :d, :s, :e, 'member.created', "
            "'{}', 'pending', 0, now(), now(), now())"),
            {"t": tenant, "d": delivery_id, "s": UUID(sub["id"]), "e": uuid4()})
    return tenant, delivery_id


async def test_a_name_that_turns_private_after_saving_is_refused_at_delivery(
        client, dns, receiver, webhook_handlers_only, no_local_receivers):
    kit = await new_tenant(client)
    dns.names["rebind.example.com"] = [[PUBLIC], ["127.0.0.1"]]  # public when saved, loopback when sent
    r = await _create(kit, f"https://rebind.example.com:{receiver.port}/hook")
    assert r.status_code == 201, r.text
    await kit.post("/members", {"name": "李四", "phone": "13912345601"})
    await drain(kit.tenant_id)
    [delivery] = await deliveries(kit, r.json()["id"])
    assert delivery["status"] == "failed" and delivery["response_code"] is None
    assert "127.0.0.1" in delivery["last_error"] and "loopback" in delivery["last_error"], delivery["last_error"]
    assert receiver.requests == []
    assert dns.lookups.count("rebind.example.com") == 2  # on saving, and again on sending


async def test_urls_saved_before_the_rules_are_refused_at_delivery(client, receiver, no_local_receivers):
    kit = await new_tenant(client)
    for url in (f"http://0x7f000001:{receiver.port}/hook", f"https://127.1:{receiver.port}/hook",
                f"https://0177.0.0.1:{receiver.port}/hook"):
        tenant, delivery_id = await _one_delivery(kit, url)
        assert await service.deliver(session_scope, tenant, delivery_id) == "failed"
    assert receiver.requests == []
    errors = sorted(d["last_error"] or "" for d in await _all_deliveries(kit))
    assert all(e.startswith("refused: ") for e in errors), errors
    assert sum("127.0.0.1 is a loopback address" in e for e in errors) == 2, errors


async def _all_deliveries(kit) -> list[dict]:
    subs = (await kit.get("/webhook-subscriptions")).json()["items"]
    return [d for s in subs for d in await deliveries(kit, s["id"])]


async def test_delivery_connects_to_the_checked_address_with_the_real_name(client, dns, monkeypatch):
    kit = await new_tenant(client)
    dns.names["his.example.com"] = [PUBLIC]
    tenant, delivery_id = await _one_delivery(kit, "https://his.example.com:8443/careloop/hook?x=1")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    monkeypatch.setattr(service, "TRANSPORT", httpx.MockTransport(answer))
    assert await service.deliver(session_scope, tenant, delivery_id) == "succeeded"
    [request] = seen
    assert str(request.url) == f"https://{PUBLIC}:8443/careloop/hook?x=1"
    assert request.headers["host"] == "his.example.com:8443"
    assert request.extensions["sni_hostname"] == "his.example.com"  # TLS checks the certificate for the name


async def test_a_local_receiver_by_name_gets_the_resolved_address(client, dns, receiver,
                                                                  webhook_handlers_only):
    # `hooks.localhost` is not in /etc/hosts: only the address the check resolved can reach the receiver.
    kit = await new_tenant(client)
    dns.names["hooks.localhost"] = ["127.0.0.1"]
    r = await _create(kit, f"http://hooks.localhost:{receiver.port}/hooks/careloop")
    assert r.status_code == 201, r.text
    await kit.post("/members", {"name": "王五", "phone": "13912345602"})
    await drain(kit.tenant_id)
    [delivery] = await deliveries(kit, r.json()["id"])
    assert delivery["status"] == "succeeded", delivery
    assert receiver.requests[0]["headers"]["host"] == f"hooks.localhost:{receiver.port}"
