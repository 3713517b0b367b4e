"""Pricing an order in integer fen, with one rounding rule.

For each line, in this order:

1. `list_amount = unit_price * quantity` (a line settled with card sessions lists 0: the card paid for it
   when it was sold, and the receipt still shows the unit price).
2. `line_discount`: fen off the line, as asked (never more than the list amount).
3. Member-tier discount: `tier_discount = floor((list_amount - line_discount) * percent_off / 100)`.
   Percent discounts floor to the fen **per line**: the discount never exceeds the stated percent, and
   a line's discount does not depend on the other lines.
4. Order discount: split over the lines in proportion to what each still costs after steps 2–3, by the
   largest-remainder method (each line gets the floor of its exact share; the fen left over go one each
   to the lines with the largest fractional parts, ties to the larger line, then the earlier one). So the
   shares sum exactly to the order discount and the line amounts sum exactly to the order total.

`amount = list_amount - line_discount - tier_discount - order_discount_share`, never negative
(the database checks the same identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PricingError(ValueError):
    """A discount the lines cannot carry; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LineInput:
    unit_price: int
    quantity: int
    line_discount: int = 0
    tier_percent: int = 0  # 0: no member-tier discount on this line
    settled_by_card: bool = False


@dataclass(frozen=True)
class PricedLine:
    list_amount: int
    line_discount: int
    tier_discount: int
    order_discount_share: int
    amount: int


@dataclass(frozen=True)
class PricedOrder:
    lines: list[PricedLine]
    subtotal: int
    discount_total: int
    total: int


def percent_discount(amount: int, percent: int) -> int:
    """The discount of `percent` % on `amount` fen, floored to the fen (9折 on 19999 fen takes 1999 off)."""
    return amount * percent // 100


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` fen over `weights` by the largest-remainder method; the parts sum to `total`.

    A weight of 0 gets nothing (unless every weight is 0, when nothing can be split)."""
    whole = sum(weights)
    if total == 0 or whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), -weights[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def price_order(lines: Sequence[LineInput], order_discount: int = 0) -> PricedOrder:
    after_tier: list[int] = []
    partial: list[tuple[int, int, int]] = []
    for index, line in enumerate(lines):
        list_amount = 0 if line.settled_by_card else line.unit_price * line.quantity
        if line.settled_by_card and line.line_discount:
            raise PricingError(f"lines.{index}.line_discount", "a line settled with a card costs nothing to discount")
        if line.line_discount > list_amount:
            raise PricingError(f"lines.{index}.line_discount",
                               f"the discount ({line.line_discount} fen) exceeds the line ({list_amount} fen)")
        remaining = list_amount - line.line_discount
        tier = percent_discount(remaining, line.tier_percent) if line.tier_percent else 0
        partial.append((list_amount, line.line_discount, tier))
        after_tier.append(remaining - tier)
    if order_discount > sum(after_tier):
        raise PricingError("order_discount",
                           f"the order discount ({order_discount} fen) exceeds what the lines cost "
                           f"({sum(after_tier)} fen)")
    shares = allocate(order_discount, after_tier)
    priced = [PricedLine(list_amount=la, line_discount=ld, tier_discount=td, order_discount_share=share,
                         amount=rest - share)
              for (la, ld, td), rest, share in zip(partial, after_tier, shares, strict=True)]
    subtotal = sum(p.list_amount for p in priced)
    total = sum(p.amount for p in priced)
    return PricedOrder(lines=priced, subtotal=subtotal, discount_total=subtotal - total, total=total)


def top_up_bonus(amount: int, face_value: int, bonus: int) -> int:
    """充1000送200: each full face value topped up earns the template's bonus (2500 → 400; 500 → 0)."""
    if face_value <= 0 or bonus <= 0:
        return 0
    return amount // face_value * bonus


def points_earn_basis(*, cash: int, wechat: int, stored_value_principal: int, top_up_lines: int) -> int:
    """The fen that earn points: money that actually came in (cash, WeChat Pay) or was spent from a card's
    principal. Bonus value, points and coupons earn nothing; and money paid for top-ups earns nothing
    when paid (it earns when the principal is spent), so the same yuan never earns twice."""
    return max(0, cash + wechat + stored_value_principal - top_up_lines)
