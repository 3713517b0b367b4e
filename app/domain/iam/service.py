"""Staff, roles, sign-in, token rotation and integration clients."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from typing import NamedTuple
from uuid import UUID

from redis.asyncio import Redis
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory, after_commit, fetch, set_tenant
from app.core.errors import Conflict, Forbidden, TooManyRequests, Unauthorized, Unprocessable
from app.core.ids import new_id
from app.core.pagination import PageParams, paginate
from app.core.redis import rkey
from app.core.rows import get_or_404, snapshot_columns, snapshot_of
from app.core.security import (
    hash_password,
    hash_token,
    issue_token,
    new_secret,
    verify_password,
)
from app.core.settings import get_settings
from app.domain.iam.models import ApiClient, RefreshToken, Role, Staff, StaffRole, StaffStore
from app.domain.iam.permissions import PERMISSIONS, PRESET_ROLES
from app.domain.iam.revocations import revoked_sessions
from app.domain.iam.schemas import (
    ApiClientCreate,
    RoleCreate,
    RoleUpdate,
    StaffCreate,
    StaffListing,
    StaffListingOut,
    StaffOut,
    StaffUpdate,
    TokenResponse,
)
from app.domain.tenancy import service as tenancy

# ---------------------------------------------------------------- roles


async def install_preset_roles(session: AsyncSession, tenant_id: UUID) -> None:
    for name, (description, permissions) in PRESET_ROLES.items():
        session.add(
            Role(tenant_id=tenant_id, name=name, description=description,
                 permissions=sorted(permissions), preset=True)
        )
    await session.flush()


async def sync_preset_roles(conn: AsyncConnection) -> int:
    """Bring every tenant's preset roles to the current catalogue (a release may add permissions).

    Runs as the schema owner right after migrations; returns how many roles changed.
    """
    changed = 0
    for name, (description, permissions) in PRESET_ROLES.items():
        result = await conn.execute(
            update(Role).where(Role.preset, Role.name == name, Role.permissions != sorted(permissions))
            .values(permissions=sorted(permissions), description=description)
        )
        changed += result.rowcount
    return changed


def _check_permissions(actor: Actor, permissions: list[str]) -> list[str]:
    unknown = [p for p in permissions if p not in PERMISSIONS]
    if unknown:
        raise Unprocessable(f"unknown permission {unknown[0]!r}", code="unknown_permission",
                            field="permissions")
    # Nobody hands out more than they hold: a store manager cannot mint an owner.
    beyond = [p for p in permissions if not actor.can(p)]
    if beyond:
        raise Forbidden(f"you cannot grant {beyond[0]!r}, which you do not hold", code="grant_exceeds_own")
    return sorted(set(permissions))


async def list_roles(session: AsyncSession, actor: Actor) -> list[Role]:
    actor.require("roles:read")
    return list((await session.exec(select(Role).where(Role.tenant_id == actor.tenant_id).order_by(Role.name))).all())


async def create_role(session: AsyncSession, actor: Actor, data: RoleCreate) -> Role:
    actor.require("roles:write")
    permissions = _check_permissions(actor, data.permissions)
    exists = (await session.exec(select(Role).where(Role.tenant_id == actor.tenant_id, Role.name == data.name))).first()
    if exists:
        raise Conflict(f"role {data.name!r} already exists", code="role_exists")
    role = Role(tenant_id=actor.tenant_id, name=data.name, description=data.description, permissions=permissions)
    session.add(role)
    await session.flush()
    audit.record(session, "role.create", "role", role.id, after={"name": role.name, "permissions": permissions})
    staff_actors.forget_after_commit(session, actor.tenant_id)
    return role


async def update_role(session: AsyncSession, actor: Actor, role_id: UUID, data: RoleUpdate) -> Role:
    actor.require("roles:write")
    role = await get_or_404(session, Role, actor.tenant_id, role_id, code="role_not_found")
    if role.preset:
        raise Conflict("preset roles cannot be changed; define a role of your own", code="preset_role")
    before = audit.snapshot(role, fields=["description", "permissions"])
    if data.permissions is not None:
        role.permissions = _check_permissions(actor, data.permissions)
    if data.description is not None:
        role.description = data.description
    session.add(role)
    await session.flush()
    audit.record(session, "role.update", "role", role.id, before=before,
                 after=audit.snapshot(role, fields=["description", "permissions"]))
    staff_actors.forget_after_commit(session, actor.tenant_id)
    return role


async def _roles_by_name(session: AsyncSession, actor: Actor, names: list[str]) -> list[Role]:
    stmt = select(Role).where(Role.tenant_id == actor.tenant_id, Role.name.in_(names))
    roles = list((await session.exec(stmt)).all())
    missing = set(names) - {r.name for r in roles}
    if missing:
        raise Unprocessable(f"unknown role {sorted(missing)[0]!r}", code="unknown_role", field="roles")
    for role in roles:
        _check_permissions(actor, role.permissions)
    return roles


# ---------------------------------------------------------------- staff


async def _staff_out(session: AsyncSession, staff: Staff) -> StaffOut:
    roles = (await session.exec(
        select(Role.name).join(StaffRole, (StaffRole.tenant_id == Role.tenant_id) & (StaffRole.role_id == Role.id))
        .where(StaffRole.tenant_id == staff.tenant_id, StaffRole.staff_id == staff.id).order_by(Role.name)
    )).all()
    stores = (await session.exec(
        select(StaffStore.store_id).where(StaffStore.tenant_id == staff.tenant_id, StaffStore.staff_id == staff.id)
    )).all()
    return StaffOut(id=staff.id, username=staff.username, display_name=staff.display_name, active=staff.active,
                    roles=list(roles), store_ids=sorted(stores, key=str), wecom_userid=staff.wecom_userid,
                    created_at=staff.created_at)


def _require_store_scope(actor: Actor, store_ids: list[UUID]) -> None:
    if actor.store_ids is None:
        return
    if not store_ids:
        raise Forbidden("only a role acting in every store may create staff without stores",
                        code="store_forbidden")
    for store_id in store_ids:
        actor.require_store(store_id)


async def _set_staff_roles_and_stores(
    session: AsyncSession, actor: Actor, staff: Staff, roles: list[str] | None, store_ids: list[UUID] | None
) -> None:
    staff_actors.forget_after_commit(session, staff.tenant_id, staff.id)
    if roles is not None:
        role_rows = await _roles_by_name(session, actor, roles)
        await session.execute(delete(StaffRole).where(StaffRole.tenant_id == staff.tenant_id,
                                                      StaffRole.staff_id == staff.id))
        session.add_all(StaffRole(tenant_id=staff.tenant_id, staff_id=staff.id, role_id=r.id) for r in role_rows)
    if store_ids is not None:
        await tenancy.require_stores_exist(session, staff.tenant_id, set(store_ids))
        _require_store_scope(actor, store_ids)
        await session.execute(delete(StaffStore).where(StaffStore.tenant_id == staff.tenant_id,
                                                       StaffStore.staff_id == staff.id))
        session.add_all(StaffStore(tenant_id=staff.tenant_id, staff_id=staff.id, store_id=s) for s in set(store_ids))
    await session.flush()


async def create_staff(session: AsyncSession, actor: Actor, data: StaffCreate) -> StaffOut:
    actor.require("staff:write")
    existing = (await session.exec(
        select(Staff.id).where(Staff.tenant_id == actor.tenant_id, Staff.username == data.username)
    )).first()
    if existing:
        raise Conflict(f"username {data.username!r} is taken", code="username_taken", field="username")
    staff = Staff(tenant_id=actor.tenant_id, username=data.username, password_hash=hash_password(data.password),
                  display_name=data.display_name, wecom_userid=data.wecom_userid)
    session.add(staff)
    await session.flush()
    await _set_staff_roles_and_stores(session, actor, staff, data.roles, data.store_ids)
    out = await _staff_out(session, staff)
    audit.record(session, "staff.create", "staff", staff.id,
                 after=out.model_dump(exclude={"created_at"}))
    return out


async def _visible_staff(session: AsyncSession, actor: Actor, staff_id: UUID) -> Staff:
    return await get_or_404(session, Staff, actor.tenant_id, staff_id, code="staff_not_found",
                            detail="staff member not found")


async def get_staff(session: AsyncSession, actor: Actor, staff_id: UUID) -> StaffOut:
    actor.require("staff:read")
    return await _staff_out(session, await _visible_staff(session, actor, staff_id))


async def list_staff(session: AsyncSession, actor: Actor, params: PageParams, store_id: UUID | None = None):
    actor.require("staff:read")
    stmt = select(Staff).where(Staff.tenant_id == actor.tenant_id)
    if store_id is not None:
        stmt = stmt.where(Staff.id.in_(select(StaffStore.staff_id).where(
            StaffStore.tenant_id == actor.tenant_id, StaffStore.store_id == store_id)))
    rows, cursor = await paginate(session, stmt, Staff.id, params)
    return [await _staff_out(session, s) for s in rows], cursor


async def update_staff(session: AsyncSession, actor: Actor, staff_id: UUID, data: StaffUpdate) -> StaffOut:
    actor.require("staff:write")
    staff = await _visible_staff(session, actor, staff_id)
    staff_actors.forget_after_commit(session, staff.tenant_id, staff.id)  # name, state, roles, stores
    before = await _staff_out(session, staff)
    # A store-scoped manager may only manage staff who work solely in their own stores.
    if actor.store_ids is not None and (not before.store_ids or not set(before.store_ids) <= actor.store_ids):
        raise Forbidden("this staff member works outside your stores", code="store_forbidden")
    # Whoever can reset an account's password or end its sign-ins holds its permissions in effect:
    # only manage staff whose current roles you could have granted yourself.
    await _roles_by_name(session, actor, before.roles)
    if data.display_name is not None:
        staff.display_name = data.display_name
    if data.active is not None:
        staff.active = data.active
    if data.wecom_userid is not None:
        staff.wecom_userid = data.wecom_userid
    if data.password is not None:
        staff.password_hash = hash_password(data.password)
    session.add(staff)
    await _set_staff_roles_and_stores(session, actor, staff, data.roles, data.store_ids)
    if data.active is False or data.password is not None:
        await _revoke_subject_tokens(session, staff.tenant_id, staff.id)
    after = await _staff_out(session, staff)
    audit.record(session, "staff.update", "staff", staff.id,
                 before=before.model_dump(exclude={"created_at"}),
                 after=after.model_dump(exclude={"created_at"}) | ({"password": "changed"} if data.password else {}))
    return after


async def create_owner(session: AsyncSession, tenant_id: UUID, username: str, password: str) -> Staff:
    owner_role = (await session.exec(select(Role).where(Role.tenant_id == tenant_id, Role.name == "owner"))).one()
    staff = Staff(tenant_id=tenant_id, username=username, password_hash=hash_password(password),
                  display_name=username)
    session.add(staff)
    await session.flush()
    session.add(StaffRole(tenant_id=tenant_id, staff_id=staff.id, role_id=owner_role.id))
    await session.flush()
    audit.record(session, "staff.create", "staff", staff.id, tenant_id=tenant_id,
                 after={"username": username, "roles": ["owner"]})
    return staff


async def set_staff_details(session: AsyncSession, tenant_id: UUID, username: str, *,
                            display_name: str | None = None, level: str | None = None) -> None:
    """Seeding: give a staff member a display name or a commission level (junior, senior, …), as the demo
    tenant has them. Not audited, like the rest of the seed; the staff API does not set levels."""
    staff = (await session.exec(select(Staff).where(Staff.tenant_id == tenant_id,
                                                    Staff.username == username))).one()
    if display_name is not None:
        staff.display_name = display_name
    if level is not None:
        staff.level = level
    staff_actors.forget_after_commit(session, tenant_id, staff.id)
    session.add(staff)


# ---------------------------------------------------------------- the actor behind a token

_STAFF_ACTOR = text(
    """
    SELECT s.active, s.display_name,
      COALESCE((SELECT array_agg(DISTINCT p) FROM staff_roles sr
                 JOIN roles r ON r.tenant_id = sr.tenant_id AND r.id = sr.role_id,
                 unnest(r.permissions) AS p
                WHERE sr.tenant_id = s.tenant_id AND sr.staff_id = s.id), '{}') AS permissions,
      COALESCE((SELECT array_agg(r.name ORDER BY r.name) FROM staff_roles sr
                 JOIN roles r ON r.tenant_id = sr.tenant_id AND r.id = sr.role_id
                WHERE sr.tenant_id = s.tenant_id AND sr.staff_id = s.id), '{}') AS roles,
      COALESCE((SELECT array_agg(ss.store_id) FROM staff_stores ss
                WHERE ss.tenant_id = s.tenant_id AND ss.staff_id = s.id), '{}') AS store_ids
    FROM staff s WHERE s.tenant_id = :tenant_id AND s.id = :id
    """
)


class _StaffActors:
    """Staff actors as this process last loaded them, for `actor_cache_seconds`: a request then needs no query
    to know who calls. A change of roles, role permissions, stores or the account made by this process is
    forgotten once it commits; one made by another process is seen within `actor_cache_seconds`. (Ended
    sign-ins do not wait for this: they are checked on every request, see revocations.py.)"""

    def __init__(self) -> None:
        self._actors: dict[tuple[UUID, UUID], tuple[float, Actor]] = {}

    def get(self, tenant_id: UUID, staff_id: UUID) -> Actor | None:
        found = self._actors.get((tenant_id, staff_id))
        if found is None or time.monotonic() - found[0] > get_settings().actor_cache_seconds:
            return None
        return found[1]

    def put(self, actor: Actor) -> None:
        if len(self._actors) > 50_000:  # bounded: a process serves a bounded staff
            self._actors.clear()
        self._actors[(actor.tenant_id, actor.id)] = (time.monotonic(), actor)

    def forget_after_commit(self, session: AsyncSession, tenant_id: UUID, staff_id: UUID | None = None) -> None:
        """Forget one staff member (or, with None, the whole tenant: a role's permissions changed) once the
        transaction commits."""
        def forget() -> None:
            for key in [k for k in self._actors if k[0] == tenant_id and staff_id in (None, k[1])]:
                del self._actors[key]

        after_commit(session, forget, f"staff-actors:{tenant_id}:{staff_id}")


staff_actors = _StaffActors()


async def load_staff_actor(session: AsyncSession, tenant_id: UUID, staff_id: UUID, session_id: str | None) -> Actor:
    cached = staff_actors.get(tenant_id, staff_id)
    if cached is not None:
        return replace(cached, session_id=session_id)
    row = (await session.execute(_STAFF_ACTOR, {"tenant_id": tenant_id, "id": staff_id})).first()
    if row is None or not row.active:
        raise Unauthorized("this account is disabled or no longer exists", code="account_disabled")
    permissions = frozenset(row.permissions)
    stores = None if "stores:all" in permissions else frozenset(row.store_ids)
    actor = Actor(tenant_id=tenant_id, kind="staff", id=staff_id, permissions=permissions, store_ids=stores,
                  roles=tuple(row.roles), session_id=session_id, display_name=row.display_name)
    staff_actors.put(actor)
    return actor


async def load_integration_actor(session: AsyncSession, tenant_id: UUID, client_uuid: UUID, scopes: list[str]) -> Actor:
    client = await session.get(ApiClient, (tenant_id, client_uuid))
    if client is None or not client.active:
        raise Unauthorized("this integration client was revoked", code="client_revoked")
    permissions = frozenset(scopes) & frozenset(client.scopes)
    stores = None if not client.store_ids else frozenset(UUID(s) for s in client.store_ids)
    return Actor(tenant_id=tenant_id, kind="integration", id=client.id, permissions=permissions,
                 store_ids=stores, roles=("integration",), display_name=client.name)


# ---------------------------------------------------------------- sign-in and tokens


# Counts an attempt on each key, starting a window on keys that have none; one atomic step.
# (Not EXPIRE ... NX: the embedded Redis is 6.2, which lacks it.)
_COUNT_ATTEMPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('incr', key)
  if redis.call('ttl', key) < 0 then redis.call('expire', key, ARGV[1]) end
end
return counts
"""
# Gives back one counted attempt without re-creating a key whose window has already ended.
_GIVE_BACK = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end return 0"


async def _claim_attempt(redis: Redis, tenant_code: str, username: str, ip: str | None) -> list[str]:
    """Count a sign-in attempt before its password is checked, or refuse it when locked out.

    Counting first (an atomic INCR per key) is what makes the limit hold under parallel guesses:
    checking the count and adding failures afterwards would let every request in flight through.
    The first key is the account's, the second the client address's.
    """
    settings = get_settings()
    keys = [rkey("login_fail", tenant_code, username.lower())]
    limits = [settings.login_max_failures]
    if ip:
        keys.append(rkey("login_fail_ip", ip))
        limits.append(settings.login_max_failures * 4)
    counts = await redis.eval(_COUNT_ATTEMPT, len(keys), *keys, settings.login_failure_window_seconds)
    for key, count, limit in zip(keys, counts, limits, strict=True):
        if int(count) > limit:
            ttl = await redis.ttl(key)
            await _give_back(redis, keys)  # a refused attempt checked no password
            raise TooManyRequests(
                "too many failed sign-in attempts; try again later",
                code="login_locked",
                retry_after=max(int(ttl), 1),
            )
    return keys


async def _give_back(redis: Redis, keys: list[str]) -> None:
    for key in keys:
        await redis.eval(_GIVE_BACK, 1, key)


async def _attempt_succeeded(redis: Redis, keys: list[str]) -> None:
    """A right secret clears the account's failures and does not count against the address."""
    await redis.delete(keys[0])
    await _give_back(redis, keys[1:])


async def _issue_staff_tokens(session: AsyncSession, tenant_id: UUID, staff_id: UUID, family_id: UUID) -> TokenResponse:
    settings = get_settings()
    access, _ = issue_token(subject=str(staff_id), tenant_id=str(tenant_id), audience="staff",
                            ttl_seconds=settings.access_token_ttl_seconds, sid=str(family_id))
    refresh = f"{tenant_id}.{new_secret()}"
    session.add(RefreshToken(tenant_id=tenant_id, family_id=family_id, subject_type="staff", subject_id=staff_id,
                             token_hash=hash_token(refresh),
                             expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_seconds)))
    await session.flush()
    return TokenResponse(access_token=access, expires_in=settings.access_token_ttl_seconds, refresh_token=refresh)


