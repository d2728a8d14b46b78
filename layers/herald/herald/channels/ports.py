"""Ports: what the channel senders need from a provider, one Protocol per channel.

Adapters (`ses`, `sendgrid_email`, `fcm`, `twilio_sms`, `pusher_realtime`, `webhook_http`) implement
them with the provider's SDK; tests use in-memory fakes. Every call returns a `SendResult` and
never raises for what the provider answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from herald.channels.result import SendResult


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str  # "Name <address>" or a bare address
    to: str
    subject: str
    text: str
    html: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    tags: Mapping[str, str] = field(default_factory=dict)  # notification_id, user_id, type


@dataclass(frozen=True)
class PushNotification:
    """One push, sent once per device token. `title`/`body` are what a lock screen shows (for a
    data-only push, the app renders them from `data`). Presentation comes from the catalog's
    `push` block (`herald.catalog.PushPresentation`)."""

    title: str
    body: str
    data: Mapping[str, str]  # the app's payload: notification_id, type (never sensitive fields)
    android_channel: str
    android_priority: Literal["high", "normal"]
    apns_priority: Literal[10, 5]
    collapse_key: str | None = None
    # the catalog declared the collapse key: FCM may then keep only the latest per key for an
    # offline device (Android collapse_key); otherwise each push is kept (only `tag` / APNs'
    # collapse id replace a shown one)
    collapsible: bool = False
    sound: str | None = "default"  # a sound file the apps ship, "default", or None (silent)
    badge: Literal["increment", "none"] = "none"
    interruption_level: Literal["passive", "active", "time-sensitive", "critical"] = "active"
    apns_category: str | None = None
    ttl_seconds: int | None = None  # None: FCM's default (28 days)
    data_only: bool = False


# One push and the device tokens it goes to.
PushBatchItem = tuple[PushNotification, Sequence[str]]


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    body: str
    status_callback: str | None = None


@dataclass(frozen=True)
class RealtimeEvent:
    channel: str  # private-user-<id>
    event: str  # "notification"
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class WebhookDelivery:
    url: str
    body: bytes  # the exact bytes that are signed and sent
    secret: str = field(repr=False)
    idempotency_key: str
    event_type: str


@runtime_checkable
class EmailProvider(Protocol):
    name: str

    def send(self, email: OutgoingEmail) -> SendResult: ...


@runtime_checkable
class PushProvider(Protocol):
    name: str

    def send(self, push: PushNotification, tokens: Sequence[str]) -> list[SendResult]:
        """One result per token, in the order of `tokens`."""
        ...

    def send_batch(self, pushes: Sequence[PushBatchItem]) -> list[list[SendResult]]:
        """Every push to each of its tokens, concurrently (bounded): for each push, one result per
        token in the order of its tokens. A push the provider would refuse as it is (too large, an
        invalid field) is a `PermanentFailure` for each of its tokens, with no request made."""
        ...


@runtime_checkable
class SmsProvider(Protocol):
    name: str

    def send(self, sms: OutgoingSms) -> SendResult: ...


@runtime_checkable
class RealtimeProvider(Protocol):
    name: str

    def publish(self, event: RealtimeEvent) -> SendResult:
        """Trigger the event (one provider request; the caller has checked occupancy)."""
        ...


@runtime_checkable
class WebhookTransport(Protocol):
    name: str

    def post(self, delivery: WebhookDelivery) -> SendResult: ...
