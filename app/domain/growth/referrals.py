"""Referral: share codes, recording who referred whom (with guards), reward rules, rewards and their reversal,
and the referral tree.

Service functions take (session, actor, ...) and flush, never commit. The reactions to other contexts'
events (`on_member_created`, `reward_first_paid_order`, `reverse_on_refund`) are registered in handlers.py;
they run inside the dispatcher's transaction, at least once. Rewards happen once per referee by the unique
key on `referral_rewards` (referee, role, kind), and the referrer's code row is locked first, so two
concurrent deliveries wait for each other and the monthly limit is counted under that lock.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, NotFound, ServiceUnavailable, Unprocessable
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams
from app.domain.cards import service as cards
from app.domain.checkout import orders
from app.domain.growth.referral_events import REFERRAL_REVERSED, REFERRAL_REWARDED
from app.domain.growth.referral_models import Referral, ReferralCode, ReferralReward, ReferralRewardRules
from app.domain.growth.referral_schemas import (
    CODE_PATTERN,
    MAX_TREE_DEPTH,
    ReferralCodeOut,
    ReferralOut,
    ReferralSet,
    ReferralTreeOut,
    RewardIn,
    RewardOut,
    RewardRulesIn,
    RewardRulesOut,
    TreeNode,
)
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.schemas import MemberUpdate
from app.integrations.wechat import mini_program as mp
from app.integrations.wechat.tokens import WeChatError, WeChatNotConfigured

# The mini-program's sign-up page; the code rides in `scene`, which registration records as the channel.
SHARE_PAGE = "pages/register/index"
REF_TYPE = "referral_reward"
MONTH_ZONE = ZoneInfo("Asia/Shanghai")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: codes are read aloud at the desk
_CODE_RE = re.compile(CODE_PATTERN)
# A paid order in any later state (refunded included) means the member has bought before.
PAID_STATUSES = ("paid", "partially_refunded", "refunded")


def share_path(code: str) -> str:
    return f"{SHARE_PAGE}?scene={code}"


def _new_code() -> str:
    return "ref-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


# ---------------------------------------------------------------- codes


async def ensure_code(session: AsyncSession, tenant_id: UUID, member_id: UUID, *, lock: bool = False) -> ReferralCode:
    """The member's code, created on first use (a concurrent first use finds the other's row)."""
    for _ in range(5):
        await session.execute(insert(ReferralCode).values(
            tenant_id=tenant_id, id=new_id(), member_id=member_id, code=_new_code()).on_conflict_do_nothing())
        stmt = select(ReferralCode).where(ReferralCode.tenant_id == tenant_id, ReferralCode.member_id == member_id)
        if lock:
            stmt = stmt.with_for_update()
        row = (await session.exec(stmt.execution_options(populate_existing=True))).first()
        if row is not None:
            return row
    raise RuntimeError("could not allocate a referral code")  # five collisions in 31^8: not in this universe


async def _present_code(row: ReferralCode) -> ReferralCodeOut:
    return ReferralCodeOut(member_id=row.member_id, code=row.code, share_path=share_path(row.code),
                           qr_available=True)


async def member_code(session: AsyncSession, actor: Actor, member_id: UUID) -> ReferralCodeOut:
    """A member's code and share path (staff with members:read, or the patient themself)."""
    member = await _reachable(session, actor, member_id)
    return await _present_code(await ensure_code(session, actor.tenant_id, member.id))


async def referral_qr_png(session: AsyncSession, actor: Actor, member_id: UUID, redis: Redis, *,
                          width: int = 430) -> bytes:
    """The member's mini-program code (`wxacode.getUnlimited`): it opens the sign-up page with the referral
    code as `scene`, which registration records, so the scan is the referral."""
    member = await _reachable(session, actor, member_id)
    code = await ensure_code(session, actor.tenant_id, member.id)
    try:
        client = mp.MiniProgramClient(mp.MiniProgramConfig.from_settings(), redis)
        return await client.wxacode_unlimited(code.code, page=SHARE_PAGE, width=width)
    except WeChatNotConfigured as exc:
        raise ServiceUnavailable(str(exc), code="wechat_not_configured") from exc
    except WeChatError as exc:
        raise AppError(f"WeChat refused the QR code: errcode {exc.errcode} {exc.errmsg}", code="wechat_error",
                       status=502, title="Bad gateway", errcode=exc.errcode) from exc


