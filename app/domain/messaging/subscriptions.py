"""Mini-program subscribe messages from the patient's side: what they answered, and messages that open one
thing in the mini-program.

`record_subscribe_results` takes what `wx.requestSubscribeMessage` answered, template by template (`accept`,
`reject`, `ban`, `filter`): every answer is kept as evidence in `message_consent_records` (append-only), and
each `accept` allows one more message of that template (`message_consents`, the counter `send_template`
spends). `send_template_with_page_query` sends a template whose page is completed with this message's
query (the deep link: `pages/waitlist/offer?entry_id=…`).

Part of messaging's service API for other contexts, next to `service`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.schemas import Strict
from app.domain.members import service as members
from app.domain.messaging import service
from app.domain.messaging.models import (
    ConsentResult,
    MessageChannel,
    MessageConsent,
    MessageConsentRecord,
    MessageTemplate,
    OutboundMessage,
)

WeChatTemplateId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128,
                                                    pattern=r"^[0-9A-Za-z_\-]+$")]
QueryValue = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SubscribeResults(Strict):
    results: dict[WeChatTemplateId, Literal["accept", "reject", "ban", "filter"]] = Field(
        min_length=1, max_length=20,
        description="What wx.requestSubscribeMessage answered, by WeChat template id (its errMsg key left out)")
    scene: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$",
                              description="Where the mini-program asked, e.g. `booking_done`, `waitlist`")


class ConsentState(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    wechat_template_id: str
    granted: int = Field(description="Messages of this template the member still allows")


class ConsentRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    wechat_template_id: str
    result: str
    template_key: str | None
    scene: str | None
    created_at: datetime | None


class SubscribeResultsOut(BaseModel):
    consents: list[ConsentState] = Field(description="Every template's remaining allowance after this report")
    recorded: list[ConsentRecordOut] = Field(description="The answers just recorded")


def _invalid(field: str, message: str, code: str = "validation_error") -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code=code, field=field,
                         errors=[{"field": field, "message": message, "type": code}])


async def record_subscribe_results(session: AsyncSession, actor: Actor,
                                   data: SubscribeResults) -> tuple[list[MessageConsent], list[MessageConsentRecord]]:
    """The patient reports their answers to a subscribe request (for themselves: the subscription belongs to
    the WeChat user who tapped it). A template id none of the tenant's subscribe templates uses is 422
    naming `results.<id>`, and nothing is recorded."""
    if actor.kind != "patient":
        raise Forbidden("subscribe answers come from the patient's own mini-program", code="permission_denied")
    member = await members.get_member_row(session, actor, actor.id)
    if not members.is_active(member):
        raise Conflict(f"member is {member.status}", code="member_inactive")
    templates = {t.wechat_template_id: t.key for t in (await session.execute(select(MessageTemplate).where(
        MessageTemplate.tenant_id == actor.tenant_id,
        MessageTemplate.channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE))).scalars().all()}
    for template_id in data.results:
        if template_id not in templates:
            raise _invalid(f"results.{template_id}", "no subscribe template of this tenant uses this WeChat "
                                                     "template id", code="unknown_wechat_template")
    recorded = []
    for template_id, result in data.results.items():
        record = MessageConsentRecord(tenant_id=actor.tenant_id, member_id=member.id,
                                      wechat_template_id=template_id, result=result,
                                      template_key=templates[template_id], scene=data.scene)
        session.add(record)
        recorded.append(record)
        if result == ConsentResult.ACCEPT:
            await service.add_consent(session, actor.tenant_id, member.id, template_id)
    await session.flush()
    audit.record(session, "message_consent.subscribe_result", "member", member.id, scene=data.scene,
                 results=dict(data.results))
    return await service.list_consents(session, actor.tenant_id, member.id), recorded


async def consent_records(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams):
    """The member's subscribe answers, newest first: patients their own, staff with `members:read`."""
    if actor.kind == "patient":
        if member_id != actor.id:  # someone else's answers do not exist for this patient
            raise NotFound("member not found", code="member_not_found")
    else:
        actor.require("members:read")
    await members.get_member_row(session, actor, member_id)
    stmt = select(MessageConsentRecord).where(MessageConsentRecord.tenant_id == actor.tenant_id,
                                              MessageConsentRecord.member_id == member_id)
    return await paginate(session, stmt, MessageConsentRecord.id, params, descending=True)


async def current_consents(session: AsyncSession, actor: Actor) -> list[MessageConsent]:
    """The patient's own remaining allowance per subscribe template."""
    return await service.list_consents(session, actor.tenant_id, actor.id)


def page_with_query(page: str | None, query: Mapping[str, str]) -> str | None:
    """The template's mini-program page with this message's query appended (`pages/x?a=1&b=2`)."""
    if not page or not query:
        return page
    return f"{page}{'&' if '?' in page else '?'}{urlencode(dict(query))}"


async def send_template_with_page_query(session: AsyncSession, actor: Actor, *, template_key: str,
                                        member_id: UUID, variables: dict[str, Any], cause: str,
                                        page_query: Mapping[str, str]) -> OutboundMessage:
    """`service.send_template` to a member, whose subscribe message opens the template's page at this
    message's query (a deep link). The row is written by `send_template` and its page completed here, in the
    same transaction, before the worker can read it for delivery; the same cause again returns the first
    message unchanged."""
    message = await service.send_template(session, actor, template_key=template_key, member_id=member_id,
                                          variables=variables, cause=cause)
    template = await service.find_template(session, actor.tenant_id, template_key)
    page = (message.payload or {}).get("page")
    if (message.channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE and template is not None and page
            and page == template.page):
        message.payload = {**message.payload, "page": page_with_query(page, page_query)}
        session.add(message)
        await session.flush()
    return message
