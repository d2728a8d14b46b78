"""The one result type: HTTP classification, Retry-After, effects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.channels.result import (
    AUTH,
    Effects,
    PermanentFailure,
    RetryLater,
    classify_http_error,
    header,
    parse_retry_after,
    short,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_transient(status: int) -> None:
    result = classify_http_error("p", status, "boom", retry_after=7)
    assert isinstance(result, RetryLater)
    assert (result.code, result.retry_after) == (str(status), 7)


@pytest.mark.parametrize("status", [400, 404, 410, 413, 422])
def test_other_client_errors_are_permanent(status: int) -> None:
    assert isinstance(classify_http_error("p", status, "bad"), PermanentFailure)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_retried_for_providers_but_final_for_receivers(status: int) -> None:
    ours = classify_http_error("p", status, "bad key")
    assert isinstance(ours, RetryLater)
    assert ours.code == AUTH
    assert isinstance(classify_http_error("p", status, "no", auth_is_transient=False), PermanentFailure)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_effects_merge_without_duplicates() -> None:
    merged = Effects(dead_tokens=("a", "b")) | Effects(dead_tokens=("b", "c"), opt_out_phone="+1555")
    assert merged == Effects(dead_tokens=("a", "b", "c"), opt_out_phone="+1555")
    assert not Effects()
    assert merged


def test_helpers() -> None:
    assert header({"x-message-id": "m"}, "X-Message-Id") == "m"
    assert header(None, "a") is None
    assert short("a  b\n c") == "a b c"
    assert len(short("x" * 1000, limit=50)) == 50
