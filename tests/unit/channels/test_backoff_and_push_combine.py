"""Retry backoff (full jitter, capped) and how per-token push results make one outcome."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.channels.push_delivery import combine
from herald.channels.result import DEAD_TOKEN, Accepted, Effects, PermanentFailure, RetryLater
from herald.channels.sender import SQS_MAX_VISIBILITY_SECONDS, Backoff

pytestmark = pytest.mark.unit


@given(receives=st.integers(min_value=1, max_value=50), seed=st.integers())
def test_backoff_stays_within_the_exponential_ceiling_and_the_cap(receives: int, seed: int) -> None:
    backoff = Backoff(base_seconds=10, max_seconds=900, rng=random.Random(seed))
    delay = backoff.delay(receives)
    assert 1 <= delay <= min(900, 10 * 2 ** (receives - 1)) + 1


def test_backoff_grows_with_the_receive_count_on_average() -> None:
    backoff = Backoff(base_seconds=10, max_seconds=10_000, rng=random.Random(1))
    means = [sum(backoff.delay(n) for _ in range(400)) / 400 for n in (1, 3, 5)]
    assert means[0] < means[1] < means[2]
    assert means[2] == pytest.approx(10 * 2**4 / 2, rel=0.2)  # full jitter: uniform(0, ceiling)


def test_backoff_honours_a_longer_retry_after_but_not_beyond_sqs_limits() -> None:
    backoff = Backoff(base_seconds=1, max_seconds=5, rng=random.Random(0))
    assert backoff.delay(1, retry_after=120) == 120
    assert backoff.delay(1, retry_after=10**9) == SQS_MAX_VISIBILITY_SECONDS


def test_one_accepting_device_makes_the_push_sent_and_keeps_dead_tokens() -> None:
    results = [
        PermanentFailure("fcm", "gone", code=DEAD_TOKEN, effects=Effects(dead_tokens=("t1",))),
        Accepted("fcm", "projects/p/messages/2"),
        RetryLater("fcm", "quota", code="QUOTA_EXCEEDED"),
    ]
    combined = combine("fcm", ["t1", "t2", "t3"], results)
    assert isinstance(combined, Accepted)
    assert combined.provider_message_id == "projects/p/messages/2"
    assert combined.effects.dead_tokens == ("t1",)
    assert "1 of 3" in (combined.detail or "")


def test_no_device_accepting_and_one_transient_failure_is_a_retry() -> None:
    results = [
        PermanentFailure("fcm", "gone", code=DEAD_TOKEN, effects=Effects(dead_tokens=("t1",))),
        RetryLater("fcm", "quota", retry_after=30, code="QUOTA_EXCEEDED"),
    ]
    combined = combine("fcm", ["t1", "t2"], results)
    assert isinstance(combined, RetryLater)
    assert (combined.retry_after, combined.code, combined.effects.dead_tokens) == (
        30,
        "QUOTA_EXCEEDED",
        ("t1",),
    )


def test_every_token_dead_is_a_dead_token_failure() -> None:
    results = [
        PermanentFailure("fcm", "gone", code=DEAD_TOKEN, effects=Effects(dead_tokens=(t,)))
        for t in ("a", "b")
    ]
    combined = combine("fcm", ["a", "b"], results)
    assert isinstance(combined, PermanentFailure)
    assert combined.code == DEAD_TOKEN
    assert combined.effects.dead_tokens == ("a", "b")


def test_a_bad_payload_is_a_permanent_failure_with_its_code() -> None:
    results = [PermanentFailure("fcm", "bad data key", code="INVALID_ARGUMENT")]
    combined = combine("fcm", ["a"], results)
    assert isinstance(combined, PermanentFailure)
    assert combined.code == "INVALID_ARGUMENT"
