"""Referral: reward rules, each member's share code, recording a referrer, the referral tree; and the
patient's own code and tree under `/patient/…`."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, get_redis, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.domain.growth import referrals
from app.domain.growth.referral_schemas import (
    MAX_TREE_DEPTH,
    ReferralCodeOut,
    ReferralOut,
    ReferralSet,
    ReferralTreeOut,
    RewardRulesIn,
    RewardRulesOut,
)

router = APIRouter(tags=["growth"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
patient_router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute,
                           responses=PROBLEM_RESPONSES)
PATIENT = ("patient",)
DEPTH = Query(2, ge=1, le=MAX_TREE_DEPTH, description="Levels of referees below the member (1–3)")
WIDTH = Query(430, ge=280, le=1280, description="Image width in pixels")
PNG = {200: {"content": {"image/png": {}}, "description": "The mini-program code (PNG)"},
       502: {"description": "WeChat refused (`wechat_error`, its errcode included)"},
       503: {"description": "The mini-program is not configured (`wechat_not_configured`)"}}
GUARDS = {409: {"description": "A guard refused the referral: `referral_already_referred`, `referral_same_phone`, "
                               "`referral_same_family`, `referral_after_purchase`"},
          422: {"description": "`referral_self`, `referrer_not_found`, or an unknown `referrer_code`"}}


@router.get("/referral-reward-rules", response_model=RewardRulesOut, operation_id="get_referral_reward_rules")
async def get_referral_reward_rules(session: AsyncSession = Depends(get_db),
                                    actor: Actor = require("growth:read")) -> RewardRulesOut:
    """The tenant's referral reward rules (`enabled: false` and no rewards until they are set)."""
    return await referrals.read_rules(session, actor)


@router.put("/referral-reward-rules", response_model=RewardRulesOut, operation_id="put_referral_reward_rules")
async def put_referral_reward_rules(body: RewardRulesIn, session: AsyncSession = Depends(get_db),
                                    actor: Actor = require("growth:admin")) -> RewardRulesOut:
    """Replace the rules: the referrer's reward for the referee's first paid order (`points`, `coupon` or
    `stored_value` onto their active stored-value card), the referee's welcome reward at registration
    (`points` or `coupon`), and at most how many referrer rewards per month."""
    return await referrals.put_rules(session, actor, body)


@router.get("/members/{member_id}/referral-code", response_model=ReferralCodeOut,
            operation_id="get_member_referral_code")
async def get_member_referral_code(member_id: UUID, session: AsyncSession = Depends(get_db),
                                   actor: Actor = require("members:read")) -> ReferralCodeOut:
    """The member's referral code (made on first request) and the mini-program page to share with it."""
    return await referrals.member_code(session, actor, member_id)


@router.get("/members/{member_id}/referral-code/qr.png", response_class=Response,
            operation_id="get_member_referral_qr", responses=PNG)
async def get_member_referral_qr(member_id: UUID, width: int = WIDTH, session: AsyncSession = Depends(get_db),
                                 redis: Redis = Depends(get_redis),
                                 actor: Actor = require("members:read")) -> Response:
    """The member's mini-program code (`wxacode.getUnlimited`): scanning it opens the sign-up page with the
    referral code as `scene`, to print or show at the desk."""
    png = await referrals.referral_qr_png(session, actor, member_id, redis, width=width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/members/{member_id}/referrals", response_model=ReferralTreeOut,
            operation_id="get_member_referral_tree")
async def get_member_referral_tree(member_id: UUID, depth: int = DEPTH, session: AsyncSession = Depends(get_db),
                                   actor: Actor = require("members:read")) -> ReferralTreeOut:
    """Who referred the member, whom they referred and whom those referred (to `depth` levels), whether each
    referral was rewarded, and the rewards the member received."""
    return await referrals.referral_tree(session, actor, member_id, depth=depth)


@router.post("/members/{member_id}/referral", status_code=201, response_model=ReferralOut,
             operation_id="set_member_referrer", responses=GUARDS)
async def set_member_referrer(member_id: UUID, body: ReferralSet, session: AsyncSession = Depends(get_db),
                              actor: Actor = require("members:write")) -> ReferralOut:
    """Record who referred this member (`referrer_code` or `referrer_id`). Refused for oneself, the same
    phone, the same family group, a member who already has a referrer or has paid orders already. The
    welcome reward is given when the rules have one."""
    return await referrals.set_referrer(session, actor, member_id, body)


@patient_router.get("/referral", response_model=ReferralTreeOut, operation_id="patient_referral_tree")
async def my_referral_tree(depth: int = DEPTH, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(audiences=PATIENT)) -> ReferralTreeOut:
    """The patient's own code and share page, who referred them, whom they referred (names masked, 张**)
    and the rewards they received."""
    return await referrals.referral_tree(session, actor, actor.id, depth=depth)


@patient_router.get("/referral/qr.png", response_class=Response, operation_id="patient_referral_qr", responses=PNG)
async def my_referral_qr(width: int = WIDTH, session: AsyncSession = Depends(get_db),
                         redis: Redis = Depends(get_redis), actor: Actor = require(audiences=PATIENT)) -> Response:
    """The patient's own mini-program code to show a friend (the sign-up page with their code)."""
    png = await referrals.referral_qr_png(session, actor, actor.id, redis, width=width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
