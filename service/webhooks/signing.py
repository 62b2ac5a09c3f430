"""The signature of a webhook delivery: HMAC-SHA256 over the timestamp and the raw body.

Headers of every delivery::

    X-SmartCash-Event: validation.finished
    X-SmartCash-Delivery: <job id>            (the same on every retry: deduplicate on it)
    X-SmartCash-Timestamp: <Unix seconds>     (of this attempt)
    X-SmartCash-Signature: sha256=<hex>       hex(HMAC-SHA256(secret, "<timestamp>." + raw body bytes))

A receiver recomputes the HMAC over the exact bytes it received, compares in constant time, and refuses a
timestamp more than a few minutes from its clock: a captured delivery cannot be replayed later, and the
timestamp cannot be changed without breaking the signature.
"""

from __future__ import annotations

import hashlib
import hmac

EVENT_HEADER = "X-SmartCash-Event"
DELIVERY_HEADER = "X-SmartCash-Delivery"
TIMESTAMP_HEADER = "X-SmartCash-Timestamp"
SIGNATURE_HEADER = "X-SmartCash-Signature"
SCHEME = "sha256"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-SmartCash-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signed_headers(secret: bytes, timestamp: int, body: bytes, job_id: str, event: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: job_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
