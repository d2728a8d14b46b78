"""The outage budget (herald.channels.outage): retry-later answers budgeted in time, backoff up to the
SQS maximum, renewals before SQS would dead-letter a message, and the queues' sizing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from herald.channels.outage import (
    MAX_VISIBILITY_STEP_SECONDS,
    RESERVED_RECEIVES,
    RETRY_BASE_RANGE_SECONDS,
    SQS_MAX_VISIBILITY_SECONDS,
    TOLERANCE_RANGE_SECONDS,
    Backoff,
    GiveUp,
    OutageBudget,
    RetryIn,
    max_receive_count_for,
    must_renew,
    receives_to_outlast,
    template_max_receive_count,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULT_TOLERANCE, DEFAULT_BASE = 3600, 20
TOLERANCES = (TOLERANCE_RANGE_SECONDS[0], DEFAULT_TOLERANCE, TOLERANCE_RANGE_SECONDS[1])
BASES = (RETRY_BASE_RANGE_SECONDS[0], DEFAULT_BASE, RETRY_BASE_RANGE_SECONDS[1])


class Extreme(random.Random):
    """Every draw at the low (0) or high (1) end of its range: the backoff's worst cases."""

    def __init__(self, end: float) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.end


def test_the_backoff_grows_to_the_sqs_maximum_visibility_and_no_further() -> None:
    backoff = Backoff(base_seconds=20, rng=Extreme(1.0))
    assert backoff.max_seconds == SQS_MAX_VISIBILITY_SECONDS
    steps = [backoff.delay(n) for n in range(1, 16)]
    assert steps[:5] == [20, 40, 80, 160, 320]
    assert steps[-1] == SQS_MAX_VISIBILITY_SECONDS == 43200
    assert steps == sorted(steps)
    assert backoff.delay(10_000) == SQS_MAX_VISIBILITY_SECONDS  # no overflow for a long run


def test_full_jitter_draws_from_zero_to_the_ceiling() -> None:
    assert Backoff(20, rng=Extreme(0.0)).delay(8) == 1  # at least a second
    draws = [Backoff(20, rng=random.Random(seed)).delay(4) for seed in range(300)]
    assert min(draws) <= 10 and max(draws) >= 150 and all(1 <= d <= 160 for d in draws)


def test_a_failure_within_the_tolerance_is_retried_after_a_backoff_over_the_runs_failures() -> None:
    budget = OutageBudget(3600, Backoff(20, rng=Extreme(1.0)))
    decision = budget.decide(failing_since=T0, failures=3, now=T0 + timedelta(seconds=100))
    assert decision == RetryIn(80)  # 20 * 2^(3-1): the run's failures, not the message's receives


def test_a_failure_at_or_past_the_tolerance_gives_up_with_the_reason() -> None:
    budget = OutageBudget(3600, Backoff(20))
    for elapsed in (3600, 3601, 50_000):
        decision = budget.decide(
            failing_since=T0, failures=9, now=T0 + timedelta(seconds=elapsed), last_error="503 from twilio"
        )
        assert isinstance(decision, GiveUp)
        assert "past the outage tolerance of 3600 s" in decision.reason
        assert "9 attempts" in decision.reason and "503 from twilio" in decision.reason
    assert isinstance(budget.decide(failing_since=T0, failures=9, now=T0 + timedelta(seconds=3599)), RetryIn)


def test_the_last_step_lands_just_past_the_tolerance_not_a_long_step_later() -> None:
    budget = OutageBudget(3600, Backoff(20, rng=Extreme(1.0)))
    decision = budget.decide(failing_since=T0, failures=12, now=T0 + timedelta(seconds=3000))
    assert isinstance(decision, RetryIn)
    assert 601 <= decision.seconds <= 600 + 1 + 20  # the ceiling would be 40960 s


def test_a_retry_after_longer_than_the_remaining_budget_is_honoured() -> None:
    budget = OutageBudget(3600, Backoff(20, rng=Extreme(0.0)))
    decision = budget.decide(failing_since=T0, failures=2, now=T0 + timedelta(seconds=3000), retry_after=7200)
    assert decision == RetryIn(7200)


def test_renewal_starts_when_only_the_reserved_receives_are_left() -> None:
    assert not must_renew(28 - RESERVED_RECEIVES - 1, 28)
    assert must_renew(28 - RESERVED_RECEIVES, 28)
    assert must_renew(28, 28)
    assert not must_renew(10_000, None)  # the queue's limit unknown: never renew for it


# -- the whole policy, simulated: an endless outage with waits in between ---------------------------


