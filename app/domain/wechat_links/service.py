"""WeChat and WeCom identities: mini-program sign-in and binding, WeCom staff sign-in, the sidebar's
JS-SDK signatures and external-contact → member resolution, and the WeCom callback.

WeChat/WeCom credentials are global settings today (one mini-program and one corp serve every tenant);
`_mini_config` / `_wecom_config` are where a per-tenant lookup goes when chains bring their own apps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory, set_tenant
from app.core.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from app.core.events import emit
from app.core.ids import new_id
from app.core.redis import create_redis, rkey
from app.core.security import issue_token
from app.core.settings import get_settings
from app.domain.iam import service as iam
from app.domain.iam.schemas import TokenResponse
from app.domain.members import service as members
from app.domain.members.schemas import MemberOut
from app.domain.tenancy import service as tenancy
from app.domain.wechat_links.events import (
    WECOM_EXTERNAL_CONTACT_CHANGED,
    WECOM_EXTERNAL_CONTACT_LINKED,
    WECOM_MSGAUDIT_NOTIFY,
)
from app.domain.wechat_links.models import (
    MemberWechatLink,
    MemberWecomLink,
    WecomCallbackReceipt,
    WecomExternalContact,
)
from app.domain.wechat_links.schemas import ExternalContactLink, MiniProgramLogin, PatientLoginOut, WecomLogin
from app.integrations.wechat import mini_program as mp
from app.integrations.wechat import wecom as wc
from app.integrations.wechat.tokens import WeChatError, WeChatNotConfigured

if TYPE_CHECKING:
    from app.domain.tenancy.models import Tenant

log = logging.getLogger("careloop.wechat")

# Per client address per minute, for the unauthenticated sign-in endpoints (each costs calls to WeChat).
SIGN_IN_LIMIT_PER_MINUTE = 60

ADDED = ("add_external_contact", "edit_external_contact", "add_half_external_contact")
_REMOVED = ("del_external_contact", "del_follow_user")


class BadGateway(AppError):
    code, status, title = "wechat_unavailable", 502, "Bad gateway"


@contextlib.contextmanager
def _wechat_errors(invalid_code: str = "invalid_wechat_code") -> Iterator[None]:
    """WeChat's answers as problems: a bad code is the client's fault, the rest is WeChat's."""
    try:
        yield
    except WeChatNotConfigured as exc:
        raise ServiceUnavailable(str(exc), code="wechat_not_configured") from exc
    except WeChatError as exc:
        if exc.errcode in (mp.INVALID_CODE, mp.CODE_USED):
            raise Unauthorized("the WeChat code is invalid, expired or already used", code=invalid_code) from exc
        log.warning("WeChat call failed: %s", exc)
        raise BadGateway(f"WeChat answered errcode {exc.errcode}", errcode=exc.errcode) from exc


def _mini_config() -> mp.MiniProgramConfig:
    return mp.MiniProgramConfig.from_settings(get_settings())


def _wecom_config() -> wc.WeComConfig:
    return wc.WeComConfig.from_settings(get_settings())


def wecom_client(redis: Redis) -> wc.WeComClient:
    """For other contexts (messages to staff): the WeCom client of the configured corp."""
    return wc.WeComClient(_wecom_config(), redis)


def mini_program_client(redis: Redis) -> mp.MiniProgramClient:
    """For other contexts (subscribe messages): the configured mini-program's client."""
    return mp.MiniProgramClient(_mini_config(), redis)


# The Redis that holds the shared WeChat/WeCom access tokens for work done outside requests (the worker's
# handlers); set by the worker at start-up, else REDIS_URL.
_redis_url: str | None = None


def configure_redis(url: str | None) -> None:
    global _redis_url
    _redis_url = url


def worker_redis() -> Redis:
    """A Redis client for the token caches of the worker's WeChat/WeCom calls (the caller closes it)."""
    url = _redis_url or get_settings().redis_url
    if not url:
        raise RuntimeError("no Redis configured for WeChat/WeCom access tokens (set REDIS_URL)")
    return create_redis(url)


