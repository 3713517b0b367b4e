"""Chat-record sync against the fake archive: real RSA on the random keys, real database, real cursor."""

from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import text

from app.core.db import session_scope
from app.core.settings import get_settings
from app.domain.chatsync import service as chatsync
from app.domain.chatsync.archive import ChatDecryptError, ChatSyncNotConfigured, parse_private_keys
from app.domain.chatsync.fake import FakeChatArchiveSource, new_private_key, pem
from app.domain.chatsync.jobs import run_chat_sync
from app.domain.wechat_links.events import WECOM_MSGAUDIT_NOTIFY
from app.workers.dispatch import dispatch_event
from tests.factories import new_tenant, seal_audit

KEY = new_private_key()  # one 2048-bit key for the module: generating keys is the slow part
KEYS = parse_private_keys(f"1:{pem(KEY)}")
T0 = 1_764_000_000_000  # msgtime is in milliseconds


def text_msg(msgid: str, sender: str, to: str, content: str, n: int = 0) -> dict:
    return {"msgid": msgid, "action": "send", "from": sender, "tolist": [to], "roomid": "", "msgtime": T0 + n,
            "msgtype": "text", "text": {"content": content}}


def image_msg(msgid: str, sender: str, to: str, n: int = 0) -> dict:
    return {"msgid": msgid, "action": "send", "from": sender, "tolist": [to], "roomid": "", "msgtime": T0 + n,
            "msgtype": "image", "image": {"md5sum": "50de8e5ae8ffe4f1df7a93841f71993a", "filesize": 70961,
                                          "sdkfileid": "CtYBMzA2OTAyMDEwMjA0NjIzMDYwMDIwMTAwMDIwNGJk"}}


async def link(tenant_id: UUID, external_userid: str, member_id: str) -> None:
    """A WeCom contact linked to a member (written as the WeCom integration writes it)."""
    async with session_scope(system=True) as session:
        await session.execute(text(
            "INSERT INTO wecom_external_contacts (tenant_id, external_userid, name, follow_userids, status, "
            "created_at) VALUES (:t, :e, '客户', ARRAY['zhangsan'], 'active', now())"),
            {"t": tenant_id, "e": external_userid})
        await session.execute(text(
            "INSERT INTO member_wecom_links (tenant_id, external_userid, member_id, source, created_at) "
            "VALUES (:t, :e, :m, 'manual', now())"), {"t": tenant_id, "e": external_userid, "m": UUID(member_id)})


async def stored(tenant_id: UUID) -> list:
    async with session_scope(tenant_id) as session:
        return (await session.execute(text(
            "SELECT msgid, seq, member_id, external_userid, staff_userid, direction, msgtype, media "
            "FROM chat_records ORDER BY seq"))).all()


async def cursor(tenant_id: UUID):
    async with session_scope(tenant_id) as session:
        return (await session.execute(text("SELECT * FROM chat_sync_cursors"))).one_or_none()


@pytest.fixture
async def setup(client, monkeypatch):
    kit = await new_tenant(client)
    monkeypatch.setattr(get_settings(), "wecom_msgaudit_tenant", kit.code)  # the archive is this tenant's
    r = await kit.post("/members", {"name": "陈小姐", "phone": "13800001111"})
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    await link(UUID(kit.tenant_id), "wmLinkedCustomer", member_id)
    return kit, UUID(kit.tenant_id), member_id


