"""WeChat/WeCom identities' reactions: an added WeCom contact is fetched from WeCom (outside the callback, which
WeCom waits for at most 5 s); an erased member's identities go with their personal data."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import SessionFactory
from app.core.events import OutboxEvent, on, on_outside_transaction
from app.domain.members.events import MEMBER_ERASED
from app.domain.wechat_links import service
from app.domain.wechat_links.events import WECOM_EXTERNAL_CONTACT_CHANGED
from app.domain.wechat_links.models import MemberWechatLink, MemberWecomLink, WecomExternalContact


@on_outside_transaction(WECOM_EXTERNAL_CONTACT_CHANGED)
async def fetch_added_contact(sessions: SessionFactory, event: OutboxEvent) -> None:
    """A contact was added (or edited): fetch its name and unionid from WeCom and link it to its member."""
    if event.payload.get("change_type") in service.ADDED and event.payload.get("external_userid"):
        await service.refresh_external_contact(sessions, event.tenant_id, event.payload["external_userid"])


@on(MEMBER_ERASED)
async def _forget_erased_member(session: AsyncSession, event: OutboxEvent) -> None:
    """An erased member's WeChat identities go with their personal data: the openid/unionid bindings are
    deleted (a later mini-program login starts unbound), and the WeCom contact keeps no name or unionid."""
    member_id = UUID(event.payload["member_id"])
    external = list((await session.execute(select(MemberWecomLink.external_userid).where(
        MemberWecomLink.tenant_id == event.tenant_id, MemberWecomLink.member_id == member_id))).scalars())
    await session.execute(delete(MemberWechatLink).where(MemberWechatLink.tenant_id == event.tenant_id,
                                                         MemberWechatLink.member_id == member_id))
    if external:
        await session.execute(update(WecomExternalContact).where(
            WecomExternalContact.tenant_id == event.tenant_id,
            WecomExternalContact.external_userid.in_(external)).values(name=None, unionid=None))