async def _limit_sign_ins(redis: Redis, kind: str, ip: str | None) -> None:
    if not ip:
        return
    key = rkey("signin_rate", kind, ip, int(time.time() // 60))
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, 120)
    if count > SIGN_IN_LIMIT_PER_MINUTE:
        raise TooManyRequests("too many sign-in attempts from this address; try again in a minute",
                              code="rate_limited", retry_after=60)


async def _tenant(session: AsyncSession, code: str) -> Tenant:
    tenant = await tenancy.tenant_by_code(session, code)
    if tenant is None or not tenant.active:
        raise NotFound("no such tenant", code="tenant_not_found")
    await set_tenant(session, tenant.id)
    return tenant


# ---------------------------------------------------------------------- mini-program sign-in


async def _bind(session: AsyncSession, tenant_id: UUID, member_id: UUID, appid: str, wx: mp.WxSession) -> None:
    """Point this openid at the member (one row per openid; a proven phone number moves it)."""
    now = utcnow()
    stmt = insert(MemberWechatLink).values(tenant_id=tenant_id, id=new_id(), member_id=member_id,
                                           appid=appid, openid=wx.openid, unionid=wx.unionid, last_login_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "openid"],
        set_={"member_id": stmt.excluded.member_id, "last_login_at": now,
              "unionid": func.coalesce(stmt.excluded.unionid, MemberWechatLink.unionid)},
    )
    await session.execute(stmt)


async def mini_program_login(session: AsyncSession, redis: Redis, data: MiniProgramLogin, *,
                             ip: str | None) -> PatientLoginOut:
    """`wx.login()` code (and, the first time, proof of the member's phone) → a patient token.

    The phone number is what ties a WeChat user to a member: the new phone-number `code` or the legacy
    encrypted payload (decrypted with this login's session key). Without it, only an openid bound before
    signs in; an unknown one gets 409 `phone_required` so the mini-program shows its phone button.
    """
    await _limit_sign_ins(redis, "mini", ip)
    tenant = await _tenant(session, data.tenant)
    with _wechat_errors():
        client = mini_program_client(redis)
        wx = await client.code2session(data.code)
        phone: mp.PhoneNumber | None = None
        if data.phone_code:
            phone = await client.phone_number(data.phone_code)
        elif data.encrypted_data and data.iv:
            try:
                phone = client.decrypt_phone(wx.session_key, data.encrypted_data, data.iv)
            except mp.PhoneDecryptError as exc:
                raise Unprocessable(f"encrypted_data: {exc}", code="invalid_encrypted_data",
                                    field="encrypted_data") from exc
    link = (await session.execute(select(MemberWechatLink).where(
        MemberWechatLink.tenant_id == tenant.id, MemberWechatLink.openid == wx.openid))).scalars().first()
    bound = False
    if phone is not None:
        member = await members.find_by_phone(session, tenant.id, phone.phone)
        if member is None:
            raise NotFound("no member has this phone number; register at the front desk first",
                           code="member_not_found")
        bound = link is None or link.member_id != member.id
        member_id = member.id
    elif link is not None:
        member_id = link.member_id
    else:
        raise Conflict("this WeChat account is not bound to a member yet: send the phone number",
                       code="phone_required")
    if member_id not in await members.members_by_id(session, tenant.id, {member_id}, active_only=True):
        raise Unauthorized("this member account is closed", code="account_disabled")
    await _bind(session, tenant.id, member_id, client.config.appid, wx)
    if bound:
        audit.record(session, "wechat.bind", "member", member_id, openid=wx.openid,
                     rebound_from=str(link.member_id) if link is not None else None)
    audit.record(session, "auth.login", "member", member_id, method="wechat_mini_program")
    ttl = get_settings().access_token_ttl_seconds
    # The token names the WeChat account it was issued for: that account, still bound to the patient, is the
    # one their own WeChat Pay orders are charged to (`payer_openid`).
    token, _ = issue_token(subject=str(member_id), tenant_id=str(tenant.id), audience="patient", ttl_seconds=ttl,
                           openid=wx.openid)
    return PatientLoginOut(access_token=token, expires_in=ttl, member_id=member_id, bound=bound)


# ---------------------------------------------------------------------- WeCom staff sign-in and sidebar


async def wecom_login(session: AsyncSession, redis: Redis, data: WecomLogin, *, ip: str | None) -> TokenResponse:
    await _limit_sign_ins(redis, "wecom", ip)
    tenant = await _tenant(session, data.tenant)
    with _wechat_errors():
        userid = await wecom_client(redis).getuserinfo(data.code)
    return await iam.sign_in_wecom_user(session, tenant.id, userid)


async def jssdk_config(redis: Redis, actor: Actor, url: str) -> dict[str, Any]:
    with _wechat_errors():
        return await wecom_client(redis).jssdk_config(url)


