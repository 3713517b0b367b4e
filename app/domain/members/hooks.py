"""Where later capabilities plug into members: care relationships, timeline sources, merge movers.

Booking registers "has or had an appointment with this member" as a care relationship; cards, orders,
visits and messaging register timeline sources and the functions that move their rows when two
members are merged. Members never imports them: they register themselves when imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.members.schemas import TimelineItem

# (session, actor, member_id) -> does the actor care for this member?
RelationshipCheck = Callable[[AsyncSession, Actor, UUID], Awaitable[bool]]
# (session, tenant_id, member_id, before, limit) -> newest-first items strictly before `before`
TimelineSource = Callable[[AsyncSession, UUID, UUID, tuple[datetime, str] | None, int], Awaitable[list[TimelineItem]]]
# (session, tenant_id, duplicate_id, survivor_id) -> rows moved, by kind
MergeMover = Callable[[AsyncSession, UUID, UUID, UUID], Awaitable[dict[str, int]]]

RELATIONSHIP_CHECKS: list[RelationshipCheck] = []
TIMELINE_SOURCES: dict[str, TimelineSource] = {}
# What a patient may not see of their own timeline: whole sources, and data keys of the others.
PATIENT_HIDDEN_SOURCES: set[str] = set()
PATIENT_HIDDEN_KEYS: dict[str, frozenset[str]] = {}
MERGE_MOVERS: dict[str, MergeMover] = {}


def care_relationship(fn: RelationshipCheck) -> RelationshipCheck:
    if fn not in RELATIONSHIP_CHECKS:
        RELATIONSHIP_CHECKS.append(fn)
    return fn


def timeline_source(name: str, *, patient_visible: bool = True,
                    staff_only_keys: tuple[str, ...] = ()) -> Callable[[TimelineSource], TimelineSource]:
    """Register a timeline source. Staff-internal sources (notes) and keys (a therapist's clinical
    remarks) are left out when the patient reads their own timeline in the mini-program."""

    def register(fn: TimelineSource) -> TimelineSource:
        TIMELINE_SOURCES[name] = fn
        if not patient_visible:
            PATIENT_HIDDEN_SOURCES.add(name)
        PATIENT_HIDDEN_KEYS[name] = frozenset(staff_only_keys)
        return fn

    return register


def merge_mover(name: str) -> Callable[[MergeMover], MergeMover]:
    def register(fn: MergeMover) -> MergeMover:
        MERGE_MOVERS[name] = fn
        return fn

    return register