async def login(
    session: AsyncSession, redis: Redis, *, tenant_code: str, username: str, password: str, ip: str | None
) -> TokenResponse:
    attempt = await _claim_attempt(redis, tenant_code, username, ip)
    tenant = await tenancy.get_tenant_by_code(session, tenant_code)
    staff = None
    if tenant is not None and tenant.active:
        await set_tenant(session, tenant.id)
        stmt = select(Staff).where(Staff.tenant_id == tenant.id, Staff.username == username)
        staff = (await session.exec(stmt)).first()
    # argon2 is deliberately slow: verify off the event loop so other requests keep flowing.
    valid = await asyncio.to_thread(verify_password, staff.password_hash if staff else None, password)
    if not valid or not staff or not staff.active:
        raise Unauthorized("wrong tenant, username or password", code="invalid_credentials")
    await _attempt_succeeded(redis, attempt)
    tokens = await _issue_staff_tokens(session, tenant.id, staff.id, new_id())
    audit.record(session, "auth.login", "staff", staff.id)
    return tokens


async def sign_in_wecom_user(session: AsyncSession, tenant_id: UUID, wecom_userid: str) -> TokenResponse:
    """Staff tokens for the active staff member with this WeCom userid (after WeCom's OAuth named them)."""
    await set_tenant(session, tenant_id)
    stmt = (select(Staff).where(Staff.tenant_id == tenant_id, Staff.wecom_userid == wecom_userid,
                                Staff.active.is_(True)).order_by(Staff.created_at).limit(1))
    staff = (await session.exec(stmt)).first()
    if staff is None:
        raise Unauthorized("no active staff member has this WeCom account", code="wecom_user_not_linked")
    tokens = await _issue_staff_tokens(session, tenant_id, staff.id, new_id())
    audit.record(session, "auth.login", "staff", staff.id, method="wecom")
    return tokens


