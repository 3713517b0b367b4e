"""The file store: uploaded files behind one small interface, in a folder or an S3-compatible bucket.

    store = file_store()
    key = await store.put(data, content_type="image/jpeg", prefix=f"{tenant_id}/clinical-photos")
    url, expires_at = await store.signed_url(key, content_type="image/jpeg")
    data = await store.get(key)

Keys are made by the store (a prefix of safe path segments and a random name), never taken from a client,
and are checked again wherever one is used, so a key cannot reach outside the store. A file is written
whole or not at all. Nobody reads a file by key over the API: clients get a short-lived signed download URL
(FILE_URL_TTL_SECONDS), which needs no Authorization header (an `<img src>` in the mini-program cannot send
one) and names the content type and disposition it is served with.

- `LocalFileStore` (FILE_STORE=local, the default): files under `<data_dir>/files`; writes go to a temporary
  file in the same folder and are renamed into place; blocking file IO runs in a thread, off the event loop.
  Its signed URL is this app's `GET /api/v1/files/{token}`: the token carries key, expiry, content type and
  disposition, HMAC-SHA256-signed with a key derived from the blind-index key (a secret the deployment
  already keeps and never rotates casually: rotating it would only end outstanding links early).
- `S3FileStore` (FILE_STORE=s3): S3-compatible storage through aiobotocore (S3_ENDPOINT_URL, S3_BUCKET,
  S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY); its signed URL is a presigned GET of the object.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

from app.core import crypto
from app.core.clock import utcnow
from app.core.errors import AppError, NotFound
from app.core.settings import Settings, get_settings

DOWNLOAD_PATH = "/api/v1/files/"
Disposition = Literal["inline", "attachment"]

# Segments of letters, digits, `_` and `-` (not starting with `-` or `.`), joined by `/`; the last may end in
# one extension. No `..`, no absolute path, no backslash, no empty segment.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}"
KEY_RE = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,9}}(?:\.[a-z0-9]{{1,8}})?$")
_EXTENSION_RE = re.compile(r"^\.[a-z0-9]{1,8}$")
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


class InvalidFileKey(ValueError):
    """A key the store would not have made (path traversal, odd characters): a programming error or an attack."""


class FileLinkInvalid(AppError):
    code, status, title = "file_link_invalid", 403, "Forbidden"


class FileLinkExpired(AppError):
    code, status, title = "file_link_expired", 410, "Gone"


class FileMissing(NotFound):
    code = "file_not_found"


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.fullmatch(key) or ".." in key:
        raise InvalidFileKey(f"not a file key: {key!r}")
    return key


def _check_prefix(prefix: str) -> str:
    if prefix and not re.fullmatch(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,8}}", prefix):
        raise InvalidFileKey(f"not a key prefix: {prefix!r}")
    return prefix


def new_key(prefix: str, extension: str = "") -> str:
    """A fresh key under `prefix` (random: keys are not guessable, and two uploads never collide)."""
    if extension and not _EXTENSION_RE.fullmatch(extension):
        raise InvalidFileKey(f"not a file extension: {extension!r}")
    prefix = _check_prefix(prefix)
    name = secrets.token_hex(16) + extension
    return check_key(f"{prefix}/{name}" if prefix else name)


def _content_disposition(disposition: Disposition, filename: str | None) -> str:
    if not filename:
        return disposition
    # RFC 6266: an ASCII fallback and the UTF-8 name (Chinese file names survive).
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:100] or "file"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:200], safe='')}"


@dataclass(frozen=True)
class StoredKey:
    key: str
    modified_at: datetime


class FileStore(Protocol):
    async def put(self, data: bytes, *, content_type: str, prefix: str, extension: str = "") -> str:
        """Store `data`; answer its new key."""

    async def get(self, key: str) -> bytes:
        """The stored bytes (FileMissing when there are none)."""

    async def delete(self, key: str) -> None:
        """Remove the file (no error when it is already gone)."""

    async def list_keys(self, prefix: str) -> list[StoredKey]:
        """Every stored key under `prefix` with its time (for clean-ups; not for request paths)."""

    async def signed_url(self, key: str, *, content_type: str, disposition: Disposition = "inline",
                         filename: str | None = None, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        """A URL anyone holding it may GET the file at until the answered expiry."""


# ---------------------------------------------------------------- signed download tokens (local store)


@dataclass(frozen=True)
class DownloadGrant:
    key: str
    content_type: str
    content_disposition: str
    expires_at: datetime


@lru_cache
def _signing_key(index_key: bytes) -> bytes:
    # A key of its own, derived from a deployment secret, so a token's MAC says nothing about the blind index.
    return hmac.new(index_key, b"careloop/file-download-links/v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_download(key: str, *, content_type: str, disposition: Disposition = "inline", filename: str | None = None,
                  expires_at: datetime) -> str:
    """The token of `GET /api/v1/files/{token}`: base64url(JSON claims) "." base64url(HMAC-SHA256)."""
    check_key(key)
    if not _CONTENT_TYPE_RE.fullmatch(content_type):
        raise ValueError(f"not a content type: {content_type!r}")
    claims = {"k": key, "e": int(expires_at.timestamp()), "t": content_type,
              "d": _content_disposition(disposition, filename)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    mac = hmac.new(_signing_key(crypto.field_keys().index_key), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_download(token: str, *, now: datetime | None = None) -> DownloadGrant:
    """What a token grants: 403 `file_link_invalid` when it was not made by us or was altered, 410
    `file_link_expired` once its time is up (checked after the signature: an expiry is only believed signed)."""
    payload, dot, mac = token.partition(".")
    if not dot or not payload or not mac:
        raise FileLinkInvalid("this download link is not valid")
    expected = hmac.new(_signing_key(crypto.field_keys().index_key), payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        raise FileLinkInvalid("this download link is not valid") from None
    if not hmac.compare_digest(given, expected):
        raise FileLinkInvalid("this download link is not valid")
    try:
        claims = json.loads(_unb64(payload))
        key, expires, content_type, disposition = (check_key(claims["k"]), int(claims["e"]), str(claims["t"]),
                                                   str(claims["d"]))
    except (binascii.Error, ValueError, KeyError, TypeError, InvalidFileKey):
        raise FileLinkInvalid("this download link is not valid") from None
    expires_at = datetime.fromtimestamp(expires, UTC)
    if (now or utcnow()) >= expires_at:
        raise FileLinkExpired("this download link has expired: ask for a new one")
    return DownloadGrant(key=key, content_type=content_type, content_disposition=disposition, expires_at=expires_at)


# ---------------------------------------------------------------- the stores


class LocalFileStore:
    """Files in a folder (by default `<data_dir>/files`)."""

    def __init__(self, root: Path, *, ttl_seconds: int = 300, public_base_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.ttl_seconds = ttl_seconds
        self.public_base_url = (public_base_url or "").rstrip("/")

    def path_of(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # Belt and braces after the key pattern: whatever resolves outside the root (a symlink) is refused.
        if not path.is_relative_to(self.root):
            raise InvalidFileKey(f"not a file key: {key!r}")
        return path

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)  # atomic: a reader sees the old state or the whole file
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    async def put(self, data: bytes, *, content_type: str, prefix: str, extension: str = "") -> str:
        key = new_key(prefix, extension)
        await asyncio.to_thread(self._write, self.path_of(key), data)
        return key

    async def get(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            raise FileMissing("the file is no longer stored") from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    def _list(self, prefix: str) -> list[StoredKey]:
        base = self.root / _check_prefix(prefix)
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            # Only what the store wrote: temporary files of a write in progress are not keys.
            if path.is_file() and not path.is_symlink() and KEY_RE.fullmatch(key):
                found.append(StoredKey(key, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
        return found

    async def list_keys(self, prefix: str) -> list[StoredKey]:
        return await asyncio.to_thread(self._list, prefix)

    async def signed_url(self, key: str, *, content_type: str, disposition: Disposition = "inline",
                         filename: str | None = None, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        expires_at = (utcnow() + timedelta(seconds=ttl_seconds or self.ttl_seconds)).replace(microsecond=0)
        token = sign_download(key, content_type=content_type, disposition=disposition, filename=filename,
                              expires_at=expires_at)
        return f"{self.public_base_url}{DOWNLOAD_PATH}{token}", expires_at


class S3FileStore:
    """Files in a bucket of an S3-compatible service (aiobotocore). A client is opened per call: cheap next to
    the transfer, and nothing outlives the event loop that made it."""

    def __init__(self, *, bucket: str, endpoint_url: str | None, region: str, access_key_id: str | None,
                 secret_access_key: str | None, ttl_seconds: int = 300) -> None:
        from aiobotocore.session import get_session

        self.bucket = bucket
        self.ttl_seconds = ttl_seconds
        self._session = get_session()
        self._client_args = {"endpoint_url": endpoint_url, "region_name": region,
                             "aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        self._sync_client: Any = None

    def _client(self):  # noqa: ANN202 - aiobotocore's client context manager
        from botocore.config import Config

        # Path-style addressing: MinIO and most self-hosted S3 servers have no per-bucket DNS names.
        return self._session.create_client("s3", config=Config(signature_version="s3v4",
                                                               s3={"addressing_style": "path"}),
                                           **self._client_args)

    async def put(self, data: bytes, *, content_type: str, prefix: str, extension: str = "") -> str:
        key = new_key(prefix, extension)
        async with self._client() as client:
            # A PUT is atomic in S3: the object appears whole, or not at all.
            await client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return key

    async def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        async with self._client() as client:
            try:
                answer = await client.get_object(Bucket=self.bucket, Key=check_key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise FileMissing("the file is no longer stored") from None
                raise
            async with answer["Body"] as body:
                return await body.read()

    async def delete(self, key: str) -> None:
        async with self._client() as client:
            await client.delete_object(Bucket=self.bucket, Key=check_key(key))

    async def list_keys(self, prefix: str) -> list[StoredKey]:
        found = []
        async with self._client() as client:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                    Prefix=_check_prefix(prefix) + "/")
            async for page in pages:
                found += [StoredKey(o["Key"], o["LastModified"]) for o in page.get("Contents", [])
                          if KEY_RE.fullmatch(o["Key"])]
        return found

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        async with self._client() as client:
            try:
                await client.head_object(Bucket=self.bucket, Key=check_key(key))
            except ClientError:
                return False
            return True

    async def signed_url(self, key: str, *, content_type: str, disposition: Disposition = "inline",
                         filename: str | None = None, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        ttl = ttl_seconds or self.ttl_seconds
        expires_at = (utcnow() + timedelta(seconds=ttl)).replace(microsecond=0)
        url = self._presigner().generate_presigned_url("get_object", ExpiresIn=ttl, Params={
            "Bucket": self.bucket, "Key": check_key(key), "ResponseContentType": content_type,
            "ResponseContentDisposition": _content_disposition(disposition, filename),
            "ResponseCacheControl": "private, no-store"})
        return url, expires_at

    def _presigner(self):  # noqa: ANN202 - a botocore S3 client
        # Presigning is local computation (no request is sent), so one plain botocore client serves every call;
        # making a client per URL costs ~40 ms of CPU on the event loop, a list of thumbnails seconds.
        if self._sync_client is None:
            import botocore.session
            from botocore.config import Config

            self._sync_client = botocore.session.get_session().create_client(
                "s3", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}), **self._client_args)
        return self._sync_client


def make_file_store(settings: Settings) -> LocalFileStore | S3FileStore:
    if settings.file_store == "s3":
        if not settings.s3_bucket:
            raise RuntimeError("FILE_STORE=s3 needs S3_BUCKET (and S3_ENDPOINT_URL for a service other than AWS)")
        return S3FileStore(bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url,
                           region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                           secret_access_key=settings.s3_secret_access_key, ttl_seconds=settings.file_url_ttl_seconds)
    return LocalFileStore(Path(settings.data_dir) / "files", ttl_seconds=settings.file_url_ttl_seconds,
                          public_base_url=settings.file_public_base_url)


@lru_cache
def file_store() -> LocalFileStore | S3FileStore:
    """The process's store, as configured."""
    return make_file_store(get_settings())
