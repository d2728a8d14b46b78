"""The one-click headers survive the raw MIME as a mail client reads them (decision 024): a real
link is longer than a 78-character line, and must not come out RFC 2047-encoded."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import compat32

import pytest

from herald.channels.ports import OutgoingEmail
from herald.channels.ses import build_mime
from herald.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url

pytestmark = pytest.mark.unit


def test_a_long_list_unsubscribe_stays_a_plain_url_in_angle_brackets() -> None:
    # GIVEN the headers of a real link (≈180 characters) and its mailto alternative
    token = make_token("k" * 64, "a-fairly-long-user-id-0123456789", "marketing")
    url = unsubscribe_url("https://abcdef1234.execute-api.eu-west-1.amazonaws.com", token)
    headers = list_unsubscribe_headers(url, "unsubscribe@example.com", token)
    email = OutgoingEmail(
        sender="n@example.com", to="a@example.com", subject="Sale", text="x", headers=headers
    )

    # WHEN the message is built and read back without any decoding (what a mail client parses)
    raw = message_from_bytes(build_mime(email), policy=compat32)

    # THEN the header holds the exact URL, unencoded, on lines no longer than RFC 5322 allows
    value = raw["List-Unsubscribe"]
    assert "=?" not in value
    assert re.findall(r"<([^>]+)>", re.sub(r"\r?\n[ \t]", " ", value))[0] == url
    assert raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert all(len(line) <= 998 for line in build_mime(email).split(b"\r\n"))
