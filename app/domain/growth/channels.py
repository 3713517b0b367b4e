"""Channels, their campaign codes (with the mini-program QR code carrying each code) and spend entries."""

from __future__ import annotations

from uuid import UUID

from redis.asyncio import Redis
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, ServiceUnavailable, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.growth.models import CampaignCode, Channel, ChannelSpend
from app.domain.growth.schemas import CampaignCodeCreate, ChannelCreate, ChannelUpdate, SpendCreate
from app.domain.tenancy import service as tenancy
from app.integrations.wechat import mini_program as mp
from app.integrations.wechat.tokens import WeChatError, WeChatNotConfigured


def invalid(field: str, message: str, **extra: object) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code="validation_error", field=field,
                         errors=[{"field": field, "message": message}], **extra)


async def _name_taken(session: AsyncSession, tenant_id: UUID, name: str, *, other_than: UUID | None = None) -> bool:
    stmt = select(Channel.id).where(Channel.tenant_id == tenant_id, Channel.name == name)
    if other_than is not None:
        stmt = stmt.where(Channel.id != other_than)
    return (await session.exec(stmt)).first() is not None


async def create_channel(session: AsyncSession, actor: Actor, data: ChannelCreate) -> Channel:
    actor.require("growth:admin")
    if await _name_taken(session, actor.tenant_id, data.name):
        raise Conflict(f"a channel named {data.name} exists", code="channel_exists", field="name")
    if data.code and (await session.exec(select(Channel.id).where(
            Channel.tenant_id == actor.tenant_id, Channel.code == data.code))).first():
        raise Conflict(f"a channel with code {data.code} exists", code="channel_exists", field="code")
    channel = Channel(tenant_id=actor.tenant_id, name=data.name, kind=data.kind, code=data.code,
                      active=data.active, updated_at=utcnow())
    session.add(channel)
    await session.flush()
    audit.record(session, "growth.channel.create", "channel", channel.id, name=channel.name, kind=channel.kind)
    return channel


async def get_channel(session: AsyncSession, actor: Actor, channel_id: UUID, *, field: str | None = None) -> Channel:
    actor.require("growth:read")
    extra = {"field": field} if field else {}
    return await get_or_404(session, Channel, actor.tenant_id, channel_id, code="channel_not_found", **extra)


async def update_channel(session: AsyncSession, actor: Actor, channel_id: UUID, data: ChannelUpdate) -> Channel:
    actor.require("growth:admin")
    channel = await get_or_404(session, Channel, actor.tenant_id, channel_id, code="channel_not_found", lock=True)
    if data.name is not None and data.name != channel.name:
        if await _name_taken(session, actor.tenant_id, data.name, other_than=channel.id):
            raise Conflict(f"a channel named {data.name} exists", code="channel_exists", field="name")
        channel.name = data.name
    if data.kind is not None:
        channel.kind = data.kind
    if data.active is not None:
        channel.active = data.active
    channel.updated_at = utcnow()
    await session.flush()
    audit.record(session, "growth.channel.update", "channel", channel.id, **data.model_dump(exclude_none=True))
    return channel


