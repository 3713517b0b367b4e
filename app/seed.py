"""Tenant creation and the demo tenant (`careloop seed-demo`). Each capability adds its part here."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from app.core.actor import Actor
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.core.errors import Conflict
from app.domain.booking import appointments, availability, schedule, waitlist
from app.domain.booking.schedule_schemas import (
    BookingPolicySet,
    ClosureCreate,
    OpeningRange,
    ResourceCreate,
    ShiftPatternCreate,
    StaffSkillsSet,
    StoreHoursSet,
    TimeOffCreate,
)
from app.domain.booking.schemas import AppointmentCreate
from app.domain.cards import service as cards
from app.domain.cards import templates as card_templates
from app.domain.cards.demo import seed_card_import
from app.domain.cards.schemas import CardTemplateCreate, TemplateItemIn
from app.domain.care import seed_rules as care_rules
from app.domain.care import service as care
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import (
    CommissionRule,
    ConsumableCreate,
    ProductCreate,
    RecipeLine,
    ResourceRequirement,
    ServiceCreate,
)
from app.domain.checkout.demo import seed_checkout
from app.domain.checkout.mini_program_demo import seed_mini_program
from app.domain.clinical import service as clinical
from app.domain.clinical.consent_demo import seed_consents
from app.domain.clinical.consents import install_builtin_consents
from app.domain.clinical.demo import seed_clinical
from app.domain.clinical.photo_demo import seed_photos
from app.domain.clinical.plan_demo import seed_treatment_plans
from app.domain.clinical.visit_demo import seed_visit_with_form
from app.domain.growth.demo import seed_growth
from app.domain.growth.referral_demo import seed_referrals
from app.domain.iam import service as iam
from app.domain.iam.schemas import StaffCreate
from app.domain.inventory import service as inventory
from app.domain.inventory.schemas import MovementCreate, ThresholdSet
from app.domain.loyalty.demo import seed_loyalty
from app.domain.members import service as members
from app.domain.members.schemas import (
    FamilyCreate,
    FamilyMemberAdd,
    FieldDefinitionCreate,
    FieldOption,
    HealthFields,
    MemberCreate,
    NoteCreate,
    SynonymCreate,
    TagCreate,
    TagGroupCreate,
)
from app.domain.messaging.demo import seed_messaging, seed_staff_alerts
from app.domain.portal.demo import seed_storefront
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.schemas import StoreCreate
from app.domain.visits import service as visits
from app.domain.visits.schemas import ServiceCompletion
from app.domain.wechat_links.demo import seed_sidebar

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store, Tenant

DEMO_TENANT = "demo"
DEMO_PASSWORD = "careloop-demo"

DEMO_STORES = [
    {"name": "康悦堂·静安旗舰店", "address": "上海市静安区南京西路1266号3楼", "phone": "021-62881234"},
    {"name": "康悦堂·徐汇店", "address": "上海市徐汇区漕溪北路88号2楼", "phone": "021-64385566"},
]

# username, display name, roles, indexes of DEMO_STORES
DEMO_STAFF = [
    ("manager", "李秀英", ["store_manager"], [0]),
    ("doctor.zhang", "张仲和", ["doctor"], [0, 1]),
    ("therapist.chen", "陈晓明", ["therapist"], [0]),
    ("therapist.liu", "刘芳", ["therapist"], [0]),
    ("therapist.huang", "黄志强", ["therapist"], [1]),
    ("consultant.zhao", "赵丽", ["consultant"], [0]),
    ("frontdesk", "孙悦", ["front_desk"], [0]),
    ("marketing", "周敏", ["marketing"], []),
    ("finance", "吴静", ["finance"], []),
]


DEMO_TAG_GROUPS = {
    "病种": (False, ["颈椎病", "腰椎间盘突出", "肩周炎", "失眠", "痛经", "慢性胃炎"]),
    "会员等级": (True, ["普通会员", "银卡会员", "金卡会员"]),
    "偏好": (False, ["喜欢安静", "怕痛", "周末到店", "需要发票"]),
}
DEMO_SYNONYMS = {"肩颈痛": "颈椎病", "脖子疼": "颈椎病", "落枕": "颈椎病", "腰疼": "腰椎间盘突出", "睡不着": "失眠"}
DEMO_FIELDS = [
    FieldDefinitionCreate(key="tongue", label="舌象", type="multi_select", health=True, position=1,
                          options=[FieldOption(value=v) for v in ("淡红", "齿痕", "厚腻", "剥落", "紫暗")]),
    FieldDefinitionCreate(key="pain_score", label="疼痛评分", type="scale", min_value=0, max_value=10, health=True,
                          position=2),
    FieldDefinitionCreate(key="occupation", label="职业", type="text", max_length=40, position=3),
    FieldDefinitionCreate(key="first_visit", label="首诊日期", type="date", position=4),
    FieldDefinitionCreate(key="smoker", label="是否吸烟", type="boolean", position=5),
    FieldDefinitionCreate(key="preferred_time", label="偏好到店时段", type="single_select", position=6,
                          options=[FieldOption(value=v) for v in ("上午", "下午", "晚上", "周末")]),
]
# name, phone, gender, birthday, tags, constitution, custom fields, home store index, owner username
DEMO_MEMBERS = [
    ("张伟", "13816620001", "male", "1978-04-12", ["颈椎病", "金卡会员"], ["气虚质"],
     {"tongue": ["齿痕"], "pain_score": 6, "occupation": "软件工程师", "preferred_time": "晚上"}, 0, "consultant.zhao"),
    ("王芳", "13916620002", "female", "1985-09-23", ["痛经", "银卡会员", "怕痛"], ["血瘀质"],
     {"tongue": ["紫暗"], "pain_score": 4, "smoker": False}, 0, "consultant.zhao"),
    ("李娜", "13716620003", "female", "1990-01-15", ["失眠", "喜欢安静"], ["阴虚质"],
     {"tongue": ["淡红"], "occupation": "教师", "first_visit": "2026-03-02"}, 0, "therapist.chen"),
    ("刘洋", "13616620004", "male", "1969-11-30", ["腰椎间盘突出", "普通会员"], ["痰湿质"],
     {"tongue": ["厚腻"], "pain_score": 7, "smoker": True}, 1, "therapist.huang"),
    ("陈静", "15016620005", "female", "1995-06-08", ["肩周炎", "周末到店"], ["平和质"],
     {"preferred_time": "周末"}, 0, None),
    ("杨帆", "15116620006", "male", "1982-02-19", ["慢性胃炎", "金卡会员", "需要发票"], ["湿热质"],
     {"tongue": ["厚腻", "齿痕"], "occupation": "销售经理"}, 1, None),
    ("赵敏", "15216620007", "female", "1973-07-27", ["颈椎病", "银卡会员"], ["气郁质"], {}, 0, "consultant.zhao"),
    ("黄磊", "15816620008", "male", "1988-12-03", ["腰椎间盘突出"], [], {"pain_score": 5}, 1, None),
    ("周婷", "18616620009", "female", "1992-03-14", ["失眠", "痛经"], ["阳虚质"], {"tongue": ["淡红", "齿痕"]}, 0,
     "therapist.liu"),
    ("吴刚", "18916620010", "male", "1965-05-21", ["肩周炎", "普通会员"], ["平和质"], {"smoker": True}, 0, None),
    ("徐丽", "13816620011", "female", "1979-08-09", ["颈椎病", "怕痛"], ["气虚质"], {"pain_score": 3}, 0, None),
    ("孙浩", "13916620012", "male", "2001-10-31", ["普通会员"], [], {"occupation": "研究生"}, 1, None),
    ("马丽娟", "13716620013", "female", "1958-02-02", ["慢性胃炎", "金卡会员"], ["阳虚质"], {}, 0, "consultant.zhao"),
    ("朱小龙", "13616620014", "male", "2016-06-18", [], [], {}, 0, None),
]


async def _seed_members(session, actor: Actor, stores: list[Store], staff_ids: dict[str, Any]) -> dict[str, UUID]:
    """Tags, fields and members; returns the members' ids by name."""
    for group_name, (exclusive, tags) in DEMO_TAG_GROUPS.items():
        group = await members.create_tag_group(session, actor, TagGroupCreate(name=group_name, exclusive=exclusive))
        for tag in tags:
            await members.create_tag(session, actor, TagCreate(name=tag, group_id=group.id))
    for synonym, tag in DEMO_SYNONYMS.items():
        await members.add_synonym(session, actor, SynonymCreate(synonym=synonym, tag_name=tag))
    for definition in DEMO_FIELDS:
        await members.create_field_definition(session, actor, definition)
    created = []
    for name, phone, gender, birthday, tags, constitution, custom, store, owner in DEMO_MEMBERS:
        member = await members.create_member(session, actor, MemberCreate(
            name=name, phone=phone, gender=gender, birthday=birthday, tags=tags, custom_fields=custom,
            home_store_id=stores[store].id, owner_staff_id=staff_ids.get(owner),
            source_channel="老带新" if tags else "美团",
            health=HealthFields(constitution=constitution, allergy_history="青霉素过敏" if name == "王芳" else None,
                                past_history="高血压十年，服药控制" if name == "刘洋" else None)))
        created.append(member)
    by_name = {m.name: m for m in created}
    family = await members.create_family(session, actor, FamilyCreate(name="朱家", head_member_id=by_name["吴刚"].id))
    await members.add_family_member(session, actor, family.id,
                                    FamilyMemberAdd(member_id=by_name["朱小龙"].id, relation="grandchild"))
    await members.add_note(session, actor, by_name["张伟"].id,
                           NoteCreate(body="久坐办公，右侧肩颈僵硬明显，建议每周两次推拿。"))
    await members.add_note(session, actor, by_name["王芳"].id, NoteCreate(body="对青霉素过敏；艾灸时注意温度。"))
    return {m.name: m.id for m in created}


