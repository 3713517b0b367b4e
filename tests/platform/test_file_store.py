"""The file store: the local folder (round trip, atomic writes, no path traversal, signed download links that
expire and cannot be altered) and S3-compatible storage (against moto's server, presigned URLs fetched)."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.core.clock import utcnow
from app.core.files import (
    DOWNLOAD_PATH,
    FileMissing,
    InvalidFileKey,
    LocalFileStore,
    S3FileStore,
    check_key,
    file_store,
    new_key,
    sign_download,
)


async def test_local_round_trip(tmp_path: Path):
    store = LocalFileStore(tmp_path / "files")
    key = await store.put("舌象照片".encode() * 100, content_type="image/jpeg", prefix="t1/clinical", extension=".jpg")
    assert key.startswith("t1/clinical/") and key.endswith(".jpg") and check_key(key) == key
    assert await store.get(key) == "舌象照片".encode() * 100
    assert await store.exists(key)
    # Written through a temporary file renamed into place: nothing half-written is left beside it.
    assert [p.name for p in store.path_of(key).parent.iterdir()] == [key.rsplit("/", 1)[1]]
    other = await store.put(b"x", content_type="text/plain", prefix="t1/clinical")
    assert other != key  # random names: two uploads never collide
    assert sorted(k.key for k in await store.list_keys("t1")) == sorted([key, other])
    assert await store.list_keys("t9") == []
    await store.delete(key)
    await store.delete(key)  # already gone: no error
    with pytest.raises(FileMissing):
        await store.get(key)


@pytest.mark.parametrize("key", [
    "../secret", "a/../../etc/passwd", "/etc/passwd", "..", "a/..", "a//b", "a\\b", ".hidden", "a/.ssh/id",
    "-rf", "a/b/", "", "a b", "a/b\x00.jpg", "C:/windows", "%2e%2e/x", "a/b.JPG/../c",
])
async def test_keys_cannot_traverse(tmp_path: Path, key: str):
    store = LocalFileStore(tmp_path / "files")
    with pytest.raises(InvalidFileKey):
        check_key(key)
    with pytest.raises(InvalidFileKey):
        await store.get(key)
    with pytest.raises(InvalidFileKey):
        await store.delete(key)


async def test_prefixes_and_symlinks_cannot_escape(tmp_path: Path):
    store = LocalFileStore(tmp_path / "files")
    for prefix in ("../up", "a/../b", "/abs", "a/b/../../.."):
        with pytest.raises(InvalidFileKey):
            await store.put(b"x", content_type="text/plain", prefix=prefix)
    with pytest.raises(InvalidFileKey):
        new_key("ok", extension="/../x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("no")
    (tmp_path / "files").mkdir(exist_ok=True)
    (tmp_path / "files" / "link").symlink_to(outside)
    with pytest.raises(InvalidFileKey):
        await store.get("link/secret.txt")
    assert (outside / "secret.txt").read_text() == "no"


async def test_signed_link_serves_the_file_and_refuses_tampering_and_expiry(client):
    store = file_store()
    assert isinstance(store, LocalFileStore)
    key = await store.put(b"%PDF-1.4 consent", content_type="application/pdf", prefix=f"{uuid.uuid4().hex}/docs",
                          extension=".pdf")
    url, expires_at = await store.signed_url(key, content_type="application/pdf", disposition="attachment",
                                             filename="知情同意书.pdf")
    assert url.startswith(DOWNLOAD_PATH) and expires_at > utcnow()
    r = await client.get(url)  # no Authorization header: the link is the permission
    assert r.status_code == 200, r.text
    assert r.content == b"%PDF-1.4 consent" and r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"].startswith("private")
    assert r.headers["content-disposition"].startswith("attachment;") and "UTF-8''" in r.headers["content-disposition"]

    token = url.removeprefix(DOWNLOAD_PATH)
    payload, mac = token.split(".")
    forged = sign_download(key, content_type="application/pdf", expires_at=expires_at).split(".")[0]
    tampered = [
        f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}",  # claims changed
        f"{payload}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}",  # signature changed
        f"{forged}.{mac}",  # another link's claims under this signature
        f"{payload}.",
        "plainly-not-a-token",
    ]
    for bad in tampered:
        r = await client.get(f"{DOWNLOAD_PATH}{bad}")
        assert r.status_code == 403, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "file_link_invalid"

    expired = sign_download(key, content_type="application/pdf", expires_at=utcnow() - timedelta(seconds=1))
    r = await client.get(f"{DOWNLOAD_PATH}{expired}")
    assert r.status_code == 410 and r.json()["code"] == "file_link_expired", r.text

    await store.delete(key)
    r = await client.get(url)
    assert r.status_code == 404 and r.json()["code"] == "file_not_found"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_s3_round_trip_and_presigned_url(moto_endpoint: str):
    bucket = f"careloop-{uuid.uuid4().hex[:8]}"
    store = S3FileStore(bucket=bucket, endpoint_url=moto_endpoint, region="us-east-1", access_key_id="testing",
                        secret_access_key="testing", ttl_seconds=120)
    async with store._client() as s3:
        await s3.create_bucket(Bucket=bucket)

    data = bytes(range(256)) * 40
    key = await store.put(data, content_type="image/png", prefix="t1/clinical", extension=".png")
    assert check_key(key) == key and await store.exists(key)
    assert await store.get(key) == data

    url, expires_at = await store.signed_url(key, content_type="image/png", filename="面部.png")
    assert expires_at > utcnow()
    async with httpx.AsyncClient() as http:
        r = await http.get(url)
        assert r.status_code == 200, r.text
        assert r.content == data and r.headers["content-type"] == "image/png"
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url

    other = await store.put(b"2", content_type="text/plain", prefix="t2/clinical")
    assert [k.key for k in await store.list_keys("t1/clinical")] == [key]
    assert [k.key for k in await store.list_keys("t2")] == [other]

    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(FileMissing):
        await store.get(key)
    with pytest.raises(InvalidFileKey):
        await store.get("../other-bucket/x")
