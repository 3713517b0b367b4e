"""How a receiver knows a POST came from us: HMAC-SHA256 over the timestamp and the exact body.

    X-CareLoop-Timestamp: 1732780800
    X-CareLoop-Signature: sha256=<hex HMAC-SHA256(secret, "1732780800" + "." + raw body)>

Receivers recompute the HMAC over the raw bytes they received (not a re-serialised JSON), compare in
constant time, and refuse timestamps more than a few minutes old (replays).
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), header)
