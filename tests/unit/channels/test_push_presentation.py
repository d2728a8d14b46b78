"""Per-type push presentation (issue 12 item 5): the catalog's `push` block is validated when the
catalog loads, and the FCM message carries it; the 4 KB payload limit is checked before sending."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from firebase_admin import messaging
from pydantic import ValidationError

from herald.catalog import MAX_COLLAPSE_KEY_BYTES, Catalog, PushPresentation, load_catalog
from herald.channels import fcm
from herald.channels.context import DeliveryContext
from herald.channels.ports import PushNotification
from herald.channels.push_delivery import PushDeliverer
from herald.channels.result import PermanentFailure
from herald.messages import ChannelMessage
from herald.models import Channel
from herald.rendering import TemplateRenderer
from tests.unit.channels.test_lock_screen import NothingSuppressed, RecordingPush

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:Message.token is deprecated")]

PUSH = PushNotification(
    title="Order 999 has shipped",
    body="On its way",
    data={"notification_id": "n-1", "type": "order_shipped"},
    android_channel="orders",
    android_priority="normal",
    apns_priority=5,
    collapse_key="order-999",
    collapsible=True,
)
NOW = 1_800_000_000.0


def encoded(push: PushNotification, token: str = "tok-1") -> dict[str, Any]:
    return messaging._MessagingService.encode_message(fcm.build_message(push, token, now=NOW))


# -- the FCM message ---------------------------------------------------------------------------


def test_a_visible_push_carries_sound_badge_level_category_collapse_and_ttl() -> None:
    push = dataclasses.replace(
        PUSH,
        sound="driver_arrived.caf",
        badge="increment",
        interruption_level="time-sensitive",
        apns_category="RIDE",
        ttl_seconds=300,
    )

    message = encoded(push)

    android = message["android"]
    assert android["collapse_key"] == "order-999"
    assert android["ttl"] == "300s"
    assert android["notification"] == {
        "channel_id": "orders",
        "sound": "driver_arrived",  # an Android raw resource has no extension
        "tag": "order-999",  # replaces the shown notification with the same key
        "notification_count": 1,
    }
    apns = message["apns"]
    assert apns["headers"] == {
        "apns-priority": "5",
        "apns-push-type": "alert",
        "apns-collapse-id": "order-999",
        "apns-expiration": str(int(NOW) + 300),
    }
    assert apns["payload"]["aps"] == {
        "sound": "driver_arrived.caf",
        "category": "RIDE",
        "mutable-content": 1,  # the app's extension increments its badge
        "interruption-level": "time-sensitive",
    }
    assert message["notification"] == {"title": "Order 999 has shipped", "body": "On its way"}


def test_the_default_sound_no_badge_and_no_ttl_leave_those_fields_out() -> None:
    message = encoded(PUSH)

    notification = message["android"]["notification"]
    assert notification == {"channel_id": "orders", "default_sound": True, "tag": "order-999"}
    assert "ttl" not in message["android"]
    assert "apns-expiration" not in message["apns"]["headers"]
    assert message["apns"]["payload"]["aps"] == {"sound": "default", "interruption-level": "active"}


def test_a_silent_push_has_no_sound_anywhere() -> None:
    message = encoded(dataclasses.replace(PUSH, sound=None))

    assert "sound" not in message["android"]["notification"]
    assert "default_sound" not in message["android"]["notification"]
    assert "sound" not in message["apns"]["payload"]["aps"]


def test_a_critical_push_plays_a_critical_sound() -> None:
    message = encoded(dataclasses.replace(PUSH, interruption_level="critical", apns_priority=10))

    aps = message["apns"]["payload"]["aps"]
    assert aps["sound"] == {"name": "default", "critical": 1}
    assert aps["interruption-level"] == "critical"


def test_a_ttl_of_zero_is_now_or_never_on_both_platforms() -> None:
    message = encoded(dataclasses.replace(PUSH, ttl_seconds=0))

    assert message["android"]["ttl"] == "0s"
    assert message["apns"]["headers"]["apns-expiration"] == "0"


def test_a_data_only_push_has_nothing_for_the_system_to_show() -> None:
    push = dataclasses.replace(
        PUSH, data_only=True, sound=None, android_priority="high", apns_priority=10, ttl_seconds=60
    )

    message = encoded(push)

    assert "notification" not in message
    assert "notification" not in message["android"]
    assert message["android"]["priority"] == "high"  # Android still wakes the app at once
    assert message["apns"]["headers"]["apns-push-type"] == "background"
    assert message["apns"]["headers"]["apns-priority"] == "5"  # Apple requires 5 for background pushes
    assert message["apns"]["payload"]["aps"] == {"content-available": 1}
    assert message["data"] == {"notification_id": "n-1", "type": "order_shipped"}


# -- the 4 KB limit ----------------------------------------------------------------------------


def test_a_push_over_four_kilobytes_is_refused_before_any_request() -> None:
    too_big = dataclasses.replace(PUSH, body="x" * 4100)

    refused = fcm.refusal(too_big)

    assert isinstance(refused, PermanentFailure)
    assert refused.code == fcm.PAYLOAD_TOO_LARGE
    assert "over FCM's limit of 4096" in refused.reason


def test_the_limit_is_on_the_larger_platform_payload_to_the_byte() -> None:
    base = fcm.payload_bytes(encoded(dataclasses.replace(PUSH, body="")))
    room = fcm.MAX_PAYLOAD_BYTES - base

    assert fcm.refusal(dataclasses.replace(PUSH, body="y" * room)) is None
    refused = fcm.refusal(dataclasses.replace(PUSH, body="y" * (room + 1)))
    assert refused is not None and refused.code == fcm.PAYLOAD_TOO_LARGE


def test_multibyte_text_counts_in_bytes() -> None:
    base = fcm.payload_bytes(encoded(dataclasses.replace(PUSH, body="")))
    characters = (fcm.MAX_PAYLOAD_BYTES - base) // 2 + 1  # fits in characters, not in bytes

    refused = fcm.refusal(dataclasses.replace(PUSH, body="é" * characters))

    assert refused is not None and refused.code == fcm.PAYLOAD_TOO_LARGE


def test_a_data_only_payload_counts_its_data() -> None:
    push = dataclasses.replace(PUSH, data_only=True, sound=None, data={**PUSH.data, "body": "z" * 4090})

    refused = fcm.refusal(push)

    assert refused is not None and refused.code == fcm.PAYLOAD_TOO_LARGE


# -- the deliverer builds the push from the catalog --------------------------------------------


def deliver_one(type_name: str, data: dict[str, Any] | None = None) -> PushNotification:
    entry = load_catalog().entry(type_name)
    provider = RecordingPush()
    deliverer = PushDeliverer(provider, TemplateRenderer(), NothingSuppressed())  # type: ignore[arg-type]
    message = ChannelMessage(
        notification_id="n-7",
        event_id="e-7",
        user_id="42",
        type=type_name,
        channel=Channel.PUSH,
        urgency=entry.urgency,
        category=entry.category,
        locale="en",
        data=data or entry.sample_data,
        device_tokens=["tok-a"],
    )
    deliverer.deliver(DeliveryContext(message, entry, datetime.now(UTC), load_profile=lambda _: None))
    ((push, _),) = provider.sent
    return push


def test_the_catalog_decides_the_push_presentation() -> None:
    push = deliver_one("driver_arrived")

    assert push.android_channel == "rides"
    assert push.sound == "driver_arrived.caf"
    assert push.interruption_level == "time-sensitive"
    assert push.collapse_key == "ride-AA-12-BB"  # `ride-{plate}` over the data
    assert push.ttl_seconds == 300
    assert not push.data_only


def test_without_a_collapse_template_the_key_is_the_notification_id() -> None:
    push = deliver_one("payment_receipt")

    assert push.collapse_key == "n-7"
    # not collapsible on Android: an offline device keeps every one (FCM stores at most 4 keys)
    assert push.collapsible is False
    assert "collapse_key" not in encoded(push)["android"]
    assert encoded(push)["android"]["notification"]["tag"] == "n-7"
    assert push.badge == "increment"
    assert push.data["badge"] == "increment"
    assert push.apns_category == "PAYMENT_RECEIPT"


def test_a_data_only_type_puts_the_lock_screen_render_in_the_data() -> None:
    push = deliver_one("comment_reply")

    assert push.data_only
    assert push.data["title"] == push.title == "Ana replied to you"
    assert push.data["body"] == push.body
    assert push.data["android_channel"] == "social"
    assert push.data["notification_id"] == "n-7"


# -- catalog rules (validated when the catalog loads) ------------------------------------------

CRITICAL = {"category": "security", "urgency": "critical"}
PUSHED = {
    "description": "d",
    "android_channel": "c",
    "category": "transactional",
    "urgency": "medium",
    "channels": ["push", "email"],
    "required_data": ["order_id", "address"],
    "sensitive_fields": ["address"],
    "sample_data": {"order_id": "1", "address": "somewhere"},
}


def catalog_with(push: dict[str, Any], **entry: Any) -> Catalog:
    return Catalog.model_validate({"types": {"t": {**PUSHED, **entry, "push": push}}})


@pytest.mark.parametrize(
    ("push", "entry", "complaint"),
    [
        ({"sound": "Alarm Sound.mp3"}, {}, "not a sound file name"),
        ({"sound": "../etc/passwd"}, {}, "not a sound file name"),
        ({"badge": "double"}, {}, "badge"),
        ({"interruption_level": "urgent"}, {}, "interruption_level"),
        ({"apns_category": "has spaces"}, {}, "apns_category"),
        ({"ttl_seconds": 28 * 86400 + 1}, {}, "less than or equal to 2419200"),
        ({"ttl_seconds": -1}, {}, "greater than or equal to 0"),
        ({"collapse_key": "order-{order_id:>10}"}, {}, "a field is a plain name"),
        ({"collapse_key": "order-{order.id}"}, {}, "a field is a plain name"),
        ({"collapse_key": "order-{order_id!r}"}, {}, "a field is a plain name"),
        ({"collapse_key": "order {order_id}"}, {}, "only letters, digits"),
        ({"collapse_key": "order-{order_id"}, {}, "collapse_key"),
        ({"collapse_key": ""}, {}, "collapse_key is empty"),
        ({"collapse_key": "order-{carrier}"}, {}, "not in required_data"),
        ({"collapse_key": "to-{address}"}, {}, "sensitive fields"),
        ({"data_only": True}, {}, "plays no sound"),
        ({"data_only": True, "sound": None, "apns_category": "X"}, {}, "no iOS category"),
        ({"data_only": True, "sound": None, "interruption_level": "passive"}, {}, "no interruption level"),
        (
            {"data_only": True, "sound": None},
            CRITICAL,
            "cannot be data-only",
        ),
        ({"interruption_level": "critical"}, {"urgency": "high"}, "critical urgency only"),
        ({"interruption_level": "passive"}, {"urgency": "high"}, "does not light the screen"),
        ({"interruption_level": "time-sensitive"}, {"category": "marketing", "urgency": "low"}, "marketing"),
        ({"badge": "increment"}, {"channels": ["email"]}, "never pushed"),
        ({"colour": "red"}, {}, "Extra inputs are not permitted"),
        ({}, {"android_channel": ""}, "android_channel"),
        ({}, {"android_channel": "orders and more"}, "android_channel"),
    ],
)
def test_a_bad_push_block_fails_when_the_catalog_loads(
    push: dict[str, Any], entry: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        catalog_with(push, **entry)


@pytest.mark.parametrize(
    ("push", "entry"),
    [
        ({"collapse_key": "order-{order_id}", "ttl_seconds": 0, "badge": "increment"}, {}),
        ({"collapse_key": "all-orders"}, {}),
        ({"data_only": True, "sound": None}, {"urgency": "high"}),
        ({"interruption_level": "critical", "sound": "siren"}, CRITICAL),
        ({"interruption_level": "passive"}, {"category": "marketing", "urgency": "low"}),
    ],
)
def test_a_good_push_block_loads(push: dict[str, Any], entry: dict[str, Any]) -> None:
    presentation = catalog_with(push, **entry).entry("t").push

    for name, value in push.items():
        assert getattr(presentation, name) == value


def test_types_without_a_push_block_get_the_defaults() -> None:
    entry = Catalog.model_validate({"types": {"t": PUSHED}}).entry("t")

    assert entry.push == PushPresentation()
    push = entry.push
    assert (push.sound, push.badge, push.interruption_level) == ("default", "none", "active")
    assert (push.ttl_seconds, push.data_only) == (None, False)


def test_a_collapse_key_renders_over_the_data_and_is_hashed_when_too_long() -> None:
    presentation = PushPresentation(collapse_key="order-{order_id}")

    assert presentation.collapse_key_for({"order_id": 999}, "n-1") == "order-999"
    assert presentation.collapse_key_for({}, "n-1") == "n-1"  # a field missing: nothing collapses
    long_key = presentation.collapse_key_for({"order_id": "9" * 100}, "n-1")
    assert len(long_key.encode()) <= MAX_COLLAPSE_KEY_BYTES
    assert long_key == presentation.collapse_key_for({"order_id": "9" * 100}, "n-2")  # still collapses
    assert long_key != presentation.collapse_key_for({"order_id": "8" * 100}, "n-1")


def test_the_shipped_catalog_declares_presentation_for_its_push_types() -> None:
    catalog = load_catalog()
    pushed = {name: entry.push for name, entry in catalog.types.items() if Channel.PUSH in entry.channels}

    assert pushed["security_alert"].interruption_level == "time-sensitive"
    assert pushed["order_shipped"].collapse_key == "order-{order_id}"
    assert pushed["comment_reply"].data_only
    assert all(p.ttl_seconds is not None for p in pushed.values())
