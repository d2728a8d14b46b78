"""Signing of Herald's webhooks, and the helper receivers use to verify them.

Every webhook POST carries:

- `X-Herald-Timestamp`: Unix seconds when Herald signed the request;
- `X-Herald-Signature`: `v1=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>` (during a secret
  rotation several comma-separated `v1=` values may be present: any one matching is enough);
- `Idempotency-Key`: the notification id. Herald may deliver a notification more than once (a
  retry after a timeout, a crash after the send): receivers must treat a repeated key as done.

A receiver verifies with the raw body bytes exactly as received (before any JSON parsing), the
subscriber secret, and rejects requests older or newer than 5 minutes (replay window):

    from herald.webhook_signing import verify
    if not verify(secret, request.headers, request.get_data()):
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Herald-Signature"
TIMESTAMP_HEADER = "X-Herald-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Herald-Event"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def signature(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of `"{timestamp}.{body}"`."""
    message = f"{timestamp}.".encode() + _bytes(body)
    return hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The `X-Herald-Signature` header value: `v1=<hex>`."""
    return f"{SCHEME}={signature(secret, timestamp, body)}"


def signed_headers(secret: str | bytes, body: str | bytes, now: float | None = None) -> dict[str, str]:
    """Timestamp and signature headers for `body`, signed now."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: str | bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when the headers carry a valid `v1` signature of `body`, signed within `tolerance`
    seconds of `now` (either direction). Header names are matched case-insensitively; the
    comparison is constant-time."""
    timestamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if not timestamp or not given or not timestamp.strip().isdigit():
        return False
    timestamp = timestamp.strip()
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    matched = False
    for part in given.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and value:
            # no early exit: every candidate is compared
            matched |= hmac.compare_digest(value.strip().lower(), expected)
    return matched