# name, unit, default low-stock threshold, category
DEMO_CONSUMABLES = [
    ("艾条", "根", 40, "灸疗耗材"),
    ("按摩精油", "ml", 500, "推拿耗材"),
    ("火罐消毒棉", "片", 60, "拔罐耗材"),
    ("一次性床单", "张", 30, "通用耗材"),
]
# name, minutes, price (fen), resource kind and pool, recipe {consumable: quantity}, commission, category
DEMO_SERVICES = [
    ("推拿", 60, 19800, ("bed", "推拿床"), {"按摩精油": 10, "一次性床单": 1},
     {"type": "percent", "value": 15, "levels": {"senior": 20}}, "推拿"),
    ("艾灸", 45, 16800, ("device", "艾灸仪"), {"艾条": 2, "一次性床单": 1},
     {"type": "fixed", "value": 3000, "levels": {"senior": 4000}}, "灸疗"),
    ("拔罐", 30, 12800, ("bed", "推拿床"), {"火罐消毒棉": 3, "一次性床单": 1},
     {"type": "fixed", "value": 2000}, "拔罐"),
    ("肩颈调理", 60, 23800, ("bed", "推拿床"), {"按摩精油": 15, "一次性床单": 1},
     {"type": "percent", "value": 12, "levels": {"senior": 15}}, "推拿"),
    ("中医面诊", 20, 5000, ("room", "诊室"), {}, None, "诊疗"),
]
# name, unit, price (fen), sku, threshold
DEMO_PRODUCTS = [("养生茶", "罐", 8800, "KYT-TEA-001", 10), ("艾草足浴包", "盒", 6800, "KYT-FOOT-001", 8)]
# Stock received per store (flagship, 徐汇店); the smaller store reorders at lower thresholds.
DEMO_STOCK = {"艾条": (200, 80), "按摩精油": (3000, 1000), "火罐消毒棉": (500, 200), "一次性床单": (300, 100),
              "养生茶": (40, 15), "艾草足浴包": (30, 12)}
