"""Herald's ids as provider tag values, losslessly.

SES message tags allow only ASCII letters, digits, `_` and `-` (at most 256 characters), and come
back unchanged in SES's feedback events (`mail.tags`). A notification id always fits; a user id may
not (`auth0|1`, an email address). A value that fits, and does not start with the marker, is used
as it is; any other is the marker followed by its UTF-8 bytes in unpadded base64url, whose alphabet
is exactly SES's. So feedback finds the very person and notification the message was sent for.
"""

from __future__ import annotations

import base64
import re

_PLAIN = re.compile(r"[A-Za-z0-9_-]*")
MARKER = "b64-"
MAX_LENGTH = 256


def encode_tag(value: str) -> str | None:
    """The tag value for `value`; None when it cannot be a tag (longer than 256 once encoded): the
    message is then sent without that tag, and its feedback cannot be matched to it."""
    if value and _PLAIN.fullmatch(value) and not value.startswith(MARKER):
        encoded = value
    else:
        encoded = MARKER + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    return encoded if len(encoded) <= MAX_LENGTH else None


def decode_tag(value: str) -> str:
    """The value `encode_tag` was given (a plain value is returned as it is). Raises ValueError on
    a marked value that is not base64url."""
    if not value.startswith(MARKER):
        return value
    body = value[len(MARKER) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
