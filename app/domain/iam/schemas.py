from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.core.schemas import ImageUrl, Name, Strict
from app.domain.tenancy.schemas import TENANT_CODE_PATTERN

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$"
ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class TokenRequest(Strict):
    tenant: str = Field(pattern=TENANT_CODE_PATTERN, description="Tenant code, e.g. `demo`")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=10, max_length=200)


class LogoutRequest(Strict):
    refresh_token: str | None = Field(None, min_length=10, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None


class StaffCreate(Strict):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=128)
    display_name: Name = Field(min_length=1, max_length=60)
    roles: list[str] = Field(min_length=1, max_length=10)
    store_ids: list[UUID] = Field(default_factory=list, max_length=200)
    wecom_userid: str | None = Field(None, max_length=64)


class StaffUpdate(Strict):
    display_name: Name | None = Field(None, min_length=1, max_length=60)
    roles: list[str] | None = Field(None, min_length=1, max_length=10)
    store_ids: list[UUID] | None = Field(None, max_length=200)
    active: bool | None = None
    password: str | None = Field(None, min_length=8, max_length=128)
    wecom_userid: str | None = Field(None, max_length=64)


class StaffOut(BaseModel):
    id: UUID
    username: str
    display_name: str
    active: bool
    roles: list[str]
    store_ids: list[UUID]
    wecom_userid: str | None = None
    created_at: datetime | None = None


class MeOut(BaseModel):
    tenant_id: UUID
    kind: str
    id: UUID
    display_name: str | None
    roles: list[str]
    permissions: list[str]
    store_ids: list[UUID] | None = Field(description="null when the caller may act in every store")


class RoleCreate(Strict):
    name: str = Field(pattern=ROLE_NAME_PATTERN)
    description: str | None = Field(None, max_length=200)
    permissions: list[str] = Field(min_length=1, max_length=100)


class RoleUpdate(Strict):
    description: str | None = Field(None, max_length=200)
    permissions: list[str] | None = Field(None, min_length=1, max_length=100)


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    description: str | None
    permissions: list[str]
    preset: bool


class PermissionOut(BaseModel):
    name: str
    description: str


class ApiClientCreate(Strict):
    name: Name = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=100)
    store_ids: list[UUID] = Field(default_factory=list, max_length=200)


class ApiClientOut(BaseModel):
    id: UUID
    client_id: str
    name: str
    scopes: list[str]
    store_ids: list[UUID]
    active: bool
    created_at: datetime | None = None


class ApiClientCreated(ApiClientOut):
    client_secret: str = Field(description="Shown once; store it in the integrating system")


class StaffListing(Strict):
    """The staff member's public profile in the mini-program (replaces the whole profile). Only the name,
    these fields, the stores and the services they perform are shown; never the username, phone or level."""

    published: StrictBool = Field(description="Patients see (and may choose) this staff member when true")
    title: Name | None = Field(None, max_length=30, description="e.g. 主治医师, 高级推拿师")
    bio: str | None = Field(None, max_length=1000)
    photo_url: ImageUrl | None = None


class StaffListingOut(BaseModel):
    staff_id: UUID
    display_name: str
    published: bool
    title: str | None
    bio: str | None
    photo_url: str | None