async def _fetch_contact(session: AsyncSession, redis: Redis, tenant_id: UUID,
                         external_userid: str) -> WecomExternalContact | None:
    """Ask WeCom about the contact and remember the answer; None when WeCom does not know it."""
    with _wechat_errors():
        found = await wecom_client(redis).get_external_contact(external_userid)
    if found is None:
        return None
    return await _upsert_contact(session, tenant_id, external_userid, name=found.name, unionid=found.unionid,
                                 contact_type=found.type, follow_userids=found.follow_userids)


async def _upsert_contact(session: AsyncSession, tenant_id: UUID, external_userid: str, *,
                          follow_userids: list[str] | None = None, add_follower: str | None = None,
                          remove_follower: str | None = None, **fields: Any) -> WecomExternalContact:
    contact = await session.get(WecomExternalContact, (tenant_id, external_userid), with_for_update=True)
    if contact is None:
        contact = WecomExternalContact(tenant_id=tenant_id, external_userid=external_userid, follow_userids=[])
    for name, value in fields.items():
        if value is not None:
            setattr(contact, name, value)
    followers = list(follow_userids if follow_userids is not None else contact.follow_userids or [])
    if add_follower and add_follower not in followers:
        followers.append(add_follower)
    if remove_follower in followers:
        followers.remove(remove_follower)
    contact.follow_userids = followers
    # A contact is 'deleted' once the last staff member who had them is gone (either side removed the other).
    contact.status = "deleted" if remove_follower is not None and not followers else "active"
    contact.updated_at = utcnow()
    session.add(contact)
    await session.flush()
    return contact


async def _member_by_unionid(session: AsyncSession, tenant_id: UUID, unionid: str) -> UUID | None:
    stmt = (select(MemberWechatLink.member_id)
            .where(MemberWechatLink.tenant_id == tenant_id, MemberWechatLink.unionid == unionid)
            .order_by(MemberWechatLink.last_login_at.desc().nulls_last()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def _link(session: AsyncSession, tenant_id: UUID, external_userid: str, member_id: UUID, source: str,
                linked_by: UUID | None = None) -> bool:
    """Link the contact to the member; emits `wecom.external_contact_linked` when the link was written
    (True), so what waits for it (stored chats) is mapped at once."""
    stmt = insert(MemberWecomLink).values(tenant_id=tenant_id, external_userid=external_userid, member_id=member_id,
                                          source=source, linked_by=linked_by, created_at=utcnow())
    # A manual choice overrides anything; a unionid match never overrides a manual choice.
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "external_userid"],
        set_={"member_id": stmt.excluded.member_id, "source": stmt.excluded.source,
              "linked_by": stmt.excluded.linked_by, "updated_at": utcnow()},
        where=(stmt.excluded.source == "manual") | (MemberWecomLink.source != "manual"),
    ).returning(MemberWecomLink.external_userid)
    if (await session.execute(stmt)).first() is None:
        return False
    await emit(session, WECOM_EXTERNAL_CONTACT_LINKED, {"external_userid": external_userid,
                                                        "member_id": str(member_id), "source": source},
               tenant_id=tenant_id)
    return True


async def _linked_member(session: AsyncSession, tenant_id: UUID, contact: WecomExternalContact) -> UUID | None:
    """The stored link, else a mini-program user with the same unionid (remembered as a link)."""
    link = await session.get(MemberWecomLink, (tenant_id, contact.external_userid))
    if link is not None:
        return link.member_id
    if contact.unionid:
        member_id = await _member_by_unionid(session, tenant_id, contact.unionid)
        if member_id is not None:
            await _link(session, tenant_id, contact.external_userid, member_id, "unionid")
            return member_id
    return None


async def _known_contact(session: AsyncSession, redis: Redis, tenant_id: UUID,
                         external_userid: str) -> WecomExternalContact | None:
    contact = await session.get(WecomExternalContact, (tenant_id, external_userid))
    if contact is not None and contact.unionid:
        return contact
    try:
        _wecom_config()
    except WeChatNotConfigured:
        return contact  # nothing more to learn without WeCom
    try:
        return await _fetch_contact(session, redis, tenant_id, external_userid) or contact
    except BadGateway:
        if contact is not None:
            return contact  # WeCom is down: what we know is better than an error
        raise


async def member_for_external_contact(session: AsyncSession, redis: Redis, actor: Actor,
                                      external_userid: str) -> MemberOut:
    """The member beside the sidebar's chat: a stored link, or a unionid match with a mini-program login."""
    member_id = await member_id_for_external_contact(session, redis, actor, external_userid)
    return await members.get_member(session, actor, member_id)


