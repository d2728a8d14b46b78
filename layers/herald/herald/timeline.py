"""A notification record as support reads it, for every operator surface (`herald trace`,
`herald user`, the console's admin routes): each channel's outcome, and a notification found by its
id or by the event id it was routed for.

Everything here reads the record the router and the senders wrote; nothing is inferred from
elsewhere. A channel's outcome is its state on `deliveries` once a sender claimed it; before that,
`queued` when the router handed it over, and `suppressed` / `skipped` with the trace's reason when
the router left it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herald.delivery import QUEUED
from herald.routing.decision import notification_id_for
from herald.stores.notifications import NotificationRecord, NotificationStore

REFUSING_VERDICTS = frozenset({"block", "skip"})


def _refusal(step: dict[str, Any]) -> str:
    """`suppressed` when the router's suppression rule found the contact on the suppression list (a
    suppressed address, every token dead); `skipped` for any other refusal (no such contact, a
    preference, presence, quiet hours, a rate limit)."""
    reason = str(step.get("reason", ""))
    on_the_list = any(word in reason for word in ("suppressed", "dead", "opted out"))
    return "suppressed" if step.get("rule") == "suppression" and on_the_list else "skipped"


@dataclass(frozen=True)
class ChannelOutcome:
    channel: str
    state: str
    reason: str = ""
    provider: str = ""
    provider_message_id: str = ""


# A step that waits "until delivered" ends its chain once its channel reached one of these.
ACCEPTED_STATES = frozenset({"sent", "delivered"})


@dataclass(frozen=True)
class LaterStep:
    """An escalation step after the first: sent only if the one before it did not end the chain."""

    index: int  # 2 for the second step
    channel: str
    previous_channel: str
    previous_until: str  # "acknowledged" or "delivered"


def _planned(record: NotificationRecord) -> tuple[list[str], list[LaterStep]]:
    """(channels handed to senders at once, later escalation steps) from the record's plan."""
    now_channels: list[str] = []
    later: list[LaterStep] = []
    for item in record.plan:
        if "escalation" in item:
            steps = item["escalation"].get("steps") or [
                {"delivery": item["escalation"].get("primary", {})},
                {"delivery": item["escalation"].get("fallback", {})},
            ]
            channels = [str(step.get("delivery", {}).get("channel")) for step in steps]
            now_channels.extend(channels[:1])
            later += [
                LaterStep(i + 1, channels[i], channels[i - 1], str(steps[i - 1].get("until", "acknowledged")))
                for i in range(1, len(steps))
            ]
        elif item.get("channel"):
            now_channels.append(str(item["channel"]))
    return now_channels, later


def _later_step(record: NotificationRecord, step: LaterStep) -> ChannelOutcome:
    """A later step the state machine has not sent (yet): why not."""
    previous = str((record.deliveries.get(step.previous_channel) or {}).get("state", ""))
    if step.previous_until == "delivered" and previous in ACCEPTED_STATES:
        why = f"step {step.index - 1} ({step.previous_channel}) was delivered"
        return ChannelOutcome(step.channel, "not_needed", f"escalation step {step.index}: {why}")
    if record.acked_at is not None:
        return ChannelOutcome(step.channel, "not_needed", f"escalation step {step.index}: acknowledged first")
    return ChannelOutcome(step.channel, "waiting", f"escalation step {step.index}: not sent yet")


def channel_outcomes(record: NotificationRecord) -> list[ChannelOutcome]:
    """One outcome per channel the notification touched, in the order the router considered them."""
    first, later = _planned(record)
    outcomes: dict[str, ChannelOutcome] = {}
    for step in record.decision:
        channel = step.get("channel")
        if channel and step.get("verdict") in REFUSING_VERDICTS and channel not in outcomes:
            outcomes[channel] = ChannelOutcome(
                channel, _refusal(step), f"{step.get('rule')}: {step.get('reason')}"
            )
    for channel in first:
        outcomes[channel] = ChannelOutcome(channel, QUEUED)
    for step in later:
        if step.channel not in first:
            outcomes[step.channel] = _later_step(record, step)
    for channel, delivery in record.deliveries.items():
        reason = " ".join(str(delivery[k]) for k in ("code", "reason") if delivery.get(k))
        outcomes[channel] = ChannelOutcome(
            channel,
            str(delivery.get("state", "?")),
            reason,
            str(delivery.get("provider") or ""),
            str(delivery.get("provider_message_id") or ""),
        )
    return list(outcomes.values())


def find_notification(
    store: NotificationStore, identifier: str, user_id: str | None = None
) -> NotificationRecord | None:
    """`identifier` as a notification id (`ntf-…`, a digest's `dgs-…`), else as the event id the
    router named its notification after (`event_id`, or `event_id#user_id` for one member of an
    audience's event: name the member with `user_id`)."""
    candidates = [identifier]
    if user_id:
        candidates += [notification_id_for(f"{identifier}#{user_id}"), notification_id_for(identifier)]
        return next((r for c in candidates if (r := store.get(user_id, c)) is not None), None)
    candidates.append(notification_id_for(identifier))
    return next((r for c in candidates if (r := store.find(c)) is not None), None)
