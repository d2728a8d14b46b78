"""Signed one-click unsubscribe tokens and the RFC 8058 headers."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from herald.unsubscribe import (
    InvalidUnsubscribeToken,
    key_from_secret,
    list_unsubscribe_headers,
    make_token,
    unsubscribe_url,
    verify_token,
)

pytestmark = pytest.mark.unit

KEY = "k" * 64
NOW = 1_800_000_000.0


def test_a_token_names_the_user_and_category_until_it_expires() -> None:
    token = make_token(KEY, "user#42", "marketing", ttl_seconds=3600, now=NOW)
    claim = verify_token(KEY, token, now=NOW + 3599)
    assert (claim.user_id, claim.category, claim.expires_at) == ("user#42", "marketing", int(NOW) + 3600)


def test_an_expired_token_is_refused() -> None:
    token = make_token(KEY, "42", "marketing", ttl_seconds=60, now=NOW)
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        verify_token(KEY, token, now=NOW + 61)


def test_another_key_or_a_changed_payload_is_refused() -> None:
    token = make_token(KEY, "42", "marketing", now=NOW)
    with pytest.raises(InvalidUnsubscribeToken, match="signature"):
        verify_token("another key", token, now=NOW)
    forged = make_token("another key", "43", "marketing", now=NOW).split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(InvalidUnsubscribeToken, match="signature"):
        verify_token(KEY, forged, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 3000, "%%%.%%%", "é.é"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        verify_token(KEY, token, now=NOW)


def test_headers_offer_https_one_click_and_mailto() -> None:
    token = make_token(KEY, "42", "marketing", now=NOW)
    url = unsubscribe_url("https://api.example.com/", token)
    assert parse_qs(urlsplit(url).query)["token"] == [token]
    assert urlsplit(url).path == "/v1/unsubscribe"
    headers = list_unsubscribe_headers(url, "unsubscribe@example.com", token)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = headers["List-Unsubscribe"].split(", ")
    assert https == f"<{url}>"
    assert mailto.startswith("<mailto:unsubscribe@example.com?subject=unsubscribe%20")
    assert list_unsubscribe_headers(url)["List-Unsubscribe"] == f"<{url}>"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("plain-generated-key", "plain-generated-key"),
        ('{"key": "json-key"}', "json-key"),
        ({"secret": "s"}, "s"),
    ],
)
def test_the_key_comes_from_the_secret_value(value: str | dict, key: str) -> None:
    assert key_from_secret(value) == key


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        key_from_secret("  ")
    with pytest.raises(ValueError):
        make_token("", "42", "marketing")
