"""Member search on 100,000 members: phone (blind index), name prefix, pinyin, tags, store.

    python -m bench.members_search [--members 100000]

Members are bulk-loaded with COPY (as the schema owner), then every query runs through the real
service (members.search_members) inside a tenant-scoped transaction, as a request would: row-level
security, the application role, and one page of 50 results with tags.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from app.core import crypto
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.pagination import PageParams
from app.domain.members import service as members
from app.domain.members.normalize import mask_phone, pinyin_keys
from bench.common import bench_database, measure

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕梅莉兰凤洁琳素云莲真环雪荣爽琴晶妍茜秋珊莎"
TAGS = ["颈椎病", "腰椎间盘突出", "肩周炎", "失眠", "痛经", "慢性胃炎", "金卡会员", "银卡会员", "怕痛", "周末到店"]


def _member_rows(tenant_id, store_ids, count: int, rng: random.Random):
    keys = crypto.field_keys()
    for i in range(count):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        phone = f"1{rng.choice('3456789')}{i:09d}"
        initials, full = pinyin_keys(name)
        yield (tenant_id, new_id(), name, initials, full, crypto.encrypt(phone, keys=keys),
               crypto.blind_index(phone, purpose="phone", keys=keys), mask_phone(phone), rng.choice(store_ids),
               "active", "{}", [])


async def load(owner, tenant_id, store_ids, count: int) -> list:
    rng = random.Random(7)
    started = time.perf_counter()
    rows = list(_member_rows(tenant_id, store_ids, count, rng))
    await owner.copy_records_to_table(
        "members", records=rows,
        columns=["tenant_id", "id", "name", "pinyin_initials", "pinyin_full", "phone_encrypted", "phone_index",
                 "phone_masked", "home_store_id", "status", "custom_fields", "constitution"])
    tag_ids = [new_id() for _ in TAGS]
    await owner.copy_records_to_table("tags", records=[(tenant_id, t, n) for t, n in zip(tag_ids, TAGS, strict=True)],
                                      columns=["tenant_id", "id", "name"])
    links = {(r[1], rng.choice(tag_ids)) for r in rows for _ in range(rng.choice((0, 1, 2, 3)))}
    await owner.copy_records_to_table("member_tags", records=[(tenant_id, m, t, "import") for m, t in links],
                                      columns=["tenant_id", "member_id", "tag_id", "source"])
    await owner.execute("ANALYZE")
    print(f"  loaded {count:,} members and {len(links):,} tag links in {time.perf_counter() - started:.1f} s")
    return rows


async def run(count: int) -> list[dict]:
    from app.domain.tenancy import service as tenancy
    from app.domain.tenancy.schemas import StoreCreate
    from app.seed import create_tenant_with_owner

    print(f"member search, {count:,} members")
    async with bench_database() as (_url, owner):
        tenant = await create_tenant_with_owner(code="bench", name="Bench", owner_username="owner",
                                                owner_password="bench-password")
        actor = Actor.system(tenant.id)
        async with session_scope(tenant.id) as session:
            stores = [await tenancy.create_store(session, actor, StoreCreate(name=f"门店{i}")) for i in range(5)]
        rows = await load(owner, tenant.id, [s.id for s in stores], count)
        sample = rows[count // 2]
        phone = crypto.decrypt(sample[5])

        def search(**kw):
            async def go():
                async with session_scope(tenant.id) as session:
                    return await members.search_members(session, actor, PageParams(limit=50), **kw)
            return go

        results = [
            await measure("phone exact (blind index)", search(q=phone)),
            await measure("name prefix 张", search(q="张")),
            await measure("name prefix 张伟", search(q="张伟")),
            await measure("pinyin initials zw", search(q="zw")),
            await measure("full pinyin prefix zhangw", search(q="zhangw")),
            await measure("tag 颈椎病", search(tags=["颈椎病"])),
            await measure("tags 颈椎病 + 金卡会员 (all)", search(tags=["颈椎病", "金卡会员"], tag_mode="all")),
            await measure("home store", search(store_id=stores[2].id)),
            await measure("pinyin zw + tag 失眠", search(q="zw", tags=["失眠"])),
            await measure("no match (pinyin qqq)", search(q="qqq")),
        ]
        return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.members))


if __name__ == "__main__":
    main()
