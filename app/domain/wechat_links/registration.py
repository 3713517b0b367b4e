"""Registration from the mini-program: a WeChat user whose proven phone no member has becomes a member.

The sign-in (`service.mini_program_login`) answers such a phone with 404 `member_not_found`; registering
takes the same proof of the phone plus what the patient accepted (the privacy policy version) and where they
came from (the launch scene, and a share link's channel code and referrer), creates the member, binds the
WeChat account and signs them in. A phone that already has a member signs that member in instead, so the
mini-program can always call this on its sign-up page.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import Field, StrictInt
from redis.asyncio import Redis
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.clock import utcnow
from app.core.errors import Unauthorized, Unprocessable
from app.core.schemas import Name
from app.core.security import issue_token
from app.core.settings import get_settings
from app.domain.members import service as members
from app.domain.wechat_links.models import MemberWechatLink
from app.domain.wechat_links.schemas import MiniProgramLogin, PatientLoginOut
from app.domain.wechat_links.service import (
    _bind,
    _limit_sign_ins,
    _tenant,
    _wechat_errors,
    mini_program_client,
)
from app.integrations.wechat import mini_program as mp

# The launch scenes (wx.getLaunchOptionsSync().scene) that say where a new patient came from, by the
# source channel they are recorded under; any other scene is "mini_program_other".
SCENE_CHANNELS: dict[str, frozenset[int]] = {
    # A mini-program card shared in a chat (one-to-one, group, with shareTicket) or from an app.
    "mini_program_share": frozenset({1007, 1008, 1036, 1044}),
    # A QR code or mini-program code: scanned, picked from the album, long-pressed.
    "mini_program_qr": frozenset({1011, 1012, 1013, 1025, 1031, 1032, 1047, 1048, 1049}),
    # WeChat search and the "nearby" list.
    "mini_program_search": frozenset({1005, 1006, 1027, 1042, 1053, 1068}),
    # The clinic's official account: profile, menu, template message, article, conversation.
    "mini_program_official": frozenset({1020, 1035, 1043, 1058, 1074, 1082}),
    # Moments and article ads.
    "mini_program_ads": frozenset({1045, 1046, 1067, 1084, 1095}),
}
PRIVACY_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
# What a mini-program code's `scene` string (≤ 32 visible ASCII characters) or a share path carries.
CHANNEL_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"


class MiniProgramRegistration(MiniProgramLogin):
    """Sign-up: the sign-in body (`phone_code`, or `encrypted_data` + `iv`, is required here) and what the
    patient accepted and came through."""

    privacy_policy_version: str = Field(pattern=PRIVACY_VERSION_PATTERN,
                                        description="The version of the privacy policy the user accepted on the "
                                                    "sign-up page (e.g. 2026-03 or v3.1); recorded with the time")
    name: Name | None = Field(None, min_length=1, max_length=50,
                              description="What to call them (the nickname they typed); defaults to 微信用户 and the "
                                          "phone number's last four digits")
    scene: StrictInt | None = Field(None, ge=1000, le=1999,
                                    description="`wx.getLaunchOptionsSync().scene`: how the mini-program was opened "
                                                "(1007 a shared card, 1047 a mini-program code, …)")
    channel: str | None = Field(None, pattern=CHANNEL_PATTERN,
                                description="A campaign code from the share link's query or the mini-program code's "
                                            "`scene` string (e.g. `meituan`); recorded as the source channel")
    referrer_id: UUID | None = Field(None, description="The sharing member's id from the share link's query; one "
                                                       "that names no member is ignored")


class PatientRegistrationOut(PatientLoginOut):
    registered: bool = Field(description="True when this call created the member; false when the phone already "
                                         "had one (who is signed in)")


def source_channel(scene: int | None, channel: str | None) -> str:
    """The channel a new member is recorded under: the campaign code when the link carried one, else where
    the launch scene says they came from."""
    if channel:
        return channel
    for name, scenes in SCENE_CHANNELS.items():
        if scene in scenes:
            return name
    return "mini_program_other"


async def register(session: AsyncSession, redis: Redis, data: MiniProgramRegistration, *,
                   ip: str | None) -> PatientRegistrationOut:
    """Proof of the phone → the member with it (created when new, with the privacy-policy acceptance, source
    channel and referrer), the WeChat account bound to them, and a patient token."""
    await _limit_sign_ins(redis, "mini", ip)
    if data.phone_code is None and data.encrypted_data is None:
        raise Unprocessable("phone_code: registering needs the phone number (the phone-number button's code)",
                            code="validation_error", field="phone_code",
                            errors=[{"field": "phone_code", "message": "required to register", "type": "missing"}])
    tenant = await _tenant(session, data.tenant)
    with _wechat_errors():
        client = mini_program_client(redis)
        wx = await client.code2session(data.code)
        if data.phone_code:
            phone = await client.phone_number(data.phone_code)
        else:
            assert data.encrypted_data is not None and data.iv is not None  # the schema pairs them
            try:
                phone = client.decrypt_phone(wx.session_key, data.encrypted_data, data.iv)
            except mp.PhoneDecryptError as exc:
                raise Unprocessable(f"encrypted_data: {exc}", code="invalid_encrypted_data",
                                    field="encrypted_data") from exc
    channel = source_channel(data.scene, data.channel)
    member, created = await members.register_member(session, tenant.id, members.SelfRegistration(
        phone=phone.phone, name=data.name or f"微信用户{phone.pure_phone[-4:]}",
        privacy_policy_version=data.privacy_policy_version, accepted_at=utcnow(), openid=wx.openid,
        source_channel=channel, referrer_id=data.referrer_id))
    if not members.is_active(member):
        raise Unauthorized("this member account is closed", code="account_disabled")
    link = (await session.execute(select(MemberWechatLink).where(
        MemberWechatLink.tenant_id == tenant.id, MemberWechatLink.openid == wx.openid))).scalars().first()
    bound = link is None or link.member_id != member.id
    await _bind(session, tenant.id, member.id, client.config.appid, wx)
    if bound:
        audit.record(session, "wechat.bind", "member", member.id, openid=wx.openid,
                     rebound_from=str(link.member_id) if link is not None else None)
    if created:
        audit.record(session, "member.register", "member", member.id, source_channel=channel, scene=data.scene,
                     referrer_given=data.referrer_id is not None, referrer_id=str(member.referrer_id)
                     if member.referrer_id else None)
    audit.record(session, "auth.login", "member", member.id, method="wechat_mini_program_registration")
    ttl = get_settings().access_token_ttl_seconds
    token, _ = issue_token(subject=str(member.id), tenant_id=str(tenant.id), audience="patient", ttl_seconds=ttl,
                           openid=wx.openid)
    return PatientRegistrationOut(access_token=token, expires_in=ttl, member_id=member.id, bound=bound,
                                  registered=created)
