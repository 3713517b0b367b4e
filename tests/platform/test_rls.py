"""Invariant 1: tenancy is enforced by PostgreSQL, not by the WHERE clauses the code remembers to write.

Every query here is deliberately unfiltered (`SELECT * FROM stores`): only row-level security stands
between one tenant's transaction and another tenant's rows.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.core import outbox
from app.core.db import session_scope
from app.core.settings import get_settings
from tests.factories import new_tenant, seal_audit

# Business tables the checks below must at least find; a new table joins the checks by itself.
KNOWN_TENANT_TABLES = {"stores", "staff", "roles", "staff_roles", "staff_stores", "audit_log", "audit_heads",
                       "outbox", "outbox_deliveries", "idempotency_keys", "refresh_tokens", "api_clients"}


@pytest.fixture(scope="module")
async def two_tenants(app):
    """Tenants A and B, each with stores, staff, audit rows and an outbox event (shared: tests only read,
    or write in transactions that fail and roll back)."""
    transport = httpx.ASGITransport(app=app, client=(f"10.1.{uuid.uuid4().int % 250}.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://careloop.test") as client:
        a, b = await new_tenant(client), await new_tenant(client)
        for kit in (a, b):
            first, second = await kit.store("一店"), await kit.store("二店")
            await kit.staff(["therapist"], [first, second])
            async with session_scope(UUID(kit.tenant_id)) as session:
                await outbox.emit(session, "test.rls", {"tenant": kit.code})
        yield a, b


async def _tenant_ids(session, table: str) -> set[str]:
    rows = (await session.execute(text(f"SELECT tenant_id FROM {table}"))).all()  # no WHERE, on purpose
    return {str(r.tenant_id) for r in rows}


@pytest.mark.parametrize("table", ["stores", "staff", "audit_log", "outbox", "roles", "staff_stores"])
async def test_unfiltered_select_sees_only_the_scoped_tenant(two_tenants, table):
    a, b = two_tenants
    await seal_audit()  # audit entries are in the chain once the worker's pass ran
    async with session_scope(UUID(a.tenant_id)) as session:
        seen = await _tenant_ids(session, table)
    assert seen == {a.tenant_id}, f"{table}: tenant A's transaction saw {seen}"

    # The owner (system) sees both, so the rows for B exist and RLS is what hid them.
    async with session_scope(system=True) as session:
        everything = await _tenant_ids(session, table)
    assert {a.tenant_id, b.tenant_id} <= everything


@pytest.mark.parametrize("table", sorted(KNOWN_TENANT_TABLES))
async def test_no_tenant_set_sees_nothing(two_tenants, table):
    async with session_scope(None) as session:
        count = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    assert count == 0


async def test_insert_for_another_tenant_is_refused(two_tenants):
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(
                text("INSERT INTO stores (tenant_id, id, name, timezone, active) "
                     "VALUES (:t, gen_random_uuid(), 'stolen', 'Asia/Shanghai', true)"),
                {"t": b.tenant_id},
            )
    async with session_scope(system=True) as session:
        assert (await session.execute(text("SELECT count(*) FROM stores WHERE name = 'stolen'"))).scalar_one() == 0


async def test_moving_a_row_to_another_tenant_is_refused(two_tenants):
    a, b = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text("UPDATE stores SET tenant_id = :t"), {"t": b.tenant_id})


class _Undo(Exception):
    pass


async def test_update_and_delete_without_where_touch_only_own_rows(two_tenants):
    a, b = two_tenants
    with pytest.raises(_Undo):  # roll back at the end: the tenants are shared by this module
        async with session_scope(UUID(a.tenant_id)) as session:
            updated = (await session.execute(text("UPDATE stores SET address = 'A only'"))).rowcount
            deleted = (await session.execute(text("DELETE FROM staff_stores"))).rowcount
            assert (updated, deleted) == (2, 2)
            raise _Undo


async def test_row_security_off_does_not_reveal_other_tenants(two_tenants):
    # With row_security off PostgreSQL does not silently skip the policies for a role without BYPASSRLS:
    # it refuses any query they would filter.
    a, _ = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text("SET LOCAL row_security = off"))
            await _tenant_ids(session, "stores")


async def test_request_transactions_run_as_a_role_rls_applies_to(two_tenants):
    a, _ = two_tenants
    role = get_settings().db_app_role
    async with session_scope(UUID(a.tenant_id)) as session:
        who = (await session.execute(text(
            "SELECT current_user AS u, session_user AS login, rolsuper, rolbypassrls, "
            "pg_has_role(current_user, :role, 'USAGE') AS in_app_role FROM pg_roles WHERE rolname = current_user"),
            {"role": role})).one()
        owners = (await session.execute(text(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
            "WHERE n.nspname = 'public' AND relkind = 'r'"))).scalars().all()
    # The connection itself logs in as a non-owner member of the application role (APP_DATABASE_URL).
    assert who.login == who.u and who.in_app_role
    assert not who.rolsuper and not who.rolbypassrls
    assert who.u not in owners and role not in owners


async def test_reset_role_does_not_reveal_other_tenants(two_tenants):
    # RESET ROLE returns to the session's login role, which is just as bound by the policies.
    a, b = two_tenants
    try:
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text("RESET ROLE"))
            seen = await _tenant_ids(session, "stores")
    except DBAPIError:
        return  # refused: nothing revealed
    assert b.tenant_id not in seen


async def test_app_role_cannot_change_tenants(two_tenants):
    a, _ = two_tenants
    with pytest.raises(DBAPIError, match="permission denied"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text("UPDATE tenants SET name = 'hijacked'"))
    with pytest.raises(DBAPIError, match="permission denied"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text("INSERT INTO tenants (id, code, name, active, settings) "
                                       "VALUES (gen_random_uuid(), 'rogue', 'rogue', true, '{}')"))


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET summary = '{}'", "DELETE FROM audit_log",
                                       "UPDATE audit_pending SET summary = '{}'", "DELETE FROM audit_pending"])
async def test_app_role_cannot_rewrite_audit_log(two_tenants, statement):
    a, _ = two_tenants
    with pytest.raises(DBAPIError, match="permission denied"):
        async with session_scope(UUID(a.tenant_id)) as session:
            await session.execute(text(statement))


async def test_owner_cannot_rewrite_audit_log_either(two_tenants):
    # The append-only trigger holds even for the schema owner (system transactions).
    a, _ = two_tenants
    await seal_audit()
    with pytest.raises(DBAPIError, match="append-only"):
        async with session_scope(system=True) as session:
            await session.execute(text("DELETE FROM audit_log WHERE tenant_id = :t"), {"t": a.tenant_id})


# ---------------------------------------------------------------- schema-wide checks

_TENANT_TABLES_SQL = text(
    """
    SELECT c.oid, c.relname, c.relrowsecurity
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY c.relname
    """
)


async def _tenant_tables(session) -> dict[str, tuple[int, bool]]:
    return {r.relname: (r.oid, r.relrowsecurity) for r in (await session.execute(_TENANT_TABLES_SQL)).all()}


async def test_every_tenant_table_has_rls_and_a_tenant_policy(database_url):
    async with session_scope(system=True) as session:
        tables = await _tenant_tables(session)
        policies = (await session.execute(text(
            "SELECT tablename, policyname, cmd, roles::text[] AS roles, qual, with_check "
            "FROM pg_policies WHERE schemaname = 'public'"))).all()
    assert KNOWN_TENANT_TABLES <= set(tables), "the query for tenant tables misses known ones"
    without_rls = sorted(name for name, (_, enabled) in tables.items() if not enabled)
    assert not without_rls, f"tables with tenant_id but no row-level security: {without_rls}"
    by_table: dict[str, list] = {}
    for p in policies:
        by_table.setdefault(p.tablename, []).append(p)
    for name in tables:
        keyed = [p for p in by_table.get(name, [])
                 if p.cmd == "ALL" and "app.tenant_id" in (p.qual or "") and "app.tenant_id" in (p.with_check or "")
                 and "tenant_id" in p.qual]
        assert keyed, f"{name} has no ALL-commands policy keyed on app.tenant_id (USING and WITH CHECK)"
        permissive_other = [p for p in by_table.get(name, []) if p not in keyed]
        assert not permissive_other, f"{name} has extra policies that could widen access: {permissive_other}"


async def test_every_key_of_a_tenant_table_includes_tenant_id(database_url):
    async with session_scope(system=True) as session:
        tables = await _tenant_tables(session)
        # Primary keys, unique constraints and unique indexes (pg_index covers all three).
        unique = (await session.execute(text(
            """
            SELECT i.indrelid::regclass::text AS tbl, ic.relname AS idx,
                   bool_or(a.attname = 'tenant_id') AS has_tenant
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid
            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indisunique AND i.indrelid = ANY(:oids)
            GROUP BY 1, 2
            """), {"oids": [oid for oid, _ in tables.values()]})).all()
        foreign = (await session.execute(text(
            """
            SELECT con.conrelid::regclass::text AS tbl, con.conname, con.confrelid::regclass::text AS ref,
                   bool_or(a.attname = 'tenant_id') AS has_tenant
            FROM pg_constraint con
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey)
            WHERE con.contype = 'f' AND con.conrelid = ANY(:oids)
            GROUP BY 1, 2, 3
            """), {"oids": [oid for oid, _ in tables.values()]})).all()
    assert {u.tbl for u in unique} >= KNOWN_TENANT_TABLES, "every tenant table has a primary key"
    missing = sorted(f"{u.tbl}.{u.idx}" for u in unique if not u.has_tenant)
    assert not missing, f"primary keys / unique constraints without tenant_id: {missing}"
    missing_fk = sorted(f"{f.tbl}.{f.conname} -> {f.ref}" for f in foreign if not f.has_tenant)
    assert not missing_fk, f"foreign keys without tenant_id: {missing_fk}"