BRANCH_THRESHOLDS = {"艾条": 20, "按摩精油": 200, "火罐消毒棉": 30, "一次性床单": 15}


async def _seed_catalog(session, actor: Actor, stores: list[Store]) -> dict[str, UUID]:
    """Consumables, services, products and their stock; returns the services' ids by name."""
    items: dict[str, dict[str, Any]] = {}
    services: dict[str, UUID] = {}
    for name, unit, threshold, category in DEMO_CONSUMABLES:
        consumable = await catalog.create_consumable(session, actor, ConsumableCreate(
            name=name, unit=unit, low_stock_threshold=threshold, category=category))
        items[name] = {"consumable_id": consumable.id}
    for name, minutes, price, (kind, pool), recipe, commission, category in DEMO_SERVICES:
        services[name] = (await catalog.create_service(session, actor, ServiceCreate(
            name=name, duration_minutes=minutes, price=price, category=category, buffer_minutes=10,
            resource_requirements=[ResourceRequirement(kind=kind, pool=pool)],
            consumables=[RecipeLine(consumable_id=items[c]["consumable_id"], quantity=q) for c, q in recipe.items()],
            commission=CommissionRule(**commission) if commission else None))).id
    for name, unit, price, sku, threshold in DEMO_PRODUCTS:
        product = await catalog.create_product(session, actor, ProductCreate(
            name=name, unit=unit, price=price, sku=sku, category="养生零售", low_stock_threshold=threshold))
        items[name] = {"product_id": product.id}
    for name, quantities in DEMO_STOCK.items():
        for index, (store, quantity) in enumerate(zip(stores, quantities, strict=False)):
            await inventory.record_movement(session, actor, MovementCreate(
                store_id=store.id, kind="receive", quantity=quantity, ref_type="delivery_note",
                ref_id=f"DN-2026-{index + 1:04d}", **items[name]))
    for name, threshold in BRANCH_THRESHOLDS.items():
        await inventory.set_threshold(session, actor, ThresholdSet(
            store_id=stores[1].id, low_stock_threshold=threshold, **items[name]))
    return services


