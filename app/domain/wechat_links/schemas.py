from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.schemas import Strict
from app.domain.tenancy.schemas import TENANT_CODE_PATTERN

# Codes from wx.login, getPhoneNumber and WeCom OAuth are short opaque tokens of these characters.
WECHAT_CODE_PATTERN = r"^[A-Za-z0-9_\-+/=.]{1,256}$"
BASE64_PATTERN = r"^[A-Za-z0-9+/=\s]+$"
# WeCom external userids are opaque (wm…/wo… for a self-built app, 32 characters); at least 16 of these.
EXTERNAL_USERID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
PAGE_URL_PATTERN = r"^https?://[^\s]+$"


class MiniProgramLogin(Strict):
    tenant: str = Field(pattern=TENANT_CODE_PATTERN, description="Tenant code the mini-program belongs to")
    code: str = Field(pattern=WECHAT_CODE_PATTERN, description="From `wx.login()`")
    phone_code: str | None = Field(None, pattern=WECHAT_CODE_PATTERN,
                                   description="The phone-number button's `getPhoneNumber` `e.detail.code`")
    encrypted_data: str | None = Field(None, max_length=4096, pattern=BASE64_PATTERN,
                                       description="Legacy `getPhoneNumber`: `e.detail.encryptedData` (with `iv`), "
                                                   "decrypted with this login's session key")
    iv: str | None = Field(None, max_length=64, pattern=BASE64_PATTERN, description="Legacy `e.detail.iv`")

    @model_validator(mode="after")
    def _one_phone_proof(self) -> MiniProgramLogin:
        if (self.encrypted_data is None) != (self.iv is None):
            raise ValueError("encrypted_data and iv come together")
        if self.phone_code is not None and self.encrypted_data is not None:
            raise ValueError("send phone_code or encrypted_data+iv, not both")
        return self


class PatientLoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    member_id: UUID
    bound: bool = Field(description="True when this sign-in (re)bound the WeChat account to the member")


class WecomLogin(Strict):
    tenant: str = Field(pattern=TENANT_CODE_PATTERN)
    code: str = Field(pattern=WECHAT_CODE_PATTERN, description="`code` from the WeCom OAuth redirect")


class JsSdkConfigOut(BaseModel):
    """Pass `config` to `wx.config` and `agentConfig` to `wx.agentConfig` as they are (camelCase is the SDK's)."""

    model_config = ConfigDict(populate_by_name=True)

    config: dict[str, Any]
    agent_config: dict[str, Any] = Field(alias="agentConfig")


class ExternalContactLink(Strict):
    member_id: UUID
