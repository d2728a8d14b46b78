"""What a channel's delivery step sees, and what it may answer besides a provider result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from herald.catalog import CatalogEntry
from herald.channels.result import SendResult
from herald.channels.transport import request_may_leave
from herald.delivery import DeliveryState
from herald.messages import ChannelMessage
from herald.models import Channel
from herald.users import UserProfile


@dataclass(frozen=True)
class Skip:
    """Not sent, decided at send time (suppressed address, no consent, no device...).

    Recorded with `state` and not retried; for an escalation primary it means "undeliverable"."""

    state: DeliveryState
    reason: str
    code: str


@dataclass(frozen=True)
class Crashed:
    """The delivery step raised for one message of a batch: `error`, and `provider` when the
    provider's request may already have left (`herald.channels.transport`): the sender then records
    it as uncertain; with None nothing was sent, the claim is released and SQS retries the record."""

    error: BaseException
    provider: str | None = None


_UNSET: Any = object()


@dataclass
class DeliveryContext:
    message: ChannelMessage
    entry: CatalogEntry
    now: datetime
    load_profile: Callable[[str], UserProfile | None]
    # attributes the sender writes on the notification record with the outcome (e.g. `in_app`)
    record_attributes: dict[str, Any] = field(default_factory=dict)
    _profile: Any = field(default=_UNSET, repr=False)

    def profile(self) -> UserProfile | None:
        """The recipient's current profile (read once, consistently, only when asked for)."""
        if self._profile is _UNSET:
            self._profile = self.load_profile(self.message.user_id)
        return self._profile

    @property
    def template_context(self) -> dict[str, Any]:
        """Herald's own template variables (`herald.rendering.CONTEXT_VARIABLES`)."""
        return {"notification_id": self.message.notification_id, "event_id": self.message.event_id}


class ChannelDeliverer(Protocol):
    """One channel's send step: resolve the recipient, re-check at send time, render, call the port."""

    channel: Channel
    # True only where a duplicate has no second effect (webhooks: Idempotency-Key)
    resend_stale_claims: bool

    def deliver(self, context: DeliveryContext) -> SendResult | Skip: ...


@runtime_checkable
class BatchDeliverer(Protocol):
    """A channel whose messages of one SQS batch go to the provider together (push, decision 026)."""

    channel: Channel
    resend_stale_claims: bool

    def deliver(self, context: DeliveryContext) -> SendResult | Skip: ...

    def deliver_batch(self, contexts: Sequence[DeliveryContext]) -> list[SendResult | Skip | Crashed]:
        """One answer per context, in order; an exception concerning one message is its `Crashed`
        answer (never raised), one concerning them all is each one's."""
        ...


def deliver_alone(deliverer: BatchDeliverer, context: DeliveryContext) -> SendResult | Skip:
    """One message through `deliverer.deliver_batch`: a batch of one. Its `Crashed` answer is raised
    as the sender expects an exception, with the provider's point of no return marked when a
    request may have left."""
    (answer,) = deliverer.deliver_batch([context])
    if isinstance(answer, Crashed):
        if answer.provider is not None:
            request_may_leave(answer.provider)
        raise answer.error
    return answer
