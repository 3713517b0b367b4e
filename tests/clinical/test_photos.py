"""Clinical photos and attachments: checked and re-encoded uploads (EXIF gone, orientation applied, thumbnail),
refusals that leave nothing behind, who may upload and read (audited), before/after pairs, signed downloads,
the patient's own view, the timeline, the event and the demo."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import date

import pytest
from PIL import Image
from sqlalchemy import text

from app.core import crypto
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.files import LocalFileStore, file_store
from app.core.security import issue_token
from app.domain.clinical import photos
from tests.clinical.helpers import audit_rows, draft, member
from tests.factories import demo_reader, new_tenant

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg(width: int = 400, height: int = 200, *, exif: bool = True, color=(200, 150, 120)) -> bytes:
    """A JPEG with a GPS position and a camera make in its EXIF, stored sideways (orientation 6)."""
    image = Image.new("RGB", (width, height), color)
    image.paste((20, 20, 20), (0, 0, width // 4, height))  # a dark band on the left: shows the rotation
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x010F] = "CameraMaker"
        data[ORIENTATION] = 6  # rotate 90° clockwise to view
        data[GPS_IFD] = {1: "N", 2: (31.0, 13.0, 50.0), 3: "E", 4: (121.0, 28.0, 10.0)}
        image.save(out, format="JPEG", exif=data.tobytes())
    else:
        image.save(out, format="JPEG")
    return out.getvalue()


def png(width: int = 64, height: int = 64, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def upload(kit, member_id: str, content: bytes, *, filename: str = "face.jpg", content_type: str = "image/jpeg",
                 token: str | None = None, **fields):
    form = {"member_id": member_id, "treatment_area": "face", "phase": "before", "taken_on": "2026-11-20",
            **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}}
    return await kit.client.post("/api/v1/clinical-photos", data=form,
                                 files={"file": (filename, content, content_type)}, headers=kit.auth(token))


async def _count(tenant_id: str) -> int:
    async with session_scope(system=True) as session:
        return (await session.execute(text("SELECT count(*) FROM clinical_photos WHERE tenant_id = :t"),
                                      {"t": uuid.UUID(tenant_id)})).scalar_one()


def _stored_files(tenant_id: str) -> list[str]:
    store = file_store()
    assert isinstance(store, LocalFileStore)
    root = store.root / uuid.UUID(tenant_id).hex
    return sorted(str(p.relative_to(store.root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def patient_token(kit, member_id: str) -> str:
    token, _ = issue_token(subject=member_id, tenant_id=kit.tenant_id, audience="patient", ttl_seconds=600)
    return token


async def test_upload_reencodes_without_exif_applies_orientation_and_thumbnails(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "王芳")
    original = jpeg(400, 200)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)  # the upload does carry a position
    r = await upload(kit, member_id, original, note="双颊色斑，光子嫩肤前", filename="王芳-面部.jpg")
    assert r.status_code == 201, r.text
    photo = r.json()
    assert photo["content_type"] == "image/jpeg" and photo["treatment_area_label"] == "面部"
    # Orientation 6 applied: the stored image is upright (portrait), the dark band now on top.
    assert (photo["width"], photo["height"]) == (200, 400)
    assert photo["note"] == "双颊色斑，光子嫩肤前" and photo["filename"] == "王芳-面部.jpg"
    assert photo["thumbnail_url"] and photo["url"] is None

    item = (await kit.get(f"/clinical-photos/{photo['id']}")).json()
    stored = await client.get(item["url"])  # a signed link: no Authorization header
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    assert stored.headers["cache-control"].startswith("private")
    assert hashlib.sha256(stored.content).hexdigest() == photo["sha256"] and len(stored.content) == photo["size_bytes"]
    image = Image.open(io.BytesIO(stored.content))
    assert image.size == (200, 400)
    assert not image.getexif() and "exif" not in image.info  # no position, no camera, no orientation left
    assert image.getpixel((100, 20))[0] < 60 and image.getpixel((100, 380))[0] > 150  # the band is on top
    thumb = Image.open(io.BytesIO((await client.get(item["thumbnail_url"])).content))
    assert thumb.format == "JPEG" and max(thumb.size) == 320 and thumb.size == (160, 320)

    # Clinical text and the file name are encrypted at rest; the event names no note, file name or URL.
    async with session_scope(system=True) as session:
        row = (await session.execute(text("SELECT * FROM clinical_photos WHERE id = :i"),
                                     {"i": uuid.UUID(photo["id"])})).mappings().one()
        event = (await session.execute(text("SELECT payload FROM outbox WHERE tenant_id = :t AND topic = :p"),
                                       {"t": uuid.UUID(kit.tenant_id), "p": "clinical_photo.uploaded"})).scalar_one()
    assert "色斑" not in row["note_encrypted"] and crypto.decrypt(row["note_encrypted"]) == "双颊色斑，光子嫩肤前"
    assert row["storage_key"].startswith(uuid.UUID(kit.tenant_id).hex + "/")
    assert event["photo_id"] == photo["id"] and event["member_id"] == member_id and "note" not in event
    assert [r["target_id"] for r in await audit_rows(kit.tenant_id, "clinical_photo.uploaded")] == [photo["id"]]


async def test_png_webp_and_pdf_attachments(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    r = await upload(kit, member_id, png(), filename="wound.png", content_type="image/png", treatment_area="knee_left")
    assert r.status_code == 201 and r.json()["content_type"] == "image/png", r.text
    out = io.BytesIO()
    Image.new("RGB", (50, 40), (10, 200, 10)).save(out, format="WEBP")
    r = await upload(kit, member_id, out.getvalue(), filename="a.webp", content_type="image/webp")
    assert r.status_code == 201 and r.json()["content_type"] == "image/jpeg", r.text  # no alpha: JPEG
    # A PDF is an attachment (stored as sent, no thumbnail) and is offered as a download.
    r = await upload(kit, member_id, PDF, filename="检查报告.pdf", content_type="application/pdf", kind="attachment",
                     treatment_area="lower_back", phase="during")
    assert r.status_code == 201, r.text
    attachment = r.json()
    assert attachment["kind"] == "attachment" and attachment["thumbnail_url"] is None and attachment["width"] is None
    item = (await kit.get(f"/clinical-photos/{attachment['id']}")).json()
    got = await client.get(item["url"])
    assert got.content == PDF and got.headers["content-disposition"].startswith("attachment;")
    # The browser may send no type at all: the extension and the content decide then.
    r = await upload(kit, member_id, jpeg(exif=False), filename="IMG_0001.JPG", content_type="application/octet-stream")
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("content", "filename", "content_type", "extra"), [
    (b"this is not an image at all", "face.jpg", "image/jpeg", {}),  # a non-image as an image
    (png(), "face.jpg", "image/jpeg", {}),  # a PNG that says it is a JPEG
    (jpeg(exif=False), "face.png", "image/png", {}),  # a JPEG that says it is a PNG
    (jpeg(exif=False), "face.jpg", "image/png", {}),  # type and name disagree
    (jpeg(exif=False)[:300], "face.jpg", "image/jpeg", {}),  # truncated
    (b"GIF89a" + b"\x00" * 40, "a.gif", "image/gif", {}),  # a format not taken
    (PDF, "report.pdf", "application/pdf", {}),  # a PDF as a photo
    (b"not a pdf", "report.pdf", "application/pdf", {"kind": "attachment"}),  # says PDF, is not
    (jpeg(exif=False), "face.exe", "application/x-msdownload", {}),
    (b"", "face.jpg", "image/jpeg", {}),
])
async def test_files_that_are_not_what_they_claim_are_refused_leaving_nothing(client, content, filename,
                                                                               content_type, extra):
    kit = await new_tenant(client)
    member_id = await member(kit)
    r = await upload(kit, member_id, content, filename=filename, content_type=content_type, **extra)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["file"]
    assert await _count(kit.tenant_id) == 0 and _stored_files(kit.tenant_id) == []


async def test_size_and_pixel_limits(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    # Over the image limit (10 MB): refused before it is decoded.
    r = await upload(kit, member_id, b"\xff\xd8\xff" + b"\x00" * (10 * 1024 * 1024), filename="big.jpg")
    assert r.status_code == 413 and r.json()["code"] == "file_too_large", r.text
    # Over every limit: the request body itself is refused.
    r = await upload(kit, member_id, b"%PDF-" + b"\x00" * (21 * 1024 * 1024), filename="big.pdf",
                     content_type="application/pdf", kind="attachment")
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text
    # A decompression bomb: a small file of 64 megapixels.
    bomb = png(8000, 8000, mode="1")
    assert len(bomb) < 1024 * 1024
    r = await upload(kit, member_id, bomb, filename="bomb.png", content_type="image/png")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file", r.text
    assert await _count(kit.tenant_id) == 0 and _stored_files(kit.tenant_id) == []


async def test_bad_fields_and_links_are_named(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    other_member = await member(kit, "赵敏")
    record = await draft(kit, other_member)
    cases = [
        ({"treatment_area": "elbow_of_doom"}, "treatment_area"),
        ({"phase": "later"}, "phase"),
        ({"taken_on": "2026-13-40"}, "taken_on"),
        ({"kind": "video"}, "kind"),
        ({"clinical_record_id": record["id"]}, "clinical_record_id"),
        ({"clinical_record_id": str(uuid.uuid4())}, "clinical_record_id"),
        ({"appointment_id": str(uuid.uuid4())}, "appointment_id"),
        ({"service_record_id": str(uuid.uuid4())}, "service_record_id"),
        ({"note": "长" * 2001}, "note"),
    ]
    for fields, name in cases:
        r = await upload(kit, member_id, jpeg(exif=False), **fields)
        assert r.status_code == 422, (fields, r.text)
        assert name in {e["field"] for e in r.json()["errors"]}, (fields, r.json())
    r = await upload(kit, str(uuid.uuid4()), jpeg(exif=False))
    assert r.status_code == 404, r.text
    assert await _count(kit.tenant_id) == 0 and _stored_files(kit.tenant_id) == []


async def test_care_relationship_and_permissions(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    mine = await kit.staff(["therapist"], [store_id])
    other = await kit.staff(["therapist"], [store_id])
    front_desk = await kit.staff(["front_desk"], [store_id])
    member_id = await member(kit, "周杰", owner_staff_id=mine["id"])

    r = await upload(kit, member_id, jpeg(exif=False), token=mine["token"])
    assert r.status_code == 201, r.text
    photo_id = r.json()["id"]
    assert (await kit.get(f"/clinical-photos/{photo_id}", mine["token"])).status_code == 200

    attempts = [
        await upload(kit, member_id, jpeg(exif=False), token=other["token"]),
        await kit.get(f"/clinical-photos/{photo_id}", other["token"]),
        await kit.get("/clinical-photos", other["token"], params={"member_id": member_id}),
        await kit.get("/clinical-photos/pairs", other["token"], params={"member_id": member_id}),
    ]
    for r in attempts:
        assert r.status_code == 403 and r.json()["code"] == "not_in_care", r.text
    refused = await audit_rows(kit.tenant_id, "clinical_record.access_refused")
    assert sorted(r["summary"]["attempted"] for r in refused) == ["list_photos", "list_photos", "read_photo",
                                                                  "upload_photo"]
    assert {r["actor_id"] for r in refused} == {other["id"]}
    for r in (await upload(kit, member_id, jpeg(exif=False), token=front_desk["token"]),
              await kit.get(f"/clinical-photos/{photo_id}", front_desk["token"])):
        assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text
    assert await _count(kit.tenant_id) == 1 and len(_stored_files(kit.tenant_id)) == 2  # the photo and its thumb


async def test_lists_pairs_and_every_read_audited(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "王芳")
    made = {}
    for area, phase, day in [("face", "before", "2026-11-01"), ("face", "after", "2026-11-01"),
                             ("face", "after", "2026-11-15"), ("neck", "before", "2026-11-15")]:
        r = await upload(kit, member_id, jpeg(exif=False), treatment_area=area, phase=phase, taken_on=day)
        assert r.status_code == 201, r.text
        made[(area, phase, day)] = r.json()["id"]
    r = await upload(kit, member_id, PDF, filename="r.pdf", content_type="application/pdf", kind="attachment",
                     treatment_area="face", phase="after", taken_on="2026-11-01")
    attachment_id = r.json()["id"]

    page = (await kit.get("/clinical-photos", params={"member_id": member_id, "limit": 3})).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    assert page["items"][0]["id"] == attachment_id  # newest first
    assert all(i["url"] is None for i in page["items"])
    only_face = (await kit.get("/clinical-photos", params={"member_id": member_id, "treatment_area": "face",
                                                           "kind": "photo"})).json()["items"]
    assert len(only_face) == 3

    pairs = (await kit.get("/clinical-photos/pairs", params={"member_id": member_id})).json()["items"]
    assert [(g["treatment_area"], g["taken_on"], g["complete"]) for g in pairs] == [
        ("neck", "2026-11-15", False), ("face", "2026-11-15", False), ("face", "2026-11-01", True)]
    first_day = pairs[2]
    assert [p["id"] for p in first_day["before"]] == [made[("face", "before", "2026-11-01")]]
    assert [p["id"] for p in first_day["after"]] == [made[("face", "after", "2026-11-01")]]  # not the PDF
    assert first_day["after"][0]["thumbnail_url"]

    await kit.get(f"/clinical-photos/{made[('face', 'before', '2026-11-01')]}")
    reads = await audit_rows(kit.tenant_id, "clinical_photo.read")
    assert [r["target_id"] for r in reads] == [made[("face", "before", "2026-11-01")]]
    assert reads[0]["summary"]["member_id"] == member_id
    listings = await audit_rows(kit.tenant_id, "clinical_photo.list")
    assert len(listings) == 3 and all(r["summary"]["member_id"] == member_id for r in listings)
    assert len(listings[0]["summary"]["photo_ids"]) == 3

    # On the member's timeline (staff side), without URLs.
    timeline = (await kit.get(f"/members/{member_id}/timeline", params={"type": "clinical_photo"})).json()["items"]
    assert len(timeline) == 5 and timeline[0]["title"].startswith("临床附件")
    assert "url" not in timeline[0]["data"]

    # The service other code (FHIR) reads through.
    async with session_scope(uuid.UUID(kit.tenant_id)) as session:
        actor = Actor.system(uuid.UUID(kit.tenant_id))
        listed = await photos.list_photos(session, actor, uuid.UUID(member_id))
        assert len(listed) == 5 and listed[0].taken_on == date(2026, 11, 1)
        assert await photos.list_photos(session, actor, uuid.UUID(member_id), updated_since=listed[-1].created_at) == []
        one = await photos.get_photo(session, actor, listed[0].id)
        assert one.url and one.thumbnail_url and one.urls_expire_at


async def test_patient_sees_own_photos_but_not_staff_only_ones(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "李娜")
    other_id = await member(kit, "赵敏")
    shared = (await upload(kit, member_id, jpeg(exif=False), note="医生备注：色沉风险")).json()
    hidden = (await upload(kit, member_id, jpeg(exif=False), staff_only=True, phase="after")).json()
    others = (await upload(kit, other_id, jpeg(exif=False))).json()
    token = patient_token(kit, member_id)

    mine = (await kit.get("/patient/clinical-photos", token)).json()["items"]
    assert [p["id"] for p in mine] == [shared["id"]]
    assert mine[0]["note"] is None and mine[0]["thumbnail_url"]
    one = await kit.get(f"/patient/clinical-photos/{shared['id']}", token)
    assert one.status_code == 200 and one.json()["note"] is None, one.text
    assert (await client.get(one.json()["url"])).status_code == 200
    for photo_id in (hidden["id"], others["id"], str(uuid.uuid4())):
        r = await kit.get(f"/patient/clinical-photos/{photo_id}", token)
        assert r.status_code == 404 and r.json()["code"] == "clinical_photo_not_found", r.text
    # A patient token does not open the staff routes.
    assert (await kit.get(f"/clinical-photos/{shared['id']}", token)).status_code in (401, 403)
    reads = await audit_rows(kit.tenant_id, "clinical_photo.read")
    assert [r["target_id"] for r in reads] == [shared["id"]]


async def test_demo_has_before_and_after_photos(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    pairs = (await get("/clinical-photos/pairs", member_id=members["王芳"]))["items"]
    assert any(g["treatment_area"] == "face" and g["complete"] for g in pairs)
    photo = await get(f"/clinical-photos/{pairs[-1]['before'][0]['id']}")
    assert photo["note"] and photo["width"] == 960


async def test_orphaned_files_are_swept_and_referenced_ones_kept(client):
    """A transaction that fails at commit after its file was stored leaves a file no row refers to."""
    from datetime import timedelta

    kit = await new_tenant(client)
    member_id = await member(kit)
    kept = (await upload(kit, member_id, jpeg(exif=False))).json()
    store = file_store()
    orphan = await store.put(b"\xff\xd8 left by a failed commit", content_type="image/jpeg",
                             prefix=f"{uuid.UUID(kit.tenant_id).hex}/clinical/{uuid.UUID(member_id).hex}",
                             extension=".jpg")
    assert len(_stored_files(kit.tenant_id)) == 3
    tenant = uuid.UUID(kit.tenant_id)
    # Young files may belong to an upload still committing: left alone.
    assert await photos.sweep_orphans(session_scope, tenant) == 0
    assert await photos.sweep_orphans(session_scope, tenant, older_than=timedelta(0)) == 1
    assert not await store.exists(orphan) and len(_stored_files(kit.tenant_id)) == 2
    item = (await kit.get(f"/clinical-photos/{kept['id']}")).json()
    assert (await client.get(item["url"])).status_code == 200


async def test_upload_into_s3_compatible_storage(client):
    """FILE_STORE=s3: the same upload lands in the bucket, and the presigned URLs serve the re-encoded file."""
    import socket

    import httpx
    from moto.server import ThreadedMotoServer

    from app.core.files import S3FileStore
    from app.domain.clinical.photo_schemas import PhotoUpload

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store = S3FileStore(bucket="clinic-files", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                            access_key_id="testing", secret_access_key="testing")
        async with store._client() as s3:
            await s3.create_bucket(Bucket="clinic-files")
        kit = await new_tenant(client)
        member_id = uuid.UUID(await member(kit))
        tenant = uuid.UUID(kit.tenant_id)
        async with session_scope(tenant) as session:
            photo = await photos.upload_photo(session, Actor.system(tenant), PhotoUpload(
                member_id=member_id, treatment_area="neck", phase="after", taken_on=date(2026, 11, 20)),
                content=jpeg(), content_type="image/jpeg", filename="neck.jpg", store=store)
            shown = await photos.present(photo, urls="all", store=store)
        keys = [k.key for k in await store.list_keys(f"{tenant.hex}/clinical")]
        assert sorted(keys) == sorted([photo.storage_key, photo.thumbnail_key])
        async with httpx.AsyncClient() as http:
            original = await http.get(shown.url)
            thumb = await http.get(shown.thumbnail_url)
        assert original.status_code == 200 and hashlib.sha256(original.content).hexdigest() == photo.sha256
        assert not Image.open(io.BytesIO(original.content)).getexif()
        assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 320
    finally:
        server.stop()


async def test_the_worker_sweeps_orphans_older_than_an_hour_in_every_tenant(client):
    """The scheduled job finds the tenants and deletes only orphans past the hour an upload may take."""
    import os
    import time

    from app.domain.clinical.jobs import sweep_orphan_clinical_files

    kit = await new_tenant(client)
    member_id = await member(kit)
    kept = (await upload(kit, member_id, jpeg(exif=False))).json()
    store = file_store()
    assert isinstance(store, LocalFileStore)
    prefix = f"{uuid.UUID(kit.tenant_id).hex}/clinical/{uuid.UUID(member_id).hex}"
    old = await store.put(b"\xff\xd8 old orphan", content_type="image/jpeg", prefix=prefix, extension=".jpg")
    young = await store.put(b"\xff\xd8 young orphan", content_type="image/jpeg", prefix=prefix, extension=".jpg")
    two_hours_ago = time.time() - 7200
    for path in (store.root / uuid.UUID(kit.tenant_id).hex).rglob("*"):
        if path.is_file() and not str(path).endswith(young):
            os.utime(path, (two_hours_ago, two_hours_ago))

    assert (await sweep_orphan_clinical_files(session_scope))["deleted"] >= 1
    assert not await store.exists(old) and await store.exists(young)
    item = (await kit.get(f"/clinical-photos/{kept['id']}")).json()
    assert (await client.get(item["url"])).status_code == 200


async def test_graphql_shows_photos_to_the_sidebar_and_the_patient(client):
    """The sidebar sees a member's photos and pairs (care relationship enforced, refusal audited); the patient
    sees their own, without staff-only ones or notes."""
    kit = await new_tenant(client)
    member_id = await member(kit)
    before = (await upload(kit, member_id, jpeg(exif=False), note="左颊色斑")).json()
    after = (await upload(kit, member_id, jpeg(exif=False), phase="after")).json()
    hidden = (await upload(kit, member_id, jpeg(exif=False), phase="during", staff_only=True)).json()

    async def gql(query: str, token: str | None = None, variables: dict | None = None) -> dict:
        r = await client.post("/graphql", json={"query": query, "variables": variables or {}},
                              headers=kit.auth(token))
        assert r.status_code in (200, 400), r.text
        return r.json()

    staff_query = """query($m: ID!) {
      memberClinicalPhotos(memberId: $m) { items { id phase note thumbnailUrl } nextCursor }
      clinicalPhotoPairs(memberId: $m) { treatmentArea complete before { id } after { id } during { id } }
    }"""
    seen = await gql(staff_query, variables={"m": member_id})
    assert "errors" not in seen, seen
    items = seen["data"]["memberClinicalPhotos"]["items"]
    assert [p["id"] for p in items] == [hidden["id"], after["id"], before["id"]]
    assert items[-1]["note"] == "左颊色斑" and all(p["thumbnailUrl"] for p in items)
    pair = seen["data"]["clinicalPhotoPairs"][0]
    assert pair["complete"] and pair["before"] == [{"id": before["id"]}] and pair["after"] == [{"id": after["id"]}]
    one = await gql("query($p: ID!) { clinicalPhoto(photoId: $p) { url } }", variables={"p": before["id"]})
    assert (await client.get(one["data"]["clinicalPhoto"]["url"])).status_code == 200

    store = await kit.store()
    outsider = await kit.staff(["therapist"], [store])
    refused = await gql(staff_query, outsider["token"], {"m": member_id})
    assert {e["extensions"]["code"] for e in refused["errors"]} == {"not_in_care"}
    assert [r["summary"].get("attempted") for r in await audit_rows(kit.tenant_id, "clinical_record.access_refused")
            if r["actor_id"] == outsider["id"]]

    mine = await gql("{ myClinicalPhotos { items { id note } } }", patient_token(kit, member_id))
    assert "errors" not in mine, mine
    assert mine["data"]["myClinicalPhotos"]["items"] == [{"id": after["id"], "note": None},
                                                         {"id": before["id"], "note": None}]
