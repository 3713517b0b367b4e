"""Request and response shapes of consent: templates, signing, withdrawing, service requirements."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.core.schemas import Name, Strict
from app.domain.clinical.forms import KEY_PATTERN

SHA256_PATTERN = r"^[0-9a-f]{64}$"
# A 200 KB PNG is 273,068 base64 characters; the bound in bytes is checked after decoding (422 naming the
# field), this one only keeps absurd strings from being decoded at all.
SIGNATURE_MAX_CHARS = 300_000
ConsentText = str


class ConsentTemplateCreate(Strict):
    code: str = Field(pattern=KEY_PATTERN, description="Stable code; versions of one consent share it")
    title: Name = Field(min_length=1, max_length=100)
    body: ConsentText = Field(min_length=1, max_length=20_000, description="The text the patient reads and "
                                                                          "signs (paragraphs separated by newlines)")


class ConsentTemplateVersionCreate(Strict):
    """The next version of a consent: its whole new text (the title kept unless given)."""

    title: Name | None = Field(None, min_length=1, max_length=100)
    body: ConsentText = Field(min_length=1, max_length=20_000)


class ConsentTemplateOut(BaseModel):
    id: UUID
    code: str
    version: int
    title: str
    body: str
    builtin: bool
    text_sha256: str = Field(description="SHA-256 (hex) of the signed text: the title, a blank line, the body "
                                         "(UTF-8); a signed consent keeps it as `text_hash`")
    created_at: datetime


class ConsentDevice(Strict):
    """What the mini-program knows of the device it was signed on (wx.getDeviceInfo / getSystemInfo)."""

    device_model: Name | None = Field(None, max_length=100, description="e.g. iPhone 15 Pro, HUAWEI Mate 60")
    system: Name | None = Field(None, max_length=100, description="e.g. iOS 17.4, HarmonyOS 4.0")
    platform: Name | None = Field(None, max_length=50, description="e.g. ios, android, devtools")
    app_version: Name | None = Field(None, max_length=50, description="The WeChat or app version")
    user_agent: Name | None = Field(None, max_length=500, description="The user agent the client reports")


class PatientConsentSign(Strict):
    template_id: UUID = Field(description="The exact template version shown (it must be the latest of its code)")
    signature_png: str = Field(min_length=1, max_length=SIGNATURE_MAX_CHARS,
                               description="The handwritten signature: a PNG, base64 (optionally as a "
                                           "data:image/png;base64, URL), at most 200 KB and 2000×2000 px")
    text_sha256: str | None = Field(None, pattern=SHA256_PATTERN,
                                    description="The SHA-256 of the text the client showed; when given it must "
                                                "match the template's")
    device: ConsentDevice | None = None
    member_id: UUID | None = Field(None, description="A member of the family the patient heads (default: the "
                                                     "patient)")


class ConsentSign(PatientConsentSign):
    """Staff recording a consent signed at the desk (a tablet): the member is named."""

    member_id: UUID  # type: ignore[assignment]


class ConsentWithdraw(Strict):
    reason: str = Field(min_length=1, max_length=1000, description="Why the consent is withdrawn")


class ConsentWithdrawalOut(BaseModel):
    withdrawn_at: datetime
    withdrawn_by_kind: str
    withdrawn_by_id: UUID
    reason: str
    hash: str


class ConsentOut(BaseModel):
    id: UUID
    member_id: UUID
    template_id: UUID
    template_code: str
    template_version: int
    title: str
    status: Literal["signed", "withdrawn"]
    text_hash: str = Field(description="SHA-256 of the exact text signed")
    signature_sha256: str = Field(description="SHA-256 of the signature PNG (the image is in the PDF)")
    signed_at: datetime
    signed_by_kind: str = Field(description="patient (in the mini-program) or staff (recorded at the desk)")
    signed_by_id: UUID
    device: dict[str, Any] = Field(description="`client`: what the client said of its device; `request`: the "
                                               "request's user agent and address")
    content_hash: str
    hash_verified: bool = Field(description="Whether the stored consent (and its withdrawal) still match their "
                                            "hashes")
    withdrawal: ConsentWithdrawalOut | None = None


class ServiceConsentRequirementSet(Strict):
    template_code: str = Field(pattern=KEY_PATTERN, description="The consent template code the service needs")
    required_before: Literal["booking", "completion"] = Field(
        "booking", description="booking: no booking without it (nor completion); completion: it may be booked, "
                               "but is completed only once signed")


class ServiceConsentRequirementOut(BaseModel):
    service_id: UUID
    template_code: str
    required_before: str
    updated_at: datetime | None
