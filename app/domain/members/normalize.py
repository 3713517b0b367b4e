"""Normalising what people type: phone numbers, ID numbers, names (pinyin keys) — and masking them."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from pypinyin import Style, lazy_pinyin

_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalize_phone(raw: str) -> str | None:
    """A mainland mobile as 11 digits ("+86 138-1234-5678" → "13812345678"), other numbers as E.164;
    None when it is not a phone number."""
    value = _SEPARATORS.sub("", raw or "")
    if value.startswith("0086"):
        value = "+86" + value[4:]
    if value.startswith("+86"):
        value = value[3:]
    if _CN_MOBILE.match(value):
        return value
    if _E164.match(value):
        return value
    return None


# A second contact number (a landline, a 400 hotline): kept as written apart from its separators.
_EXTENSION = re.compile(r"(?:转|分机|ext\.?|x|#)\s*(\d{1,6})$", re.IGNORECASE)
_TRAILING_GROUP = re.compile(r"[-\s](\d{1,5})$")
_AREA_NUMBER = re.compile(r"^0\d{9,11}$")  # area code (010, 021, 0571, …) and the local number
_LOCAL_NUMBER = re.compile(r"^[2-9]\d{6,7}$")  # a local number written without its area code
_SERVICE_NUMBER = re.compile(r"^[48]00\d{7}$")  # 400 / 800 numbers


def _landline(value: str) -> str | None:
    digits = _SEPARATORS.sub("", value)
    if digits.startswith("0086"):
        digits = "+86" + digits[4:]
    if digits.startswith("+86"):
        digits = "0" + digits[3:].lstrip("0")  # +86 21 6438 1234 is dialled 021 6438 1234 at home
    elif digits.startswith("+"):
        return digits if _E164.match(digits) else None
    if _AREA_NUMBER.match(digits):
        # Beijing (010) and the 02x cities have three-digit area codes; every other area code has four.
        split = 3 if digits[1] in "12" else 4
        return f"{digits[:split]}-{digits[split:]}"
    if _LOCAL_NUMBER.match(digits) or _SERVICE_NUMBER.match(digits):
        return digits
    return None


def normalize_other_phone(raw: str) -> str | None:
    """A number that is not a mainland mobile, kept as a second contact: "(021) 6438 1234 转 802" →
    "021-64381234-802", "64381234", "4008201234", or +country numbers; None when it is no phone number
    (a mobile with a digit missing is not taken for a landline)."""
    value = unicodedata.normalize("NFKC", raw or "").strip()  # （０２１）６４３８ typed on a Chinese keyboard
    extension = None
    if match := _EXTENSION.search(value):
        extension, value = match.group(1), value[:match.start()].strip()
    number = _landline(value)
    if number is None and extension is None and (match := _TRAILING_GROUP.search(value)):
        # "021-64381234-802": the last group is an extension when the rest is a whole number.
        number, extension = _landline(value[:match.start()]), match.group(1)
    if number is None:
        return None
    return f"{number}-{extension}" if extension else number


def contact_key(normalized_other: str) -> str:
    """What identifies a second contact number for exact lookup: its digits without the extension."""
    number = normalized_other.split("-")
    main = "".join(number[:2]) if len(number) > 1 and number[0].startswith("0") else number[0]
    return main


def mask_phone(normalized: str) -> str:
    if len(normalized) >= 11 and normalized.isdigit():
        return normalized[:3] + "****" + normalized[-4:]
    return normalized[:4] + "*" * max(len(normalized) - 6, 2) + normalized[-2:]


def normalize_id_number(raw: str) -> str | None:
    """An 18-character resident ID with a valid birth date and check digit, upper-cased; else None."""
    value = (raw or "").strip().upper()
    if not re.match(r"^\d{17}[\dX]$", value):
        return None
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None
    checksum = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True)) % 11
    return value if _ID_CHECK[checksum] == value[17] else None


def mask_id_number(normalized: str) -> str:
    return normalized[:4] + "*" * (len(normalized) - 8) + normalized[-4:]


def pinyin_keys(name: str) -> tuple[str, str]:
    """(initials, full) in lower case: 张三 → ("zs", "zhangsan"); Latin letters pass through."""
    syllables = [s.lower() for s in lazy_pinyin(name, errors=lambda chars: list(chars)) if s.strip()]
    initials = [s for s in lazy_pinyin(name, style=Style.FIRST_LETTER, errors=lambda chars: list(chars)) if s.strip()]
    clean = re.compile(r"[^a-z0-9]")
    return clean.sub("", "".join(initials).lower()), clean.sub("", "".join(syllables))
