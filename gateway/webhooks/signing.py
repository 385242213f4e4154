"""Webhook signatures: `Gateway-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.

The receiver's recipe (what `verify` does):

1. Read the raw request body as bytes, before any JSON parsing.
2. Split the `Gateway-Signature` header on ``,`` into ``key=value`` pairs; take
   ``t`` and every ``v1`` (there may be several while a secret is rotated).
3. Refuse if ``t`` is more than 5 minutes away from your clock (replays).
4. Compute ``HMAC-SHA256(key=<the webhook secret as UTF-8>, msg=b"<t>." + body)``
   as lower-case hex and compare it with each ``v1`` in constant time
   (``hmac.compare_digest``); accept if one matches.
5. Deduplicate on the ``Gateway-Event-Id`` header (or the body's ``id``):
   delivery is at least once, so the same event may arrive twice.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Gateway-Signature"
DEFAULT_TOLERANCE = 300


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Gateway-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def verify(secret: str, header: str | None, body: bytes, tolerance: int = DEFAULT_TOLERANCE,
           now: float | None = None) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within `tolerance` seconds of `now`."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, body, timestamp)
    matched = False
    for candidate in candidates:  # every candidate is compared, each in constant time
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched
