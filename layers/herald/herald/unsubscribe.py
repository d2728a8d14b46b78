"""Signed, login-free unsubscribe tokens for marketing mail (RFC 8058 one-click links).

A token names a user and a category and expires: `<payload>.<mac>`, both base64url without
padding, where payload is the compact JSON `{"u": user_id, "c": category, "e": expiry (Unix s)}`
and mac is HMAC-SHA256 over `"herald-unsubscribe.v1." + payload` with the UnsubscribeSigningSecret.
The email sender puts `<{API}/v1/unsubscribe?token=...>` in `List-Unsubscribe`; the API's
`POST /v1/unsubscribe` calls `verify_token` and opts the user out of that category.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

DOMAIN = b"herald-unsubscribe.v1."
DEFAULT_TTL_SECONDS = 180 * 86400
MAX_TOKEN_LENGTH = 2048


class InvalidUnsubscribeToken(ValueError):
    """Malformed, forged or expired."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    user_id: str
    category: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str | bytes, payload: str) -> bytes:
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def make_token(
    key: str | bytes,
    user_id: str,
    category: str,
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if not key:
        raise ValueError("an unsubscribe signing key is required")
    expires_at = int((time.time() if now is None else now) + ttl_seconds)
    payload = _b64(json.dumps({"u": user_id, "c": category, "e": expires_at}, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify_token(key: str | bytes, token: str, *, now: float | None = None) -> UnsubscribeClaim:
    """The claim of a valid token; raises InvalidUnsubscribeToken otherwise (constant-time MAC check)."""
    if not key:
        raise ValueError("an unsubscribe signing key is required")
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidUnsubscribeToken("malformed token")
    payload, mac = token.split(".")
    try:
        given = _unb64(mac)
        expected = _mac(key, payload)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidUnsubscribeToken("malformed token") from None
    if not hmac.compare_digest(given, expected):
        raise InvalidUnsubscribeToken("bad signature")
    try:
        data = json.loads(_unb64(payload))
        claim = UnsubscribeClaim(user_id=str(data["u"]), category=str(data["c"]), expires_at=int(data["e"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidUnsubscribeToken("malformed payload") from None
    if claim.expires_at < (time.time() if now is None else now):
        raise InvalidUnsubscribeToken("expired")
    return claim


def unsubscribe_url(api_base_url: str, token: str) -> str:
    return f"{api_base_url.rstrip('/')}/v1/unsubscribe?token={quote(token, safe='')}"


def list_unsubscribe_headers(url: str, mailto: str | None = None, token: str | None = None) -> dict[str, str]:
    """RFC 2369 `List-Unsubscribe` (HTTPS first, optional mailto whose subject carries the token)
    + RFC 8058 `List-Unsubscribe-Post: List-Unsubscribe=One-Click`."""
    targets = [f"<{url}>"]
    if mailto:
        subject = quote(f"unsubscribe {token}" if token else "unsubscribe", safe="")
        targets.append(f"<mailto:{mailto}?subject={subject}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def key_from_secret(value: str | bytes | dict) -> str:
    """The signing key from the secret's value: the generated string, or JSON `{"key": ...}`."""
    if isinstance(value, dict):
        found = value.get("key") or value.get("secret")
        if not found:
            raise ValueError("the unsubscribe secret JSON has no 'key'")
        return str(found)
    text = value.decode() if isinstance(value, bytes) else value
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return key_from_secret(json.loads(stripped))
        except json.JSONDecodeError:
            pass
    if not stripped:
        raise ValueError("the unsubscribe secret is empty")
    return stripped