# name, kind, price, {service: (sessions, gifted)}, extra template fields
DEMO_CARD_TEMPLATES = [
    ("推拿10次卡", "count", 158000, {"推拿": (10, 0)}, {"valid_days": 365}),
    ("肩颈调理疗程卡", "package", 368000, {"推拿": (10, 0), "艾灸": (5, 0), "拔罐": (3, 2)},
     {"valid_days": 180, "family_shareable": True}),
    ("艾灸养生月卡", "period", 128000, {"艾灸": (0, 0)}, {"valid_days": 30, "daily_cap": 1}),
    ("储值卡 充1000送200", "stored_value", 100000, {}, {"face_value": 100000, "bonus": 20000,
                                                    "family_shareable": True}),
]
# member, template, store index, price paid; then services completed on that card (by therapist)
DEMO_CARDS = [
    ("张伟", "肩颈调理疗程卡", 0, 368000, [("推拿", "therapist.chen")] * 8 + [("艾灸", "therapist.liu")]),
    ("李娜", "推拿10次卡", 0, 158000, [("推拿", "therapist.chen")] * 3),
    ("王芳", "储值卡 充1000送200", 0, 100000, []),
    ("吴刚", "储值卡 充1000送200", 0, 100000, []),
    ("周婷", "艾灸养生月卡", 0, 128000, [("艾灸", "therapist.liu")]),
    ("刘洋", "推拿10次卡", 1, 158000, [("推拿", "therapist.huang")] * 2),
]


