"""The daily close: its totals equal the sums of the day's ledgers, days are store-local, a day closes once."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from tests.cards.helpers import assert_problem, make_template, owner_sql
from tests.checkout.test_refunds import (
    Shop,
    give_points,
    line_of,
    make_shop,
    mixed_order,
    order,
    refund,
    set_approval,
    stored_value_card,
)
from tests.factories import new_tenant

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def report(shop: Shop, day: date, token: str | None = None):
    return await shop.kit.get("/reports/daily-close", params={"store_id": shop.store, "date": day.isoformat()},
                              token=token)


async def ledger_sums(shop: Shop, day: date) -> dict:
    """The day's figures recomputed from the raw ledger rows (as the table owner), row by row in Python."""
    start = datetime.combine(day, datetime.min.time(), SHANGHAI)
    end = start + timedelta(days=1)
    window = {"t": shop.tenant_id, "s": UUID(shop.store), "a": start, "b": end}
    received: dict[str, int] = {}
    cash_in = change = 0
    for method, amount, cash_received, change_given in await owner_sql(
            "SELECT method, amount, cash_received, change_given FROM payments WHERE tenant_id = :t AND store_id = :s "
            "AND status = 'succeeded' AND succeeded_at >= :a AND succeeded_at < :b", **window):
        received[method] = received.get(method, 0) + amount
        if method == "cash":
            cash_in += cash_received if cash_received is not None else amount
            change += change_given or 0
    refunded: dict[str, int] = {}
    for method, amount in await owner_sql(
            "SELECT a.method, a.amount FROM refund_allocations a JOIN refunds r ON r.id = a.refund_id "
            "WHERE a.tenant_id = :t AND r.store_id = :s AND a.status = 'succeeded' "
            "AND a.succeeded_at >= :a AND a.succeeded_at < :b", **window):
        refunded[method] = refunded.get(method, 0) + amount
    sessions_value = principal = card_refunds = 0
    for kind, sessions, p, details, unit_value in await owner_sql(
            "SELECT l.kind, l.sessions_delta, l.principal_delta, l.details, i.unit_value FROM card_ledger l "
            "LEFT JOIN card_items i ON i.id = l.card_item_id WHERE l.tenant_id = :t AND l.store_id = :s "
            "AND l.created_at >= :a AND l.created_at < :b", **window):
        of = details.get("reversed_kind", kind) if kind == "reverse" else kind
        if of == "deduct":
            sessions_value += -sessions * unit_value
        elif of == "charge" or (kind == "refund" and details.get("purpose") == "tender"):
            principal += -p
        elif kind == "refund":
            card_refunds += -sessions * (unit_value or 0) - p
    return {"received": received, "refunded": refunded, "cash_in": cash_in, "change": change,
            "sessions_value": sessions_value, "principal": principal, "card_refunds": card_refunds}


