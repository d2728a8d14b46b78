"""What a push puts on a lock screen never contains the catalog's sensitive fields: every
catalog type with push, rendered by the push channel with its sample data, in every locale."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.channels.context import DeliveryContext
from herald.channels.ports import PushNotification
from herald.channels.push_delivery import PushDeliverer
from herald.channels.result import Accepted, SendResult
from herald.messages import ChannelMessage
from herald.models import Channel
from herald.rendering import TEMPLATES_DIR, TemplateRenderer

pytestmark = pytest.mark.unit

CATALOG = load_catalog()
PUSH_TYPES = sorted(name for name, entry in CATALOG.types.items() if Channel.PUSH in entry.channels)
LOCALES = sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir())


class RecordingPush:
    name = "fcm"

    def __init__(self) -> None:
        self.sent: list[tuple[PushNotification, list[str]]] = []

    def send(self, push: PushNotification, tokens: Any) -> list[SendResult]:
        return self.send_batch([(push, tokens)])[0]

    def send_batch(self, pushes: Any) -> list[list[SendResult]]:
        self.sent += [(push, list(tokens)) for push, tokens in pushes]
        return [[Accepted("fcm", f"m-{t}") for t in tokens] for _, tokens in pushes]


class NothingSuppressed:
    def suppressed_now(self, addresses: Any) -> frozenset[str]:
        return frozenset()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("type_name", PUSH_TYPES)
def test_push_render_and_payload_carry_no_sensitive_value(type_name: str, locale: str) -> None:
    entry = CATALOG.entry(type_name)
    provider = RecordingPush()
    deliverer = PushDeliverer(provider, TemplateRenderer(), NothingSuppressed())  # type: ignore[arg-type]
    message = ChannelMessage(
        notification_id="n-1",
        event_id="e-1",
        user_id="42",
        type=type_name,
        channel=Channel.PUSH,
        urgency=entry.urgency,
        category=entry.category,
        locale=locale,
        data=entry.sample_data,
        device_tokens=["tok-a", "tok-b"],
    )
    context = DeliveryContext(message, entry, datetime.now(UTC), load_profile=lambda _: None)
    result = deliverer.deliver(context)
    assert isinstance(result, Accepted)
    ((push, tokens),) = provider.sent
    assert tokens == ["tok-a", "tok-b"]  # one message per token
    shown = json.dumps([push.title, push.body, dict(push.data)]).casefold()
    for field in entry.sensitive_fields:
        assert str(entry.sample_data[field]).casefold() not in shown, (
            f"{field} leaked in {type_name}/{locale}"
        )
    assert push.data["notification_id"] == "n-1"
    assert push.android_channel == entry.android_channel
    assert push.apns_priority == (10 if entry.urgency.value in ("critical", "high") else 5)


def test_there_are_push_types_with_sensitive_fields_to_check() -> None:
    assert any(CATALOG.entry(t).sensitive_fields for t in PUSH_TYPES)
