"""The daily close (日结) of one store: what came in and went out that store-local day, from the ledgers.

Every figure is a sum over ledger rows of the day [00:00, next 00:00) in the store's time zone (an order
paid at 23:30 Shanghai time belongs to that Shanghai day), so the report equals the ledgers by
construction and can be recomputed at any time:

- *tenders*: succeeded `payments` by `succeeded_at`, per method; *refunded*: succeeded
  `refund_allocations` by their `succeeded_at` (a WeChat refund counts on the day WeChat confirmed it,
  cash on the day it left the drawer), per method; net = received − refunded;
- *cash*: received (`cash_received`, or the amount when none was recorded) − change given − cash refunded
  = what the drawer should hold from the day's business;
- *orders*: orders paid that day; refunds completed that day;
- *deferred revenue* (预收款): card sales (card lines of orders paid that day) and top-ups are money taken
  for services not yet given; card consumption releases it: the unit value of every session deducted that
  day (`card_ledger` deductions × the item's `unit_value`, net of reversals) plus the principal charged to
  stored-value cards (net of reversals and tender refunds; bonus is reported apart: it was never paid for);
  refunds of card and top-up lines release it too (sessions written off × unit value, principal taken
  out of the card). movement = in − consumed − refunded. (The card ledger is cards' to read:
  `cards.card_consumption`.)

`POST` closes the day: the figures are frozen in a `daily_closes` row (unique per store and day; a second
close is 409 `day_closed`) and later reads return that snapshot, so a report handed to finance does not
change under them when a late WeChat notification lands.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Unprocessable
from app.domain.cards import service as cards
from app.domain.checkout.models import TENDERS, DailyClose
from app.domain.checkout.refund_schemas import DailyCloseOut, TenderFigures
from app.domain.members.spreadsheets import Sheet, build_workbook
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

PERMISSION = "reports:read"
# Closing freezes a day's figures: finance and managers, not everyone who may read reports (marketing may).
CLOSE_PERMISSION = "reports:close"
TENDER_NAMES = {"cash": "现金", "stored_value": "储值卡", "points": "积分", "coupon": "优惠券",
                "wechat_pay": "微信支付"}

_PAYMENTS = text("""
    SELECT method, COALESCE(sum(amount), 0) AS received, count(*) AS payments,
           COALESCE(sum(CASE WHEN method = 'cash' THEN COALESCE(cash_received, amount) END), 0) AS cash_received,
           COALESCE(sum(CASE WHEN method = 'cash' THEN COALESCE(change_given, 0) END), 0) AS change_given
      FROM payments
     WHERE tenant_id = :t AND store_id = :s AND status = 'succeeded' AND succeeded_at >= :a AND succeeded_at < :b
     GROUP BY method
""")
_REFUNDED = text("""
    SELECT a.method, COALESCE(sum(a.amount), 0) AS refunded
      FROM refund_allocations a JOIN refunds r ON r.tenant_id = a.tenant_id AND r.id = a.refund_id
     WHERE a.tenant_id = :t AND r.store_id = :s AND a.status = 'succeeded'
       AND a.succeeded_at >= :a AND a.succeeded_at < :b
     GROUP BY a.method
""")
_ORDERS = text("""
    SELECT (SELECT count(*) FROM orders WHERE tenant_id = :t AND store_id = :s AND paid_at >= :a AND paid_at < :b)
               AS paid,
           (SELECT count(*) FROM refunds WHERE tenant_id = :t AND store_id = :s AND status = 'completed'
               AND completed_at >= :a AND completed_at < :b) AS refunds_completed
""")
_CARD_SALES = text("""
    SELECT COALESCE(sum(l.amount) FILTER (WHERE l.type = 'card'), 0) AS card_sales,
           COALESCE(sum(l.amount) FILTER (WHERE l.type = 'top_up'), 0) AS top_up_sales
      FROM order_lines l JOIN orders o ON o.tenant_id = l.tenant_id AND o.id = l.order_id
     WHERE l.tenant_id = :t AND o.store_id = :s AND o.paid_at >= :a AND o.paid_at < :b
