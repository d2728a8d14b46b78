"""The webhook signature Herald sends and the verify helper receivers use."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.webhook_signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify,
)

pytestmark = pytest.mark.unit

SECRET = "whsec_test"
BODY = b'{"id":"n-1","type":"order_webhook"}'
NOW = 1_800_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"v1={expected}"


def test_verify_accepts_what_signed_headers_produce() -> None:
    headers = signed_headers(SECRET, BODY, now=NOW)
    assert verify(SECRET, headers, BODY, now=NOW + 10)


def test_verify_matches_header_names_case_insensitively() -> None:
    headers = {k.lower(): v for k, v in signed_headers(SECRET, BODY, now=NOW).items()}
    assert verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("another-secret", BODY, NOW),  # wrong secret
        (SECRET, BODY + b" ", NOW),  # body changed by one byte
        (SECRET, BODY, NOW + 301),  # too old: outside the 5-minute window
        (SECRET, BODY, NOW - 301),  # from the future
    ],
)
def test_verify_rejects(secret: str, body: bytes, now: int) -> None:
    assert not verify(secret, signed_headers(SECRET, BODY, now=NOW), body, now=now)


def test_verify_accepts_the_edge_of_the_window() -> None:
    headers = signed_headers(SECRET, BODY, now=NOW)
    assert verify(SECRET, headers, BODY, now=NOW + 300)
    assert verify(SECRET, headers, BODY, now=NOW + 60, tolerance=60)
    assert not verify(SECRET, headers, BODY, now=NOW + 61, tolerance=60)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: str(NOW)},
        {SIGNATURE_HEADER: sign(SECRET, NOW, BODY)},
        {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: sign(SECRET, NOW, BODY)},
        {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: sign(SECRET, NOW, BODY).replace("v1=", "v0=")},
        {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "v1="},
    ],
)
def test_verify_rejects_missing_or_malformed_headers(headers: dict[str, str]) -> None:
    assert not verify(SECRET, headers, BODY, now=NOW)


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    headers = {TIMESTAMP_HEADER: str(NOW + 1), SIGNATURE_HEADER: sign(SECRET, NOW, BODY)}
    assert not verify(SECRET, headers, BODY, now=NOW)


def test_any_of_several_signatures_may_match_during_a_rotation() -> None:
    headers = {
        TIMESTAMP_HEADER: str(NOW),
        SIGNATURE_HEADER: f"{sign('old-secret', NOW, BODY)}, {sign(SECRET, NOW, BODY)}",
    }
    assert verify(SECRET, headers, BODY, now=NOW)
    assert verify("old-secret", headers, BODY, now=NOW)
    assert not verify("third", headers, BODY, now=NOW)


@given(secret=st.text(min_size=1), body=st.binary(), timestamp=st.integers(min_value=0, max_value=2**40))
def test_round_trip_for_any_secret_and_body(secret: str, body: bytes, timestamp: int) -> None:
    headers = signed_headers(secret, body, now=timestamp)
    assert verify(secret, headers, body, now=timestamp)
    assert not verify(secret, headers, body + b"x", now=timestamp)
