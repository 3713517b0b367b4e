"""Member import of one spreadsheet of 20,000 members: dry run, real run, repeat, update.

    python -m bench.members_import [--rows 20000] [--format xlsx|csv]

Each step is one call of the real use case (imports.import_members) inside one tenant-scoped
transaction, as a request runs it: the file is parsed, every row validated, existing phones looked up
in one query, and rows written through members.create_member / update_member (audit and outbox
included). Times are wall-clock seconds for the whole step, commit included.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import time

from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.members import exports, imports
from app.domain.members import service as members
from app.domain.members.schemas import FieldDefinitionCreate, FieldOption, SynonymCreate
from app.domain.members.service import MemberFilter
from bench.common import bench_database
from bench.members_search import GIVEN, SURNAMES, TAGS

HEADER = ["姓名", "手机号", "性别", "生日", "标签", "门店", "备注", "舌象"]
SYNONYMS = {"肩颈痛": "颈椎病", "脖子疼": "颈椎病", "落枕": "颈椎病", "睡不着": "失眠"}


def sheet_rows(count: int, stores: list[str], rng: random.Random) -> list[list]:
    words = TAGS + list(SYNONYMS)
    rows: list[list] = [HEADER]
    for i in range(count):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        tags = "、".join(rng.sample(words, rng.choice((0, 1, 2, 3))))
        birthday = f"{rng.randint(1950, 2005)}/{rng.randint(1, 12)}/{rng.randint(1, 28)}"
        rows.append([name, f"1{rng.choice('3456789')}{i:09d}", rng.choice("男女"), birthday, tags,
                     rng.choice(stores), "", rng.choice(["齿痕", "厚腻", ""])])
    return rows


def encode(rows: list[list], file_format: str) -> bytes:
    if file_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue().encode("gb18030")
    from openpyxl import Workbook

    # Not write-only: that writes inline strings and no <dimension>, which Excel never does and which
    # openpyxl reads several times slower than Excel's shared strings.
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


async def step(label: str, tenant_id, actor: Actor, data: bytes, filename: str, **options) -> dict:
    started = time.perf_counter()
    async with session_scope(tenant_id) as session:
        report = await imports.import_members(session, actor, data=data, filename=filename, **options)
    seconds = time.perf_counter() - started
    print(f"  {label:<34} {seconds:7.1f} s   created {report.created_count:>6}  updated {report.updated_count:>6}"
          f"  skipped {report.skipped_count:>6}  errors {report.error_count:>4}")
    return {"label": label, "seconds": round(seconds, 2), "created": report.created_count,
            "updated": report.updated_count, "skipped": report.skipped_count}


async def run(count: int, file_format: str = "xlsx") -> list[dict]:
    from app.domain.tenancy import service as tenancy
    from app.domain.tenancy.schemas import StoreCreate
    from app.seed import create_tenant_with_owner

    print(f"member import, {count:,} rows ({file_format})")
    async with bench_database():
        tenant = await create_tenant_with_owner(code="bench", name="Bench", owner_username="owner",
                                                owner_password="bench-password")
        actor = Actor.system(tenant.id)
        async with session_scope(tenant.id) as session:
            stores = [(await tenancy.create_store(session, actor, StoreCreate(name=f"门店{i}"))).name for i in range(5)]
            for synonym, tag in SYNONYMS.items():
                await members.add_synonym(session, actor, SynonymCreate(synonym=synonym, tag_name=tag))
            await members.create_field_definition(session, actor, FieldDefinitionCreate(
                key="tongue", label="舌象", type="single_select",
                options=[FieldOption(value="齿痕"), FieldOption(value="厚腻")]))
        started = time.perf_counter()
        data = encode(sheet_rows(count, stores, random.Random(11)), file_format)
        print(f"  built a {len(data) / 1e6:.1f} MB file in {time.perf_counter() - started:.1f} s")
        filename = f"members.{file_format}"
        rows = sheet_rows(count, stores, random.Random(11))
        for row in rows[1::10]:  # every tenth member has a new note in the corrected file
            row[6] = "复诊"
        corrected = encode(rows, file_format)
        return [
            await step("dry run", tenant.id, actor, data, filename, dry_run=True),
            await step("import (all_or_nothing)", tenant.id, actor, data, filename, dry_run=False),
            await step("repeat (on_existing=skip)", tenant.id, actor, data, filename, dry_run=False),
            await step("repeat (on_existing=update)", tenant.id, actor, data, filename, dry_run=False,
                       on_existing="update"),
            await step("10% changed (update, per_row)", tenant.id, actor, corrected, filename, dry_run=False,
                       mode="per_row", on_existing="update"),
            await export_step(tenant.id, actor),
        ]


async def export_step(tenant_id, actor: Actor) -> dict:
    started = time.perf_counter()
    async with session_scope(tenant_id) as session:
        content, count = await exports.export_members(session, actor, MemberFilter())
    seconds = time.perf_counter() - started
    print(f"  {'export every member to .xlsx':<34} {seconds:7.1f} s   {count} rows, {len(content) / 1e6:.1f} MB")
    return {"label": "export", "seconds": round(seconds, 2), "rows": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.format))


if __name__ == "__main__":
    main()
