"""Consent in the mini-program (GraphQL, `patient` tokens): the current texts, signing one, the patient's
consents (and their family's), withdrawing one. The same service as REST's `/patient/consents`, with the same
errors (`extensions.code`, and `extensions.field` for bad input: a signature that is not a PNG, too large, …).
The PDF is REST's `GET /patient/consents/{id}/pdf`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from app.core.pagination import PageParams
from app.domain.clinical import consents
from app.domain.clinical.consent_schemas import ConsentOut, ConsentWithdraw, PatientConsentSign
from app.graphql.context import Context, page_limit, parse_id, validated

PATIENT = ("patient",)


def _id(value: Any) -> strawberry.ID:
    return strawberry.ID(str(value))


@strawberry.type
class ConsentTemplate:
    id: strawberry.ID
    code: str
    version: int
    title: str
    body: str
    text_sha256: str = strawberry.field(description="SHA-256 of the title, a blank line and the body (UTF-8)")


@strawberry.type
class Consent:
    id: strawberry.ID
    member_id: strawberry.ID
    template_id: strawberry.ID
    template_code: str
    template_version: int
    title: str
    status: str = strawberry.field(description="signed or withdrawn")
    text_hash: str
    signed_at: datetime
    signed_by_kind: str
    hash_verified: bool
    withdrawn_at: datetime | None
    withdrawal_reason: str | None

    @classmethod
    def of(cls, c: ConsentOut) -> Consent:
        return cls(id=_id(c.id), member_id=_id(c.member_id), template_id=_id(c.template_id),
                   template_code=c.template_code, template_version=c.template_version, title=c.title,
                   status=c.status, text_hash=c.text_hash, signed_at=c.signed_at, signed_by_kind=c.signed_by_kind,
                   hash_verified=c.hash_verified, withdrawn_at=c.withdrawal.withdrawn_at if c.withdrawal else None,
                   withdrawal_reason=c.withdrawal.reason if c.withdrawal else None)


@strawberry.type
class ConsentPage:
    items: list[Consent]
    next_cursor: str | None


@strawberry.input
class ConsentDeviceInput:
    device_model: str | None = None
    system: str | None = None
    platform: str | None = None
    app_version: str | None = None
    user_agent: str | None = None


@strawberry.type
class ConsentQueries:
    @strawberry.field(description="The current text of each consent (or of `code`), to show before signing.")
    async def consent_templates(self, info: Info[Context, None], code: str | None = None) -> list[ConsentTemplate]:
        actor = await info.context.actor(audiences=PATIENT)
        rows = await consents.list_templates(info.context.session, actor, code=code)
        return [ConsentTemplate(id=_id(t.id), code=t.code, version=t.version, title=t.title, body=t.body,
                                text_sha256=consents.present_template(t).text_sha256) for t in rows]

    @strawberry.field(description="The patient's consents (or a family member's), newest first.")
    async def my_consents(self, info: Info[Context, None], member_id: strawberry.ID | None = None, limit: int = 50,
                          cursor: str | None = None) -> ConsentPage:
        actor = await info.context.actor(audiences=PATIENT)
        items, next_cursor = await consents.list_consents(
            info.context.session, actor, parse_id(member_id, "member_id") if member_id else None,
            PageParams(limit=page_limit(limit), cursor=cursor))
        return ConsentPage(items=[Consent.of(c) for c in items], next_cursor=next_cursor)


@strawberry.type
class ConsentMutations:
    @strawberry.mutation(description="Sign a consent: the template version shown, the signature as a base64 PNG "
                                     "(≤ 200 KB, ≤ 2000×2000 px), the device; for oneself or a family member.")
    async def sign_consent(self, info: Info[Context, None], template_id: strawberry.ID, signature_png: str,
                           text_sha256: str | None = None, device: ConsentDeviceInput | None = None,
                           member_id: strawberry.ID | None = None) -> Consent:
        actor = await info.context.actor(audiences=PATIENT)
        data = validated(PatientConsentSign, template_id=str(template_id), signature_png=signature_png,
                         text_sha256=text_sha256, member_id=str(member_id) if member_id else None,
                         device={k: v for k, v in vars(device).items() if v is not None} if device else None)
        request = info.context.request
        request_device = {"user_agent": (request.headers.get("user-agent") or "")[:500] or None,
                          "ip": request.client.host if request.client else None}
        consent = await consents.sign(info.context.session, actor, data, request_device=request_device)
        return Consent.of(await consents.present(info.context.session, consent))

    @strawberry.mutation(description="Withdraw one's consent (the reason is recorded; the consent is kept).")
    async def withdraw_consent(self, info: Info[Context, None], consent_id: strawberry.ID, reason: str) -> Consent:
        actor = await info.context.actor(audiences=PATIENT)
        data = validated(ConsentWithdraw, reason=reason)
        consent = await consents.withdraw(info.context.session, actor, parse_id(consent_id, "consent_id"), data)
        return Consent.of(await consents.present(info.context.session, consent))