async def test_sync_stores_decrypted_records_maps_members_and_is_idempotent(setup):
    kit, tenant, member_id = setup
    source = FakeChatArchiveSource(KEY)
    source.add(text_msg("m1", "wmLinkedCustomer", "zhangsan", "医生，做完针灸后肩膀还有点酸", 1))
    source.add(image_msg("m2", "zhangsan", "wmLinkedCustomer", 2))
    source.add(text_msg("m3", "wmNotYetLinked", "zhangsan", "请问周六还有号吗", 3))

    result = await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS, batch_size=2)
    assert (result.batches, result.fetched, result.stored, result.seq) == (2, 3, 3, 3)
    rows = await stored(tenant)
    assert [(r.msgid, r.direction, r.msgtype, r.staff_userid) for r in rows] == [
        ("m1", "inbound", "text", "zhangsan"), ("m2", "outbound", "image", "zhangsan"),
        ("m3", "inbound", "text", "zhangsan")]
    assert [str(r.member_id) if r.member_id else None for r in rows] == [member_id, member_id, None]
    assert rows[1].media == {"sdkfileid": "CtYBMzA2OTAyMDEwMjA0NjIzMDYwMDIwMTAwMDIwNGJk",
                             "md5sum": "50de8e5ae8ffe4f1df7a93841f71993a", "filesize": 70961}
    assert (await cursor(tenant)).seq == 3

    # A rerun fetches from the cursor and stores nothing twice.
    again = await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS, batch_size=2)
    assert (again.stored, again.seq) == (0, 3) and source.fetches[-1][0] == 3
    assert len(await stored(tenant)) == 3

    # The unlinked contact is linked later: the next run maps its records.
    other = await kit.post("/members", {"name": "刘先生", "phone": "13800002222"})
    await link(tenant, "wmNotYetLinked", other.json()["id"])
    assert (await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS)).remapped == 1
    assert str((await stored(tenant))[2].member_id) == other.json()["id"]

    # The API serves the text (decrypted) and audits the read; the timeline shows that, not what.
    r = await kit.get(f"/members/{member_id}/chat-records")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["msgid"] for i in items] == ["m2", "m1"]
    assert items[1]["content"] == "医生，做完针灸后肩膀还有点酸" and items[0]["media"]["filesize"] == 70961
    await seal_audit()  # what the worker does every two seconds
    async with session_scope(tenant) as session:
        audited = (await session.execute(text("SELECT count(*) FROM audit_log WHERE action = "
                                              "'member.chat_records.read' AND target_id = :m"),
                                         {"m": member_id})).scalar_one()
    assert audited == 1
    timeline = (await kit.get(f"/members/{member_id}/timeline")).json()["items"]
    chats = [i for i in timeline if i["type"] == "chat"]
    assert len(chats) == 2 and "content" not in chats[0]["data"] and chats[0]["data"]["msgtype"] == "image"
    page = (await kit.get(f"/members/{member_id}/chat-records", params={"limit": 1})).json()
    rest = (await kit.get(f"/members/{member_id}/chat-records", params={"cursor": page["next_cursor"]})).json()
    assert [i["msgid"] for i in page["items"] + rest["items"]] == ["m2", "m1"]

    # Front desk never sees health data, and chats carry it.
    desk = await kit.staff(["front_desk"])
    assert (await kit.get(f"/members/{member_id}/chat-records", token=desk["token"])).status_code == 403


class CrashingSource(FakeChatArchiveSource):
    """The process dies half-way through decrypting a batch (once)."""

    crash_at: str | None = None

    def decrypt(self, random_key: bytes, encrypted_msg: str) -> dict:
        message = super().decrypt(random_key, encrypted_msg)
        if message["msgid"] == self.crash_at:
            self.crash_at = None
            raise RuntimeError("worker killed mid-batch")
        return message


async def test_crash_mid_batch_resumes_from_the_cursor_and_dedupes(setup):
    _, tenant, _ = setup
    source = CrashingSource(KEY)
    for n in range(1, 7):
        source.add(text_msg(f"c{n}", "zhangsan", "wmLinkedCustomer", f"第{n}条", n))
    source.crash_at = "c5"  # the second record of the second batch of three

    with pytest.raises(RuntimeError, match="mid-batch"):
        await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS, batch_size=3)
    assert [r.msgid for r in await stored(tenant)] == ["c1", "c2", "c3"]  # batch 1 kept, batch 2 not at all
    state = await cursor(tenant)
    assert state.seq == 3 and "mid-batch" in state.last_error

    result = await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS, batch_size=3)
    assert source.fetches[-2][0] == 3  # resumed from the cursor
    assert (result.stored, result.seq) == (3, 6)
    assert [r.msgid for r in await stored(tenant)] == [f"c{n}" for n in range(1, 7)]
    assert (await cursor(tenant)).last_error is None

    # Even from a cursor that lags (or WeCom sending a msgid again under a new seq), nothing doubles.
    async with session_scope(tenant) as session:
        await session.execute(text("UPDATE chat_sync_cursors SET seq = 0"))
    source.add(text_msg("c1", "zhangsan", "wmLinkedCustomer", "第1条", 1), seq=7)
    result = await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS, batch_size=3)
    assert (result.fetched, result.stored, result.seq) == (7, 0, 7)
    assert len(await stored(tenant)) == 6


async def test_wrong_private_key_stores_nothing_and_reports(setup):
    kit, tenant, _ = setup
    source = FakeChatArchiveSource(KEY)
    source.add(text_msg("w1", "wmLinkedCustomer", "zhangsan", "你好", 1))
    wrong = parse_private_keys(pem(new_private_key()))
    with pytest.raises(ChatDecryptError, match="w1: .* the right one"):
        await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=wrong)
    with pytest.raises(ChatDecryptError, match="no private key configured for publickey_ver 1"):
        await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=parse_private_keys(f"2:{pem(KEY)}"))
    assert await stored(tenant) == []
    status = (await kit.get("/chat-sync/status")).json()
    assert status["seq"] == 0 and "publickey_ver 1" in status["last_error"]


