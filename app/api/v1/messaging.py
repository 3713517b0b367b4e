from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.messaging import alerts
from app.domain.messaging import service as messaging
from app.domain.messaging.schemas import (
    KEY_PATTERN,
    AlertSettingsOut,
    AlertSettingsUpdate,
    ChannelName,
    ConsentOut,
    ConsentReport,
    MessageOut,
    MessageSend,
    StatusName,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
)

router = APIRouter(tags=["messaging"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

# A template's key, or its id: keys are snake_case without hyphens, so the two never collide.
TEMPLATE_REF = Path(min_length=1, max_length=64, pattern=f"({KEY_PATTERN[:-1]}$)|(^[0-9a-fA-F-]{{36}}$)",
                    description="The template's key (e.g. `care_after_service`) or its id")


def _template_ref(key: str) -> str | UUID:
    try:
        return UUID(key)
    except ValueError:
        return key


@router.get("/message-templates", response_model=Page[TemplateOut], operation_id="list_message_templates")
async def list_message_templates(channel: ChannelName | None = Query(None), active: bool | None = Query(None),
                                 params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                                 actor: Actor = require("members:read")) -> Page[TemplateOut]:
    rows, cursor = await messaging.list_templates(session, actor, params, channel=channel, active=active)
    return Page(items=[TemplateOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/message-templates", status_code=201, response_model=TemplateOut,
             operation_id="create_message_template")
async def create_message_template(body: TemplateCreate, session: AsyncSession = Depends(get_db),
                                  actor: Actor = require("messaging:write")) -> TemplateOut:
    """A template with `{{variable}}` placeholders. Every placeholder in `body` and `wechat_fields` must be
    declared in `variables`; senders must supply each declared variable."""
    return TemplateOut.model_validate(await messaging.create_template(session, actor, body))


@router.get("/message-templates/{key}", response_model=TemplateOut, operation_id="get_message_template")
async def get_message_template(key: str = TEMPLATE_REF, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("members:read")) -> TemplateOut:
    return TemplateOut.model_validate(await messaging.get_template(session, actor, _template_ref(key)))


@router.patch("/message-templates/{key}", response_model=TemplateOut, operation_id="update_message_template")
async def update_message_template(body: TemplateUpdate, key: str = TEMPLATE_REF,
                                  session: AsyncSession = Depends(get_db),
                                  actor: Actor = require("messaging:write")) -> TemplateOut:
    """Change a template (its key stays). `active: false` stops it: sends are then stored as `skipped`."""
    return TemplateOut.model_validate(await messaging.update_template(session, actor, _template_ref(key), body))


@router.post("/members/{member_id}/message-consents", response_model=list[ConsentOut],
             operation_id="report_message_consents")
async def report_message_consents(member_id: UUID, body: ConsentReport, session: AsyncSession = Depends(get_db),
                                  actor: Actor = current_actor()) -> list[ConsentOut]:
    """The mini-program reports the subscribe templates the user accepted in `wx.requestSubscribeMessage`;
    each acceptance allows one message. Patients report for themselves; staff need `messaging:write`.
    Answers the member's remaining consents."""
    rows = await messaging.report_consents(session, actor, member_id, body)
    return [ConsentOut.model_validate(r) for r in rows]


@router.post("/messages", status_code=201, response_model=MessageOut, operation_id="send_message")
async def send_message(body: MessageSend, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("messaging:write")) -> MessageOut:
    """Send a template to one member or staff member now. A message that may not go out (no subscription
    consent, inactive template) is stored with status `skipped` and its `reason`; delivery is asynchronous
    (`queued` → `sent`, or `failed`/`dead`)."""
    return MessageOut.model_validate(await messaging.send_manual(session, actor, body))


@router.get("/messages", response_model=Page[MessageOut], operation_id="list_messages")
async def list_messages(member_id: UUID | None = Query(None), staff_id: UUID | None = Query(None),
                        status: StatusName | None = Query(None),
                        template_key: str | None = Query(None, max_length=64, pattern=KEY_PATTERN),
                        params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:read")) -> Page[MessageOut]:
    """Outbound messages, newest first; `status=dead` lists the dead letters."""
    rows, cursor = await messaging.list_messages(session, actor, params, member_id=member_id, staff_id=staff_id,
                                                 status=status, template_key=template_key)
    return Page(items=[MessageOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/messages/{message_id}", response_model=MessageOut, operation_id="get_message")
async def get_message(message_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("members:read")) -> MessageOut:
    return MessageOut.model_validate(await messaging.get_message(session, actor, message_id))


@router.post("/messages/{message_id}/retry", response_model=MessageOut, operation_id="retry_message")
async def retry_message(message_id: UUID, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("messaging:write")) -> MessageOut:
    """Queue a dead message again with a fresh set of attempts (409 `message_not_dead` otherwise)."""
    return MessageOut.model_validate(await messaging.retry_message(session, actor, message_id))


@router.get("/staff-alert-settings", response_model=AlertSettingsOut, operation_id="get_staff_alert_settings")
async def get_staff_alert_settings(session: AsyncSession = Depends(get_db),
                                   actor: Actor = require("staff:read")) -> AlertSettingsOut:
    """The WeCom alerts to staff and whether each is on: a task assigned, a task overdue, a refund waiting for
    approval, low stock, an order paid but not completed. A kind never switched off is on."""
    return AlertSettingsOut(items=await alerts.alert_settings(session, actor))


@router.patch("/staff-alert-settings", response_model=AlertSettingsOut, operation_id="update_staff_alert_settings")
async def update_staff_alert_settings(body: AlertSettingsUpdate, session: AsyncSession = Depends(get_db),
                                      actor: Actor = require("staff:write", "stores:all")) -> AlertSettingsOut:
    """Switch alert kinds on (`true`) or off (`false`) for the whole tenant; kinds left out stay as they are.
    Audited. A kind switched off sends nothing (no message record either)."""
    return AlertSettingsOut(items=await alerts.update_alert_settings(session, actor, body))