async def list_channels(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = None):
    actor.require("growth:read")
    stmt = select(Channel).where(Channel.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(Channel.active == active)
    return await paginate(session, stmt, Channel.id, params)


# ---------------------------------------------------------------- campaign codes


async def create_campaign_code(session: AsyncSession, actor: Actor, data: CampaignCodeCreate) -> CampaignCode:
    actor.require("growth:admin")
    await get_channel(session, actor, data.channel_id, field="channel_id")
    if data.store_id is not None and await tenancy.store_row(session, actor.tenant_id, data.store_id) is None:
        raise invalid("store_id", "no store with this id")
    if (await session.exec(select(CampaignCode.id).where(CampaignCode.tenant_id == actor.tenant_id,
                                                         CampaignCode.code == data.code))).first():
        raise Conflict(f"the campaign code {data.code} exists", code="campaign_code_exists", field="code")
    code = CampaignCode(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(code)
    await session.flush()
    audit.record(session, "growth.campaign_code.create", "campaign_code", code.id, code=code.code,
                 channel_id=str(code.channel_id))
    return code


async def get_campaign_code(session: AsyncSession, actor: Actor, code_id: UUID) -> CampaignCode:
    actor.require("growth:read")
    return await get_or_404(session, CampaignCode, actor.tenant_id, code_id, code="campaign_code_not_found")


async def list_campaign_codes(session: AsyncSession, actor: Actor, params: PageParams, *,
                              channel_id: UUID | None = None):
    actor.require("growth:read")
    stmt = select(CampaignCode).where(CampaignCode.tenant_id == actor.tenant_id)
    if channel_id is not None:
        stmt = stmt.where(CampaignCode.channel_id == channel_id)
    return await paginate(session, stmt, CampaignCode.id, params)


async def campaign_qr_png(session: AsyncSession, actor: Actor, code_id: UUID, redis: Redis, *,
                          env_version: str = "release", width: int = 430) -> bytes:
    """The mini-program code of a campaign code, from WeChat (`wxacode.getUnlimited`): its scene is the
    campaign code, so the page that opens knows where the visitor came from. Path checking is on for the
    released version only (a trial or develop build may open pages not yet published)."""
    code = await get_campaign_code(session, actor, code_id)
    try:
        client = mp.MiniProgramClient(mp.MiniProgramConfig.from_settings(), redis)
        return await client.wxacode_unlimited(code.code, page=code.page, check_path=env_version == "release",
                                              env_version=env_version, width=width)
    except WeChatNotConfigured as exc:
        raise ServiceUnavailable(str(exc), code="wechat_not_configured") from exc
    except WeChatError as exc:
        raise AppError(f"WeChat refused the QR code: errcode {exc.errcode} {exc.errmsg}", code="wechat_error",
                       status=502, title="Bad gateway", errcode=exc.errcode) from exc


# ---------------------------------------------------------------- spend


async def add_spend(session: AsyncSession, actor: Actor, channel_id: UUID, data: SpendCreate) -> ChannelSpend:
    actor.require("growth:write")
    await get_channel(session, actor, channel_id)
    entry = ChannelSpend(tenant_id=actor.tenant_id, channel_id=channel_id, period_start=data.period_start,
                         period_end=data.period_end, amount=data.amount, note=data.note, created_by_id=actor.id)
    session.add(entry)
    await session.flush()
    audit.record(session, "growth.spend.add", "channel", channel_id, amount=data.amount,
                 period=f"{data.period_start}..{data.period_end}")
    return entry


async def list_spend(session: AsyncSession, actor: Actor, channel_id: UUID, params: PageParams):
    await get_channel(session, actor, channel_id)
    stmt = select(ChannelSpend).where(ChannelSpend.tenant_id == actor.tenant_id,
                                      ChannelSpend.channel_id == channel_id)
    return await paginate(session, stmt, ChannelSpend.id, params)


# ---------------------------------------------------------------- lookups for leads


async def resolve_source(session: AsyncSession, tenant_id: UUID, *, channel_id: UUID | None = None,
                         channel_code: str | None = None, campaign_code: str | None = None,
                         channel_field: str = "channel_id") -> tuple[Channel | None, CampaignCode | None]:
    """The channel and campaign code a lead names; an unknown one is 422 naming the field and the value.
    A campaign code implies its channel (a channel given as well must be that one)."""
    code_row = None
    if campaign_code is not None:
        code_row = (await session.exec(select(CampaignCode).where(CampaignCode.tenant_id == tenant_id,
                                                                  CampaignCode.code == campaign_code))).first()
        if code_row is None:
            raise invalid("campaign_code", f"unknown campaign code {campaign_code}", value=campaign_code)
    channel = None
    if channel_id is not None:
        channel = await session.get(Channel, (tenant_id, channel_id))
        if channel is None:
            raise invalid(channel_field, f"unknown channel {channel_id}", value=str(channel_id))
    elif channel_code is not None:
        channel = (await session.exec(select(Channel).where(Channel.tenant_id == tenant_id,
                                                            Channel.code == channel_code))).first()
        if channel is None:
            raise invalid(channel_field, f"unknown channel code {channel_code}", value=channel_code)
    if code_row is not None:
        if channel is not None and channel.id != code_row.channel_id:
            raise invalid("campaign_code", f"campaign code {campaign_code} belongs to another channel",
                          value=campaign_code)
        channel = channel or await session.get(Channel, (tenant_id, code_row.channel_id))
    return channel, code_row

