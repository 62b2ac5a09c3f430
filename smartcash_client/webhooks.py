"""Checking a SmartCash webhook on the receiving side (standard library only).

    body = request.body()                     # the raw bytes, before any JSON parsing
    if not verify_signature(secret, request.headers, body):
        return 401
    payload = json.loads(body)                # {"event", "job", "metrics", "links"}

The signature is ``sha256=`` + hex HMAC-SHA256 over ``<X-SmartCash-Timestamp>.<raw body>`` with the
secret the service was given (``SMARTCASH_WEBHOOK_SECRET``). Deliveries are at least once: deduplicate
on ``X-SmartCash-Delivery`` (the job id).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

DEFAULT_TOLERANCE_S = 300.0


def verify_signature(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``body`` was signed with ``secret`` no more than ``tolerance_s`` seconds from ``now``."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get("x-smartcash-timestamp", "")
    signature = lowered.get("x-smartcash-signature", "")
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False  # too old (a replay) or from the future
    key = secret.encode() if isinstance(secret, str) else secret
    expected = "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())