async def test_daily_close_totals_equal_the_sum_of_the_days_ledgers(client):
    shop = await make_shop(client)
    await set_approval(shop, 10_000_000, [["store_manager"]])
    today = datetime.now(SHANGHAI).date()
    card_id = await stored_value_card(shop)
    a = await mixed_order(shop, card_id)  # stored value 10000, points 3000, cash 15600 (20000 in, 4400 change)
    count = await make_template(shop.kit, kind="count", price=150000, valid_days=365,
                                items=[{"service_id": shop.massage, "sessions": 10}])
    b = await order(shop, [{"type": "card", "card_template_id": count}], [{"method": "cash", "amount": 150000}])
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    for _ in range(2):  # 2 sessions used: 2 x 15000 of deferred revenue released
        r = await shop.kit.post("/service-records", {"member_id": shop.member, "store_id": shop.store,
                                                     "service_id": shop.massage, "staff_id": therapist["id"],
                                                     "card_id": b["issued_cards"][0]}, token=therapist["token"])
        assert r.status_code == 201, r.text
    await order(shop, [{"type": "top_up", "card_id": card_id, "amount": 50000}], [{"method": "cash", "amount": 50000}])
    r = await refund(shop, a["id"], 12000)  # stored value 10000 back to the card, cash 2000 out of the drawer
    assert r.status_code == 201 and r.json()["status"] == "completed", r.text
    r = await refund(shop, b["id"], 120000, lines=[{"line_id": line_of(b, "card")["id"]}])  # 8 unused sessions
    assert r.status_code == 201 and r.json()["status"] == "completed", r.text

    r = await report(shop, today)
    assert r.status_code == 200, r.text
    got = r.json()
    tenders = {t["method"]: t for t in got["tenders"]}
    # By hand:
    assert {m: t["received"] for m, t in tenders.items() if t["received"]} == {
        "cash": 15600 + 150000 + 50000, "stored_value": 10000, "points": 3000}
    assert {m: t["refunded"] for m, t in tenders.items() if t["refunded"]} == {"cash": 122000, "stored_value": 10000}
    assert (got["received_total"], got["refunded_total"], got["net_total"]) == (228600, 132000, 96600)
    assert got["cash"] == {"received": 220000, "change": 4400, "refunded": 122000, "expected_in_drawer": 93600}
    assert got["orders"] == {"paid": 3, "refunds_completed": 2}
    assert got["deferred_revenue"] == {
        "card_sales": 150000, "top_up_sales": 50000, "sessions_consumed": 2, "sessions_value": 30000,
        "stored_value_principal_charged": 0, "stored_value_bonus_charged": 0,  # charged 8334, refunded 8334
        "card_refunds": 120000, "movement": 200000 - 30000 - 0 - 120000}
    # And from the ledgers, row by row:
    sums = await ledger_sums(shop, today)
    assert {m: t["received"] for m, t in tenders.items() if t["received"]} == sums["received"]
    assert {m: t["refunded"] for m, t in tenders.items() if t["refunded"]} == sums["refunded"]
    assert got["cash"]["expected_in_drawer"] == sums["cash_in"] - sums["change"] - sums["refunded"]["cash"]
    assert got["deferred_revenue"]["sessions_value"] == sums["sessions_value"]
    assert got["deferred_revenue"]["stored_value_principal_charged"] == sums["principal"]
    assert got["deferred_revenue"]["card_refunds"] == sums["card_refunds"]

    # Closing freezes the figures; a second close is refused.
    r = await shop.kit.post("/reports/daily-close", {"store_id": shop.store, "date": today.isoformat()})
    assert r.status_code == 201, r.text
    assert r.json()["closed"] is True and r.json()["net_total"] == 96600
    assert_problem(await shop.kit.post("/reports/daily-close", {"store_id": shop.store, "date": today.isoformat()}),
                   409, "day_closed")
    await give_points(shop, 1)  # nothing the close counts, but the day goes on
    await order(shop, [{"type": "product", "product_id": shop.tea, "quantity": 1}],
                [{"method": "cash", "amount": 8800}])
    frozen = (await report(shop, today)).json()
    assert frozen["closed"] is True and frozen["received_total"] == 228600
    future = (today + timedelta(days=2)).isoformat()
    assert_problem(await shop.kit.post("/reports/daily-close", {"store_id": shop.store, "date": future}), 422,
                   "validation_error")

    # The workbook: Chinese headers, yuan.
    r = await shop.kit.get("/reports/daily-close.xlsx", params={"store_id": shop.store, "date": today.isoformat()})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    book = load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["日结汇总", "支付方式", "预收款"]
    rows = list(book["支付方式"].iter_rows(values_only=True))
    assert rows[0] == ("支付方式", "收款笔数", "收款金额(元)", "退款金额(元)", "净额(元)")
    cash = next(row for row in rows if row[0] == "现金")
    assert (cash[1], cash[2], cash[3], cash[4]) == (3, 2156, 1220, 936)
    summary = dict(book["日结汇总"].iter_rows(values_only=True))
    assert summary["钱箱应有现金(元)"] == 936


