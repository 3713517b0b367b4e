"""Demo data for consent: a 针灸 service that cannot be booked without the acupuncture consent, and 张伟's
consent to it, signed in the mini-program on his phone. Called from app.seed.seed_demo after members and
clinical records exist.

The signature image is drawn here (a pen stroke, as a signing canvas produces), since the demo has no hand
to sign with; everything else is stored exactly as a signing from the mini-program is.
"""

from __future__ import annotations

import base64
import io
import math
from uuid import UUID

from PIL import Image, ImageDraw
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ServiceCreate
from app.domain.clinical import consents
from app.domain.clinical.consent_schemas import ConsentDevice, PatientConsentSign, ServiceConsentRequirementSet
from app.domain.members import service as members

DEMO_SERVICE = ServiceCreate(
    name="针灸", category="针灸", duration_minutes=40, price=16800,
    description="毫针针刺配合电针，适用于颈肩腰腿痛、失眠、头痛等。首次治疗前需签署《针灸治疗知情同意书》。")
PHONE = ConsentDevice(device_model="iPhone 14", system="iOS 17.5.1", platform="ios", app_version="8.0.50",
                      user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
                                 "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50 miniProgram")


def drawn_signature(width: int = 480, height: int = 180, seed: float = 0.0) -> bytes:
    """A PNG of a pen stroke on a transparent canvas, like a mini-program signing canvas exports."""
    image = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    points = [(30 + t * (width - 60) / 200,
               height / 2 + math.sin(t / 9 + seed) * height / 4 + math.sin(t / 3.1 + seed) * height / 10)
              for t in range(201)]
    draw.line(points, fill=(20, 20, 60, 255), width=5, joint="curve")
    draw.line([(width * 0.55, height * 0.8), (width * 0.9, height * 0.72)], fill=(20, 20, 60, 255), width=4)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


async def seed_consents(session: AsyncSession, actor: Actor) -> list[str]:
    """The demo's consent data; one line per thing made (for the seed summary)."""
    service = await catalog.create_service(session, actor, DEMO_SERVICE)
    await consents.set_requirement(session, actor, service.id, ServiceConsentRequirementSet(
        template_code="acupuncture", required_before="booking"))
    made = ["针灸: needs the signed acupuncture consent before booking"]
    people: dict[str, UUID] = await members.member_ids_by_name(session, actor.tenant_id, {"张伟"})
    if "张伟" in people:
        patient = await members.load_patient_actor(session, actor.tenant_id, people["张伟"])
        template = (await consents.list_templates(session, patient, code="acupuncture"))[0]
        await consents.sign(session, patient, PatientConsentSign(
            template_id=template.id, signature_png=base64.b64encode(drawn_signature()).decode(),
            text_sha256=consents.present_template(template).text_sha256, device=PHONE),
            request_device={"user_agent": PHONE.user_agent, "ip": "203.0.113.25"})
        made.append(f"张伟: signed {template.title} v{template.version} in the mini-program")
    return made
