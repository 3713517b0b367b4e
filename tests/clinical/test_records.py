"""Draft → signed → amendments: locking, content hash, encryption at rest, concurrent signing, events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

from sqlalchemy import text

from app.core import crypto
from app.core.db import session_scope
from tests.clinical.helpers import TCM_VALUES, draft, member
from tests.factories import new_tenant


async def _raw(record_id: str) -> dict:
    async with session_scope(system=True) as session:
        row = (await session.execute(text("SELECT * FROM clinical_records WHERE id = :i"),
                                     {"i": uuid.UUID(record_id)})).mappings().one()
    return dict(row)


async def test_draft_sign_lock_and_amend(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id)
    assert record["status"] == "draft" and record["content_hash"] is None and record["hash_verified"] is None
    path = f"/api/v1/clinical-records/{record['id']}"

    edited = TCM_VALUES | {"tongue_coating": ["yellow_greasy"]}
    r = await client.patch(path, json={"values": edited}, headers=kit.auth())
    assert r.status_code == 200 and r.json()["values"]["tongue_coating"] == ["yellow_greasy"], r.text
    # Amending a draft makes no sense: edit it.
    r = await kit.post(f"/clinical-records/{record['id']}/amendments", {"reason": "x", "values": edited})
    assert r.status_code == 409 and r.json()["code"] == "record_not_signed"

    r = await kit.post(f"/clinical-records/{record['id']}/sign", {})
    assert r.status_code == 200, r.text
    signed = r.json()
    assert signed["status"] == "signed" and len(signed["content_hash"]) == 64 and signed["hash_verified"] is True

    r = await client.patch(path, json={"values": TCM_VALUES}, headers=kit.auth())
    assert r.status_code == 409 and r.json()["code"] == "record_signed", r.text
    r = await kit.post(f"/clinical-records/{record['id']}/sign", {})
    assert r.status_code == 409 and r.json()["code"] == "record_signed"

    # An amendment is validated against the same template version.
    r = await kit.post(f"/clinical-records/{record['id']}/amendments",
                       {"reason": "舌苔误记", "values": edited | {"pulse": ["nonsense"]}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "values.pulse", r.text
    corrected = edited | {"tongue_coating": ["white_greasy"]}
    r = await kit.post(f"/clinical-records/{record['id']}/amendments", {"reason": "舌苔误记，应为白腻苔",
                                                                      "values": corrected})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["seq"] == 1 and first["prev_hash"] == signed["content_hash"]
    r = await kit.post(f"/clinical-records/{record['id']}/amendments", {"reason": "补记脉率", "values":
                                                                      corrected | {"pulse_rate": 80}})
    assert r.status_code == 201 and r.json()["prev_hash"] == first["hash"]

    shown = (await kit.get(f"/clinical-records/{record['id']}")).json()
    assert shown["values"] == edited  # the original, as signed
    assert shown["current_values"]["pulse_rate"] == 80
    assert [a["reason"] for a in shown["amendments"]] == ["舌苔误记，应为白腻苔", "补记脉率"]
    assert shown["amendments"][0]["author_id"] and shown["amendments"][0]["created_at"]
    assert shown["content_hash"] == signed["content_hash"] and shown["hash_verified"] is True

    # The database refuses changing a signed record or an amendment, whoever asks.
    async with session_scope(system=True) as session:
        for statement in ("UPDATE clinical_records SET values_encrypted = 'x' WHERE id = :i",
                          "DELETE FROM clinical_amendments WHERE record_id = :i"):
            try:
                async with session.begin_nested():
                    await session.execute(text(statement), {"i": uuid.UUID(record["id"])})
            except Exception as exc:  # noqa: BLE001 - any refusal will do; the point is nothing changed
                assert "signed" in str(exc) or "append-only" in str(exc), exc
            else:
                raise AssertionError(f"{statement} was allowed")


async def test_content_hash_is_stable_and_verifiable(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id)
    signed = (await kit.post(f"/clinical-records/{record['id']}/sign", {})).json()
    # Recomputed by hand from the documented canonical form.
    canonical = json.dumps({"record_id": record["id"], "template_code": "tcm_four_exams", "template_version": 1,
                            "member_id": member_id, "signer_id": signed["signed_by_id"], "values": TCM_VALUES},
                           ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert signed["content_hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    again = (await kit.get(f"/clinical-records/{record['id']}")).json()
    assert again["content_hash"] == signed["content_hash"] and again["hash_verified"] is True

    # Tampering below the API (re-encrypted other values, trigger bypassed by the table owner) is detected.
    async with session_scope(system=True) as session:
        await session.execute(text("ALTER TABLE clinical_records DISABLE TRIGGER clinical_records_signed_final"))
        await session.execute(text("UPDATE clinical_records SET values_encrypted = :v WHERE id = :i"), {
            "v": crypto.encrypt(json.dumps(TCM_VALUES | {"pulse_rate": 99})), "i": uuid.UUID(record["id"])})
        await session.execute(text("ALTER TABLE clinical_records ENABLE TRIGGER clinical_records_signed_final"))
    assert (await kit.get(f"/clinical-records/{record['id']}")).json()["hash_verified"] is False


async def test_values_are_encrypted_at_rest(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id, values=TCM_VALUES | {"chief_complaint": "夜间盗汗明显"})
    await kit.post(f"/clinical-records/{record['id']}/sign", {})
    await kit.post(f"/clinical-records/{record['id']}/amendments",
                   {"reason": "患者补充：伴心悸", "values": TCM_VALUES | {"chief_complaint": "夜间盗汗伴心悸"}})
    raw = await _raw(record["id"])
    assert "盗汗" not in raw["values_encrypted"] and "tongue" not in raw["values_encrypted"]
    assert crypto.key_id(raw["values_encrypted"]) and "盗汗" in crypto.decrypt(raw["values_encrypted"])
    async with session_scope(system=True) as session:
        amendment = (await session.execute(text("SELECT reason_encrypted, values_encrypted FROM clinical_amendments "
                                                "WHERE record_id = :i"), {"i": uuid.UUID(record["id"])})).one()
    assert "心悸" not in amendment[0] + amendment[1]
    assert crypto.decrypt(amendment[0]) == "患者补充：伴心悸"


async def test_concurrent_signing_signs_once(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id)
    answers = await asyncio.gather(*[kit.post(f"/clinical-records/{record['id']}/sign", {}) for _ in range(6)])
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * 5, [r.text for r in answers]
    hashes = {r.json()["content_hash"] for r in answers if r.status_code == 200}
    assert hashes == {(await kit.get(f"/clinical-records/{record['id']}")).json()["content_hash"]}
    async with session_scope(system=True) as session:
        events = (await session.execute(text("SELECT count(*) FROM outbox WHERE tenant_id = :t AND "
                                             "topic = 'clinical_record.signed'"),
                                        {"t": uuid.UUID(kit.tenant_id)})).scalar_one()
    assert events == 1


async def test_signing_and_amending_emit_events_without_values(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id)
    await kit.post(f"/clinical-records/{record['id']}/sign", {})
    await kit.post(f"/clinical-records/{record['id']}/amendments", {"reason": "更正", "values": TCM_VALUES})
    async with session_scope(system=True) as session:
        rows = (await session.execute(text("SELECT topic, payload FROM outbox WHERE tenant_id = :t AND topic LIKE "
                                           "'clinical_record.%' ORDER BY id"), {"t": uuid.UUID(kit.tenant_id)})).all()
    assert [t for t, _ in rows] == ["clinical_record.signed", "clinical_record.amended"]
    signed = rows[0][1]
    assert signed["record_id"] == record["id"] and signed["member_id"] == member_id and signed["content_hash"]
    assert "values" not in signed and "颈肩" not in json.dumps(rows[1][1], ensure_ascii=False)


async def test_a_repeated_sign_with_the_same_idempotency_key_replays_the_answer(client):
    kit = await new_tenant(client)
    record = await draft(kit, await member(kit))
    headers = {"Idempotency-Key": f"sign-{uuid.uuid4()}"}
    first = await kit.post(f"/clinical-records/{record['id']}/sign", {}, headers=headers)
    again = await kit.post(f"/clinical-records/{record['id']}/sign", {}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