async def _seed_cards(session, actor: Actor, stores: list[Store], staff_ids: dict[str, Any],
                      services: dict[str, UUID], people: dict[str, UUID]) -> list[str]:
    templates = {}
    for name, kind, price, items, extra in DEMO_CARD_TEMPLATES:
        template = await card_templates.create_template(session, actor, CardTemplateCreate(
            name=name, kind=kind, price=price, items=[
                TemplateItemIn(service_id=services[s], sessions=n, gifted_sessions=g) for s, (n, g) in items.items()],
            **extra))
        templates[name] = template.id
    await iam.set_staff_details(session, actor.tenant_id, "therapist.chen", level="senior")
    issued = []
    for member, template, store_index, price, visits_done in DEMO_CARDS:
        card = await cards.issue_card(session, actor, member_id=people[member], template_id=templates[template],
                                      store_id=stores[store_index].id, price_paid=price,
                                      reason="纸质卡迁移（开业前售出）")
        for service_name, therapist in visits_done:
            await visits.complete_service(session, actor, ServiceCompletion(
                member_id=people[member], store_id=stores[store_index].id, service_id=services[service_name],
                staff_id=staff_ids[therapist], card_id=card.id, notes="手法适中，顾客反馈良好"))
        issued.append(f"{member}: {template}")
    return issued


# store index → resources: (kind, name, pool, capacity)
DEMO_RESOURCES = {
    0: [("bed", f"{n}号推拿床", "推拿床", 1) for n in range(1, 5)]
       + [("device", "艾灸仪A", "艾灸仪", 1), ("device", "艾灸仪B", "艾灸仪", 1), ("room", "1号诊室", "诊室", 1),
          ("room", "养生课堂", None, 8)],
    1: [("bed", f"{n}号推拿床", "推拿床", 1) for n in range(1, 3)]
       + [("device", "艾灸仪A", "艾灸仪", 1), ("room", "诊室", "诊室", 1)],
}
# username → services they may perform; then weekly shifts (store index, ISO weekdays, starts, ends)
DEMO_SKILLS = {
    "therapist.chen": ["推拿", "艾灸", "拔罐", "肩颈调理"],
    "therapist.liu": ["推拿", "艾灸", "拔罐"],
    "therapist.huang": ["推拿", "艾灸", "拔罐", "肩颈调理"],
    "doctor.zhang": ["中医面诊"],
}
DEMO_SHIFTS = [
    ("therapist.chen", 0, [1, 2, 3, 4, 5, 6], "10:00", "19:00"),
    ("therapist.liu", 0, [3, 4, 5, 6, 7, 1], "12:00", "21:00"),
    ("therapist.huang", 1, [2, 3, 4, 5, 6, 7], "10:00", "19:00"),
    ("doctor.zhang", 0, [1, 3, 5], "10:00", "12:30"),
    ("doctor.zhang", 1, [2, 4, 6], "14:00", "17:30"),
]
# member, service, store index, channel, which free slot of the next open day (0 = earliest)
DEMO_BOOKINGS = [
    ("张伟", "肩颈调理", 0, "mini_program", 0), ("李娜", "推拿", 0, "phone", 2), ("王芳", "艾灸", 0, "front_desk", 4),
    ("赵敏", "推拿", 0, "mini_program", 8), ("周婷", "艾灸", 0, "wecom", 12), ("刘洋", "推拿", 1, "phone", 1),
    ("杨帆", "中医面诊", 0, "front_desk", 0), ("黄磊", "拔罐", 1, "mini_program", 6),
]


