"""Normalising what people type: phone numbers, ID numbers, names (pinyin keys) — and masking them."""

from __future__ import annotations

import re
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