async def _reachable(session: AsyncSession, actor: Actor, member_id: UUID):
    if actor.kind == "patient" and actor.id != member_id:
        raise NotFound("member not found", code="member_not_found")
    return await members.get_member_row(session, actor, member_id)


async def _member_by_code(session: AsyncSession, tenant_id: UUID, code: str) -> UUID | None:
    return (await session.exec(select(ReferralCode.member_id).where(ReferralCode.tenant_id == tenant_id,
                                                                    ReferralCode.code == code))).first()


# ---------------------------------------------------------------- rules


async def get_rules(session: AsyncSession, tenant_id: UUID) -> RewardRulesOut:
    row = (await session.exec(select(ReferralRewardRules).where(ReferralRewardRules.tenant_id == tenant_id))).first()
    if row is None:
        return RewardRulesOut(enabled=False)
    return RewardRulesOut(**row.rules, updated_at=row.updated_at)


async def read_rules(session: AsyncSession, actor: Actor) -> RewardRulesOut:
    actor.require("growth:read")
    return await get_rules(session, actor.tenant_id)


async def put_rules(session: AsyncSession, actor: Actor, data: RewardRulesIn) -> RewardRulesOut:
    """Replace the tenant's reward rules; a coupon template that does not exist is 422 naming the field."""
    actor.require("growth:admin")
    for name, reward in (("referrer_reward", data.referrer_reward), ("referee_welcome", data.referee_welcome)):
        if reward is not None and reward.coupon_template_id is not None:
            try:
                await loyalty.get_template(session, actor, reward.coupon_template_id)
            except NotFound as exc:
                raise Unprocessable(f"{name}.coupon_template_id: no such coupon template", code="validation_error",
                                    field=f"{name}.coupon_template_id") from exc
    now = utcnow()
    rules = data.model_dump(mode="json")
    await session.execute(insert(ReferralRewardRules).values(
        tenant_id=actor.tenant_id, id=new_id(), rules=rules, updated_at=now, updated_by_id=actor.id)
        .on_conflict_do_update(index_elements=["tenant_id"],
                               set_={"rules": rules, "updated_at": now, "updated_by_id": actor.id}))
    audit.record(session, "referral.rules_update", "tenant", actor.tenant_id, rules=rules)
    return RewardRulesOut(**rules, updated_at=now)


# ---------------------------------------------------------------- recording a referral


async def _referral_of(session: AsyncSession, tenant_id: UUID, referee_id: UUID) -> Referral | None:
    return (await session.exec(select(Referral).where(Referral.tenant_id == tenant_id,
                                                      Referral.referee_id == referee_id))).first()