async def _seed_booking(session, actor: Actor, stores: list[Store], staff_ids: dict[str, Any],
                        services: dict[str, UUID], people: dict[str, UUID]) -> list[str]:
    """Rooms, beds and devices, opening hours, skills, weekly shifts, a leave day, and bookings for the
    next days through the real booking path (so the demo's availability and calendar show them)."""
    today = tenancy.store_today(stores[0])
    for index, store in enumerate(stores):
        for kind, name, pool, capacity in DEMO_RESOURCES[index]:
            await schedule.create_resource(session, actor, ResourceCreate(
                store_id=store.id, kind=kind, name=name, pool=pool, capacity=capacity))
        await schedule.set_store_hours(session, actor, store.id, StoreHoursSet(hours=[
            OpeningRange(weekday=d, opens=time(10), closes=time(21)) for d in range(1, 8)]))
        await schedule.add_closure(session, actor, store.id, ClosureCreate(
            day=date(today.year + 1, 1, 1), reason="元旦休息"))
    await schedule.set_booking_policy(session, actor, stores[0].id, BookingPolicySet(
        slot_step_minutes=15, lead_time_minutes=60, horizon_days=30, cancel_window_hours=4,
        late_cancel_action="fee", late_cancel_fee=5000, no_show_action="deduct_session", no_show_fee=0,
        reminder_hours_before=24, follow_up_hours_after=24))
    for username, names in DEMO_SKILLS.items():
        await schedule.set_staff_skills(session, actor, staff_ids[username], StaffSkillsSet(
            service_ids=[services[n] for n in names]))
    for username, store_index, weekdays, starts, ends in DEMO_SHIFTS:
        await schedule.create_shift_pattern(session, actor, ShiftPatternCreate(
            staff_id=staff_ids[username], store_id=stores[store_index].id, weekdays=weekdays,
            starts=time.fromisoformat(starts), ends=time.fromisoformat(ends), valid_from=today - timedelta(days=7)))
    leave_day = today + timedelta(days=9)
    zone = tenancy.store_zone(stores[0])
    await schedule.create_time_off(session, actor, TimeOffCreate(
        staff_id=staff_ids["therapist.liu"], kind="leave", reason="年假",
        starts_at=datetime.combine(leave_day, time(0), zone),
        ends_at=datetime.combine(leave_day + timedelta(days=1), time(0), zone)))

    booked = []
    for member, service_name, store_index, channel, nth in DEMO_BOOKINGS:
        store = stores[store_index]
        for ahead in range(1, 8):  # the first coming day with enough free slots
            found = await availability.find_slots(session, actor, store_id=store.id,
                                                  service_id=services[service_name],
                                                  day_from=today + timedelta(days=ahead),
                                                  day_to=today + timedelta(days=ahead))
            if len(found.slots) > nth:
                slot = found.slots[nth]
                break
        else:
            continue
        await appointments.book(session, actor, AppointmentCreate(
            member_id=people[member], store_id=store.id, service_id=services[service_name], staff_id=slot.staff_id,
            starts_at=slot.starts_at, channel=channel, notes="首次预约，请提前10分钟到店" if nth == 0 else None))
        booked.append(f"{member}: {service_name} {slot.starts_at.astimezone(zone):%m-%d %H:%M}")
    await waitlist.join(session, actor, waitlist.WaitlistJoin(
        member_id=people["陈静"], store_id=stores[0].id, service_id=services["推拿"],
        staff_id=staff_ids["therapist.chen"], day=today + timedelta(days=1)))
    return booked


async def create_tenant_with_owner(*, code: str, name: str, owner_username: str, owner_password: str) -> Tenant:
    token = set_context(RequestContext(actor_type="system", actor_id="cli"))
    try:
        async with session_scope(system=True) as session:
            tenant = await tenancy.create_tenant(session, code=code, name=name)
            await iam.install_preset_roles(session, tenant.id)
            await iam.create_owner(session, tenant.id, owner_username, owner_password)
            await care_rules.install_seed_rules(session, tenant.id)
            await clinical.install_builtin_templates(session, tenant.id)
            await install_builtin_consents(session, tenant.id)
        return tenant
    finally:
        reset_context(token)