@dataclass
class Lifetime:
    attempts: int = 0
    renewals: int = 0
    waits: int = 0
    most_receives: int = 0
    gave_up_after: float | None = None
    last_retry_elapsed: float = 0.0


def live_through_an_outage(
    tolerance: int, base: int, rng: random.Random, *, max_receive_count: int, wait_every: int = 0
) -> Lifetime:
    """One message through a provider that never recovers, as the sender handles it: each provider
    failure asks the budget; every `wait_every`-th receive is a wait instead (a claim held elsewhere,
    a deadline hand-back: 30 s, no attempt); a message that must wait again is renewed (a fresh
    copy, receive count 1) when `must_renew` says so or the wait is longer than a visibility change
    allows, as `ChannelSender._wait` does. SQS dead-letters a copy received more than
    `max_receive_count` times: that must never happen."""
    budget = OutageBudget(tolerance, Backoff(base, rng=rng))
    life = Lifetime()
    clock = 0.0
    receives = 0  # of the current copy
    failures = 0
    while True:
        receives += 1
        life.most_receives = max(life.most_receives, receives)
        assert receives <= max_receive_count, "SQS would have dead-lettered the message"
        if wait_every and receives % wait_every == 0:
            life.waits += 1
            seconds = 30
        else:
            life.attempts += 1
            failures += 1
            decision = budget.decide(failing_since=T0, failures=failures, now=T0 + timedelta(seconds=clock))
            if isinstance(decision, GiveUp):
                life.gave_up_after = clock
                return life
            life.last_retry_elapsed = clock
            seconds = decision.seconds
        if must_renew(receives, max_receive_count) or seconds > MAX_VISIBILITY_STEP_SECONDS:
            life.renewals += 1
            receives = 0
        clock += seconds


@pytest.mark.parametrize("tolerance", TOLERANCES)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("draws", ["shortest", "longest", "random"])
def test_an_outage_never_reaches_the_dlq_through_sqs_and_reaches_it_only_past_the_tolerance(
    tolerance: int, base: int, draws: str
) -> None:
    rng = {"shortest": Extreme(0.0), "longest": Extreme(1.0), "random": random.Random(tolerance * base)}[
        draws
    ]
    life = live_through_an_outage(
        tolerance, base, rng, max_receive_count=template_max_receive_count(), wait_every=7
    )
    assert life.gave_up_after is not None and life.gave_up_after >= tolerance
    assert life.last_retry_elapsed < tolerance  # every retry before it was within the budget
    # dead-lettered soon after the budget is spent: the last step is at most a base step past it
    # (plus the waits between, 30 s each)
    assert life.gave_up_after <= tolerance + 1 + base + 30 * 2 + 1


def test_with_average_luck_the_default_setting_needs_no_renewal() -> None:
    lives = [
        live_through_an_outage(
            DEFAULT_TOLERANCE,
            DEFAULT_BASE,
            random.Random(seed),
            max_receive_count=template_max_receive_count(),
        )
        for seed in range(200)
    ]
    assert sum(life.renewals for life in lives) == 0
    assert max(life.most_receives for life in lives) < template_max_receive_count() - RESERVED_RECEIVES


# -- sizing -----------------------------------------------------------------------------------------


def test_the_sizing_grows_with_the_tolerance_and_shrinks_with_the_base() -> None:
    by_tolerance = [max_receive_count_for(t, 20) for t in (1, 60, 3600, 43200, 86400)]
    assert by_tolerance == sorted(by_tolerance) and by_tolerance[0] < by_tolerance[-1]
    by_base = [max_receive_count_for(3600, b) for b in (1, 20, 300)]
    assert by_base == sorted(by_base, reverse=True) and by_base[0] > by_base[-1]


@pytest.mark.parametrize("tolerance", TOLERANCES)
@pytest.mark.parametrize("base", BASES)
def test_the_queues_receive_count_covers_the_default_and_the_allowed_extremes(
    tolerance: int, base: int
) -> None:
    assert max_receive_count_for(tolerance, base) <= template_max_receive_count()


def test_the_queues_receive_count_is_what_the_largest_outage_at_the_smallest_base_needs() -> None:
    assert template_max_receive_count() == max_receive_count_for(
        TOLERANCE_RANGE_SECONDS[1], RETRY_BASE_RANGE_SECONDS[0]
    )
    assert receives_to_outlast(DEFAULT_TOLERANCE, DEFAULT_BASE, SQS_MAX_VISIBILITY_SECONDS) == 10
