"""Password guessing is locked out, and failed sign-ins never reveal which usernames or tenants exist."""

from __future__ import annotations

import asyncio

from app.core.settings import get_settings
from tests.factories import PASSWORD, new_tenant
from tests.iam.helpers import assert_problem

TOKEN = "/api/v1/auth/token"


async def _sign_in(client, tenant: str, username: str, password: str):
    return await client.post(TOKEN, json={"tenant": tenant, "username": username, "password": password})


async def test_locked_after_max_failures_even_with_the_right_password(client):
    kit = await new_tenant(client)
    await kit.staff(["front_desk"], [await kit.store()], username="alice")
    limit = get_settings().login_max_failures
    assert limit == 5

    for _ in range(limit):
        assert_problem(await _sign_in(client, kit.code, "alice", "wrong-password"), 401, "invalid_credentials")

    r = await _sign_in(client, kit.code, "alice", PASSWORD)
    assert_problem(r, 429, "login_locked")
    retry_after = int(r.headers["retry-after"])
    assert 0 < retry_after <= get_settings().login_failure_window_seconds
    # Usernames are not case-sensitive for the lock: changing the case does not buy new guesses.
    assert_problem(await _sign_in(client, kit.code, "ALICE", PASSWORD), 429, "login_locked")

    # Another user of the same tenant (from the same address) is not locked.
    r = await _sign_in(client, kit.code, "owner", PASSWORD)
    assert r.status_code == 200, r.text


async def test_failures_below_the_limit_do_not_lock_and_success_resets(client):
    kit = await new_tenant(client)
    limit = get_settings().login_max_failures
    for _ in range(limit - 1):
        assert_problem(await _sign_in(client, kit.code, "owner", "wrong-password"), 401, "invalid_credentials")
    assert (await _sign_in(client, kit.code, "owner", PASSWORD)).status_code == 200
    # The successful sign-in cleared the count: another limit - 1 failures still leave the door open.
    for _ in range(limit - 1):
        assert_problem(await _sign_in(client, kit.code, "owner", "wrong-password"), 401, "invalid_credentials")
    assert (await _sign_in(client, kit.code, "owner", PASSWORD)).status_code == 200


async def test_parallel_guesses_cannot_overrun_the_limit(client):
    kit = await new_tenant(client)
    limit = get_settings().login_max_failures
    responses = await asyncio.gather(*(_sign_in(client, kit.code, "owner", f"guess-{i}") for i in range(3 * limit)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) <= limit, statuses
    assert set(statuses) <= {401, 429}, statuses
    assert_problem(await _sign_in(client, kit.code, "owner", PASSWORD), 429, "login_locked")


async def test_no_user_enumeration(client):
    kit = await new_tenant(client)
    wrong_password = await _sign_in(client, kit.code, "owner", "wrong-password")
    unknown_user = await _sign_in(client, kit.code, "nobody", PASSWORD)
    unknown_tenant = await _sign_in(client, "tnosuchtenant", "owner", PASSWORD)

    bodies = [assert_problem(r, 401, "invalid_credentials") for r in (wrong_password, unknown_user, unknown_tenant)]
    # Same answer apart from the path-independent parts: nothing says which of the three was wrong.
    assert len({(b["title"], b["detail"], b["type"]) for b in bodies}) == 1


async def test_disabled_account_looks_like_a_wrong_password(client):
    kit = await new_tenant(client)
    member = await kit.staff(["front_desk"], [await kit.store()])
    r = await kit.client.patch(f"/api/v1/staff/{member['id']}", json={"active": False}, headers=kit.auth())
    assert r.status_code == 200, r.text
    assert_problem(await _sign_in(client, kit.code, member["username"], PASSWORD), 401, "invalid_credentials")


async def test_unknown_usernames_are_locked_out_too(client):
    """Otherwise the lock itself (429 for real users, 401 forever for others) would reveal who exists."""
    kit = await new_tenant(client)
    for _ in range(get_settings().login_max_failures):
        assert_problem(await _sign_in(client, kit.code, "ghost", "wrong-password"), 401, "invalid_credentials")
    assert_problem(await _sign_in(client, kit.code, "ghost", "wrong-password"), 429, "login_locked")
