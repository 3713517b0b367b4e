from __future__ import annotations

import pytest

from app.workers import registry


@pytest.fixture
def handlers_registry():
    """Tests may register handlers; the global registry is put back afterwards."""
    saved = {topic: list(entries) for topic, entries in registry.HANDLERS.items()}
    yield registry
    registry.HANDLERS.clear()
    registry.HANDLERS.update(saved)
