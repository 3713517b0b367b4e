"""Receipts (小票) of an order: the figures as a schema, and a printable page for 58/80 mm thermal printers."""

from __future__ import annotations

import html
from datetime import datetime
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.checkout import orders
from app.domain.checkout.orders import STATUS_LABELS, yuan
from app.domain.checkout.schemas import Receipt, ReceiptLine, ReceiptTender
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy

TENDER_LABELS = {"cash": "现金", "stored_value": "储值卡", "points": "积分抵扣", "coupon": "优惠券",
                 "wechat_pay": "微信支付"}
LINE_LABELS = {"service": "服务", "product": "商品", "card": "售卡", "top_up": "充值"}


async def receipt(session: AsyncSession, actor: Actor, order_id: UUID) -> Receipt:
    order = await orders.get_order(session, actor, order_id)
    store = await tenancy.store_row(session, order.tenant_id, order.store_id)
    member = await members.get_member_row(session, Actor.system(order.tenant_id), order.member_id)
    zone = tenancy.store_zone(store)
    lines = await orders.order_lines(session, order.tenant_id, order.id)
    payments = [p for p in await orders.order_payments(session, order.tenant_id, order.id)
                if p.status in ("succeeded", "pending")]

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else None

    tenders = []
    for p in payments:
        detail = None
        if p.method == "stored_value":
            detail = f"本金 {yuan(p.principal_used)} 赠送 {yuan(p.bonus_used)}"
        elif p.method == "points":
            detail = f"{p.points} 积分"
        elif p.method == "cash" and p.cash_received is not None:
            detail = f"实收 {yuan(p.cash_received)} 找零 {yuan(p.change_given or 0)}"
        elif p.method == "wechat_pay" and p.status == "pending":
            detail = "待支付"
        tenders.append(ReceiptTender(method=p.method, label=TENDER_LABELS[p.method], amount=p.amount, detail=detail))
    return Receipt(
        order_id=order.id, order_no=order.order_no, status=order.status, store_name=store.name if store else "",
        store_address=store.address if store else None, member_name=member.name, member_phone=member.phone_masked,
        opened_at=local(order.created_at) or "", paid_at=local(order.paid_at),
        lines=[ReceiptLine(name=line.name, type=line.type, quantity=line.quantity, unit_price=line.unit_price,
                           list_amount=line.list_amount,
                           discount=line.line_discount + line.tier_discount + line.order_discount_share,
                           amount=line.amount, settled_by_card=line.settled_by_card,
                           note="次卡抵扣" if line.settled_by_card else (
                               f"赠送 {yuan(line.top_up_bonus)}" if line.type == "top_up" and line.top_up_bonus
                               else None)) for line in lines],
        subtotal=order.subtotal, discount_total=order.discount_total, total=order.total, tenders=tenders,
        change_given=sum(p.change_given or 0 for p in payments),
        points_earned=await orders.points_earned(session, order))


def receipt_html(r: Receipt) -> str:
    """A printable receipt (58/80 mm thermal printers print this page as is); every value is escaped."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(line.name)}<br><small>{e(LINE_LABELS.get(line.type, line.type))}"
        f"{' · ' + e(line.note) if line.note else ''}</small></td><td class=n>{line.quantity}</td>"
        f"<td class=n>{e(yuan(line.unit_price))}</td><td class=n>{e(yuan(line.amount))}</td></tr>"
        for line in r.lines)
    tenders = "".join(
        f"<tr><td>{e(t.label)}{'<br><small>' + e(t.detail) + '</small>' if t.detail else ''}</td>"
        f"<td class=n colspan=3>{e(yuan(t.amount))}</td></tr>" for t in r.tenders)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>小票 {e(r.order_no)}</title>
<style>body{{font-family:"PingFang SC","Microsoft YaHei",sans-serif;width:72mm;margin:0 auto;font-size:12px}}
h1{{font-size:16px;text-align:center;margin:4px 0}}table{{width:100%;border-collapse:collapse}}
td,th{{padding:2px 0;vertical-align:top}}.n{{text-align:right;white-space:nowrap}}
hr{{border:0;border-top:1px dashed #000}}small{{color:#555}}@media print{{button{{display:none}}}}</style>
</head><body>
<h1>{e(r.store_name)}</h1>
{f'<p>地址：{e(r.store_address)}</p>' if r.store_address else ''}
<p>单号：{e(r.order_no)}<br>状态：{e(STATUS_LABELS.get(r.status, r.status))}<br>开单时间：{e(r.opened_at)}
{f'<br>支付时间：{e(r.paid_at)}' if r.paid_at else ''}<br>会员：{e(r.member_name)}
{f' {e(r.member_phone)}' if r.member_phone else ''}</p>
<hr><table><tr><th align=left>项目</th><th class=n>数量</th><th class=n>单价</th><th class=n>金额</th></tr>
{rows}</table><hr>
<table><tr><td>合计</td><td class=n colspan=3>{e(yuan(r.subtotal))}</td></tr>
<tr><td>优惠</td><td class=n colspan=3>-{e(yuan(r.discount_total))}</td></tr>
<tr><td><b>应收</b></td><td class=n colspan=3><b>{e(yuan(r.total))}</b></td></tr></table><hr>
<table><tr><th align=left colspan=4>支付方式</th></tr>{tenders}
{f'<tr><td>找零</td><td class=n colspan=3>{e(yuan(r.change_given))}</td></tr>' if r.change_given else ''}
{f'<tr><td>本单积分</td><td class=n colspan=3>+{r.points_earned}</td></tr>' if r.points_earned else ''}
</table><hr><p style="text-align:center">谢谢惠顾，祝您健康！</p>
<button onclick="window.print()">打印</button>
</body></html>
"""