async def member_id_for_external_contact(session: AsyncSession, redis: Redis, actor: Actor,
                                         external_userid: str) -> UUID:
    """Who the sidebar's chat partner is (a stored link, else a unionid match with a mini-program login,
    remembered as a link): 404 `external_contact_not_found` for a contact neither we nor WeCom know,
    404 `external_contact_not_linked` for one that is no member yet."""
    actor.require("members:read")
    link = await session.get(MemberWecomLink, (actor.tenant_id, external_userid))
    if link is not None:
        return link.member_id
    contact = await _known_contact(session, redis, actor.tenant_id, external_userid)
    if contact is None:
        raise NotFound("no such WeCom external contact", code="external_contact_not_found")
    member_id = await _linked_member(session, actor.tenant_id, contact)
    if member_id is None:
        raise NotFound("this external contact is not linked to a member yet", code="external_contact_not_linked")
    return member_id


async def link_external_contact(session: AsyncSession, redis: Redis, actor: Actor, external_userid: str,
                                data: ExternalContactLink) -> MemberOut:
    """A staff member says who this customer is (overrides a unionid match)."""
    actor.require("members:write")
    contact = await _known_contact(session, redis, actor.tenant_id, external_userid)
    if contact is None:
        raise NotFound("no such WeCom external contact", code="external_contact_not_found")
    try:
        member = await members.get_member_row(session, actor, data.member_id)
    except NotFound as exc:
        raise Unprocessable("member_id: no such member", code="validation_error", field="member_id") from exc
    await _link(session, actor.tenant_id, external_userid, member.id, "manual",
                actor.id if actor.kind == "staff" else None)
    audit.record(session, "wecom.link", "member", member.id, external_userid=external_userid)
    return await members.present(session, actor, member)


async def link_known_contact(session: AsyncSession, actor: Actor, external_userid: str, member_id: UUID, *,
                             name: str, follow_userids: list[str]) -> None:
    """Record an external contact as WeCom described it elsewhere (an export from the WeCom console, the demo
    tenant) and link it to the member by hand, without asking WeCom."""
    actor.require("members:write")
    await _upsert_contact(session, actor.tenant_id, external_userid, name=name, follow_userids=follow_userids)
    await _link(session, actor.tenant_id, external_userid, member_id, "manual",
                actor.id if actor.kind == "staff" else None)
    audit.record(session, "wecom.link", "member", member_id, external_userid=external_userid)


# ---------------------------------------------------------------------- callbacks


def _callback_crypto() -> wc.WeComCallbackCrypto:
    with _wechat_errors():
        return wc.WeComCallbackCrypto.from_config(_wecom_config())


async def _callback_tenant(sessions: SessionFactory, code: str) -> UUID:
    async with sessions() as session:
        tenant = await tenancy.tenant_by_code(session, code)
    if tenant is None or not tenant.active:
        raise NotFound("no such tenant", code="tenant_not_found")
    return tenant.id


def _check_timestamp(timestamp: str) -> None:
    skew = get_settings().wecom_callback_max_skew_seconds
    if abs(time.time() - int(timestamp)) > skew:
        raise Unauthorized("callback timestamp is outside the accepted window", code="stale_timestamp")


async def _claim_nonce(redis: Redis, tenant_id: UUID, nonce: str) -> str:
    key = rkey("wecom_callback_nonce", tenant_id, nonce)
    ttl = 2 * get_settings().wecom_callback_max_skew_seconds  # longer than any timestamp still accepted
    if not await redis.set(key, "1", nx=True, ex=ttl):
        raise Conflict("this callback was already received", code="replayed_callback")
    return key


async def verify_callback_url(sessions: SessionFactory, redis: Redis, tenant_code: str, msg_signature: str,
                              timestamp: str, nonce: str, echostr: str) -> str:
    """WeCom's URL verification: answer the decrypted echostr (only a holder of the token and key can)."""
    tenant_id = await _callback_tenant(sessions, tenant_code)
    crypto = _callback_crypto()
    try:
        crypto.verify_signature(msg_signature, timestamp, nonce, echostr)
        _check_timestamp(timestamp)
        await _claim_nonce(redis, tenant_id, nonce)
        return crypto.decrypt_echostr(msg_signature, timestamp, nonce, echostr)
    except wc.CallbackSignatureError as exc:
        raise Unauthorized("callback signature does not verify", code="invalid_signature") from exc
    except wc.CallbackPayloadError as exc:
        raise BadRequest(str(exc), code="invalid_callback") from exc


