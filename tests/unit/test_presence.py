"""Presence from Pusher's occupancy webhooks: which events count, and the newest `time_ms` wins."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from herald.presence import PusherWebhook, apply_webhook, occupancy_changes, user_of_channel
from herald.stores.dynamo import from_attributes
from herald.stores.presence import PresenceStore, presence_from_item
from tests.support.aws import table_definitions

pytestmark = pytest.mark.unit

TABLE = "presence"
MAX_AGE = 600
T1 = 1_796_040_000_000  # 2026-11-30T12:00:00Z, in ms
T2 = T1 + 1_500


@pytest.fixture
def presence(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, PresenceStore]]:
    """moto in-process with the template's Presence table."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, **table_definitions()["PresenceTable"])
        yield client, PresenceStore(client, TABLE)


def body(time_ms: int, *events: tuple[str, str]) -> dict[str, Any]:
    return {"time_ms": time_ms, "events": [{"name": name, "channel": channel} for name, channel in events]}


def item(client: Any, user_id: str) -> dict[str, Any] | None:
    found = client.get_item(TableName=TABLE, Key={"user_id": {"S": user_id}}, ConsistentRead=True)
    return from_attributes(found["Item"]) if "Item" in found else None


def apply(store: PresenceStore, webhook: dict[str, Any]) -> tuple[int, int, int]:
    outcome = apply_webhook(store, webhook, max_age_seconds=MAX_AGE)
    return outcome.applied, outcome.stale, outcome.ignored


# -- which events count -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "user_id"),
    [
        ("private-user-u1", "u1"),
        ("private-user-a-b-c", "a-b-c"),
        ("private-user-", None),
        ("private-user", None),
        ("presence-user-u1", None),
        ("private-encrypted-user-u1", None),
        ("private-users-u1", None),
        ("user-u1", None),
    ],
)
def test_only_private_user_channels_name_a_person(channel: str, user_id: str | None) -> None:
    assert user_of_channel(channel) == user_id


def test_the_last_occupancy_event_of_a_channel_in_a_body_wins_and_the_rest_are_ignored() -> None:
    # GIVEN a body where u1 connects and leaves, u2 connects, and presence/other events arrive
    webhook = PusherWebhook.model_validate(
        {
            "time_ms": T1,
            "events": [
                {"name": "channel_occupied", "channel": "private-user-u1"},
                {"name": "member_added", "channel": "presence-user-u1", "user_id": "u1"},
                {"name": "channel_occupied", "channel": "private-user-u2"},
                {"name": "channel_vacated", "channel": "private-user-u1"},
                {"name": "channel_occupied", "channel": "private-orders"},
                {"name": "client_event", "channel": "private-user-u2", "event": "client-x", "data": "{}"},
            ],
        }
    )
    # WHEN it is reduced to changes
    changes, ignored = occupancy_changes(webhook)
    # THEN one change per person, the later event of u1 winning, at the body's time
    assert [(c.user_id, c.occupied, c.time_ms) for c in changes] == [("u2", True, T1), ("u1", False, T1)]
    assert ignored == 4  # u1's superseded occupied, the member, the other channel, the client event


@pytest.mark.parametrize(
    "webhook",
    [
        {"events": []},
        {"time_ms": "1796040000000", "events": []},
        {"time_ms": T1, "events": "channel_occupied"},
        {"time_ms": T1, "events": [{"channel": "private-user-u1"}]},
    ],
)
def test_a_body_of_another_shape_is_refused_before_anything_is_written(
    presence: tuple[Any, PresenceStore], webhook: dict[str, Any]
) -> None:
    client, store = presence
    with pytest.raises(ValidationError):
        apply_webhook(store, webhook, max_age_seconds=MAX_AGE)
    assert client.scan(TableName=TABLE)["Items"] == []


# -- ordered, idempotent writes -----------------------------------------------------------


def test_occupied_is_written_with_its_time_and_an_expiry(presence: tuple[Any, PresenceStore]) -> None:
    client, store = presence
    assert apply(store, body(T1, ("channel_occupied", "private-user-u1"))) == (1, 0, 0)
    assert item(client, "u1") == {
        "user_id": "u1",
        "occupied": True,
        "time_ms": T1,
        "expires_at": T1 // 1000 + MAX_AGE,
    }
    stored = presence_from_item(item(client, "u1") or {})
    assert stored.online_at(datetime.fromtimestamp(T1 / 1000 + 1, UTC), MAX_AGE)
    assert not stored.online_at(datetime.fromtimestamp(T1 / 1000 + MAX_AGE + 1, UTC), MAX_AGE)


def test_a_repeated_webhook_changes_nothing(presence: tuple[Any, PresenceStore]) -> None:
    client, store = presence
    webhook = body(T1, ("channel_occupied", "private-user-u1"), ("channel_occupied", "private-user-u2"))
    assert apply(store, webhook) == (2, 0, 0)
    before = client.scan(TableName=TABLE)["Items"]
    assert apply(store, webhook) == (0, 2, 0)
    assert client.scan(TableName=TABLE)["Items"] == before


def test_an_older_event_delivered_late_never_overwrites_a_newer_one(
    presence: tuple[Any, PresenceStore],
) -> None:
    # GIVEN u1 vacated at T2 applied first
    client, store = presence
    assert apply(store, body(T2, ("channel_vacated", "private-user-u1"))) == (1, 0, 0)
    # WHEN the occupied of T1 arrives after it
    assert apply(store, body(T1, ("channel_occupied", "private-user-u1"))) == (0, 1, 0)
    # THEN u1 stays vacated as of T2
    assert item(client, "u1") == {
        "user_id": "u1",
        "occupied": False,
        "time_ms": T2,
        "expires_at": T2 // 1000 + MAX_AGE,
    }


def test_a_newer_event_replaces_an_older_one(presence: tuple[Any, PresenceStore]) -> None:
    client, store = presence
    apply(store, body(T1, ("channel_occupied", "private-user-u1")))
    assert apply(store, body(T2, ("channel_vacated", "private-user-u1"))) == (1, 0, 0)
    assert apply(store, body(T2 + 1, ("channel_occupied", "private-user-u1"))) == (1, 0, 0)
    assert (item(client, "u1") or {})["occupied"] is True
    assert (item(client, "u1") or {})["time_ms"] == T2 + 1


@pytest.mark.parametrize("first_occupied", [True, False])
def test_at_the_same_millisecond_vacated_wins_whatever_the_arrival_order(
    presence: tuple[Any, PresenceStore], first_occupied: bool
) -> None:
    client, store = presence
    occupied = body(T1, ("channel_occupied", "private-user-u1"))
    vacated = body(T1, ("channel_vacated", "private-user-u1"))
    for webhook in (occupied, vacated) if first_occupied else (vacated, occupied):
        apply(store, webhook)
    assert (item(client, "u1") or {})["occupied"] is False


def test_presence_members_and_other_channels_write_nothing(presence: tuple[Any, PresenceStore]) -> None:
    client, store = presence
    webhook = {
        "time_ms": T1,
        "events": [
            {"name": "member_added", "channel": "presence-user-u1", "user_id": "u1"},
            {"name": "member_removed", "channel": "presence-user-u2", "user_id": "u2"},
            {"name": "channel_occupied", "channel": "private-orders"},
        ],
    }
    assert apply(store, webhook) == (0, 0, 3)
    assert client.scan(TableName=TABLE)["Items"] == []
