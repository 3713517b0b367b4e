from __future__ import annotations

import ipaddress

import pytest

from app.core import events as registry
from app.core.settings import get_settings
from app.domain.webhooks import handlers, targets
from app.domain.webhooks.events import WEBHOOKS_DISPATCH
from tests.webhooks.receiver import Receiver


@pytest.fixture
def handlers_registry():
    """Tests may register handlers; the global registry is put back afterwards."""
    saved = {topic: list(entries) for topic, entries in registry.HANDLERS.items()}
    yield registry
    registry.HANDLERS.clear()
    registry.HANDLERS.update(saved)


class FakeResolver:
    """DNS for the webhook tests (no public DNS here): `names` maps a name to its addresses; a list of lists
    answers each lookup with the next entry (the last one repeats), to play a name that changes."""

    def __init__(self) -> None:
        self.names: dict[str, list | list[list]] = {"localhost": ["127.0.0.1"]}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list:
        self.lookups.append(host)
        answer = self.names.get(host)
        if answer is None:
            raise targets.TargetUnresolved(f"{host} does not resolve (fake DNS)")
        if answer and isinstance(answer[0], list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return [ipaddress.ip_address(a) for a in answer]


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> FakeResolver:
    resolver = FakeResolver()
    monkeypatch.setattr(targets, "resolver", resolver)
    return resolver


@pytest.fixture
def receiver(monkeypatch):
    # The receiver is a development receiver: plain http on this machine, which WEBHOOK_ALLOW_HTTP_LOCALHOST
    # (on by default in development) allows; said here so the tests do not depend on ENVIRONMENT.
    monkeypatch.setattr(get_settings(), "webhook_allow_http_localhost", True)
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def webhook_handlers_only(monkeypatch):
    """Only the webhook handlers run: other contexts' reactions to member.created are not under test."""
    entries = {registry.WILDCARD: [(registry.handler_name(handlers.fan_out), handlers.fan_out)],
               WEBHOOKS_DISPATCH: [(registry.handler_name(handlers.dispatch), handlers.dispatch)]}
    monkeypatch.setattr(registry, "HANDLERS", entries)