async def receive_callback(sessions: SessionFactory, redis: Redis, tenant_code: str, msg_signature: str,
                           timestamp: str, nonce: str, body: bytes) -> None:
    """An encrypted event. Checked in this order: signature, timestamp window, nonce not seen before; then
    handled in one transaction with a receipt whose unique signature makes it exactly-once. If handling
    fails, the nonce is given back so WeCom's retry of the same delivery is accepted."""
    tenant_id = await _callback_tenant(sessions, tenant_code)
    crypto = _callback_crypto()
    try:
        envelope = wc.parse_xml(body)
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise wc.CallbackPayloadError("the body has no <Encrypt>")
        crypto.verify_signature(msg_signature, timestamp, nonce, encrypted)
        _check_timestamp(timestamp)
        nonce_key = await _claim_nonce(redis, tenant_id, nonce)
        try:
            message = crypto.decrypt_message(body, msg_signature, timestamp, nonce)
            async with sessions(tenant_id) as session:
                await _handle_event(session, tenant_id, message, msg_signature, nonce)
        except BaseException:
            await redis.delete(nonce_key)
            raise
    except wc.CallbackSignatureError as exc:
        raise Unauthorized("callback signature does not verify", code="invalid_signature") from exc
    except wc.CallbackPayloadError as exc:
        raise BadRequest(str(exc), code="invalid_callback") from exc


