"""GraphQL at /graphql: the same callers, permissions and problem codes as REST, with limits and DataLoaders."""

from __future__ import annotations

import json
import re
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
from sqlalchemy import event

from app.core.db import get_engine
from app.core.settings import get_settings
from tests.factories import new_tenant

ME = "{ me { id kind roles permissions stores { id name } } }"


async def gql(kit, query: str, token: str | None = None, variables: dict | None = None) -> dict:
    r = await kit.client.post("/graphql", json={"query": query, "variables": variables or {}},
                              headers=kit.auth(token) if token != "" else {})
    assert r.status_code in (200, 400), r.text
    return r.json()


def codes(result: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors") or []]


@contextmanager
def statements():
    """Every SQL statement the application sends while the block runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_me_for_a_staff_member(client):
    kit = await new_tenant(client)
    stores = {await kit.store(f"店{i}"): f"店{i}" for i in range(3)}
    assigned = sorted(stores)[:2]
    await kit.store("别的店")
    therapist = await kit.staff(["therapist"], assigned)
    result = await gql(kit, ME, therapist["token"])
    assert "errors" not in result, result
    me = result["data"]["me"]
    assert me["id"] == therapist["id"] and me["kind"] == "staff" and me["roles"] == ["therapist"]
    assert "visits:complete" in me["permissions"] and "audit:read" not in me["permissions"]
    assert me["permissions"] == sorted(me["permissions"])
    assert sorted(s["id"] for s in me["stores"]) == assigned
    assert {s["name"] for s in me["stores"]} == {stores[i] for i in assigned}


async def test_me_stores_for_an_unrestricted_owner(client):
    kit = await new_tenant(client)
    ids = {await kit.store("一店"), await kit.store("二店")}
    me = (await gql(kit, ME))["data"]["me"]
    assert me["roles"] == ["owner"] and {s["id"] for s in me["stores"]} == ids


async def test_stores_are_paged_with_a_cursor(client):
    kit = await new_tenant(client)
    created = {await kit.store(f"店{i}") for i in range(3)}
    therapist = await kit.staff(["therapist"])
    seen, cursor = [], None
    for _ in range(5):
        result = await gql(kit, "query($c: String) { stores(limit: 1, cursor: $c) { items { id name } nextCursor } }",
                           therapist["token"], {"c": cursor})
        assert "errors" not in result, result
        page = result["data"]["stores"]
        assert len(page["items"]) == 1
        seen.append(page["items"][0]["id"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 3 and set(seen) == created

    bad = await gql(kit, "{ stores(limit: 0) { items { id } } }", therapist["token"])
    assert codes(bad) == ["validation_error"] and bad["data"] is None


async def test_store_by_id_and_its_errors(client):
    kit = await new_tenant(client)
    store_id = await kit.store("静安店")
    ok = await gql(kit, "query($id: ID!) { store(id: $id) { id name timezone } }", variables={"id": store_id})
    assert ok["data"]["store"] == {"id": store_id, "name": "静安店", "timezone": "Asia/Shanghai"}

    bad = await gql(kit, '{ store(id: "not-a-uuid") { id } }')
    assert codes(bad) == ["validation_error"]
    assert bad["errors"][0]["extensions"]["status"] == 422
    assert bad["errors"][0]["path"] == ["store"]

    other = await new_tenant(client)
    foreign = await gql(other, "query($id: ID!) { store(id: $id) { id name } }", variables={"id": store_id})
    assert codes(foreign) == ["store_not_found"]
    assert foreign["errors"][0]["extensions"]["status"] == 404


async def test_missing_permission_is_a_problem_code(client):
    kit = await new_tenant(client)
    role = await kit.post("/roles", {"name": "members_only", "permissions": ["members:read"]})
    assert role.status_code == 201, role.text
    clerk = await kit.staff(["members_only"])
    result = await gql(kit, "{ stores { items { id } } }", clerk["token"])
    assert codes(result) == ["permission_denied"]
    assert result["errors"][0]["extensions"]["missing_permissions"] == ["stores:read"]
    assert result["errors"][0]["extensions"]["status"] == 403
    # `stores` is non-null, so its error nulls the whole answer: nothing of the document leaks beside it.
    partial = await gql(kit, "{ me { id } stores { items { id } } }", clerk["token"])
    assert partial["data"] is None and codes(partial) == ["permission_denied"]
    assert (await gql(kit, "{ me { id } }", clerk["token"]))["data"]["me"]["id"] == clerk["id"]


async def test_unauthenticated_is_a_problem_code(client):
    kit = await new_tenant(client)
    result = await gql(kit, "{ me { id } }", token="")
    assert codes(result) == ["not_authenticated"]
    result = await gql(kit, "{ me { id } }", token="not-a-jwt")
    assert codes(result) == ["invalid_token"]


async def test_query_deeper_than_the_limit_is_refused(client, monkeypatch):
    kit = await new_tenant(client)
    limit = get_settings().graphql_max_depth
    nested = "{ me { stores { " + "x { " * limit + "id" + " }" * limit + " } } }"
    result = await gql(kit, nested)
    assert result.get("data") is None
    assert any("exceeds maximum operation depth" in e["message"] for e in result["errors"]), result

    # A real query one level over a (lowered) limit is refused before any resolver runs
    # (root fields are depth 0: `me { stores { id } }` has depth 2).
    await kit.store("店")
    monkeypatch.setattr(get_settings(), "graphql_max_depth", 1)
    with statements() as seen:
        refused = await gql(kit, "{ me { stores { id } } }")
    assert refused.get("data") is None
    assert any("exceeds maximum operation depth" in e["message"] for e in refused["errors"])
    assert not any("FROM stores" in s for s in seen)
    assert "errors" not in await gql(kit, "{ me { id } }")


async def test_too_many_aliases_are_refused(client):
    kit = await new_tenant(client)
    limit = get_settings().graphql_max_aliases
    allowed = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(limit)) + " }"
    assert "errors" not in await gql(kit, allowed)
    too_many = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(limit + 1)) + " }"
    result = await gql(kit, too_many)
    assert result.get("data") is None
    assert any(re.search("alias", e["message"], re.I) for e in result["errors"]), result


async def test_validation_errors_carry_a_code(client):
    kit = await new_tenant(client)
    result = await gql(kit, "{ me { no_such_field } }")
    assert codes(result) == ["graphql_validation"]


async def test_me_stores_are_loaded_in_one_query(client):
    kit = await new_tenant(client)
    assigned = [await kit.store(f"店{i}") for i in range(4)]
    consultant = await kit.staff(["consultant"], assigned)
    query = "{ a: me { stores { id name } } b: me { stores { id } } }"
    with statements() as seen:
        result = await gql(kit, query, consultant["token"])
    assert "errors" not in result, result
    assert sorted(s["id"] for s in result["data"]["a"]["stores"]) == sorted(assigned)
    assert sorted(s["id"] for s in result["data"]["b"]["stores"]) == sorted(assigned)
    store_queries = [s for s in seen if re.search(r"\bFROM stores\b", s)]
    assert len(store_queries) == 1, store_queries


async def test_text_no_field_can_store_is_a_422_in_graphql_as_in_rest(client):
    """A lone surrogate or a NUL, in the document or in a variable, never reaches a resolver."""
    kit = await new_tenant(client)
    created = await kit.post("/members", {"name": "余晓", "phone": f"139{uuid.uuid4().int % 10**8:08d}"})
    assert created.status_code == 201, created.text
    member = created.json()["id"]
    writes_before = (await kit.get(f"/members/{member}/timeline")).json()["items"]
    # A raw surrogate inside the document itself is a syntax error to the GraphQL parser: a 400, not a 500.
    raw = json.dumps({"query": '{ members(q: "\ud800") { items { id } } }'})
    r = await kit.client.post("/graphql", content=raw, headers={**kit.auth(), "content-type": "application/json"})
    assert codes(r.json()) == ["graphql_validation"], r.text
    for query, variables in [
        ('query($q: String) { members(q: $q) { items { id } } }', {"q": "\udfff"}),
        ('mutation($id: ID!) { addMemberNote(memberId: $id, body: "a\\u0000b") { id } }', {"id": member}),
        ('mutation($id: ID!, $b: String!) { addMemberNote(memberId: $id, body: $b) { id } }',
         {"id": member, "b": "x\udfffy"}),
    ]:
        # ASCII-escaped JSON, as a client library sends it: `\ud800` decodes to a lone surrogate.
        r = await kit.client.post("/graphql", content=json.dumps({"query": query, "variables": variables}),
                                  headers={**kit.auth(), "content-type": "application/json"})
        assert r.status_code in (200, 400, 422), r.text
        result = r.json()
        assert codes(result) == ["validation_error"], result
        error = result["errors"][0]
        assert error["extensions"]["status"] == 422 and error["extensions"]["errors"][0]["type"] in (
            "string_surrogate", "string_nul")
    assert (await kit.get(f"/members/{member}/timeline")).json()["items"] == writes_before
    # REST answers the same check the same way.
    r = await kit.client.post(f"/api/v1/members/{member}/notes", content='{"body": "a\\udfffb"}',
                              headers={**kit.auth(), "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "string_surrogate", r.text


async def test_introspection_is_depth_limited_and_can_be_switched_off(client, monkeypatch):
    from graphql import get_introspection_query

    from app.graphql.schema import build_schema

    kit = await new_tenant(client)
    standard = await gql(kit, get_introspection_query(descriptions=True))
    assert "errors" not in standard and standard["data"]["__schema"]["queryType"]["name"] == "Query"
    deep = "{ __schema { types { fields { type " + "{ ofType " * 20 + "{ name }" + " }" * 20 + " } } } }"
    result = await gql(kit, deep)
    assert codes(result) == ["graphql_validation"] and "introspection nested" in result["errors"][0]["message"]

    production = get_settings().model_copy(update={"environment": "production"})
    schema = build_schema(production)
    context = SimpleNamespace(mark_failed=lambda: None)
    closed = await schema.execute("{ __schema { queryType { name } } }", context_value=context)
    assert closed.errors and "introspection" in closed.errors[0].message.lower()
    assert (await schema.execute("{ __typename }", context_value=context)).errors is None


async def test_graphiql_is_served_only_where_it_is_enabled(client):
    from fastapi import FastAPI

    from app.graphql.schema import graphql_router

    assert (await client.get("/graphql", headers={"accept": "text/html"})).status_code == 200  # development
    app = FastAPI()
    app.include_router(graphql_router(get_settings().model_copy(update={"environment": "production"})),
                       prefix="/graphql")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://careloop.test") as own:
        assert (await own.get("/graphql", headers={"accept": "text/html"})).status_code == 404


async def test_fields_of_one_query_resolved_concurrently_share_the_transaction_in_turn(client):
    """GraphQL resolves root fields (and list items) concurrently, all on the request's one connection."""
    kit = await new_tenant(client)
    for name in ("静安店", "徐汇店", "浦东店"):
        await kit.store(name)
    fields = " ".join(f"s{i}: stores(limit: {i + 1}) {{ items {{ name }} }} m{i}: me {{ stores {{ name }} }}"
                      for i in range(6))
    body = await gql(kit, "{ " + fields + " }")
    assert "errors" not in body, body.get("errors")
    assert [len(body["data"][f"s{i}"]["items"]) for i in range(6)] == [1, 2, 3, 3, 3, 3]
    assert all(len(body["data"][f"m{i}"]["stores"]) == 3 for i in range(6))
