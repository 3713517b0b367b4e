"""Invariant 8: the audit log is append-only and hash-chained, so any change to the record shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import text

from app.core import audit
from app.core.db import session_scope
from tests.factories import new_tenant, seal_audit

ROOT = Path(__file__).resolve().parents[2]


async def _audit_rows(tenant_id: str, *, seal: bool = True) -> list:
    if seal:  # what the worker does every two seconds
        await seal_audit()
    async with session_scope(UUID(tenant_id)) as session:
        return (await session.execute(text("SELECT * FROM audit_log ORDER BY seq"))).all()


async def _tamper(tenant_id: str, statement: str, **params) -> None:
    """What someone with the owner's credentials could do: switch the guard off and rewrite history."""
    async with session_scope(system=True) as session:
        await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await session.execute(text(statement), {"t": tenant_id, **params})
        await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


async def test_mutations_are_audited_with_actor_request_and_ip(client):
    kit = await new_tenant(client)
    r = await kit.post("/stores", {"name": "静安店", "address": "南京西路1号"})
    assert r.status_code == 201
    store_id, request_id = r.json()["id"], r.headers["x-request-id"]
    me = (await kit.get("/me")).json()

    rows = [row for row in await _audit_rows(kit.tenant_id) if row.action == "store.create"]
    assert len(rows) == 1
    entry = rows[0]
    assert entry.actor_type == "staff" and entry.actor_id == me["id"]
    assert entry.target_type == "store" and entry.target_id == store_id
    assert entry.request_id == request_id
    assert entry.ip == client._transport.client[0]
    assert entry.summary["after"]["name"] == "静安店"

    # A caller-supplied request id is kept, so a client can find its own call in the trail.
    r = await kit.client.patch(f"/api/v1/stores/{store_id}", json={"name": "静安旗舰店"},
                               headers=kit.auth() | {"X-Request-ID": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    update = [row for row in await _audit_rows(kit.tenant_id) if row.action == "store.update"]
    assert [(u.request_id, u.summary["before"], u.summary["after"]) for u in update] == [
        ("trace-42", {"name": "静安店"}, {"name": "静安旗舰店"})]


async def test_secrets_never_reach_the_audit_log(client):
    kit = await new_tenant(client)
    await kit.staff(["therapist"])
    rows = await _audit_rows(kit.tenant_id)
    dump = json.dumps([dict(r._mapping) for r in rows], default=str)
    assert "staff.create" in dump
    assert "correct-horse-battery" not in dump and "argon2" not in dump


async def test_failed_requests_leave_no_audit_rows(client):
    kit = await new_tenant(client)
    before = len(await _audit_rows(kit.tenant_id))
    r = await kit.post("/stores", {"name": "x", "timezone": "Nowhere/Land"})
    assert r.status_code == 422
    assert len(await _audit_rows(kit.tenant_id)) == before


async def test_list_is_newest_first_with_cursor_pagination(client):
    kit = await new_tenant(client)
    for i in range(5):
        await kit.store(f"店{i}")
    everything = await _audit_rows(kit.tenant_id)
    seen, cursor = [], None
    while True:
        await seal_audit()
        r = await kit.get("/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["seq"] for e in seen] == [row.seq for row in reversed(everything)]
    assert [e["hash"] for e in seen] == [row.hash for row in reversed(everything)]

    await seal_audit()
    stores_only = (await kit.get("/audit", params={"action": "store.create"})).json()["items"]
    assert [e["summary"]["after"]["name"] for e in stores_only] == [f"店{i}" for i in reversed(range(5))]


async def test_audit_read_needs_the_permission(client):
    kit = await new_tenant(client)
    therapist = await kit.staff(["therapist"])
    r = await kit.get("/audit", token=therapist["token"])
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    r = await kit.get("/audit/verify", token=therapist["token"])
    assert r.status_code == 403


async def test_verify_is_ok_then_reports_an_edited_row(client):
    kit = await new_tenant(client)
    for i in range(3):
        await kit.store(f"店{i}")
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    total = len(await _audit_rows(kit.tenant_id))
    assert report == {"ok": True, "checked": total, "broken_at_seq": None, "reason": None, "unsealed_entries": 0,
                      "oldest_unsealed_seconds": None}

    victim = (await _audit_rows(kit.tenant_id))[2]
    await _tamper(kit.tenant_id, "UPDATE audit_log SET summary = '{\"after\": {\"name\": \"forged\"}}' "
                                 "WHERE tenant_id = :t AND seq = :s", s=victim.seq)
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] is False
    assert report["broken_at_seq"] == victim.seq
    assert report["checked"] == victim.seq - 1


async def test_verify_reports_a_recomputed_hash_by_the_next_row(client):
    # A forger who also recomputes the edited row's own hash is caught by the next row's prev_hash.
    kit = await new_tenant(client)
    for i in range(3):
        await kit.store(f"店{i}")
    rows = await _audit_rows(kit.tenant_id)
    victim = dict(rows[1]._mapping)
    victim["summary"] = {"forged": True}
    forged_hash = audit.entry_hash(victim["prev_hash"], victim)
    await _tamper(kit.tenant_id, "UPDATE audit_log SET summary = '{\"forged\": true}', hash = :h "
                                 "WHERE tenant_id = :t AND seq = :s", h=forged_hash, s=victim["seq"])
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] is False and report["broken_at_seq"] == victim["seq"] + 1


async def test_verify_reports_a_removed_row(client):
    kit = await new_tenant(client)
    for i in range(3):
        await kit.store(f"店{i}")
    rows = await _audit_rows(kit.tenant_id)
    await _tamper(kit.tenant_id, "DELETE FROM audit_log WHERE tenant_id = :t AND seq = :s", s=rows[1].seq)
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] is False and report["broken_at_seq"] == rows[1].seq


