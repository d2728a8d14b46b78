"""The one result every provider adapter returns, whatever the channel.

An adapter never raises for a provider's answer: it classifies it as

- `Accepted`: the provider took the message (with its message id when it gives one);
- `PermanentFailure`: this message will never go through this provider as it is (bad address,
  rejected content, an opted-out phone, a vacant channel): record it, do not retry;
- `RetryLater`: the provider did not take it, and we know it: it answered with a transient error
  (throttling, 5xx), or the request provably never left (connection refused, connect timeout,
  DNS, TLS handshake, our own credentials missing). The sender backs off through SQS and tries
  again, up to the queue's `maxReceiveCount`; email may fail over to the other provider;
- `Uncertain`: the request may have reached the provider but no answer came back (a read timeout,
  a connection reset or closed after the request was written, an unexpected error once it went
  out). The sender records `uncertain` and never sends it again: a second SMS or push is worse
  than a rare unknown (`herald.channels.transport`, docs/decisions/007). Webhooks turn it into a
  retry (their receivers deduplicate on Idempotency-Key).

Each result may carry `Effects` the sender applies whatever the outcome, e.g. device tokens FCM
reported dead or a phone Twilio reported as opted out.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

# Codes shared by several adapters and understood by the sender.
CHANNEL_VACANT = "channel_vacant"  # realtime: nobody is subscribed, nothing was triggered
DEAD_TOKEN = "dead_token"  # push: the token is unregistered or invalid
AUTH = "auth"  # our credentials were refused (operator error: retried, then DLQ for redrive)
CREDENTIALS_UNAVAILABLE = "credentials_unavailable"  # the provider's secret could not be read
TRANSPORT = "transport"  # the request never left: connection refused, connect timeout, DNS, TLS
POSSIBLY_RECEIVED = "possibly_received"  # read timeout / reset after the request was written
UNEXPECTED_ERROR = "unexpected_error"  # an exception once the request may have gone out


@dataclass(frozen=True)
class Effects:
    """Side effects a sender must apply after a provider call, whatever the outcome."""

    dead_tokens: tuple[str, ...] = ()
    opt_out_phone: str | None = None

    def __bool__(self) -> bool:
        return bool(self.dead_tokens or self.opt_out_phone)

    def __or__(self, other: Effects) -> Effects:
        tokens = tuple(dict.fromkeys((*self.dead_tokens, *other.dead_tokens)))
        return Effects(dead_tokens=tokens, opt_out_phone=self.opt_out_phone or other.opt_out_phone)


NO_EFFECTS = Effects()


@dataclass(frozen=True)
class Accepted:
    provider: str
    provider_message_id: str | None = None
    detail: str | None = None
    effects: Effects = field(default=NO_EFFECTS)

    outcome: Literal["accepted"] = field(default="accepted", init=False)


@dataclass(frozen=True)
class PermanentFailure:
    provider: str
    reason: str
    code: str | None = None
    effects: Effects = field(default=NO_EFFECTS)

    outcome: Literal["permanent"] = field(default="permanent", init=False)


@dataclass(frozen=True)
class RetryLater:
    provider: str
    reason: str
    retry_after: float | None = None
    code: str | None = None
    effects: Effects = field(default=NO_EFFECTS)
    # False when the provider answered a server error (500, 502, 504) that does not prove it did not
    # take the message: retrying the same provider is fine, sending it through another is not.
    proves_not_accepted: bool = True

    outcome: Literal["retry"] = field(default="retry", init=False)


@dataclass(frozen=True)
class Uncertain:
    """The request may have reached the provider; nobody knows whether it accepted it."""

    provider: str
    reason: str
    code: str = POSSIBLY_RECEIVED
    effects: Effects = field(default=NO_EFFECTS)

    outcome: Literal["uncertain"] = field(default="uncertain", init=False)


SendResult = Accepted | PermanentFailure | RetryLater | Uncertain


def classify_http_error(
    provider: str,
    status: int,
    reason: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
    auth_is_transient: bool = True,
) -> PermanentFailure | RetryLater:
    """An HTTP error status from a provider API.

    408 and 429 and every 5xx are transient (a 5xx other than 503 does not prove the provider did
    not take the message: `proves_not_accepted` is False, so email does not fail over on it). Other 4xx are
    permanent, except 401/403 when the request carried *our* credentials (`auth_is_transient`): a revoked key
    or an unverified sender is an operator's problem, not the message's, so those messages are retried and end
    in the DLQ where they can be redriven once the configuration is fixed, instead of being lost as "failed".
    """
    code = code or str(status)
    if status in (408, 429) or status >= 500:
        return RetryLater(
            provider, reason, retry_after=retry_after, code=code, proves_not_accepted=not server_error(status)
        )
    if status in (401, 403) and auth_is_transient:
        return RetryLater(provider, reason, retry_after=retry_after, code=AUTH)
    return PermanentFailure(provider, reason, code=code)


def server_error(status: int) -> bool:
    """A 5xx that may have come after the provider took the message (503 says it did not)."""
    return status >= 500 and status != 503


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by case-insensitive name from any mapping (or None)."""
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def short(text: object, limit: int = 300) -> str:
    """A provider's error text, bounded for the delivery log."""
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