def _text(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    return str(value) if value not in (None, "") else None


async def _handle_event(session: AsyncSession, tenant_id: UUID, message: dict[str, Any],
                        msg_signature: str, nonce: str) -> None:
    event, change = _text(message, "Event"), _text(message, "ChangeType")
    session.add(WecomCallbackReceipt(tenant_id=tenant_id, msg_signature=msg_signature, nonce=nonce,
                                     event=event, change_type=change))
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("this callback was already received", code="replayed_callback") from exc
    if event == "change_external_contact":
        await _external_contact_changed(session, tenant_id, message, change)
    elif event == "msgaudit_notify":
        await emit(session, WECOM_MSGAUDIT_NOTIFY, {
            "agent_id": _text(message, "AgentID"), "create_time": _text(message, "CreateTime")}, tenant_id=tenant_id)
    else:
        log.info("WeCom callback event %r (%r) ignored", event, change)


async def _external_contact_changed(session: AsyncSession, tenant_id: UUID, message: dict[str, Any],
                                    change: str | None) -> None:
    external_userid, staff_userid = _text(message, "ExternalUserID"), _text(message, "UserID")
    if not external_userid:
        raise BadRequest("change_external_contact without ExternalUserID", code="invalid_callback")
    if change in ADDED:
        # Name and unionid come only from WeCom's API, which is not called here: WeCom waits at most 5 s for
        # this answer. The worker fetches the contact (`refresh_external_contact`, on this event).
        contact = await _upsert_contact(session, tenant_id, external_userid, add_follower=staff_userid)
    elif change in _REMOVED:
        contact = await _upsert_contact(session, tenant_id, external_userid, remove_follower=staff_userid)
    else:
        contact = await _upsert_contact(session, tenant_id, external_userid)
    member_id = await _linked_member(session, tenant_id, contact)
    await emit(session, WECOM_EXTERNAL_CONTACT_CHANGED, {
        "change_type": change, "external_userid": external_userid, "staff_userid": staff_userid,
        "member_id": str(member_id) if member_id else None, "state": _text(message, "State"),
        "welcome_code": _text(message, "WelcomeCode"), "create_time": _text(message, "CreateTime"),
    }, tenant_id=tenant_id)


async def refresh_external_contact(sessions: SessionFactory, tenant_id: UUID, external_userid: str) -> None:
    """The worker's half of an added or edited contact: ask WeCom who it is (no transaction open meanwhile),
    store the answer, and link it to the mini-program member with the same unionid. Idempotent: a second run
    stores the same answer and finds the link made (nothing emitted twice). A WeCom error raises, so the
    outbox retries; a deployment without WeCom has nothing to ask."""
    try:
        config = _wecom_config()
    except WeChatNotConfigured:
        return
    redis = worker_redis()
    try:
        found = await wc.WeComClient(config, redis).get_external_contact(external_userid)
    finally:
        await redis.aclose()
    if found is None:
        log.info("WeCom does not know external contact %s", external_userid)
        return
    async with sessions(tenant_id) as session:
        contact = await _upsert_contact(session, tenant_id, external_userid, name=found.name, unionid=found.unionid,
                                        contact_type=found.type, follow_userids=found.follow_userids)
        await _linked_member(session, tenant_id, contact)


# ---------------------------------------------------------------- merge


@members.merge_mover("wechat_links")
async def _move_links(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> dict[str, int]:
    moved = {}
    for model, name in ((MemberWechatLink, "wechat_links"), (MemberWecomLink, "wecom_links")):
        result = await session.execute(update(model).where(model.tenant_id == tenant_id,
                                                           model.member_id == duplicate_id)
                                       .values(member_id=survivor_id))
        moved[name] = result.rowcount
    return moved


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def mini_program_openid(session: AsyncSession, tenant_id: UUID, member_id: UUID, *,
                              appid: str | None) -> str | None:
    """The member's openid for mini-program messages. A member signed in from more than one WeChat account
    gets the one used last (most likely the one that accepted the subscription); links of another
    mini-program are left out when `appid` is given."""
    stmt = select(MemberWechatLink.openid).where(MemberWechatLink.tenant_id == tenant_id,
                                                 MemberWechatLink.member_id == member_id)
    if appid is not None:
        stmt = stmt.where(MemberWechatLink.appid == appid)
    stmt = stmt.order_by(MemberWechatLink.last_login_at.desc().nulls_last(), MemberWechatLink.created_at.desc())
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def members_of_external_contacts(session: AsyncSession, tenant_id: UUID,
                                       external_userids: set[str]) -> dict[str, UUID]:
    """external_userid → member, for the WeCom contacts linked to a member (the others are left out)."""
    if not external_userids:
        return {}
    rows = (await session.execute(select(MemberWecomLink.external_userid, MemberWecomLink.member_id).where(
        MemberWecomLink.tenant_id == tenant_id, MemberWecomLink.external_userid.in_(external_userids)))).all()
    return {row.external_userid: row.member_id for row in rows}


async def payer_openid(session: AsyncSession, actor: Actor, *, member_id: UUID, requested: str | None,
                       field: str = "payer_openid", appid: str | None = None) -> str:
    """The openid a WeChat Pay (JSAPI) order is charged to, for checkout.

    - A patient pays from their own WeChat account, whoever the order is for (a family member's too): one
      bound to them in the merchant's mini-program (`appid`, default WECHAT_PAY_APPID) — the account their
      token was issued for (`actor.extra["openid"]`, the token's `openid` claim) when it says, else the one
      they signed in with last. A `requested` openid (what the mini-program sent) must be one of theirs:
      422 `payer_openid_not_yours` naming `field` otherwise, and 422 `payer_openid_unknown` when they have
      no WeChat account bound (sign in to the mini-program first).
    - Staff and integrations: the `requested` openid, else the order member's last-used bound account.
    """
    appid = appid or get_settings().wechat_pay_appid
    payer = actor.id if actor.kind == "patient" else member_id
    stmt = select(MemberWechatLink.openid).where(MemberWechatLink.tenant_id == actor.tenant_id,
                                                 MemberWechatLink.member_id == payer)
    if appid:
        stmt = stmt.where(MemberWechatLink.appid == appid)
    stmt = stmt.order_by(MemberWechatLink.last_login_at.desc().nulls_last(), MemberWechatLink.created_at.desc())
    bound = list((await session.execute(stmt)).scalars().all())
    if actor.kind != "patient":
        if requested:
            return requested
        if not bound:
            raise Unprocessable(f"{field}: the member has no WeChat account bound to the mini-program; send the "
                                "payer's openid", code="payer_openid_unknown", field=field)
        return bound[0]
    if requested:
        if requested not in bound:
            raise Unprocessable(f"{field}: this is not the WeChat account you signed in with",
                                code="payer_openid_not_yours", field=field)
        return requested
    token_openid = (actor.extra or {}).get("openid")
    if token_openid:
        if token_openid not in bound:
            raise Unprocessable(f"{field}: the WeChat account this sign-in was made with is no longer bound to "
                                "you; sign in again", code="payer_openid_not_yours", field=field)
        return token_openid
    if not bound:
        raise Unprocessable(f"{field}: no WeChat account of yours is bound to the mini-program; sign in to it "
                            "first", code="payer_openid_unknown", field=field)
    return bound[0]
