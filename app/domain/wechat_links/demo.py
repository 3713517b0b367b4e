"""Demo data for the WeCom sidebar (called from app/seed.py once members, cards, bookings and message templates
are seeded, inside the seed's transaction).

张伟 is a WeCom external contact of his therapist 陈晓明 (therapist.chen), who has served him on his course
card and is booked with him: opening the chat's sidebar as therapist.chen shows his 360 (cards with sessions
left, points, visits, tasks, health fields under the care rule), the next visit therapist.chen booked there
into their own schedule, a note, and drafts rendered from the templates below. Staff WeCom ids let the demo
staff sign in through WeCom OAuth (`careloop fake-wechat` accepts any code as the userid of the same name).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.booking import appointments, availability
from app.domain.booking.schemas import AppointmentCreate
from app.domain.iam import service as iam
from app.domain.iam.schemas import StaffUpdate
from app.domain.members import service as members
from app.domain.members.schemas import NoteCreate
from app.domain.messaging import service as messaging
from app.domain.messaging.schemas import TemplateCreate
from app.domain.tenancy import service as tenancy
from app.domain.wechat_links import service as wechat_links

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

# username → WeCom userid (企业微信 账号)
DEMO_WECOM_USERIDS = {"therapist.chen": "ChenXiaoMing", "therapist.liu": "LiuFang", "consultant.zhao": "ZhaoLi",
                      "doctor.zhang": "ZhangZhongHe"}
# member, external_userid (WeCom's wm… id of the customer), name in WeCom, the staff who have them as contact
DEMO_CONTACTS = [("张伟", "wmKangYueDemoZhangWei0000000001", "张伟-软件工程师", ["therapist.chen", "consultant.zhao"])]
# The therapist who books 张伟's next visit from the sidebar, and the service.
DEMO_SIDEBAR_THERAPIST, DEMO_SIDEBAR_MEMBER, DEMO_NEXT_SERVICE = "therapist.chen", "张伟", "推拿"

# Chat drafts: SMS-channel texts (a care rule could send them too), with the variables the sidebar fills.
DEMO_DRAFT_TEMPLATES: list[dict[str, Any]] = [
    {"key": "sidebar_next_visit", "name": "下次预约确认", "channel": "sms",
     "body": "{{member_name}}您好，已为您约好{{starts_at}}在{{store_name}}的{{service_name}}，请提前10分钟到店；"
             "如需改期随时和我说。",
     "variables": ["member_name", "starts_at", "store_name", "service_name"]},
    {"key": "sidebar_sessions_left", "name": "卡项余次提醒", "channel": "sms",
     "body": "{{member_name}}您好，帮您查了一下卡项剩余：{{sessions_left}}。想约时间直接在这里告诉我就行。",
     "variables": ["member_name", "sessions_left"]},
    {"key": "sidebar_renewal", "name": "续卡沟通", "channel": "sms",
     "body": "{{member_name}}您好，您的{{service_name}}还剩{{remaining}}次，最近调理效果不错，建议连续做完一个疗程；"
             "现在续卡有老会员优惠，需要的话我帮您预留。",
     "variables": ["member_name", "service_name", "remaining"]},
]


async def seed_sidebar(session: AsyncSession, actor: Actor, stores: list[Store], staff_ids: dict[str, Any],
                       services: dict[str, UUID]) -> list[str]:
    """Returns one line per thing made (for the seed's summary)."""
    done: list[str] = []
    for username, userid in DEMO_WECOM_USERIDS.items():
        await iam.update_staff(session, actor, staff_ids[username], StaffUpdate(wecom_userid=userid))
    people = await members.member_ids_by_name(session, actor.tenant_id, {name for name, *_ in DEMO_CONTACTS})
    for name, external_userid, wecom_name, followers in DEMO_CONTACTS:
        await wechat_links.link_known_contact(session, actor, external_userid, people[name], name=wecom_name,
                                              follow_userids=[DEMO_WECOM_USERIDS[u] for u in followers])
        done.append(f"WeCom contact {external_userid} → {name}")
    for spec in DEMO_DRAFT_TEMPLATES:
        if await messaging.find_template(session, actor.tenant_id, spec["key"]) is None:
            await messaging.create_template(session, actor, TemplateCreate(**spec))
            done.append(f"message template {spec['key']} ({spec['name']})")

    # The therapist's own sidebar actions, with the therapist's own permissions (the narrow booking one).
    therapist = await iam.load_staff_actor(session, actor.tenant_id, staff_ids[DEMO_SIDEBAR_THERAPIST], None)
    member_id = people[DEMO_SIDEBAR_MEMBER]
    if not await members.in_care(session, therapist, member_id):
        return done  # the seeded bookings gave this member to someone else: nothing the therapist may book
    service_id = services[DEMO_NEXT_SERVICE]
    store = stores[0]
    today = tenancy.store_today(store)
    found = await availability.find_slots(session, therapist, store_id=store.id, service_id=service_id,
                                          day_from=today + timedelta(days=7), day_to=today + timedelta(days=13),
                                          staff_id=therapist.id)
    if found.slots:
        slot = found.slots[len(found.slots) // 3]  # an afternoon, not the first slot of the day
        placed = await appointments.book_next_visit(session, therapist, AppointmentCreate(
            member_id=member_id, store_id=store.id, service_id=service_id, starts_at=slot.starts_at,
            channel="wecom", notes="侧边栏约的下次：右肩继续加强"))
        zone = tenancy.store_zone(store)
        done.append(f"{DEMO_SIDEBAR_MEMBER}: next {DEMO_NEXT_SERVICE} booked from the sidebar "
                    f"{placed[0][0].starts_at.astimezone(zone):%m-%d %H:%M}")
    await members.add_care_note(session, therapist, member_id, NoteCreate(
        body="企业微信沟通：最近加班多，右肩胛又紧，约了下周继续推拿；提醒他每小时起身活动。"))
    return done
