"""WeChat subscribe-message keyword values (订阅消息参数值内容限制): what each keyword type accepts.

A subscribe template's keywords are typed by their name (`thing1`, `time2`, `character_string3`, …), and WeChat
refuses a message whose value breaks its type's rule (errcode 47003), so a value is checked before it is sent:

    thing             ≤ 20 characters, anything                 longer values are shortened with "…"
    number            ≤ 32 digits, may have decimals
    letter            ≤ 32 letters
    symbol            ≤ 5 symbols
    character_string  ≤ 32 digits, letters or symbols
    time              24-hour time, optionally with a date (15:01, 2019年10月1日 15:01); a range joins two with ~
    date              a date (2019年10月1日, 2019-10-01), optionally with a time; a range joins two with ~
    amount            one currency sign (optional) + at most 10 digits, may have decimals, may end in 元
    phone_number      ≤ 17 digits and symbols (+86-0766-66888866)
    car_number        ≤ 8; first and last may be Chinese characters, the rest letters or digits (粤A8Z888挂)
    name              ≤ 10 Chinese characters (mixed with letters counts as Chinese), or ≤ 20 letters/symbols
    phrase            ≤ 5 Chinese characters only
    enum              one of the template's enumerated values (WeChat's list; not checked here)

Only `thing` may be shortened: cutting a number, code, plate or phrase changes what it says, and "…" is not
an allowed character there, so such a value is refused (`KeywordValueError`): the message is not sent, and
says why. `check_mapping` refuses, when a template is saved, a keyword text that no variable value could make
valid (fixed text of the wrong kind, or too long already).
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ELLIPSIS = "…"

# The most characters of each type WeChat accepts (None: a format, not a length).
LIMITS: dict[str, int | None] = {
    "thing": 20, "number": 32, "letter": 32, "symbol": 5, "character_string": 32, "time": None, "date": None,
    "amount": None, "phone_number": 17, "car_number": 8, "name": 20, "phrase": 5, "enum": None,
}
KINDS = tuple(LIMITS)

_DATE = r"(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2})"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
_TIME_POINT = rf"(?:{_DATE}\s?)?{_CLOCK}"
_DATE_POINT = rf"{_DATE}(?:\s?{_CLOCK})?"
_TIME = re.compile(rf"{_TIME_POINT}(?:\s?~\s?{_TIME_POINT})?")
_DATE_RE = re.compile(rf"{_DATE_POINT}(?:\s?~\s?{_DATE_POINT})?")
_CURRENCY = "¥￥$€£"
_AMOUNT = re.compile(rf"[{_CURRENCY}]?(\d+)(?:\.(\d+))?元?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# What fixed text may surround a variable in each format type.
_FORMAT_CHARS = {"time": set("0123456789年月日:-/ ~"), "date": set("0123456789年月日:-/ ~"),
                 "amount": set("0123456789.元" + _CURRENCY)}


class KeywordValueError(ValueError):
    """A keyword value (or mapping) WeChat would refuse; `keyword` names it."""

    def __init__(self, keyword: str, message: str) -> None:
        super().__init__(f"{keyword}: {message}")
        self.keyword, self.message = keyword, message


def kind_of(keyword: str) -> str:
    return keyword.rstrip("0123456789")


def _is_han(c: str) -> bool:
    o = ord(c)
    return 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x323AF


def _is_latin(c: str) -> bool:
    return c.isascii() and c.isalpha()


def _is_digit(c: str) -> bool:
    return c in "0123456789"


def _is_symbol(c: str) -> bool:
    return not c.isalnum() and not c.isspace() and c.isprintable()


def _chars_allowed(kind: str, c: str) -> bool:
    """May this character appear in a value of this kind (anywhere)?"""
    if kind == "number":
        return _is_digit(c) or c == "."
    if kind == "letter":
        return _is_latin(c)
    if kind == "symbol":
        return _is_symbol(c)
    if kind == "character_string":
        return _is_digit(c) or _is_latin(c) or _is_symbol(c)
    if kind == "phone_number":
        return _is_digit(c) or _is_symbol(c)
    if kind == "car_number":
        return _is_han(c) or _is_latin(c) or _is_digit(c)
    if kind == "name":
        return _is_han(c) or _is_latin(c) or _is_symbol(c) or c == " "
    if kind == "phrase":
        return _is_han(c)
    if kind in _FORMAT_CHARS:
        return c in _FORMAT_CHARS[kind]
    return True  # thing, enum


_DESCRIBED = {
    "number": "digits only (decimals allowed)", "letter": "letters only", "symbol": "symbols only",
    "character_string": "digits, letters and symbols only", "phone_number": "digits and symbols only",
    "car_number": "Chinese characters, letters and digits only", "name": "Chinese characters, letters and symbols",
    "phrase": "Chinese characters only", "time": "a 24-hour time such as 15:01 or 2019年10月1日 15:01",
    "date": "a date such as 2019年10月1日 or 2019-10-01", "amount": "an amount such as ¥128.00 or 128元",
}


def _check(keyword: str, kind: str, value: str) -> None:
    if not value.strip():
        raise KeywordValueError(keyword, "WeChat refuses an empty value")
    bad = next((c for c in value if not _chars_allowed(kind, c)), None)
    if bad is not None:
        raise KeywordValueError(keyword, f"{kind} takes {_DESCRIBED[kind]}; {bad!r} is not allowed "
                                         f"(in {value!r})")
    limit = LIMITS[kind]
    if kind == "name":
        limit = 10 if any(_is_han(c) for c in value) else 20
    if limit is not None and len(value) > limit:
        raise KeywordValueError(keyword, f"{kind} takes at most {limit} characters; {value!r} has {len(value)} "
                                         "(cutting it would change what it says)")
    if kind == "number" and not _NUMBER.fullmatch(value):
        raise KeywordValueError(keyword, f"number takes {_DESCRIBED['number']}, not {value!r}")
    if kind == "time" and not _TIME.fullmatch(value):
        raise KeywordValueError(keyword, f"time takes {_DESCRIBED['time']}, not {value!r}")
    if kind == "date" and not _DATE_RE.fullmatch(value):
        raise KeywordValueError(keyword, f"date takes {_DESCRIBED['date']}, not {value!r}")
    if kind == "amount":
        match = _AMOUNT.fullmatch(value)
        if not match or len(match.group(1)) + len(match.group(2) or "") > 10:
            raise KeywordValueError(keyword, f"amount takes one currency sign and at most 10 digits (decimals "
                                             f"allowed, 元 at the end), not {value!r}")
    if kind == "car_number" and any(_is_han(c) for c in value[1:-1]):
        raise KeywordValueError(keyword, f"car_number may have Chinese characters only first and last, "
                                         f"not {value!r}")


def value_for(keyword: str, value: str) -> str:
    """The value to send for `keyword`: as it is when WeChat accepts it, a `thing` over 20 characters
    shortened with "…"; KeywordValueError when it cannot be sent (a keyword of no known type is sent as is:
    `check_mapping` refused those when the template was saved)."""
    kind = kind_of(keyword)
    if kind not in LIMITS or kind == "enum":
        return value
    if kind == "thing":
        if not value.strip():
            raise KeywordValueError(keyword, "WeChat refuses an empty value")
        return value if len(value) <= 20 else value[:19] + ELLIPSIS
    _check(keyword, kind, value)
    return value


def check_mapping(keyword: str, text: str) -> None:
    """Refuse a keyword's template text that no variable value could make sendable: an unknown keyword type,
    fixed text of the wrong kind, or fixed text that is already too long."""
    kind = kind_of(keyword)
    if kind not in LIMITS:
        raise KeywordValueError(keyword, f"{kind!r} is not a WeChat subscribe keyword type (the template's "
                                         f"keywords are {', '.join(KINDS)} followed by a number)")
    variables = PLACEHOLDER.findall(text)
    if not variables:
        if kind == "thing" and len(text) > 20:
            raise KeywordValueError(keyword, f"thing takes at most 20 characters; the fixed text has {len(text)}")
        value_for(keyword, text)
        return
    if kind in ("thing", "enum"):
        return
    fixed = PLACEHOLDER.sub("", text)
    bad = next((c for c in fixed if not _chars_allowed(kind, c)), None)
    if bad is not None:
        raise KeywordValueError(keyword, f"{kind} takes {_DESCRIBED[kind]}; the fixed text {fixed!r} has {bad!r}")
    limit = LIMITS[kind]
    if kind == "name" and any(_is_han(c) for c in fixed):
        limit = 10
    if limit is not None and len(fixed) + len(variables) > limit:
        raise KeywordValueError(keyword, f"{kind} takes at most {limit} characters; the fixed text and "
                                         f"{len(variables)} variable(s) need more")
