"""Growth: channels, campaign codes (and their mini-program QR codes), spend, leads, assignment rules, and
the signed public lead-intake endpoint."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import client_ip, get_db, get_redis, require
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.growth import service
from app.domain.growth.schemas import (
    CampaignCodeCreate,
    CampaignCodeOut,
    ChannelCreate,
    ChannelOut,
    ChannelUpdate,
    IntakeOut,
    IntakeSecretOut,
    LeadCreate,
    LeadIntake,
    LeadOut,
    LeadStatusName,
    LeadUpdate,
    RuleCreate,
    RuleOut,
    RuleUpdate,
    SpendCreate,
    SpendOut,
)

router = APIRouter(tags=["growth"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)


# ---------------------------------------------------------------- channels


@router.post("/channels", status_code=201, response_model=ChannelOut, operation_id="create_channel",
             responses={409: {"description": "A channel with this name or code exists (`channel_exists`)"}})
async def create_channel(body: ChannelCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("growth:admin")) -> ChannelOut:
    """A channel leads come from (抖音, 小红书, 大众点评, 老带新, 到店 …)."""
    return ChannelOut.model_validate(await service.create_channel(session, actor, body))


@router.get("/channels", response_model=Page[ChannelOut], operation_id="list_channels")
async def list_channels(active: bool | None = None, params: PageParams = Depends(page_params),
                        session: AsyncSession = Depends(get_db),
                        actor: Actor = require("growth:read")) -> Page[ChannelOut]:
    rows, cursor = await service.list_channels(session, actor, params, active=active)
    return Page(items=[ChannelOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/channels/{channel_id}", response_model=ChannelOut, operation_id="get_channel")
async def get_channel(channel_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("growth:read")) -> ChannelOut:
    return ChannelOut.model_validate(await service.get_channel(session, actor, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut, operation_id="update_channel")
async def update_channel(channel_id: UUID, body: ChannelUpdate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("growth:admin")) -> ChannelOut:
    return ChannelOut.model_validate(await service.update_channel(session, actor, channel_id, body))


@router.post("/channels/{channel_id}/spend", status_code=201, response_model=SpendOut,
             operation_id="add_channel_spend")
async def add_channel_spend(channel_id: UUID, body: SpendCreate, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("growth:write")) -> SpendOut:
    """What the channel cost over a period (dates inclusive, amount in integer fen)."""
    return SpendOut.model_validate(await service.add_spend(session, actor, channel_id, body))


@router.get("/channels/{channel_id}/spend", response_model=Page[SpendOut], operation_id="list_channel_spend")
async def list_channel_spend(channel_id: UUID, params: PageParams = Depends(page_params),
                             session: AsyncSession = Depends(get_db),
                             actor: Actor = require("growth:read")) -> Page[SpendOut]:
    rows, cursor = await service.list_spend(session, actor, channel_id, params)
    return Page(items=[SpendOut.model_validate(r) for r in rows], next_cursor=cursor)


# ---------------------------------------------------------------- campaign codes


@router.post("/campaign-codes", status_code=201, response_model=CampaignCodeOut, operation_id="create_campaign_code",
             responses={409: {"description": "The code exists in this tenant (`campaign_code_exists`)"}})
async def create_campaign_code(body: CampaignCodeCreate, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("growth:admin")) -> CampaignCodeOut:
    return CampaignCodeOut.model_validate(await service.create_campaign_code(session, actor, body))


@router.get("/campaign-codes", response_model=Page[CampaignCodeOut], operation_id="list_campaign_codes")
async def list_campaign_codes(channel_id: UUID | None = None, params: PageParams = Depends(page_params),
                              session: AsyncSession = Depends(get_db),
                              actor: Actor = require("growth:read")) -> Page[CampaignCodeOut]:
    rows, cursor = await service.list_campaign_codes(session, actor, params, channel_id=channel_id)
    return Page(items=[CampaignCodeOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/campaign-codes/{campaign_code_id}/qr.png", response_class=Response,
            operation_id="get_campaign_code_qr",
            responses={200: {"content": {"image/png": {}}, "description": "The mini-program code (PNG)"},
                       502: {"description": "WeChat refused (`wechat_error`, its errcode included)"},
                       503: {"description": "The mini-program is not configured (`wechat_not_configured`)"}})
async def get_campaign_code_qr(campaign_code_id: UUID,
                               env_version: Literal["release", "trial", "develop"] = "release",
                               width: int = Query(430, ge=280, le=1280),
                               session: AsyncSession = Depends(get_db), redis: Redis = Depends(get_redis),
                               actor: Actor = require("growth:read")) -> Response:
    """The mini-program code (`wxacode.getUnlimited`) whose scene is the campaign code: the page it opens
    reads the code from its launch options and sends it with the lead."""
    png = await service.campaign_qr_png(session, actor, campaign_code_id, redis, env_version=env_version,
                                        width=width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# ---------------------------------------------------------------- leads


@router.post("/leads", status_code=201, response_model=LeadOut, operation_id="create_lead",
             responses={409: {"description": "The person has an open lead (`lead_exists`, with `lead_id`)"}})
async def create_lead(body: LeadCreate, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("growth:write")) -> LeadOut:
    """Manual entry: a phone or a WeChat identity is required; matched to a member by phone; assigned by
    the assignment rules at once unless `assignee_id` is given."""
    lead = await service.create_lead(session, actor, body)
    return service.present(actor, lead)


@router.get("/leads", response_model=Page[LeadOut], operation_id="list_leads")
async def list_leads(status: LeadStatusName | None = None, assignee_id: UUID | None = None,
                     store_id: UUID | None = None, channel_id: UUID | None = None,
                     mine: bool = Query(False, description="Only leads assigned to the caller"),
                     params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                     actor: Actor = require("growth:read")) -> Page[LeadOut]:
    items, cursor = await service.list_leads(session, actor, params, status=status, assignee_id=assignee_id,
                                             store_id=store_id, channel_id=channel_id, mine=mine)
    return Page(items=items, next_cursor=cursor)


@router.get("/leads/{lead_id}", response_model=LeadOut, operation_id="get_lead")
async def get_lead(lead_id: UUID, session: AsyncSession = Depends(get_db),
                   actor: Actor = require("growth:read")) -> LeadOut:
    """The lead with its history (who changed what, when, from and to)."""
    return await service.get_lead(session, actor, lead_id)


@router.patch("/leads/{lead_id}", response_model=LeadOut, operation_id="update_lead",
              responses={409: {"description": "Not a forward move along the funnel (`invalid_transition`), or "
                                            "the lead is won or lost (`lead_closed`)"}})
async def update_lead(lead_id: UUID, body: LeadUpdate, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("growth:write")) -> LeadOut:
    """Move the lead along new → contacted → consultation_booked → arrived → consulted → won, or to lost
    (`lost_reason` required); reassign it (managers); add a note."""
    return await service.update_lead(session, actor, lead_id, body)


# ---------------------------------------------------------------- assignment rules


@router.post("/assignment-rules", status_code=201, response_model=RuleOut, operation_id="create_assignment_rule")
async def create_assignment_rule(body: RuleCreate, session: AsyncSession = Depends(get_db),
                                 actor: Actor = require("growth:admin")) -> RuleOut:
    return RuleOut.model_validate(await service.create_rule(session, actor, body))


@router.get("/assignment-rules", response_model=Page[RuleOut], operation_id="list_assignment_rules")
async def list_assignment_rules(params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                                actor: Actor = require("growth:read")) -> Page[RuleOut]:
    rows, cursor = await service.list_rules(session, actor, params)
    return Page(items=[RuleOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.patch("/assignment-rules/{assignment_rule_id}", response_model=RuleOut, operation_id="update_assignment_rule")
async def update_assignment_rule(assignment_rule_id: UUID, body: RuleUpdate, session: AsyncSession = Depends(get_db),
                                 actor: Actor = require("growth:admin")) -> RuleOut:
    return RuleOut.model_validate(await service.update_rule(session, actor, assignment_rule_id, body))


# ---------------------------------------------------------------- intake


@router.post("/lead-intake-secret", status_code=201, response_model=IntakeSecretOut,
             operation_id="rotate_lead_intake_secret")
async def rotate_lead_intake_secret(session: AsyncSession = Depends(get_db),
                                    actor: Actor = require("growth:admin")) -> IntakeSecretOut:
    """A new secret for the intake endpoint (the previous one stops working); shown only in this answer."""
    secret, rotated_at = await service.rotate_intake_secret(session, actor)
    return IntakeSecretOut(secret=secret, rotated_at=rotated_at)


@router.post(
    "/lead-intake/{tenant_code}", status_code=201, response_model=IntakeOut, operation_id="lead_intake",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": LeadIntake.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
    responses={200: {"description": "An open lead of this person got a new touch (no duplicate)",
                     "model": IntakeOut},
               **problem_responses({401: "Signature missing or wrong, timestamp outside 5 minutes, or intake not "
                                         "enabled", 404: "Unknown tenant code",
                                    422: "No phone or WeChat identity, an unknown channel or campaign code",
                                    429: "Over the rate (`intake_rate_limited`, Retry-After)"})})
async def lead_intake(request: Request, response: Response,
                      tenant_code: str = Path(min_length=1, max_length=64),
                      session: AsyncSession = Depends(get_db),
                      redis: Redis = Depends(get_redis)) -> IntakeOut:
    """For ad platforms and landing pages (no bearer token): sign the raw body with the tenant's intake
    secret — `X-CareLoop-Timestamp: <unix seconds>` and `X-CareLoop-Signature: sha256=<hex HMAC-SHA256(secret,
    timestamp + "." + body)>`. 201 with a new lead (assigned at once by the rules), or 200 when the person
    has an open lead already (it gets a new touch)."""
    raw = await request.body()
    tenant_id = await service.authenticate_intake(session, redis, tenant_code, request.headers, raw,
                                                  client_ip(request))
    try:
        data = LeadIntake.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    lead, created = await service.intake_lead(session, tenant_id, data)
    if not created:
        response.status_code = 200
    return IntakeOut(lead_id=lead.id, created=created, status=lead.status, assignee_id=lead.assignee_id,
                     member_id=lead.member_id)