async def seed_demo(*, if_missing: bool = False) -> dict[str, Any]:
    login = {"tenant": DEMO_TENANT, "username": "owner", "password": DEMO_PASSWORD}
    summary: dict[str, Any] = {"login": login, "staff": [u for u, *_ in DEMO_STAFF]}
    async with session_scope(system=True) as session:
        existing = await tenancy.get_tenant_by_code(session, DEMO_TENANT)
    if existing is not None:
        if if_missing:
            return summary | {"created": False}
        raise Conflict("the demo tenant already exists", code="tenant_exists")
    tenant = await create_tenant_with_owner(code=DEMO_TENANT, name="康悦堂中医养生连锁",
                                            owner_username="owner", owner_password=DEMO_PASSWORD)
    token = set_context(RequestContext(actor_type="system", actor_id="seed-demo"))
    try:
        async with session_scope(tenant.id) as session:
            actor = Actor.system(tenant.id)
            stores: list[Store] = [await tenancy.create_store(session, actor, StoreCreate(**s)) for s in DEMO_STORES]
            staff_ids: dict[str, Any] = {}
            for username, display_name, roles, store_indexes in DEMO_STAFF:
                created = await iam.create_staff(session, actor, StaffCreate(
                    username=username, password=DEMO_PASSWORD, display_name=display_name, roles=roles,
                    store_ids=[stores[i].id for i in store_indexes]))
                staff_ids[username] = created.id
            services = await _seed_catalog(session, actor, stores)
            people = await _seed_members(session, actor, stores, staff_ids)
            issued_cards = await _seed_cards(session, actor, stores, staff_ids, services, people)
            bookings = await _seed_booking(session, actor, stores, staff_ids, services, people)
            coupons = await seed_loyalty(session, actor)
            orders = await seed_checkout(session, actor, stores, staff_ids)
            migrated = await seed_card_import(session, actor, tenancy.store_today(stores[0]))
            templates = await seed_messaging(session, actor)
            sidebar = await seed_sidebar(session, actor, stores, staff_ids, services)
            storefront = await seed_storefront(session, actor)
            mini_program = await seed_mini_program(session, actor)
            clinical_records = await seed_clinical(session, actor, staff_ids)
            consents = await seed_consents(session, actor)
            clinical_photos = await seed_photos(session, actor, staff_ids, tenancy.store_today(stores[0]))
            treatment_plans = await seed_treatment_plans(session, actor, staff_ids)
            visits_with_forms = await seed_visit_with_form(session, actor)
            growth = await seed_growth(session, actor, stores, staff_ids, tenancy.store_today(stores[0]))
            referral_demo = await seed_referrals(session, actor, stores)
            his_identifiers = await members.seed_demo_identifiers(session, tenant.id)  # FHIR: urn:his:renji
            # The demo has the templates the message rules wait for: switch those rules on.
            await care.enable_rules(session, tenant.id, ["care_after_treatment", "appointment_reminder"])
            await iam.set_staff_details(session, tenant.id, "owner", display_name="王建国")
            rules = await care_rules.rule_summaries(session, tenant.id)
        # Once committed, staff alerts go out as the worker sends them (from committed events).
        staff_alerts = await seed_staff_alerts(session_scope, tenant.id, staff_ids)
    finally:
        reset_context(token)
    return summary | {"created": True, "tenant_id": str(tenant.id), "stores": [s.name for s in stores],
                      "members": list(people), "cards": issued_cards, "appointments": bookings,
                      "coupons": coupons, "orders": orders, "message_templates": templates,
                      "automation_rules": rules, "sidebar": sidebar, "staff_alerts": staff_alerts,
                      "mini_program": mini_program, "migrated_from_old_system": migrated,
                      "storefront": storefront, "clinical_records": clinical_records, "consents": consents,
                      "clinical_photos": clinical_photos,
                      "treatment_plans": treatment_plans, "visits_with_forms": visits_with_forms,
                      "his_identifiers": his_identifiers, "growth": growth, "referrals": referral_demo}
