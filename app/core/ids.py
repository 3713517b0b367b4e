"""Identifiers: time-ordered UUIDs (version 7), so new rows append to indexes and sort by creation.

Within one process they strictly increase: the 12 bits after the millisecond carry its fraction (RFC 9562,
method 3), and an id made in the same tick as the previous one (or after the clock stepped back) is the
previous one plus one. Two events a request emits within a millisecond then sort in the order they were
made, as readers ordering by id expect.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_last = 0
_lock = threading.Lock()


def new_id() -> uuid.UUID:
    global _last
    ns = time.time_ns()
    ms = ns // 1_000_000
    fraction = (ns % 1_000_000) * 4096 // 1_000_000  # rand_a: 12 bits of sub-millisecond time
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= fraction << 64
    value |= 0b10 << 62  # RFC 4122 variant
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)  # rand_b
    with _lock:
        if value <= _last:
            value = _last + 1  # carries into the variant bits only after 2^62 ids in one tick
        _last = value
    return uuid.UUID(int=value)
