"""`@on("*")`: a handler for every topic, after the topic's own, never twice."""

from __future__ import annotations

from app.core import events as registry


async def _own(session, event): ...


async def _every(session, event): ...


def test_wildcard_handlers_follow_the_topics_own(handlers_registry):
    registry.on("test.wild")(_own)
    registry.on("*")(_every)
    registry.on("*", "test.wild")(_own)  # registered for both: still once, in its own place
    mine = {registry.handler_name(_own), registry.handler_name(_every)}

    def names(topic: str) -> list[str]:  # the app's own wildcard handlers (webhooks) are there too
        return [name for name, _ in registry.handlers_for(topic) if name in mine]

    assert names("test.wild") == [registry.handler_name(_own), registry.handler_name(_every)]
    assert names("test.other") == [registry.handler_name(_every), registry.handler_name(_own)]
    assert registry.handlers_for("test.wild")[0][0] == registry.handler_name(_own)  # own before wildcard
