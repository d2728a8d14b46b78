"""Presence from Pusher's webhooks (decision 018): which people have their `private-user-<id>`
channel occupied.

A webhook body, once its signature is verified (herald.api.pusher_webhooks), is
`{"time_ms": <Pusher's clock>, "events": [{"name", "channel", ...}, ...]}`. Only
`channel_occupied` / `channel_vacated` of a `private-user-<id>` channel change a person's
presence: that is the channel the realtime sender triggers, so it is what "online" must mean.
`member_added` / `member_removed` (presence channels) and every other event or channel are
acknowledged and counted as ignored: a member of a presence channel is connected, but a realtime
message to `private-user-<id>` reaches them only if that channel is occupied, which its own
occupancy events report.

Every event of a body carries the body's `time_ms`; events of the same channel in one body are in
the order Pusher saw them, so only the last one is applied. Each person's change is one
conditional write (herald.stores.presence.PresenceStore.apply): an older webhook never overwrites a
newer one, and a repeated or replayed webhook changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.channels.realtime_delivery import user_channel
from herald.stores.presence import PresenceStore

USER_CHANNEL_PREFIX = user_channel("")
OCCUPANCY = {"channel_occupied": True, "channel_vacated": False}
MAX_USER_ID_LENGTH = 128  # the directory's bound on a person's id


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    channel: str = ""


class PusherWebhook(BaseModel):
    """The verified body; extra fields (and each event's `user_id`, `data`...) are tolerated."""

    model_config = ConfigDict(extra="allow", frozen=True)

    time_ms: int = Field(gt=0, strict=True)
    events: list[WebhookEvent] = Field(default_factory=list)


@dataclass(frozen=True)
class OccupancyChange:
    user_id: str
    occupied: bool
    time_ms: int


@dataclass(frozen=True)
class Outcome:
    applied: int  # changes written
    stale: int  # changes refused because the table holds a newer (or the same) state
    ignored: int  # events that are not a private-user channel's occupancy, or superseded in the body


def user_of_channel(channel: str) -> str | None:
    """`private-user-<id>` → `<id>`; None for any other channel."""
    if not channel.startswith(USER_CHANNEL_PREFIX):
        return None
    user_id = channel[len(USER_CHANNEL_PREFIX) :]
    if not user_id or len(user_id) > MAX_USER_ID_LENGTH or user_id.startswith("#"):
        return None
    return user_id


def occupancy_changes(webhook: PusherWebhook) -> tuple[list[OccupancyChange], int]:
    """The last occupancy event of each `private-user-<id>` channel, and how many events were
    ignored (other events, other channels, and earlier events of a channel in the same body)."""
    latest: dict[str, OccupancyChange] = {}
    ignored = 0
    for event in webhook.events:
        user_id = user_of_channel(event.channel)
        if event.name not in OCCUPANCY or user_id is None:
            ignored += 1
            continue
        if user_id in latest:
            ignored += 1  # superseded by this later event of the same channel
        latest.pop(user_id, None)
        latest[user_id] = OccupancyChange(user_id, OCCUPANCY[event.name], webhook.time_ms)
    return list(latest.values()), ignored


def apply_webhook(store: PresenceStore, body: dict[str, Any], *, max_age_seconds: int) -> Outcome:
    """Apply a verified webhook body. Raises pydantic.ValidationError on a malformed body (before
    anything is written)."""
    webhook = PusherWebhook.model_validate(body)
    changes, ignored = occupancy_changes(webhook)
    applied = 0
    for change in changes:
        if store.apply(
            change.user_id, occupied=change.occupied, time_ms=change.time_ms, max_age_seconds=max_age_seconds
        ):
            applied += 1
    return Outcome(applied=applied, stale=len(changes) - applied, ignored=ignored)
