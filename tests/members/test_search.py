"""Member search: exact phone through the blind index, name prefix, pinyin, tags, filters, pagination."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from tests.factories import new_tenant
from tests.members.helpers import (
    all_pages,
    assert_problem,
    execute_as_owner,
    make_member,
    new_phone,
    search_ids,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def people(client):
    kit = await new_tenant(client)
    phone = new_phone()
    members = {"phone": phone}
    for name in ("张三", "张三丰", "李四", "王_明", "王五", "Tom Lee"):
        members[name] = (await make_member(kit, name, phone=phone if name == "张三" else None))["id"]
    return kit, members


async def test_phone_is_found_exactly_in_any_format(people):
    kit, m = people
    phone = m["phone"]
    for q in (phone, f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}", f"0086{phone}", f"0086 {phone}",
              f"{phone[:3]} {phone[3:7]} {phone[7:]}", f" {phone} ", f"({phone[:3]}) {phone[3:]}"):
        assert await search_ids(kit, q=q) == [m["张三"]], q
    assert await search_ids(kit, q=phone[:7]) == []
    assert await search_ids(kit, q="137" + phone[3:]) == [], "another number with the same digits after the prefix"


async def test_name_prefix_and_pinyin(people):
    kit, m = people
    cases = {
        "张": {"张三", "张三丰"}, "张三": {"张三", "张三丰"}, "张三丰": {"张三丰"}, "李": {"李四"}, "三": set(),
        "zs": {"张三", "张三丰"}, "zsf": {"张三丰"}, "ls": {"李四"}, "z": {"张三", "张三丰"},
        "zhangs": {"张三", "张三丰"}, "zhangsanf": {"张三丰"}, "zhang san": {"张三", "张三丰"},
        "ZS": {"张三", "张三丰"}, "ZhangS": {"张三", "张三丰"}, "LiSi": {"李四"}, "zsx": set(), "lisi": {"李四"},
        "tom": {"Tom Lee"}, "Tom L": {"Tom Lee"}, "wm": {"王_明"}, "ww": {"王五"},
    }
    for q, names in cases.items():
        assert set(await search_ids(kit, q=q)) == {m[n] for n in names}, q


async def test_like_metacharacters_are_literal(people):
    kit, m = people
    assert await search_ids(kit, q="王_") == [m["王_明"]]
    for q in ("%", "_", "王%", "%三", "张%", "\\", "王\\_", "'", "张'"):
        assert await search_ids(kit, q=q) == [], q


async def test_tag_filters_any_and_all(client):
    kit = await new_tenant(client)
    both = (await make_member(kit, "甲", tags=["颈椎病", "VIP"]))["id"]
    neck = (await make_member(kit, "乙", tags=["颈椎病"]))["id"]
    vip = (await make_member(kit, "丙", tags=["VIP", "失眠"]))["id"]
    await make_member(kit, "丁")
    cases = [
        ({"tag": "颈椎病"}, {both, neck}),
        ({"tag": ["颈椎病", "VIP"]}, {both, neck, vip}),
        ({"tag": ["颈椎病", "VIP"], "tag_mode": "any"}, {both, neck, vip}),
        ({"tag": ["颈椎病", "VIP"], "tag_mode": "all"}, {both}),
        ({"tag": ["颈椎病", "颈椎病"], "tag_mode": "all"}, {both, neck}),
        ({"tag": ["颈椎病", "不存在"], "tag_mode": "all"}, set()),
        ({"tag": ["颈椎病", "不存在"]}, {both, neck}),
        ({"tag": "不存在"}, set()),
        ({"tag": ["VIP"], "q": "丙"}, {vip}),
    ]
    for params, expected in cases:
        assert set(await search_ids(kit, **params)) == expected, params
    assert_problem(await kit.get("/members", params={"tag": "VIP", "tag_mode": "most"}), 422, field="tag_mode")


async def test_store_owner_and_last_visit_filters(client):
    kit = await new_tenant(client)
    first, second = await kit.store("一店"), await kit.store("二店")
    consultant = await kit.staff(["consultant"], [first])
    visits = {
        "early": datetime(2024, 3, 1, 0, 30, tzinfo=SHANGHAI),   # 2024-02-29 16:30 UTC
        "late": datetime(2024, 3, 1, 23, 30, tzinfo=SHANGHAI),
        "next_day": datetime(2024, 3, 2, 1, 0, tzinfo=SHANGHAI),  # 2024-03-01 17:00 UTC
        "later": datetime(2024, 3, 5, 12, 0, tzinfo=SHANGHAI),
    }
    ids = {}
    for label, at in visits.items():
        store = first if label in ("early", "later") else second
        owner = consultant["id"] if label == "late" else None
        ids[label] = (await make_member(kit, label, home_store_id=store, owner_staff_id=owner))["id"]
        await execute_as_owner("UPDATE members SET last_visit_at = :at WHERE id = :id", at=at, id=UUID(ids[label]))
    never = (await make_member(kit, "never"))["id"]

    cases = [
        ({"store_id": first}, {"early", "later"}),
        ({"store_id": second}, {"late", "next_day"}),
        ({"owner_staff_id": consultant["id"]}, {"late"}),
        ({"last_visit_from": "2024-03-01", "last_visit_to": "2024-03-01"}, {"early", "late"}),
        ({"last_visit_from": "2024-03-02"}, {"next_day", "later"}),
        ({"last_visit_to": "2024-03-02"}, {"early", "late", "next_day"}),
        ({"last_visit_from": "2024-03-02", "last_visit_to": "2024-03-04"}, {"next_day"}),
        ({"last_visit_from": "2024-03-06"}, set()),
        ({"store_id": first, "last_visit_to": "2024-03-01"}, {"early"}),
    ]
    for params, expected in cases:
        assert set(await search_ids(kit, **params)) == {ids[k] for k in expected}, params
    assert never in await search_ids(kit)
    other = await new_tenant(client)
    assert await search_ids(other, store_id=first) == []
    assert_problem(await kit.get("/members", params={"last_visit_from": "2024-02-30"}), 422,
                   field="last_visit_from")
    # The ends of the calendar are filters like any other, not a 500.
    for params in ({"last_visit_from": "0001-01-01"}, {"last_visit_to": "9999-12-31"},
                   {"last_visit_from": "0001-01-01", "last_visit_to": "9999-12-31"}):
        assert set(await search_ids(kit, **params)) == set(ids.values()), params
    assert await search_ids(kit, last_visit_to="0001-01-01") == []


async def test_cursor_pagination_walks_every_member_once(client):
    kit = await new_tenant(client)
    created = [(await make_member(kit, f"翻页{i}", tags=["翻页"] if i % 2 else []))["id"] for i in range(7)]
    for params in ({}, {"q": "fany"}, {"q": "翻页"}):
        for limit in (1, 2, 3, 7, 200):
            seen, cursor, pages = [], None, 0
            while True:
                query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
                r = await kit.get("/members", params=query)
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page["items"]) <= limit
                seen += [item["id"] for item in page["items"]]
                cursor, pages = page["next_cursor"], pages + 1
                if cursor is None:
                    break
            assert sorted(seen) == sorted(created), (params, limit)
            assert seen == sorted(seen, key=UUID, reverse=True), "newest first"
            assert pages == -(-7 // limit), (params, limit, pages)
    tagged = [m["id"] for m in await all_pages(kit, "/members", tag="翻页", limit=1)]
    assert sorted(tagged) == sorted(created[1::2])


async def test_status_filter_lists_erased_and_merged_members(client):
    kit = await new_tenant(client)
    keep, gone, dup = [(await make_member(kit, n))["id"] for n in ("留下", "注销", "重复")]
    assert (await kit.post(f"/members/{gone}/erase", {"reason": "本人申请"})).status_code == 200
    assert (await kit.post(f"/members/{keep}/merge", {"duplicate_id": dup})).status_code == 200
    assert await search_ids(kit) == [keep]
    assert await search_ids(kit, status="erased") == [gone]
    assert await search_ids(kit, status="merged") == [dup]
    assert await search_ids(kit, status="merged", q="重复") == [dup]
    assert_problem(await kit.get("/members", params={"status": "deleted"}), 422, field="status")
