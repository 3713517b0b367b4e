"""Consent: versioned texts, signing in the mini-program (REST and GraphQL) or at the desk, the signature
checked as a real PNG, a signed consent that nothing can change, withdrawal on record, the PDF, services that
cannot be booked or completed without a consent, and who may do what."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.domain.clinical.consent_demo import drawn_signature
from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import in_tenant, owner_sql
from tests.clinical.helpers import audit_rows, member
from tests.factories import TenantKit, demo_reader, new_tenant
from tests.members.helpers import patient_token

SIGNATURE = base64.b64encode(drawn_signature()).decode()
DEVICE = {"device_model": "HUAWEI Mate 60", "system": "HarmonyOS 4.0", "platform": "android"}
WECHAT_UA = "Mozilla/5.0 (Linux; Android 12) MicroMessenger/8.0.49 miniProgram"


def png(size: tuple[int, int], *, mode: str = "RGBA", noise: bool = False) -> str:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new(mode, size, (255, 255, 255, 0) if mode == "RGBA" else 255)
        image.putpixel((1, 1), (0, 0, 0, 255) if mode == "RGBA" else 0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def jpeg() -> str:
    out = io.BytesIO()
    Image.new("RGB", (300, 120), (250, 250, 250)).save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


async def template(kit: TenantKit, code: str = "acupuncture", token: str | None = None,
                   path: str = "/consent-templates") -> dict:
    r = await kit.get(path, token, params={"code": code})
    assert r.status_code == 200, r.text
    return r.json()["items"][0]


async def patient_sign(kit: TenantKit, member_id: str, code: str = "acupuncture", **extra) -> dict:
    token = patient_token(kit, member_id)
    shown = await template(kit, code, token, "/patient/consent-templates")
    r = await kit.post("/patient/consents", {"template_id": shown["id"], "signature_png": SIGNATURE,
                                             "text_sha256": shown["text_sha256"], "device": DEVICE, **extra},
                       token, headers={"User-Agent": WECHAT_UA})
    assert r.status_code == 201, r.text
    return r.json()


async def consent_rows(tenant_id: str) -> int:
    return (await owner_sql("SELECT count(*) FROM signed_consents WHERE tenant_id = :t",
                            t=uuid.UUID(tenant_id)))[0][0]


async def graphql(kit: TenantKit, query: str, token: str, **variables) -> dict:
    r = await kit.client.post("/graphql", json={"query": query, "variables": variables},
                              headers={**kit.auth(token), "User-Agent": WECHAT_UA})
    assert r.status_code == 200, r.text
    return r.json()


async def test_templates_are_built_in_and_edited_as_versions(client):
    kit = await new_tenant(client)
    items = (await kit.get("/consent-templates")).json()["items"]
    assert {t["code"]: (t["version"], t["title"]) for t in items} == {
        "acupuncture": (1, "针灸治疗知情同意书"), "aesthetic_injection": (1, "医美注射治疗知情同意书")}
    first = next(t for t in items if t["code"] == "acupuncture")
    assert first["text_sha256"] == hashlib.sha256(f"{first['title']}\n\n{first['body']}".encode()).hexdigest()

    body = first["body"] + "\n六、治疗过程中如需调整方案，医师将另行告知。"
    r = await kit.post(f"/consent-templates/{first['id']}/versions", {"body": body})
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["title"], r.json()["builtin"]) == (2, "针灸治疗知情同意书", True)
    versions = (await kit.get("/consent-templates", params={"code": "acupuncture", "all_versions": "true"})).json()
    assert [t["version"] for t in versions["items"]] == [2, 1]
    assert versions["items"][1]["body"] == first["body"]  # version 1 is untouched

    created = await kit.post("/consent-templates", {"code": "cupping", "title": "拔罐治疗知情同意书",
                                                    "body": "拔罐后局部皮肤可能出现瘀斑，数日可自行消退。"})
    assert created.status_code == 201 and created.json()["version"] == 1, created.text
    again = await kit.post("/consent-templates", {"code": "cupping", "title": "拔罐", "body": "x"})
    assert again.status_code == 409 and again.json()["code"] == "consent_template_exists"

    # A therapist (no members.health:all) signs with patients but does not edit the texts.
    therapist = await kit.staff(["therapist"], [await kit.store()])
    r = await kit.post(f"/consent-templates/{first['id']}/versions", {"body": "改"}, therapist["token"])
    assert r.status_code == 403


async def test_patient_signs_in_the_mini_program_and_gets_the_pdf(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "孙丽")
    shown = await template(kit)
    consent = await patient_sign(kit, member_id)
    assert consent["member_id"] == member_id and consent["status"] == "signed"
    assert (consent["template_id"], consent["template_version"]) == (shown["id"], 1)
    assert consent["text_hash"] == shown["text_sha256"] and consent["hash_verified"] is True
    assert consent["signed_by_kind"] == "patient" and consent["signed_by_id"] == member_id
    assert consent["device"]["client"] == DEVICE and consent["device"]["request"]["user_agent"] == WECHAT_UA
    assert consent["signature_sha256"] == hashlib.sha256(base64.b64decode(SIGNATURE)).hexdigest()

    # Stored encrypted: neither the PNG nor the device is readable in the row.
    stored = (await owner_sql("SELECT signature_encrypted, device_encrypted FROM signed_consents WHERE id = :i",
                              i=uuid.UUID(consent["id"])))[0]
    assert SIGNATURE[:40] not in stored[0] and "HUAWEI" not in stored[1]

    token = patient_token(kit, member_id)
    mine = (await kit.get("/patient/consents", token)).json()["items"]
    assert [c["id"] for c in mine] == [consent["id"]]
    for path, who in ((f"/patient/consents/{consent['id']}/pdf", token), (f"/consents/{consent['id']}/pdf", None)):
        r = await kit.get(path, who)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        pdf = r.content
        # reportlab's CID text is not searchable as plain text; what is checkable: a whole PDF document, the
        # text hash in its metadata, the Chinese font named, the signature embedded as an image.
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
        assert consent["text_hash"].encode() in pdf and consent["content_hash"].encode() in pdf
        assert b"STSong-Light" in pdf and b"/Subtype /Image" in pdf
    assert {r["target_id"] for r in await audit_rows(kit.tenant_id, "consent.download")} == {consent["id"]}

    # The consent is on the member's timeline (the patient's own view too).
    timeline = (await kit.get(f"/members/{member_id}/timeline")).json()["items"]
    assert any(i["type"] == "consent" and i["data"]["consent_id"] == consent["id"] for i in timeline)
    events = await owner_sql("SELECT topic FROM outbox WHERE tenant_id = :t AND topic LIKE 'consent.%'",
                             t=uuid.UUID(kit.tenant_id))
    assert [e[0] for e in events] == ["consent.signed"]


async def test_patient_signs_with_graphql(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "钱多多")
    token = patient_token(kit, member_id)
    found = await graphql(kit, "{ consentTemplates(code: \"aesthetic_injection\") { id version textSha256 } }",
                          token)
    shown = found["data"]["consentTemplates"][0]
    mutation = """mutation($t: ID!, $s: String!, $h: String) {
        signConsent(templateId: $t, signaturePng: $s, textSha256: $h, device: {deviceModel: "iPhone 15"}) {
            id status templateCode templateVersion textHash hashVerified } }"""
    signed = await graphql(kit, mutation, token, t=shown["id"], s=SIGNATURE, h=shown["textSha256"])
    assert "errors" not in signed, signed
    consent = signed["data"]["signConsent"]
    assert (consent["status"], consent["templateCode"], consent["hashVerified"]) == (
        "signed", "aesthetic_injection", True)
    assert consent["textHash"] == shown["textSha256"]
    listed = await graphql(kit, "{ myConsents { items { id status } } }", token)
    assert listed["data"]["myConsents"]["items"] == [{"id": consent["id"], "status": "signed"}]
    stored = (await kit.get(f"/consents/{consent['id']}")).json()
    assert stored["device"]["client"] == {"device_model": "iPhone 15"}
    assert stored["device"]["request"]["user_agent"] == WECHAT_UA

    # A signature that is not a PNG: the same 422 as REST, naming the field, nothing written.
    refused = await graphql(kit, mutation, token, t=shown["id"], s=jpeg(), h=None)
    assert refused["errors"][0]["extensions"]["code"] == "validation_error"
    assert refused["errors"][0]["extensions"]["field"] == "signature_png"
    assert await consent_rows(kit.tenant_id) == 1


@pytest.mark.parametrize("signature,why", [
    (jpeg(), "is not a PNG image"),
    ("这不是图片", "is not valid base64"),
    (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(), "is not a readable PNG image"),
    (png((270, 270), noise=True), "bytes; a signature may be at most"),  # ~219 KB, under the text bound
    (png((2100, 40), mode="L"), "at most 2000×2000"),
    ("BLANK", "is blank"),  # a canvas nobody wrote on (made in the test)
])
async def test_bad_signatures_are_refused_and_nothing_is_written(client, signature, why):
    kit = await new_tenant(client)
    member_id = await member(kit)
    token = patient_token(kit, member_id)
    shown = await template(kit, token=token, path="/patient/consent-templates")
    if signature == "BLANK":
        blank = io.BytesIO()
        Image.new("RGBA", (400, 150), (255, 255, 255, 0)).save(blank, format="PNG")
        signature = base64.b64encode(blank.getvalue()).decode()
    r = await kit.post("/patient/consents", {"template_id": shown["id"], "signature_png": signature}, token)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "signature_png" and why in r.json()["detail"], r.text
    assert await consent_rows(kit.tenant_id) == 0


async def test_a_signed_consent_cannot_be_changed(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    consent = await patient_sign(kit, member_id)
    consent_id = uuid.UUID(consent["id"])
    # The application role has no UPDATE or DELETE on it at all …
    for sql in ("UPDATE signed_consents SET text_hash = 'forged' WHERE id = :i",
                "DELETE FROM signed_consents WHERE id = :i"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with in_tenant(kit.tenant_id) as session:
                await session.execute(text(sql), {"i": consent_id})
    # … and the trigger refuses even the tables' owner.
    for sql in ("UPDATE signed_consents SET text_hash = 'forged' WHERE id = :i",
                "DELETE FROM signed_consents WHERE id = :i"):
        with pytest.raises(DBAPIError, match="append-only"):
            await owner_sql(sql, i=consent_id)
    assert (await kit.get(f"/consents/{consent['id']}")).json()["text_hash"] == consent["text_hash"]

    # No write route changes it; signing an outdated version is refused.
    first = await template(kit)
    assert (await kit.post(f"/consent-templates/{first['id']}/versions", {"body": "新版本正文"})).status_code == 201
    r = await kit.post("/patient/consents", {"template_id": first["id"], "signature_png": SIGNATURE},
                       patient_token(kit, member_id))
    assert r.status_code == 409 and r.json()["code"] == "consent_template_superseded", r.text


async def test_withdrawal_is_recorded_and_append_only(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    consent = await patient_sign(kit, member_id)
    token = patient_token(kit, member_id)
    r = await kit.post(f"/patient/consents/{consent['id']}/withdraw", {"reason": "决定改做推拿，不再针灸"}, token)
    assert r.status_code == 200, r.text
    withdrawn = r.json()
    assert withdrawn["status"] == "withdrawn" and withdrawn["hash_verified"] is True
    w = withdrawn["withdrawal"]
    assert (w["withdrawn_by_kind"], w["withdrawn_by_id"]) == ("patient", member_id)
    assert w["reason"] == "决定改做推拿，不再针灸"
    # The consent as signed is unchanged; a second withdrawal is refused (by staff too).
    assert withdrawn["content_hash"] == consent["content_hash"] and withdrawn["text_hash"] == consent["text_hash"]
    again = await kit.post(f"/consents/{consent['id']}/withdraw", {"reason": "再次撤回"})
    assert again.status_code == 409 and again.json()["code"] == "consent_withdrawn"
    with pytest.raises(DBAPIError, match="append-only"):
        await owner_sql("UPDATE consent_withdrawals SET hash = 'x' WHERE consent_id = :i", i=uuid.UUID(consent["id"]))
    staff_view = (await kit.get(f"/consents/{consent['id']}")).json()
    assert staff_view["status"] == "withdrawn" and staff_view["withdrawal"]["reason"] == "决定改做推拿，不再针灸"
    events = await owner_sql("SELECT topic, payload FROM outbox WHERE tenant_id = :t AND topic = 'consent.withdrawn'",
                             t=uuid.UUID(kit.tenant_id))
    assert len(events) == 1 and "reason" not in events[0][1]
    pdf = (await kit.get(f"/consents/{consent['id']}/pdf")).content
    assert pdf.startswith(b"%PDF-")


async def test_booking_a_service_that_requires_consent(client):
    shop = await make_shop(client)
    kit = shop.kit
    r = await kit.client.put(f"/api/v1/services/{shop.massage}/consent-requirement",
                             json={"template_code": "acupuncture"}, headers=kit.auth())
    assert r.status_code == 200 and r.json()["required_before"] == "booking", r.text
    bad = await kit.client.put(f"/api/v1/services/{shop.massage}/consent-requirement",
                               json={"template_code": "no_such_consent"}, headers=kit.auth())
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "template_code"

    refused = await shop.book(shop.at(10))
    assert refused.status_code == 409, refused.text
    assert (refused.json()["code"], refused.json()["template_code"]) == ("consent_required", "acupuncture")
    count = "SELECT count(*) FROM appointments WHERE tenant_id = :t"
    assert (await owner_sql(count, t=shop.tenant_id))[0][0] == 0
    # A service without a requirement books as before.
    assert (await shop.book(shop.at(10), service=shop.consult)).status_code == 201

    consent = await patient_sign(kit, shop.member)
    assert (await shop.book(shop.at(14))).status_code == 201
    # Withdrawn, it no longer counts.
    await kit.post(f"/consents/{consent['id']}/withdraw", {"reason": "患者口头撤回"})
    refused = await shop.book(shop.at(16))
    assert refused.status_code == 409 and refused.json()["code"] == "consent_required"
    assert (await owner_sql(count, t=shop.tenant_id))[0][0] == 2


async def test_completing_a_service_that_requires_consent(client):
    shop = await make_shop(client)
    kit = shop.kit
    r = await kit.client.put(f"/api/v1/services/{shop.massage}/consent-requirement",
                             json={"template_code": "acupuncture", "required_before": "completion"},
                             headers=kit.auth())
    assert r.status_code == 200, r.text
    appointment = await shop.booked(shop.at(10))  # may be booked: signed at the desk before the treatment
    refused = await shop.act(appointment["id"], "complete")
    assert refused.status_code == 409 and refused.json()["code"] == "consent_required", refused.text
    assert (await owner_sql("SELECT count(*) FROM service_records WHERE tenant_id = :t", t=shop.tenant_id))[0][0] == 0
    assert (await kit.get(f"/appointments/{appointment['id']}")).json()["status"] == "booked"

    # Recorded at the desk on a tablet by staff, then completed.
    shown = await template(kit)
    r = await kit.post("/consents", {"member_id": shop.member, "template_id": shown["id"], "signature_png": SIGNATURE,
                                     "device": {"device_model": "iPad (10th generation)"}})
    assert r.status_code == 201 and r.json()["signed_by_kind"] == "staff", r.text
    done = await shop.act(appointment["id"], "complete")
    assert done.status_code == 200, done.text


async def test_staff_outside_the_care_relationship_are_refused_and_audited(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    mine = await kit.staff(["therapist"], [store_id])
    other = await kit.staff(["therapist"], [store_id])
    member_id = await member(kit, "周杰", owner_staff_id=mine["id"])
    shown = await template(kit)
    body = {"member_id": member_id, "template_id": shown["id"], "signature_png": SIGNATURE}
    recorded = await kit.post("/consents", body, mine["token"])
    assert recorded.status_code == 201, recorded.text

    attempts = [await kit.post("/consents", body, other["token"]),
                await kit.get("/consents", other["token"], params={"member_id": member_id}),
                await kit.get(f"/consents/{recorded.json()['id']}/pdf", other["token"]),
                await kit.post(f"/consents/{recorded.json()['id']}/withdraw", {"reason": "x"}, other["token"])]
    for r in attempts:
        assert r.status_code == 403 and r.json()["code"] == "not_in_care", r.text
    refused = await audit_rows(kit.tenant_id, "clinical_record.access_refused")
    assert {r["actor_id"] for r in refused} == {other["id"]}
    assert sorted(r["summary"]["attempted"] for r in refused) == [
        "consent_list", "consent_pdf", "consent_sign", "consent_withdraw"]
    assert await consent_rows(kit.tenant_id) == 1
    assert (await kit.get(f"/consents/{recorded.json()['id']}")).json()["status"] == "signed"


async def test_a_patient_cannot_sign_for_or_read_an_unrelated_member(client):
    kit = await new_tenant(client)
    me, stranger = await member(kit, "吴敏"), await member(kit, "郑强")
    theirs = await patient_sign(kit, stranger)
    token = patient_token(kit, me)
    shown = await template(kit, token=token, path="/patient/consent-templates")
    r = await kit.post("/patient/consents", {"template_id": shown["id"], "signature_png": SIGNATURE,
                                             "member_id": stranger}, token)
    assert r.status_code == 404, r.text
    assert await consent_rows(kit.tenant_id) == 1
    for path in (f"/patient/consents/{theirs['id']}", f"/patient/consents/{theirs['id']}/pdf"):
        r = await kit.get(path, token)
        assert r.status_code == 404 and r.json()["code"] == "consent_not_found", r.text
    r = await kit.post(f"/patient/consents/{theirs['id']}/withdraw", {"reason": "x"}, token)
    assert r.status_code == 404
    assert (await kit.get("/patient/consents", token, params={"member_id": stranger})).status_code == 404
    # Staff routes are not for patient tokens.
    assert (await kit.get(f"/consents/{theirs['id']}", token)).status_code in (401, 403)


async def test_demo_has_a_signed_consent_and_a_service_that_requires_it(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    consents = (await get("/consents", member_id=members["张伟"]))["items"]
    assert [(c["template_code"], c["status"], c["signed_by_kind"]) for c in consents] == [
        ("acupuncture", "signed", "patient")]
    assert consents[0]["hash_verified"] is True
    services = {s["name"]: s["id"] for s in (await get("/services", limit=100))["items"]}
    requirement = await get(f"/services/{services['针灸']}/consent-requirement")
    assert (requirement["template_code"], requirement["required_before"]) == ("acupuncture", "booking")
