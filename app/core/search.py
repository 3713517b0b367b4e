"""Query helpers that stay index-friendly under row-level security.

PostgreSQL applies an RLS policy before any non-leakproof condition, and `LIKE` (textlike) is not
leakproof, so `name LIKE '张%'` cannot use an index on a table with RLS and falls back to a scan.
The pattern comparison operators `~>=~` / `~<~` are leakproof and served by `text_pattern_ops`
indexes, so a prefix becomes a range: `name ~>=~ '张' AND name ~<~ '弡'` (the next code point).
"""

from __future__ import annotations

from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement


def prefix_range(column, prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, as an index range (byte order equals code point order in UTF-8)."""
    if not prefix:
        return column.is_not(None)
    last = prefix[-1]
    if ord(last) >= 0x10FFFF:  # no next code point: fall back to an open upper bound
        return column.op("~>=~")(prefix)
    upper = prefix[:-1] + chr(ord(last) + 1)
    return and_(column.op("~>=~")(prefix), column.op("~<~")(upper))
