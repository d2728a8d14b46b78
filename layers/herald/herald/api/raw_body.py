"""The request body exactly as the client sent it, for the routes that check a signature over it
(the Pusher, SendGrid and Twilio webhooks) or read a form (one-click unsubscribe)."""

from __future__ import annotations

import base64
import binascii
from typing import Any


def raw_body(event: Any) -> bytes | None:
    """API Gateway base64-encodes some content types; None when such a body is not valid base64."""
    body = event.body or ""
    if not event.is_base64_encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
