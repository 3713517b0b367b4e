import pytest


@pytest.fixture(autouse=True)
def _database(database_url):
    """Service-level tests open their own transactions: the engine must exist (the session's test database)."""
    return database_url