async def test_verify_reports_removal_of_the_last_row(client):
    kit = await new_tenant(client)
    await kit.store("店")
    rows = await _audit_rows(kit.tenant_id)
    await _tamper(kit.tenant_id, "DELETE FROM audit_log WHERE tenant_id = :t AND seq = :s", s=rows[-1].seq)
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] is False
    assert report["broken_at_seq"] == rows[-1].seq
    assert report["checked"] == len(rows) - 1


async def test_verify_reports_a_row_appended_outside_the_chain(client):
    # INSERT is not stopped by the append-only trigger; a well-formed row slipped in after the last one
    # without moving the chain head must still show.
    kit = await new_tenant(client)
    await kit.store("店")
    rows = await _audit_rows(kit.tenant_id)
    forged = dict(rows[-1]._mapping) | {"seq": rows[-1].seq + 1, "prev_hash": rows[-1].hash,
                                        "action": "store.delete", "summary": {"forged": True}}
    forged["hash"] = audit.entry_hash(forged["prev_hash"], forged)
    async with session_scope(system=True) as session:
        await session.execute(text(
            "INSERT INTO audit_log (tenant_id, seq, id, occurred_at, actor_type, actor_id, action, target_type, "
            "target_id, summary, request_id, ip, prev_hash, hash) VALUES (:tenant_id, :seq, gen_random_uuid(), "
            ":occurred_at, :actor_type, :actor_id, :action, :target_type, :target_id, CAST(:summary AS jsonb), "
            ":request_id, :ip, :prev_hash, :hash)"), forged | {"summary": json.dumps(forged["summary"])})
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] is False and report["broken_at_seq"] == forged["seq"]


async def test_concurrent_mutations_keep_one_gap_free_chain(client):
    kit = await new_tenant(client)
    before = len(await _audit_rows(kit.tenant_id))
    answers = await asyncio.gather(*[kit.post("/stores", {"name": f"并发{i}"}) for i in range(20)])
    assert [r.status_code for r in answers] == [201] * 20
    rows = await _audit_rows(kit.tenant_id)
    assert [r.seq for r in rows] == list(range(1, before + 21))
    assert all(r.prev_hash == p.hash for p, r in zip(rows, rows[1:], strict=False))
    assert {r.target_id for r in rows if r.action == "store.create"} == {a.json()["id"] for a in answers}
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report == {"ok": True, "checked": before + 20, "broken_at_seq": None, "reason": None,
                      "unsealed_entries": 0, "oldest_unsealed_seconds": None}


async def test_chains_are_per_tenant(client):
    a, b = await new_tenant(client), await new_tenant(client)
    await asyncio.gather(a.store("A店"), b.store("B店"), a.store("A店2"))
    for kit in (a, b):
        rows = await _audit_rows(kit.tenant_id)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert rows[0].prev_hash == audit.GENESIS_HASH
        await seal_audit()
        assert (await kit.get("/audit/verify")).json()["ok"] is True


def _cli(database_url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))",
                           *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