""")


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    return (datetime.combine(day, time.min, zone), datetime.combine(day + timedelta(days=1), time.min, zone))


async def _store(session: AsyncSession, actor: Actor, store_id: UUID, permission: str = PERMISSION) -> Store:
    actor.require(permission)
    return await tenancy.scoped_store(session, actor, store_id)


async def compute(session: AsyncSession, actor: Actor, store: Store, day: date) -> DailyCloseOut:
    starts, ends = day_bounds(day, store.timezone)
    params = {"t": actor.tenant_id, "s": store.id, "a": starts, "b": ends}
    paid = {r.method: r for r in (await session.execute(_PAYMENTS, params)).all()}
    refunded = {r.method: r.refunded for r in (await session.execute(_REFUNDED, params)).all()}
    orders = (await session.execute(_ORDERS, params)).one()
    sales = (await session.execute(_CARD_SALES, params)).one()
    used = await cards.card_consumption(session, actor.tenant_id, store.id, starts, ends)
    tenders = []
    for method in TENDERS:
        received = paid[method].received if method in paid else 0
        count = paid[method].payments if method in paid else 0
        back = refunded.get(method, 0)
        tenders.append(TenderFigures(method=method, received=received, payments=count, refunded=back,
                                     net=received - back))
    cash = paid.get("cash")
    cash_received = cash.cash_received if cash else 0
    change = cash.change_given if cash else 0
    deferred_in = sales.card_sales + sales.top_up_sales
    consumed = used.sessions_value + used.principal_charged
    return DailyCloseOut(
        store_id=store.id, date=day, timezone=store.timezone, starts_at=starts, ends_at=ends, tenders=tenders,
        received_total=sum(t.received for t in tenders), refunded_total=sum(t.refunded for t in tenders),
        net_total=sum(t.net for t in tenders),
        cash={"received": cash_received, "change": change, "refunded": refunded.get("cash", 0),
              "expected_in_drawer": cash_received - change - refunded.get("cash", 0)},
        orders={"paid": orders.paid, "refunds_completed": orders.refunds_completed},
        deferred_revenue={"card_sales": sales.card_sales, "top_up_sales": sales.top_up_sales,
                          "sessions_consumed": used.sessions, "sessions_value": used.sessions_value,
                          "stored_value_principal_charged": used.principal_charged,
                          "stored_value_bonus_charged": used.bonus_charged, "card_refunds": used.card_refunds,
                          "movement": deferred_in - consumed - used.card_refunds},
        closed=False)


async def _closed(session: AsyncSession, actor: Actor, store_id: UUID, day: date) -> DailyClose | None:
    return (await session.exec(select(DailyClose).where(DailyClose.tenant_id == actor.tenant_id,
                                                        DailyClose.store_id == store_id,
                                                        DailyClose.day == day))).first()


def _snapshot(row: DailyClose) -> DailyCloseOut:
    return DailyCloseOut.model_validate({**row.figures, "closed": True, "closed_at": row.closed_at,
                                         "closed_by_id": row.closed_by_id})


async def report(session: AsyncSession, actor: Actor, store_id: UUID, day: date) -> DailyCloseOut:
    """The day's figures: the frozen snapshot once the day is closed, else computed now."""
    store = await _store(session, actor, store_id)
    row = await _closed(session, actor, store.id, day)
    return _snapshot(row) if row is not None else await compute(session, actor, store, day)


async def close_day(session: AsyncSession, actor: Actor, store_id: UUID, day: date) -> DailyCloseOut:
    store = await _store(session, actor, store_id, CLOSE_PERMISSION)
    today = tenancy.store_today(store)
    if day > today:
        raise Unprocessable(f"date: {day} has not begun in {store.timezone}", code="validation_error", field="date")
    if await _closed(session, actor, store.id, day) is not None:
        raise Conflict(f"{day} is closed already", code="day_closed")
    figures = await compute(session, actor, store, day)
    row = DailyClose(tenant_id=actor.tenant_id, store_id=store.id, day=day,
                     figures=figures.model_dump(mode="json", exclude={"closed", "closed_at", "closed_by_id"}),
                     closed_by_id=actor.id if actor.kind == "staff" else None, closed_at=utcnow())
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent close of the same day committed first
        raise Conflict(f"{day} is closed already", code="day_closed") from exc
    audit.record(session, "daily_close.close", "daily_close", row.id, store=str(store.id), day=day.isoformat(),
                 net_total=figures.net_total, cash_expected=figures.cash["expected_in_drawer"])
    return _snapshot(row)


def _yuan(fen: int) -> Decimal:
    return Decimal(fen) / 100  # exact: a Decimal, never a float


def workbook(figures: DailyCloseOut, store_name: str) -> bytes:
    """The day as an .xlsx with Chinese headers (amounts in yuan, two decimals)."""
    summary: list[list[Any]] = [
        ["门店", store_name], ["日期", figures.date.isoformat()], ["时区", figures.timezone],
        ["状态", "已日结" if figures.closed else "未日结"],
        ["收款合计(元)", _yuan(figures.received_total)], ["退款合计(元)", _yuan(figures.refunded_total)],
        ["净收款(元)", _yuan(figures.net_total)],
        ["现金收款(元)", _yuan(figures.cash["received"])], ["找零(元)", _yuan(figures.cash["change"])],
        ["现金退款(元)", _yuan(figures.cash["refunded"])],
        ["钱箱应有现金(元)", _yuan(figures.cash["expected_in_drawer"])],
        ["付款订单数", figures.orders["paid"]], ["完成退款数", figures.orders["refunds_completed"]],
    ]
    deferred = figures.deferred_revenue
    deferred_rows: list[list[Any]] = [
        ["售卡金额(元)", _yuan(deferred["card_sales"])], ["充值金额(元)", _yuan(deferred["top_up_sales"])],
        ["耗卡次数", deferred["sessions_consumed"]], ["耗卡金额(元)", _yuan(deferred["sessions_value"])],
        ["储值消费本金(元)", _yuan(deferred["stored_value_principal_charged"])],
        ["储值消费赠送金(元)", _yuan(deferred["stored_value_bonus_charged"])],
        ["卡项退款(元)", _yuan(deferred["card_refunds"])], ["预收款净变动(元)", _yuan(deferred["movement"])],
    ]
    return build_workbook([
        Sheet("日结汇总", ["项目", "数值"], summary, column_width=20),
        Sheet("支付方式", ["支付方式", "收款笔数", "收款金额(元)", "退款金额(元)", "净额(元)"],
              [[TENDER_NAMES[t.method], t.payments, _yuan(t.received), _yuan(t.refunded), _yuan(t.net)]
               for t in figures.tenders]),
        Sheet("预收款", ["项目", "数值"], deferred_rows, column_width=20),
    ])


async def export(session: AsyncSession, actor: Actor, store_id: UUID, day: date) -> tuple[bytes, str]:
    figures = await report(session, actor, store_id, day)
    store = await tenancy.store_row(session, actor.tenant_id, store_id)
    audit.record(session, "daily_close.export", "store", store_id, day=day.isoformat())
    return workbook(figures, store.name), f"daily-close-{day:%Y%m%d}.xlsx"