async def _has_paid_orders(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> bool:
    system = Actor.system(tenant_id)
    for status in PAID_STATUSES:
        items, _ = await orders.list_orders(session, system, PageParams(limit=1), member_id=member_id, status=status)
        if items:
            return True
    return False


async def check_guards(session: AsyncSession, tenant_id: UUID, referrer_id: UUID, referee_id: UUID, *,
                       referee_referrer_id: UUID | None) -> None:
    """Refuse a referral that would reward someone for themselves or for a customer the clinic already had."""
    if referrer_id == referee_id:
        raise Unprocessable("a member cannot refer themselves", code="referral_self", field="referrer_id")
    found = await members.members_by_id(session, tenant_id, {referrer_id, referee_id})
    if referrer_id not in found or not members.is_active(found[referrer_id]):
        raise Unprocessable("referrer: no such active member", code="referrer_not_found", field="referrer_id")
    if referee_id not in found:
        raise NotFound("member not found", code="member_not_found")
    existing = await _referral_of(session, tenant_id, referee_id)
    if existing is not None or (referee_referrer_id is not None and referee_referrer_id != referrer_id):
        raise Conflict("this member already has a referrer", code="referral_already_referred")
    referrer_phone = await members.member_phone(session, tenant_id, referrer_id)
    if referrer_phone is not None and referrer_phone == await members.member_phone(session, tenant_id, referee_id):
        raise Conflict("the referrer and the member have the same phone number", code="referral_same_phone")
    if referee_id in await members.family_member_ids(session, tenant_id, referrer_id):
        raise Conflict("the referrer and the member are in the same family group", code="referral_same_family")
    if await _has_paid_orders(session, tenant_id, referee_id):
        raise Conflict("the member has paid orders already: an existing customer cannot be referred",
                       code="referral_after_purchase")


async def _record(session: AsyncSession, tenant_id: UUID, referrer_id: UUID, referee_id: UUID, *, source: str,
                  code: str | None, by: UUID | None) -> Referral:
    inserted = (await session.execute(insert(Referral).values(
        tenant_id=tenant_id, id=new_id(), referrer_id=referrer_id, referee_id=referee_id, source=source, code=code,
        recorded_by_id=by, created_at=utcnow()).on_conflict_do_nothing().returning(Referral.id))).scalar()
    if inserted is None:  # a concurrent request recorded one first
        raise Conflict("this member already has a referrer", code="referral_already_referred")
    referral = await session.get(Referral, (tenant_id, inserted))
    assert referral is not None
    audit.record(session, "referral.record", "member", referee_id, referrer_id=str(referrer_id), source=source)
    return referral


async def set_referrer(session: AsyncSession, actor: Actor, member_id: UUID, data: ReferralSet) -> ReferralOut:
    """Staff record who referred a member (by code or id), with the guards; the member's `referrer_id` is set
    too, and the welcome reward given."""
    actor.require("members:write")
    member = await members.get_member_row(session, actor, member_id)
    referrer_id = data.referrer_id
    if data.referrer_code is not None:
        referrer_id = await _member_by_code(session, actor.tenant_id, data.referrer_code)
        if referrer_id is None:
            raise Unprocessable("referrer_code: no member has this code", code="validation_error",
                                field="referrer_code")
    assert referrer_id is not None
    await check_guards(session, actor.tenant_id, referrer_id, member.id, referee_referrer_id=member.referrer_id)
    referral = await _record(session, actor.tenant_id, referrer_id, member.id, source="staff",
                             code=data.referrer_code, by=actor.id)
    if member.referrer_id != referrer_id:
        await members.update_member(session, actor, member.id, MemberUpdate(referrer_id=referrer_id))
    await _grant_welcome(session, actor.tenant_id, referral)
    return ReferralOut.model_validate(referral, from_attributes=True)


async def on_member_created(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> Referral | None:
    """A new member who came with a referrer (the share link's referrer id, or a referral code as the channel
    they registered through) gets their referral recorded and the welcome reward. A referral the guards
    refuse is audited and left unrecorded (no one to answer a 409 to); imported members are left alone."""
    member = (await members.members_by_id(session, tenant_id, {member_id})).get(member_id)
    if member is None or member.external_ref is not None:
        # An imported member is a customer of the old system: their referrer is history, owed no reward.
        return None
    referrer_id, code = member.referrer_id, None
    if referrer_id is None and member.source_channel and _CODE_RE.match(member.source_channel):
        code = member.source_channel
        referrer_id = await _member_by_code(session, tenant_id, code)
    if referrer_id is None or await _referral_of(session, tenant_id, member_id) is not None:
        return None
    try:
        await check_guards(session, tenant_id, referrer_id, member_id, referee_referrer_id=member.referrer_id)
    except AppError as refusal:
        audit.record(session, "referral.refuse", "member", member_id, referrer_id=str(referrer_id),
                     reason=refusal.code)
        return None
    referral = await _record(session, tenant_id, referrer_id, member_id, source="registration", code=code, by=None)
    if member.referrer_id is None:
        await members.update_member(session, Actor.system(tenant_id), member_id,
                                    MemberUpdate(referrer_id=referrer_id))
    await _grant_welcome(session, tenant_id, referral)
    return referral


# ---------------------------------------------------------------- rewards


async def _reward_row(session: AsyncSession, tenant_id: UUID, referee_id: UUID, role: str,
                      kind: str) -> ReferralReward | None:
    return (await session.exec(select(ReferralReward).where(
        ReferralReward.tenant_id == tenant_id, ReferralReward.referee_id == referee_id,
        ReferralReward.role == role, ReferralReward.kind == kind))).first()


async def _give(session: AsyncSession, tenant_id: UUID, reward_id: UUID, reward: RewardIn, member_id: UUID,
                store_id: UUID | None, reason: str) -> dict[str, Any]:
    """Put the reward into the loyalty or cards ledger; the fields of the reward row, or raise AppError."""
    system = Actor.system(tenant_id)
    async with session.begin_nested():  # a refusal (inactive member, template gone) leaves nothing behind
        if reward.kind == "points":
            assert reward.points is not None
            await loyalty.adjust_points(session, system, member_id, reward.points, reason)
            return {"amount": reward.points}
        if reward.kind == "coupon":
            assert reward.coupon_template_id is not None
            coupon = await loyalty.issue_coupon(session, system, template_id=reward.coupon_template_id,
                                                member_id=member_id, reason=reason)
            return {"amount": 1, "coupon_id": coupon.id}
        assert reward.amount is not None
        if store_id is None:
            raise Conflict("a stored-value reward needs the store of the order", code="store_unknown")
        card = next((c for c in await cards.member_cards(session, system, member_id, include_shared=False,
                                                         status="active") if c.kind == "stored_value"), None)
        if card is None:
            raise Conflict("the member has no active stored-value card", code="no_stored_value_card")
        await cards.top_up(session, system, card.id, principal=reward.amount, bonus=0, store_id=store_id,
                           ref_type=REF_TYPE, ref_id=reward_id)
        return {"amount": reward.amount, "card_id": card.id}


async def _write_reward(session: AsyncSession, tenant_id: UUID, referral: Referral, *, role: str,
                        reward: RewardIn | None, status: str | None, store_id: UUID | None,
                        order_id: UUID | None, reason: str) -> ReferralReward | None:
    beneficiary = referral.referrer_id if role == "referrer" else referral.referee_id
    reward_id, fields, note = new_id(), {}, None
    if status is None and reward is not None:
        try:
            fields = await _give(session, tenant_id, reward_id, reward, beneficiary, store_id, reason)
            status = "granted"
        except AppError as refusal:
            status, note = "unavailable", f"{refusal.code}: {refusal.detail}"
    inserted = (await session.execute(insert(ReferralReward).values(
        tenant_id=tenant_id, id=reward_id, referral_id=referral.id, referee_id=referral.referee_id,
        beneficiary_id=beneficiary, role=role, kind="grant", status=status or "not_configured",
        reward_type=reward.kind if reward is not None else None, amount=fields.get("amount", 0),
        coupon_id=fields.get("coupon_id"), card_id=fields.get("card_id"), order_id=order_id, note=note,
        created_at=utcnow()).on_conflict_do_nothing().returning(ReferralReward.id))).scalar()
    if inserted is None:
        # Only reachable without the referrer's lock (welcome rewards): a concurrent twin inserted first. Its
        # savepoint work is ours too, so undo it by failing the transaction; the redelivery finds the row.
        raise Conflict("this referral reward was given concurrently", code="referral_reward_raced")
    row = await session.get(ReferralReward, (tenant_id, reward_id))
    assert row is not None
    if row.status == "granted":
        await emit(session, REFERRAL_REWARDED, {
            "reward_id": str(row.id), "referral_id": str(referral.id), "referrer_id": str(referral.referrer_id),
            "referee_id": str(referral.referee_id), "beneficiary_id": str(beneficiary), "role": role,
            "reward_type": row.reward_type, "amount": row.amount,
            "coupon_id": str(row.coupon_id) if row.coupon_id else None,
            "card_id": str(row.card_id) if row.card_id else None, "order_id": str(order_id) if order_id else None})
    return row


async def _grant_welcome(session: AsyncSession, tenant_id: UUID, referral: Referral) -> ReferralReward | None:
    # The referee's code row is the lock for their welcome reward (the same rule as the referrer's).
    await ensure_code(session, tenant_id, referral.referee_id, lock=True)
    if await _reward_row(session, tenant_id, referral.referee_id, "referee", "grant") is not None:
        return None
    rules = await get_rules(session, tenant_id)
    if not rules.enabled or rules.referee_welcome is None:
        return None  # nothing written: the welcome is for registration only, and nothing is owed later
    return await _write_reward(session, tenant_id, referral, role="referee", reward=rules.referee_welcome,
                               status=None, store_id=None, order_id=None, reason="推荐注册欢迎礼")


async def reward_first_paid_order(session: AsyncSession, tenant_id: UUID, *, member_id: UUID, order_id: UUID,
                                  store_id: UUID | None) -> ReferralReward | None:
    """The referee's first paid order rewards the referrer, once (a redelivered or concurrent event finds the
    first one's row). Over the monthly limit, or with no rule, the slot is used up without a reward: only the
    first order counts."""
    referral = await _referral_of(session, tenant_id, member_id)
    if referral is None:
        return None
    await ensure_code(session, tenant_id, referral.referrer_id, lock=True)
    if await _reward_row(session, tenant_id, member_id, "referrer", "grant") is not None:
        return None
    rules = await get_rules(session, tenant_id)
    reward = rules.referrer_reward if rules.enabled else None
    status = None if reward is not None else "not_configured"
    if reward is not None and rules.max_rewards_per_referrer_per_month is not None:
        now = utcnow().astimezone(MONTH_ZONE)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        given = (await session.exec(select(func.count()).select_from(ReferralReward).where(
            ReferralReward.tenant_id == tenant_id, ReferralReward.beneficiary_id == referral.referrer_id,
            ReferralReward.role == "referrer", ReferralReward.kind == "grant",
            ReferralReward.status == "granted", ReferralReward.created_at >= month_start))).one()
        if given >= rules.max_rewards_per_referrer_per_month:
            status = "capped"
    return await _write_reward(session, tenant_id, referral, role="referrer", reward=reward, status=status,
                               store_id=store_id, order_id=order_id, reason="推荐好友首单奖励")


async def _take_back(session: AsyncSession, tenant_id: UUID, grant: ReferralReward, reason: str) -> int:
    """What of the grant could be taken back (points already spent or a coupon already used stay with the
    member: a ledger never goes below zero)."""
    system = Actor.system(tenant_id)
    try:
        async with session.begin_nested():
            if grant.reward_type == "points":
                balance = await loyalty.points_balance(session, system, grant.beneficiary_id)
                taken = min(balance, grant.amount)
                if taken > 0:
                    await loyalty.adjust_points(session, system, grant.beneficiary_id, -taken, reason)
                return taken
            if grant.reward_type == "coupon":
                assert grant.coupon_id is not None
                await loyalty.revoke_coupon(session, system, grant.coupon_id, reason)
                return 1
            entries = await cards.reverse_ref(session, system, REF_TYPE, grant.id, reason)
            return grant.amount if entries else 0
    except AppError:
        return 0


async def reverse_on_refund(session: AsyncSession, tenant_id: UUID, *, order_id: UUID,
                            refund_id: UUID | None) -> ReferralReward | None:
    """A refund of the order that earned the referrer's reward takes the reward back (once), with reversal
    entries in the points, coupon or card ledger and a `reversal` row here pointing at the grant."""
    grant = (await session.exec(select(ReferralReward).where(
        ReferralReward.tenant_id == tenant_id, ReferralReward.order_id == order_id,
        ReferralReward.role == "referrer", ReferralReward.kind == "grant"))).first()
    if grant is None or grant.status != "granted":
        return None
    await ensure_code(session, tenant_id, grant.beneficiary_id, lock=True)
    if await _reward_row(session, tenant_id, grant.referee_id, "referrer", "reversal") is not None:
        return None
    taken = await _take_back(session, tenant_id, grant, "推荐首单退款，收回推荐奖励")
    row = ReferralReward(tenant_id=tenant_id, id=new_id(), referral_id=grant.referral_id, referee_id=grant.referee_id,
                         beneficiary_id=grant.beneficiary_id, role="referrer", kind="reversal",
                         status="reversed" if taken == grant.amount else "partly_reversed",
                         reward_type=grant.reward_type, amount=taken, coupon_id=grant.coupon_id,
                         card_id=grant.card_id, order_id=order_id, refund_id=refund_id, reverses_id=grant.id,
                         created_at=utcnow())
    session.add(row)
    await session.flush()
    referral = await session.get(Referral, (tenant_id, grant.referral_id))
    assert referral is not None
    await emit(session, REFERRAL_REVERSED, {
        "reward_id": str(row.id), "reverses_id": str(grant.id), "referral_id": str(grant.referral_id),
        "referrer_id": str(referral.referrer_id), "referee_id": str(grant.referee_id),
        "reward_type": grant.reward_type, "amount": taken, "shortfall": grant.amount - taken,
        "order_id": str(order_id), "refund_id": str(refund_id) if refund_id else None})
    return row


# ---------------------------------------------------------------- the tree


def _masked(name: str) -> str:
    """A patient sees their referees by surname only (张**): the tree is theirs, the people are not."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""


async def referral_tree(session: AsyncSession, actor: Actor, member_id: UUID, *, depth: int = 2) -> ReferralTreeOut:
    """Who referred the member, whom they referred and (to `depth` levels) whom those referred; with the
    rewards the member received. A patient sees only their own tree, names masked."""
    if not 1 <= depth <= MAX_TREE_DEPTH:
        raise Unprocessable(f"depth: between 1 and {MAX_TREE_DEPTH}", code="validation_error", field="depth")
    member = await _reachable(session, actor, member_id)
    tid = actor.tenant_id
    code = await ensure_code(session, tid, member.id)
    levels: list[list[Referral]] = []
    frontier, seen = {member.id}, {member.id}
    for _ in range(depth):
        rows = list((await session.exec(select(Referral).where(
            Referral.tenant_id == tid, Referral.referrer_id.in_(frontier)).order_by(Referral.created_at))).all())
        rows = [r for r in rows if r.referee_id not in seen]  # a merged record must not make a cycle
        if not rows:
            break
        levels.append(rows)
        frontier = {r.referee_id for r in rows}
        seen |= frontier
    own = await _referral_of(session, tid, member.id)
    ids = seen | ({own.referrer_id} if own else set())
    names = await members.member_names(session, tid, ids)
    rewards = list((await session.exec(select(ReferralReward).where(
        ReferralReward.tenant_id == tid, ReferralReward.referee_id.in_(ids),
        ReferralReward.role == "referrer"))).all())
    reversed_ids = {r.reverses_id for r in rewards if r.kind == "reversal"}
    rewarded = {r.referee_id for r in rewards if r.kind == "grant" and r.status == "granted"
                and r.id not in reversed_ids}
    show = _masked if actor.kind == "patient" else (lambda n: n)
    nodes: dict[UUID, TreeNode] = {}
    for rows in levels:
        for r in rows:
            nodes[r.referee_id] = TreeNode(member_id=r.referee_id, name=show(names.get(r.referee_id, "")),
                                           referred_at=r.created_at, rewarded=r.referee_id in rewarded)
    for rows in levels:
        for r in rows:
            if r.referrer_id in nodes:
                nodes[r.referrer_id].referees.append(nodes[r.referee_id])
    top = [nodes[r.referee_id] for r in (levels[0] if levels else [])]
    referrer = None
    if own is not None:
        referrer = TreeNode(member_id=own.referrer_id, name=show(names.get(own.referrer_id, "")),
                            referred_at=own.created_at, rewarded=member.id in rewarded)
    mine = list((await session.exec(select(ReferralReward).where(
        ReferralReward.tenant_id == tid, ReferralReward.beneficiary_id == member.id)
        .order_by(ReferralReward.created_at))).all())
    return ReferralTreeOut(member_id=member.id, code=code.code, share_path=share_path(code.code), referrer=referrer,
                           referees=top, depth=depth,
                           rewards=[RewardOut.model_validate(r, from_attributes=True) for r in mine])


async def referral_count(session: AsyncSession, tenant_id: UUID, referrer_id: UUID) -> int:
    """How many members this member referred (read API for other contexts)."""
    return (await session.exec(select(func.count()).select_from(Referral).where(
        Referral.tenant_id == tenant_id, Referral.referrer_id == referrer_id))).one()


__all__ = ["check_guards", "ensure_code", "get_rules", "member_code", "on_member_created", "put_rules",
           "read_rules", "referral_count", "referral_qr_png", "referral_tree", "reverse_on_refund",
           "reward_first_paid_order", "set_referrer", "share_path"]