async def test_cli_verify_audit_exit_codes(client, database_url, redis_url):
    kit = await new_tenant(client)
    await kit.store("店")
    await seal_audit()
    ok = await asyncio.to_thread(_cli, database_url, redis_url, "verify-audit", "--tenant", kit.code)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    await _tamper(kit.tenant_id, "UPDATE audit_log SET actor_id = 'someone-else' WHERE tenant_id = :t AND seq = 1")
    broken = await asyncio.to_thread(_cli, database_url, redis_url, "verify-audit", "--tenant", kit.code)
    assert broken.returncode == 2, broken.stderr
    assert json.loads(broken.stdout) | {"reason": None} == {"ok": False, "checked": 0, "broken_at_seq": 1,
                                                            "reason": None, "unsealed_entries": 0,
                                                            "oldest_unsealed_seconds": None}

    missing = await asyncio.to_thread(_cli, database_url, redis_url, "verify-audit", "--tenant", "no-such-tenant")
    assert missing.returncode == 1 and "no tenant" in missing.stderr


@pytest.mark.parametrize("after_statement", [1, 2, 3])
async def test_verify_is_not_fooled_by_a_write_committed_while_it_runs(client, after_statement):
    # verify_chain needs more than one statement (rows and the chain head), each with its own snapshot;
    # a mutation committing between any two of them must not look like tampering.
    kit = await new_tenant(client)
    await kit.store("店")
    statements: list[str] = []
    async with session_scope(UUID(kit.tenant_id)) as session:
        for name in ("execute", "stream", "get", "scalar", "exec"):
            original = getattr(session, name)

            async def then_write(*args, _original=original, _name=name, **kwargs):
                result = await _original(*args, **kwargs)
                statements.append(_name)
                if len(statements) == after_statement:
                    await kit.store("verify 运行中新建")  # commits in its own request transaction
                return result

            setattr(session, name, then_write)
        report = await audit.verify_chain(session, UUID(kit.tenant_id))
    assert len(statements) >= after_statement, "the write was not injected"
    assert report.ok, report
    await seal_audit()
    assert (await kit.get("/audit/verify")).json()["ok"] is True


async def test_verify_stays_ok_under_concurrent_writes(client):
    kit = await new_tenant(client)
    await kit.store("店")
    await seal_audit()
    # Writes, sealing passes and verifications all at once: verify never sees a half-sealed chain.
    work = [kit.post("/stores", {"name": f"写{i}"}) if i % 3 == 0 else seal_audit() if i % 3 == 1
            else kit.get("/audit/verify") for i in range(30)]
    answers = [a for a in await asyncio.gather(*work) if not isinstance(a, int)]
    assert all(r.status_code in (200, 201) for r in answers)
    reports = [r.json() for r in answers if r.request.method == "GET"]
    assert all(r["ok"] for r in reports), reports


async def test_reads_and_writes_wait_for_no_chain_lock_and_are_sealed_in_order(client):
    """Audited reads of health data and audited writes do not queue behind the tenant's chain: the entry is
    recorded at once (committed before the answer), listed by verify as unsealed, and sealed into the chain
    by the worker's pass."""
    kit = await new_tenant(client)
    created = await kit.post("/members", {"name": "贺兰", "phone": "13912340001"})
    member = created.json()["id"]
    assert (await kit.client.patch(f"/api/v1/members/{member}", json={"health": {"allergy_history": "青霉素"}},
                                   headers=kit.auth())).status_code == 200
    await audit.seal_pending(session_scope)
    chained = len(await _audit_rows(kit.tenant_id))

    # Another transaction holds the tenant's chain head (as a long write would): reads still answer.
    async with session_scope(system=True) as holder:
        await holder.execute(text("SELECT 1 FROM audit_heads WHERE tenant_id = :t FOR UPDATE"),
                             {"t": kit.tenant_id})
        reads = await asyncio.wait_for(asyncio.gather(*[kit.get(f"/members/{member}") for _ in range(3)]),
                                       timeout=10)
        assert [r.status_code for r in reads] == [200] * 3
        assert reads[0].json()["health"]["allergy_history"] == "青霉素"
        write = await asyncio.wait_for(kit.post("/stores", {"name": "锁外新店"}), timeout=10)
        assert write.status_code == 201
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] and report["unsealed_entries"] == 4 and report["oldest_unsealed_seconds"] >= 0
    assert len(await _audit_rows(kit.tenant_id, seal=False)) == chained  # not in the chain yet

    assert await audit.seal_pending(session_scope) >= 4
    rows = await _audit_rows(kit.tenant_id)
    sealed = [r for r in rows[chained:] if r.action == "member.health.read"]
    assert len(sealed) == 3 and all(r.target_id == member for r in sealed)
    # In the order they were written: the write came after the three reads had committed. (Concurrent
    # transactions are chained in the order their entries were inserted, which need not be their clocks'.)
    assert [r.action for r in rows[chained:]][-1] == "store.create"
    await seal_audit()
    report = (await kit.get("/audit/verify")).json()
    assert report["ok"] and report["unsealed_entries"] == 0 and report["checked"] == len(rows)