def _split_refresh(token: str) -> UUID:
    try:
        return UUID(token.split(".", 1)[0])
    except ValueError as exc:
        raise Unauthorized("refresh token is not valid", code="invalid_refresh_token") from exc


async def revoke_family(sessions: SessionFactory, tenant_id: UUID, family_id: UUID, reason: str) -> None:
    """Revoke a login: all its refresh tokens and, through `revocations`, its live access tokens.

    Runs in its own transaction (from `sessions`): a reuse attack is answered with 401, and the revocation
    must survive the rollback of the request that detected it.
    """
    async with sessions(tenant_id) as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.tenant_id == tenant_id, RefreshToken.family_id == family_id,
                   RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        audit.record(session, "auth.revoke", "session", family_id, reason=reason)
    revoked_sessions.add([family_id])


async def refresh(session: AsyncSession, refresh_token: str, *, sessions: SessionFactory) -> TokenResponse:
    """`sessions` opens the transaction that revokes a sign-in whose spent token came back."""
    tenant_id = _split_refresh(refresh_token)
    await set_tenant(session, tenant_id)
    token_hash = hash_token(refresh_token)
    # Spend the token atomically: of two concurrent uses only one finds it unspent.
    savepoint = await session.begin_nested()
    spent = (await session.execute(
        update(RefreshToken)
        .where(RefreshToken.tenant_id == tenant_id, RefreshToken.token_hash == token_hash,
               RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(used_at=utcnow())
        .returning(RefreshToken.family_id, RefreshToken.subject_type, RefreshToken.subject_id,
                   RefreshToken.expires_at)
    )).first()
    if spent is None:
        # Losing a race, PostgreSQL re-checks the winner's row under a row lock and keeps that lock
        # even though nothing was updated. Release it before revoke_family's own transaction updates
        # the same row, or each transaction would wait for the other forever.
        await savepoint.rollback()
        known = (await session.exec(select(RefreshToken.family_id, RefreshToken.used_at).where(
            RefreshToken.tenant_id == tenant_id, RefreshToken.token_hash == token_hash))).first()
        if known is None:
            raise Unauthorized("refresh token is not valid", code="invalid_refresh_token")
        if known.used_at is None:
            # Revoked before it was ever used (logout, password change): a client retrying its stored
            # token after that is no sign of theft, and there is nothing left to end.
            raise Unauthorized("this sign-in was ended; sign in again", code="refresh_token_revoked")
        # A spent token presented again means it was copied: end that whole sign-in.
        await revoke_family(sessions, tenant_id, known.family_id, "refresh token reuse")
        raise Unauthorized("refresh token was already used; this sign-in has been revoked",
                           code="refresh_token_reused")
    await savepoint.commit()
    if spent.expires_at <= utcnow():
        raise Unauthorized("refresh token expired", code="refresh_token_expired")
    if spent.subject_type != "staff":
        raise Unauthorized("refresh token is not valid", code="invalid_refresh_token")
    await load_staff_actor(session, tenant_id, spent.subject_id, None)  # disabled accounts stop here
    return await _issue_staff_tokens(session, tenant_id, spent.subject_id, spent.family_id)


async def logout(actor: Actor, *, sessions: SessionFactory) -> None:
    if actor.session_id:
        await revoke_family(sessions, actor.tenant_id, UUID(actor.session_id), "logout")


async def _revoke_subject_tokens(session: AsyncSession, tenant_id: UUID, subject_id: UUID) -> None:
    """End every sign-in of a staff member: a changed password must lock out whoever knew the old one.

    This process refuses them at once, before the transaction commits; if it then rolls back, the sign-ins
    were refused here for nothing until the next read of revocations, which is the safe way round.
    """
    families = (await session.execute(
        update(RefreshToken)
        .where(RefreshToken.tenant_id == tenant_id, RefreshToken.subject_id == subject_id,
               RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(RefreshToken.family_id)
    )).scalars().all()
    revoked_sessions.add(sorted(set(families), key=str))


# ---------------------------------------------------------------- integration clients


def _client_out(client: ApiClient) -> dict:
    return {"id": client.id, "client_id": client.client_id, "name": client.name, "scopes": client.scopes,
            "store_ids": [UUID(s) for s in client.store_ids], "active": client.active,
            "created_at": client.created_at}


async def create_api_client(session: AsyncSession, actor: Actor, data: ApiClientCreate) -> dict:
    actor.require("api_clients:write")
    scopes = _check_permissions(actor, data.scopes)
    await tenancy.require_stores_exist(session, actor.tenant_id, set(data.store_ids))
    tenant = await tenancy.tenant_row(session, actor.tenant_id)
    secret = new_secret()
    client = ApiClient(tenant_id=actor.tenant_id, client_id=f"{tenant.code}.{new_secret(12)}",
                       secret_hash=hash_password(secret), name=data.name, scopes=scopes,
                       store_ids=[str(s) for s in data.store_ids], created_by=actor.id)
    session.add(client)
    await session.flush()
    audit.record(session, "api_client.create", "api_client", client.id,
                 after={"client_id": client.client_id, "name": client.name, "scopes": scopes})
    return _client_out(client) | {"client_secret": secret}


async def list_api_clients(session: AsyncSession, actor: Actor) -> list[dict]:
    actor.require("api_clients:write")
    stmt = select(ApiClient).where(ApiClient.tenant_id == actor.tenant_id).order_by(ApiClient.id)
    rows = (await session.exec(stmt)).all()
    return [_client_out(c) for c in rows]


async def revoke_api_client(session: AsyncSession, actor: Actor, client_uuid: UUID) -> dict:
    actor.require("api_clients:write")
    client = await get_or_404(session, ApiClient, actor.tenant_id, client_uuid, code="api_client_not_found",
                              detail="integration client not found")
    client.active = False
    client.revoked_at = utcnow()
    session.add(client)
    await session.flush()
    audit.record(session, "api_client.revoke", "api_client", client.id)
    return _client_out(client)


async def client_credentials(
    session: AsyncSession, redis: Redis, *, client_id: str, client_secret: str, scope: str | None, ip: str | None
) -> TokenResponse:
    tenant_code = client_id.split(".", 1)[0]
    attempt = await _claim_attempt(redis, tenant_code, client_id, ip)
    tenant = await tenancy.get_tenant_by_code(session, tenant_code)
    client = None
    if tenant is not None and tenant.active:
        await set_tenant(session, tenant.id)
        client = (await session.exec(select(ApiClient).where(ApiClient.tenant_id == tenant.id,
                                                             ApiClient.client_id == client_id))).first()
    valid = await asyncio.to_thread(verify_password, client.secret_hash if client else None, client_secret)
    if not valid or not client or not client.active:
        raise Unauthorized("unknown client or wrong secret", code="invalid_client")
    await _attempt_succeeded(redis, attempt)
    granted = client.scopes
    if scope:
        requested = scope.split()
        not_allowed = [s for s in requested if s not in client.scopes]
        if not_allowed:
            raise Forbidden(f"scope {not_allowed[0]!r} is not granted to this client", code="invalid_scope")
        granted = requested
    ttl = get_settings().integration_token_ttl_seconds
    access, _ = issue_token(subject=str(client.id), tenant_id=str(tenant.id), audience="integration",
                            ttl_seconds=ttl, scope=" ".join(granted))
    client.last_used_at = utcnow()
    session.add(client)
    return TokenResponse(access_token=access, expires_in=ttl, scope=" ".join(granted))


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def active_staff_with_role(session: AsyncSession, tenant_id: UUID, role_name: str, *,
                                 store_id: UUID | None = None) -> list[UUID]:
    """The active staff members holding the role (and working in the store, when given), by id."""
    stmt = (select(Staff.id)
            .join(StaffRole, (StaffRole.tenant_id == Staff.tenant_id) & (StaffRole.staff_id == Staff.id))
            .join(Role, (Role.tenant_id == StaffRole.tenant_id) & (Role.id == StaffRole.role_id))
            .where(Staff.tenant_id == tenant_id, Staff.active, Role.name == role_name))
    if store_id is not None:
        stmt = stmt.join(StaffStore, (StaffStore.tenant_id == Staff.tenant_id) & (StaffStore.staff_id == Staff.id)
                         & (StaffStore.store_id == store_id))
    return list((await session.exec(stmt.distinct().order_by(Staff.id))).all())


async def role_names(session: AsyncSession, tenant_id: UUID) -> set[str]:
    """The names of the tenant's roles (presets and its own)."""
    return set((await session.exec(select(Role.name).where(Role.tenant_id == tenant_id))).all())


async def existing_staff_ids(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID]) -> set[UUID]:
    """Which of these staff members exist (active or not); unknown ids are left out."""
    if not staff_ids:
        return set()
    return set((await session.exec(select(Staff.id).where(Staff.tenant_id == tenant_id,
                                                          Staff.id.in_(staff_ids)))).all())


class StaffName(NamedTuple):
    id: UUID
    username: str
    display_name: str


async def staff_names(session: AsyncSession, tenant_id: UUID) -> list[StaffName]:
    """Every staff member's id, username and display name (active or not), to match names in a file to staff."""
    rows = (await session.exec(select(Staff.id, Staff.username, Staff.display_name)
                               .where(Staff.tenant_id == tenant_id))).all()
    return [StaffName(*row) for row in rows]


async def staff_row(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> Staff | None:
    """The staff member (active or not), or None; no permission check (the caller has made its own)."""
    return await session.get(Staff, (tenant_id, staff_id))


async def staff_at_store(session: AsyncSession, tenant_id: UUID, staff_id: UUID,
                         store_id: UUID) -> tuple[Staff, bool] | None:
    """The staff member (a snapshot, for reading) and whether they work in the store, in one prepared
    statement; None when there is no such one."""
    listed, keys = snapshot_columns(Staff, "s")
    rows = await fetch(session, f"SELECT {listed}, EXISTS (SELECT 1 FROM staff_stores w WHERE w.tenant_id = "
                                "s.tenant_id AND w.staff_id = s.id AND w.store_id = $3) FROM staff s "
                                "WHERE s.tenant_id = $1 AND s.id = $2", tenant_id, staff_id, store_id)
    return None if not rows else (snapshot_of(Staff, keys, rows[0]), rows[0][len(keys)])


async def staff_store_ids(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> set[UUID]:
    """The stores the staff member works in."""
    return set((await session.exec(select(StaffStore.store_id).where(
        StaffStore.tenant_id == tenant_id, StaffStore.staff_id == staff_id))).all())


async def staff_ids_in_stores(session: AsyncSession, tenant_id: UUID, store_ids: set[UUID]) -> set[UUID]:
    """Everyone who works in any of the stores (active or not)."""
    if not store_ids:
        return set()
    return set((await session.exec(select(StaffStore.staff_id).where(
        StaffStore.tenant_id == tenant_id, StaffStore.store_id.in_(store_ids)))).all())


async def active_staff_ids(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID]) -> set[UUID]:
    """Which of these staff members are active (unknown ids are left out)."""
    if not staff_ids:
        return set()
    rows = await fetch(session, "SELECT id FROM staff WHERE tenant_id = $1 AND id = ANY($2) AND active",
                       tenant_id, list(staff_ids))
    return {row["id"] for row in rows}


async def active_staff_of_store(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> list[Staff]:
    """The store's active staff, by display name (then id)."""
    return list((await session.exec(
        select(Staff).join(StaffStore, (StaffStore.tenant_id == Staff.tenant_id) & (StaffStore.staff_id == Staff.id))
        .where(Staff.tenant_id == tenant_id, StaffStore.store_id == store_id, Staff.active)
        .order_by(Staff.display_name, Staff.id))).all())


# ---------------------------------------------------------------- the mini-program profile


def _listing_out(staff: Staff) -> StaffListingOut:
    return StaffListingOut(staff_id=staff.id, display_name=staff.display_name, published=staff.published,
                           title=staff.title, bio=staff.bio, photo_url=staff.photo_url)


async def get_staff_listing(session: AsyncSession, actor: Actor, staff_id: UUID) -> StaffListingOut:
    actor.require("staff:read")
    return _listing_out(await _visible_staff(session, actor, staff_id))


async def set_staff_listing(session: AsyncSession, actor: Actor, staff_id: UUID,
                            data: StaffListing) -> StaffListingOut:
    """Replace the staff member's public profile; someone who left (inactive) cannot be published."""
    actor.require("staff:write")
    staff = await get_or_404(session, Staff, actor.tenant_id, staff_id, code="staff_not_found",
                             detail="staff member not found", lock=True)
    # As for other changes to a staff member: a store-scoped manager manages those working only in their stores.
    if actor.store_ids is not None:
        stores = await staff_store_ids(session, actor.tenant_id, staff.id)
        if not stores or not stores <= actor.store_ids:
            raise Forbidden("this staff member works outside your stores", code="store_forbidden")
    if data.published and not staff.active:
        raise Conflict("a staff member who is not active cannot be published", code="staff_inactive",
                       field="published")
    before = _listing_out(staff).model_dump(mode="json", exclude={"staff_id", "display_name"})
    for column, value in data.model_dump().items():
        setattr(staff, column, value)
    session.add(staff)
    await session.flush()
    audit.record(session, "staff.listing", "staff", staff.id, before=before, after=data.model_dump(mode="json"))
    return _listing_out(staff)


async def published_staff_of_stores(session: AsyncSession, tenant_id: UUID,
                                    store_ids: set[UUID]) -> dict[UUID, list[Staff]]:
    """Each store's active, published staff, by display name; no permission check (public profiles)."""
    out: dict[UUID, list[Staff]] = {s: [] for s in store_ids}
    if not store_ids:
        return out
    rows = (await session.execute(
        select(StaffStore.store_id, Staff)
        .join(Staff, (Staff.tenant_id == StaffStore.tenant_id) & (Staff.id == StaffStore.staff_id))
        .where(StaffStore.tenant_id == tenant_id, StaffStore.store_id.in_(store_ids), Staff.active,
               Staff.published)
        .order_by(Staff.display_name, Staff.id))).all()
    for store_id, staff in rows:
        out[store_id].append(staff)
    return out


async def published_staff_row(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> Staff | None:
    """The staff member when active and published, else None; no permission check (a public profile)."""
    staff = await session.get(Staff, (tenant_id, staff_id))
    return staff if staff is not None and staff.active and staff.published else None


async def stores_of_staff(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID]) -> dict[UUID, set[UUID]]:
    """The stores each of these staff members works in (an empty set for one without stores)."""
    out: dict[UUID, set[UUID]] = {s: set() for s in staff_ids}
    if staff_ids:
        for staff_id, store_id in (await session.exec(select(StaffStore.staff_id, StaffStore.store_id).where(
                StaffStore.tenant_id == tenant_id, StaffStore.staff_id.in_(staff_ids)))).all():
            out[staff_id].add(store_id)
    return out


_STAFF_WITH_PERMISSION = text(
    """
    SELECT s.id FROM staff s
    WHERE s.tenant_id = :tenant_id AND s.active
      AND EXISTS (SELECT 1 FROM staff_roles sr JOIN roles r ON r.tenant_id = sr.tenant_id AND r.id = sr.role_id
                  WHERE sr.tenant_id = s.tenant_id AND sr.staff_id = s.id AND :permission = ANY(r.permissions))
      AND (CAST(:roles AS text[]) IS NULL
           OR EXISTS (SELECT 1 FROM staff_roles sr JOIN roles r ON r.tenant_id = sr.tenant_id AND r.id = sr.role_id
                      WHERE sr.tenant_id = s.tenant_id AND sr.staff_id = s.id
                        AND r.name = ANY(CAST(:roles AS text[]))))
      AND (CAST(:store_id AS uuid) IS NULL
           OR EXISTS (SELECT 1 FROM staff_stores ss WHERE ss.tenant_id = s.tenant_id AND ss.staff_id = s.id
                        AND ss.store_id = CAST(:store_id AS uuid))
           OR EXISTS (SELECT 1 FROM staff_roles sr JOIN roles r ON r.tenant_id = sr.tenant_id AND r.id = sr.role_id
                      WHERE sr.tenant_id = s.tenant_id AND sr.staff_id = s.id AND 'stores:all' = ANY(r.permissions)))
    ORDER BY s.id
    """
)


async def active_staff_with_permission(session: AsyncSession, tenant_id: UUID, permission: str, *,
                                       store_id: UUID | None = None,
                                       roles: list[str] | None = None) -> list[UUID]:
    """Active staff who hold `permission` through one of their roles and, when given, act in the store (work
    there, or hold `stores:all`, as `Actor.can_act_in_store` decides) and hold one of `roles`; by id."""
    rows = await session.execute(_STAFF_WITH_PERMISSION, {"tenant_id": tenant_id, "permission": permission,
                                                          "roles": list(roles) if roles is not None else None,
                                                          "store_id": store_id})
    return [row[0] for row in rows]