async def test_run_endpoint_and_callback_event_sync_through_the_worker(setup, monkeypatch):
    kit, tenant, member_id = setup
    source = FakeChatArchiveSource(KEY)
    source.add(text_msg("e1", "wmLinkedCustomer", "zhangsan", "到店了", 1))
    monkeypatch.setattr(chatsync, "configured_source", lambda: source)
    monkeypatch.setattr(chatsync, "load_private_keys", lambda: KEYS)

    therapist = await kit.staff(["therapist"])
    assert (await kit.post("/chat-sync/run", {}, token=therapist["token"])).status_code == 403
    r = await kit.post("/chat-sync/run", {})
    assert r.status_code == 202, r.text
    assert await dispatch_event(None, kit.tenant_id, r.json()["event_id"]) == "done"
    assert [row.msgid for row in await stored(tenant)] == ["e1"]

    # WeCom's msgaudit_notify (emitted by the callback) triggers the same sync.
    source.add(text_msg("e2", "zhangsan", "wmLinkedCustomer", "请稍等", 2))
    from app.core import outbox

    async with session_scope(tenant) as session:
        event = await outbox.emit(session, WECOM_MSGAUDIT_NOTIFY, {"token": "x"})
    assert await dispatch_event(None, kit.tenant_id, str(event.id)) == "done"
    assert [row.msgid for row in await stored(tenant)] == ["e1", "e2"]


async def test_a_second_concurrent_sync_of_a_tenant_stands_aside(setup):
    _, tenant, _ = setup
    source = FakeChatArchiveSource(KEY)
    source.add(text_msg("l1", "wmLinkedCustomer", "zhangsan", "在吗", 1))
    async with session_scope(tenant) as session:  # another worker is mid-batch
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": chatsync._lock_key(tenant)})
        result = await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS)
    assert result.status == "busy" and await stored(tenant) == []
    assert (await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS)).stored == 1


async def test_unconfigured_deployment_says_so(setup, monkeypatch):
    _, tenant, _ = setup
    with pytest.raises(ChatSyncNotConfigured, match="WECOM_FINANCE_SDK_PATH"):
        await chatsync.sync_chat_records(session_scope, tenant)


async def test_the_corps_archive_is_synced_into_its_own_tenant_only(setup, client, monkeypatch):
    kit, tenant, _ = setup
    other = await new_tenant(client)
    other_id = UUID(other.tenant_id)
    source = FakeChatArchiveSource(KEY)
    source.add(text_msg("b1", "wmLinkedCustomer", "zhangsan", "这是康悦堂的会话", 1))
    monkeypatch.setattr(chatsync, "configured_source", lambda: source)
    monkeypatch.setattr(chatsync, "load_private_keys", lambda: KEYS)

    # Another tenant of the deployment is refused, says so in its status, and stores nothing.
    with pytest.raises(ChatSyncNotConfigured, match="belongs to another tenant"):
        await chatsync.sync_chat_records(session_scope, other_id, source=source, keys=KEYS)
    assert await stored(other_id) == [] and source.fetches == []
    status = (await other.get("/chat-sync/status")).json()
    assert status["archive_bound"] is False and "belongs to another tenant" in status["last_error"], status
    r = await other.post("/chat-sync/run", {})
    assert r.status_code == 409 and r.json()["code"] == "chat_archive_not_bound", r.text
    # WeCom's notice to the other tenant's callback URL does not copy the archive either.
    from app.core import outbox

    async with session_scope(other_id) as session:
        event = await outbox.emit(session, WECOM_MSGAUDIT_NOTIFY, {"agent_id": "1"})
    assert await dispatch_event(None, other.tenant_id, str(event.id)) == "done"
    assert await stored(other_id) == []

    # The cron syncs the archive's own tenant (only).
    assert (await kit.get("/chat-sync/status")).json()["archive_bound"] is True
    done = await run_chat_sync(session_scope)
    assert done["tenants"] == 1 and [r.msgid for r in await stored(tenant)] == ["b1"]
    assert await stored(other_id) == []

    # Bound to no tenant: nobody syncs.
    monkeypatch.setattr(get_settings(), "wecom_msgaudit_tenant", None)
    with pytest.raises(ChatSyncNotConfigured, match="WECOM_MSGAUDIT_TENANT"):
        await chatsync.sync_chat_records(session_scope, tenant, source=source, keys=KEYS)
    assert (await run_chat_sync(session_scope)) == {"tenants": 0}
