"""The outage budget of a channel sender: retry-later answers are budgeted in time, not receives.

A provider that answers retry-later (5xx, 429, connection refused, ...) is retried with full-jitter
exponential backoff over the number of provider failures of the current *run* (the consecutive
`retry` outcomes recorded on `deliveries.<channel>`: `failing_since`, `failures`), each step up to
the SQS maximum visibility. The message goes to the DLQ only when an attempt fails at least
`tolerance_seconds` after the run's first failure, i.e. when the provider failed for longer than
the tolerance. Nothing else spends the budget: waiting for another invocation's claim, a
`not_before` wait and a deadline hand-back neither start nor advance a run, and do not raise the
backoff's exponent.

SQS counts every receive towards the queue's `maxReceiveCount`, whatever the reason. Two things
keep SQS from dead-lettering a message within its budget (docs/decisions/010):

- the queues' `maxReceiveCount` is sized from the tolerance (`max_receive_count_for`): an outage
  as long as the largest tolerance the template allows, at the smallest retry base it allows, fits
  with room for waits, when the jittered steps average out;
- when they do not (a run of short draws, many waits), the sender renews a message that must wait
  again once it has used all but `RESERVED_RECEIVES` of its receives: it sends a copy (delayed up to
  15 minutes, `herald_retry_at` for longer waits) and lets the original be deleted. That is safe
  because the claim on the notification record, not the SQS message, guarantees one send.

So `maxReceiveCount` only bounds crashes (exceptions that are no provider answer): a record that
keeps crashing reaches the DLQ after that many receives.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

SQS_MAX_VISIBILITY_SECONDS = 43200
SQS_MAX_DELAY_SECONDS = 900
# ChangeMessageVisibility may not take a message past 12 hours from the receive that returned it.
# The invocation may have held the message for up to Lambda's longest timeout: a longer wait is
# done by renewing the message instead, so no step is cut short.
LAMBDA_MAX_TIMEOUT_SECONDS = 900
MAX_VISIBILITY_STEP_SECONDS = SQS_MAX_VISIBILITY_SECONDS - LAMBDA_MAX_TIMEOUT_SECONDS
# Receives left for crashes: a message that must wait again is renewed before using them.
RESERVED_RECEIVES = 3
# Receives a message may spend waiting (claim held elsewhere, not_before, deadline hand-backs).
WAIT_RECEIVES = 5

# The template's bounds of ProviderOutageToleranceSeconds / ProviderRetryBaseSeconds (checked
# against template.yaml by tests/infra/test_outage_sizing.py).
TOLERANCE_RANGE_SECONDS = (1, 86400)
RETRY_BASE_RANGE_SECONDS = (1, 300)


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2^(n-1))) for the n-th
    consecutive failure, in whole seconds (at least 1), or the provider's Retry-After when longer."""

    base_seconds: float = 20.0
    max_seconds: int = SQS_MAX_VISIBILITY_SECONDS
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def ceiling(self, failures: int) -> float:
        exponent = min(max(0, failures - 1), 64)  # 2^64 * base is past any cap
        return min(float(self.max_seconds), self.base_seconds * 2**exponent)

    def delay(self, failures: int, retry_after: float | None = None) -> int:
        seconds = self.rng.uniform(0, self.ceiling(failures))
        if retry_after is not None:
            seconds = max(seconds, retry_after)
        return int(min(SQS_MAX_VISIBILITY_SECONDS, max(1, math.ceil(seconds))))


@dataclass(frozen=True)
class RetryIn:
    """Within the budget: attempt again after `seconds`."""

    seconds: int


@dataclass(frozen=True)
class GiveUp:
    """Past the budget: dead-letter the message with `reason`."""

    reason: str
    elapsed_seconds: float


@dataclass(frozen=True)
class OutageBudget:
    tolerance_seconds: float = 3600
    backoff: Backoff = field(default_factory=Backoff)

    def decide(
        self,
        *,
        failing_since: datetime,
        failures: int,
        now: datetime,
        retry_after: float | None = None,
        last_error: str | None = None,
    ) -> RetryIn | GiveUp:
        """After the `failures`-th consecutive failure of a run that began at `failing_since`."""
        elapsed = max(0.0, (now - failing_since).total_seconds())
        if elapsed >= self.tolerance_seconds:
            detail = f"; last: {last_error}" if last_error else ""
            return GiveUp(
                f"provider outage: still failing {elapsed:.0f} s after the first failure ({failures} "
                f"attempts), past the outage tolerance of {self.tolerance_seconds:g} s{detail}",
                elapsed,
            )
        delay = self.backoff.delay(failures, retry_after)
        remaining = self.tolerance_seconds - elapsed
        if delay > remaining and (retry_after is None or retry_after <= remaining):
            # The next attempt need not wait past the tolerance by more than a jittered base step:
            # it decides (delivered, or dead-lettered) soon after the budget is spent.
            spread = self.backoff.rng.uniform(0, max(1.0, self.backoff.base_seconds))
            delay = min(delay, math.ceil(remaining + 1 + spread))
        return RetryIn(max(1, delay))


def must_renew(receive_count: int, max_receive_count: int | None) -> bool:
    """Whether a message received `receive_count` times must be renewed rather than returned to
    its queue: SQS dead-letters it when a receive would exceed `max_receive_count`."""
    if max_receive_count is None:
        return False
    return receive_count >= max_receive_count - RESERVED_RECEIVES


def receives_to_outlast(tolerance_seconds: float, base_seconds: float, cap_seconds: int) -> int:
    """Provider attempts (receives) a message makes through an outage longer than the tolerance,
    up to and including the one that dead-letters it, when every full-jitter step is its mean
    (half its ceiling, at least one second) and the last one lands just past the tolerance."""
    backoff = Backoff(base_seconds, cap_seconds)
    elapsed = 0.0
    attempts = 0
    while True:
        attempts += 1
        if elapsed >= tolerance_seconds:
            return attempts
        step = max(1.0, backoff.ceiling(attempts) / 2)
        elapsed += min(step, tolerance_seconds - elapsed + 1)


def max_receive_count_for(
    tolerance_seconds: float, base_seconds: float, cap_seconds: int = SQS_MAX_VISIBILITY_SECONDS
) -> int:
    """The `maxReceiveCount` a channel queue needs for this tolerance and retry base."""
    attempts = receives_to_outlast(tolerance_seconds, base_seconds, cap_seconds)
    return attempts + WAIT_RECEIVES + RESERVED_RECEIVES


def template_max_receive_count() -> int:
    """The channel queues' `maxReceiveCount`: sized for the largest tolerance at the smallest base
    the template's parameters allow (every other setting needs fewer receives)."""
    return max_receive_count_for(TOLERANCE_RANGE_SECONDS[1], RETRY_BASE_RANGE_SECONDS[0])
