"""Demo photos: 王芳's face before and after a photorejuvenation session (光子嫩肤), and at her follow-up two
weeks later. The images are drawn here with Pillow (a skin-toned gradient with a few darker spots that fade
from before to after, and a caption) and go through the same upload as a real one — checked, re-encoded,
thumbnailed and stored in the configured file store. Called from app.seed.seed_demo after the clinical records."""

from __future__ import annotations

import io
from datetime import date, timedelta
from uuid import UUID

from PIL import Image, ImageDraw, ImageFilter
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.clinical import photos
from app.domain.clinical.photo_schemas import PhotoUpload
from app.domain.members import service as members

WIDTH, HEIGHT = 960, 720
SPOTS = [(300, 260, 18), (380, 330, 14), (610, 280, 20), (660, 360, 12), (480, 420, 16), (560, 210, 10)]


def demo_image(caption: str, *, spot_strength: float) -> bytes:
    """A JPEG: a warm vertical gradient, spots of `spot_strength` (1 = as on the first visit), a caption."""
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    for y in range(HEIGHT):
        t = y / HEIGHT
        draw.line([(0, y), (WIDTH, y)], fill=(int(236 - 20 * t), int(200 - 26 * t), int(178 - 30 * t)))
    spots = Image.new("L", (WIDTH, HEIGHT), 0)
    spot_draw = ImageDraw.Draw(spots)
    for x, y, r in SPOTS:
        spot_draw.ellipse([x - r, y - r, x + r, y + r], fill=int(150 * spot_strength))
    spots = spots.filter(ImageFilter.GaussianBlur(6))
    image.paste(Image.new("RGB", (WIDTH, HEIGHT), (150, 98, 72)), mask=spots)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, HEIGHT - 70, WIDTH, HEIGHT], fill=(40, 40, 40))
    draw.text((24, HEIGHT - 52), caption, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


async def seed_photos(session: AsyncSession, actor: Actor, staff_ids: dict[str, UUID], today: date) -> list[str]:
    """The demo photos; one line per photo (for the seed summary)."""
    doctor = Actor(tenant_id=actor.tenant_id, kind="system", id=staff_ids["doctor.zhang"], store_ids=None,
                   roles=("system",), display_name="张仲和")
    people = await members.member_ids_by_name(session, actor.tenant_id, {"王芳"})
    if "王芳" not in people:
        return []
    member_id = people["王芳"]
    session_day, follow_up = today - timedelta(days=15), today - timedelta(days=1)
    shots = [
        (session_day, "before", 1.0, "face-before.jpg", "光子嫩肤第1次治疗前，双颊色斑明显", False),
        (session_day, "after", 0.75, "face-after.jpg", "治疗后即刻，局部轻微泛红，已冷敷", False),
        (follow_up, "after", 0.45, "face-followup.jpg", "两周复诊，色斑变淡，无结痂", False),
        (follow_up, "during", 0.5, "face-closeup.jpg", "复诊时左颊特写，医生内部对比用", True),
    ]
    made = []
    for day, phase, strength, filename, note, staff_only in shots:
        caption = f"Wang Fang  face  {phase.upper()}  {day.isoformat()}"
        photo = await photos.upload_photo(session, doctor, PhotoUpload(
            member_id=member_id, kind="photo", treatment_area="face", phase=phase, taken_on=day, note=note,
            staff_only=staff_only), content=demo_image(caption, spot_strength=strength), content_type="image/jpeg",
            filename=filename)
        made.append(f"王芳: face {phase} {day.isoformat()}{' (staff only)' if staff_only else ''} → {photo.id}")
    return made
