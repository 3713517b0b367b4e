"""Demo data for the mini-program's storefront: both demo stores published with their map position, photos and
introduction (their opening hours come from the booking seed), the treatments published with aftercare notes,
the therapists' and the doctor's public profiles, and three of the four card templates on sale (the 艾灸养生月卡
stays off the mini-program, to show that only what is published is listed). Called from app.seed.seed_demo
after the catalog, staff and cards exist, through each owning context's listing use case."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.pagination import PageParams
from app.domain.cards import templates as card_templates
from app.domain.cards.schemas import CardTemplateListing
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ServiceListing
from app.domain.iam import service as iam
from app.domain.iam.schemas import StaffListing
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.schemas import StoreListing

PHOTOS = "https://img.careloop.dev/demo"

# store name → listing; coordinates are GCJ-02 (as Chinese maps and wx.getLocation give them)
DEMO_STORE_LISTINGS = {
    "康悦堂·静安旗舰店": StoreListing(
        published=True, latitude=31.2284, longitude=121.4532,
        description="地铁2/12/13号线南京西路站1号口步行3分钟；恒隆广场地下车库可停车，消费满300元免2小时停车费。",
        photos=[f"{PHOTOS}/stores/jingan-front.jpg", f"{PHOTOS}/stores/jingan-lobby.jpg",
                f"{PHOTOS}/stores/jingan-room.jpg"]),
    "康悦堂·徐汇店": StoreListing(
        published=True, latitude=31.1925, longitude=121.4395,
        description="地铁1/9/11号线徐家汇站14号口出，港汇恒隆广场对面，2楼电梯直达。",
        photos=[f"{PHOTOS}/stores/xuhui-front.jpg", f"{PHOTOS}/stores/xuhui-room.jpg"]),
}
# service name → (photo, aftercare note)
DEMO_AFTERCARE = {
    "推拿": ("tuina", "推拿后当天避免剧烈运动，注意肩颈保暖；局部酸胀属正常反应，一般1–2天缓解，多喝温水。"),
    "艾灸": ("aijiu", "艾灸后4小时内不要洗澡，避免吹风受凉；多喝温开水，饮食清淡，忌生冷辛辣。"),
    "拔罐": ("baguan", "罐印一般3–7天消退，不必紧张；6小时内不要洗澡，拔罐部位注意保暖，避免空调直吹。"),
    "肩颈调理": ("jianjing", "调理后保持正确坐姿，每工作1小时起身活动肩颈5分钟；当天避免提重物、长时间低头看手机。"),
    "中医面诊": ("mianzhen", "请按医嘱调整作息与饮食；复诊前记录睡眠、饮食和不适的变化，便于医生判断调理效果。"),
}
# staff username → (title, bio)
DEMO_PROFILES = {
    "doctor.zhang": ("主治中医师", "上海中医药大学毕业，从事中医内科与针灸临床二十余年，"
                                   "擅长失眠、脾胃不和及颈肩腰腿痛的辨证调理。"),
    "therapist.chen": ("高级推拿师", "从业十二年，擅长颈椎病、肩周炎的手法调理，手法沉稳渗透，深受白领客户好评。"),
    "therapist.liu": ("艾灸调理师", "专注艾灸与女性调理八年，擅长痛经、宫寒及体质调养，讲解耐心细致。"),
    "therapist.huang": ("康复理疗师", "运动康复方向，擅长腰椎间盘突出、运动损伤的理疗与居家康复训练指导。"),
}
# card template name → what patients read
DEMO_CARDS_ON_SALE = {
    "推拿10次卡": "十次推拿，一年内有效，适合颈肩腰背的长期调理。",
    "肩颈调理疗程卡": "推拿10次、艾灸5次、拔罐3次另赠2次，180天疗程，可与家人共用。",
    "储值卡 充1000送200": "充值1000元送200元，两店通用，可与家人共享，不设有效期。",
}


async def seed_storefront(session: AsyncSession, actor: Actor) -> list[str]:
    """Publish the demo storefront; returns one line per thing published (for the seed summary)."""
    made: list[str] = []
    stores = {name: store_id for store_id, name in (await tenancy.store_names(session, actor.tenant_id)).items()}
    for name, listing in DEMO_STORE_LISTINGS.items():
        if name in stores:
            await tenancy.set_store_listing(session, actor, stores[name], listing)
            made.append(f"store {name} (map position, {len(listing.photos)} photos)")
    offered, _ = await catalog.list_services(session, actor, PageParams(limit=200), active=True)
    for service in offered:
        if service.name in DEMO_AFTERCARE:
            photo, note = DEMO_AFTERCARE[service.name]
            await catalog.set_service_listing(session, actor, service.id, ServiceListing(
                published=True, aftercare_note=note, photo_url=f"{PHOTOS}/services/{photo}.jpg"))
            made.append(f"service {service.name} with its aftercare note")
    staff = {s.username: s for s in await iam.staff_names(session, actor.tenant_id)}
    for username, (title, bio) in DEMO_PROFILES.items():
        if username in staff:
            await iam.set_staff_listing(session, actor, staff[username].id, StaffListing(
                published=True, title=title, bio=bio, photo_url=f"{PHOTOS}/staff/{username}.jpg"))
            made.append(f"{staff[username].display_name} ({title})")
    templates, _ = await card_templates.list_templates(session, actor, PageParams(limit=200))
    for template in templates:
        if template.name in DEMO_CARDS_ON_SALE:
            await card_templates.set_template_listing(session, actor, template.id, CardTemplateListing(
                published=True, description=DEMO_CARDS_ON_SALE[template.name]))
            made.append(f"card {template.name} on sale")
    return made