async def test_days_are_store_local(client):
    """An order paid at 23:30 Shanghai time belongs to that Shanghai day, though it is 15:30 UTC."""
    shop = await make_shop(client)
    late = await order(shop, [{"type": "product", "product_id": shop.tea, "quantity": 1}],
                       [{"method": "cash", "amount": 8800}])
    early = await order(shop, [{"type": "service", "service_id": shop.massage}],
                        [{"method": "cash", "amount": 19800}])
    moments = {late["id"]: datetime(2026, 3, 1, 23, 30, tzinfo=SHANGHAI),  # 2026-03-01 15:30 UTC
               early["id"]: datetime(2026, 3, 2, 0, 30, tzinfo=SHANGHAI)}  # 2026-03-01 16:30 UTC
    for order_id, moment in moments.items():
        await owner_sql("UPDATE payments SET succeeded_at = :m WHERE order_id = :o", m=moment, o=UUID(order_id))
        await owner_sql("UPDATE orders SET paid_at = :m WHERE id = :o", m=moment, o=UUID(order_id))
    first = (await report(shop, date(2026, 3, 1))).json()
    second = (await report(shop, date(2026, 3, 2))).json()
    assert (first["received_total"], first["orders"]["paid"]) == (8800, 1)
    assert (second["received_total"], second["orders"]["paid"]) == (19800, 1)
    assert datetime.fromisoformat(first["starts_at"]) == datetime(2026, 2, 28, 16, tzinfo=UTC)


async def test_daily_close_needs_reports_read_in_the_store(client):
    shop = await make_shop(client)
    today = datetime.now(SHANGHAI).date()
    desk = await shop.kit.staff(["front_desk"], [shop.store])
    assert_problem(await report(shop, today, desk["token"]), 403, "permission_denied")
    elsewhere = await shop.kit.store("徐汇店")
    manager = await shop.kit.staff(["store_manager"], [elsewhere])
    assert_problem(await report(shop, today, manager["token"]), 403, "store_forbidden")
    finance = await shop.kit.staff(["finance"], [])
    assert (await report(shop, today, finance["token"])).status_code == 200
    r = await shop.kit.get("/reports/daily-close", params={"store_id": "00000000-0000-4000-8000-000000000000",
                                                           "date": today.isoformat()})
    assert_problem(r, 404, "store_not_found")


async def test_closing_a_day_needs_its_own_permission_checked_before_the_body(client):
    """Marketing may read reports in every store; closing (freezing) a day is finance's and managers'."""
    shop = await make_shop(client)
    yesterday = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    marketing = await shop.kit.staff(["marketing"], [])
    assert (await report(shop, yesterday, marketing["token"])).status_code == 200
    body = {"store_id": shop.store, "date": yesterday.isoformat()}
    assert_problem(await shop.kit.post("/reports/daily-close", body, marketing["token"]), 403, "permission_denied")
    # Refused before the body is looked at: a malformed body from marketing is still a 403, not a 422.
    assert_problem(await shop.kit.post("/reports/daily-close", {"store_id": "nope"}, marketing["token"]),
                   403, "permission_denied")
    closed = (await shop.kit.get("/reports/daily-close", params={"store_id": shop.store,
                                                                 "date": yesterday.isoformat()})).json()
    assert closed["closed"] is False  # nothing was closed by the refused attempts
    finance = await shop.kit.staff(["finance"], [])
    done = await shop.kit.post("/reports/daily-close", body, finance["token"])
    assert done.status_code == 201 and done.json()["closed"] is True, done.text
    manager = await shop.kit.staff(["store_manager"], [shop.store])
    day_before = {**body, "date": (yesterday - timedelta(days=1)).isoformat()}
    assert (await shop.kit.post("/reports/daily-close", day_before, manager["token"])).status_code == 201


async def test_daily_close_export_works_for_a_store_named_with_control_characters(client):
    """A store named before names were checked may hold characters .xlsx cannot: they are left out, not a 500."""
    kit = await new_tenant(client)
    store = await kit.store()
    await owner_sql("UPDATE stores SET name = :n WHERE id = :id", n="静安\u001d店\u0007", id=UUID(store))
    today = datetime.now(SHANGHAI).date()
    r = await kit.get("/reports/daily-close.xlsx", params={"store_id": store, "date": today.isoformat()})
    assert r.status_code == 200, r.text
    summary = dict(load_workbook(io.BytesIO(r.content))["日结汇总"].iter_rows(values_only=True))
    assert summary["门店"] == "静安店"
