"""A notification record as support reads it: the decision trace, then each channel's outcome, then
the delivery log as a timeline (`herald trace`), and a person's recent notifications (`herald user`).

Everything here reads the record the router and the senders wrote; nothing is inferred from
elsewhere. A channel's outcome is its state on `deliveries` once a sender claimed it; before that,
`queued` when the router handed it over, and `suppressed` / `skipped` with the trace's reason when
the router left it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from herald.delivery import QUEUED
from herald.stores.notifications import NotificationRecord

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


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _offset(value: str, start: datetime) -> str:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return ""
    seconds = ((at if at.tzinfo else at.replace(tzinfo=UTC)) - start).total_seconds()
    return f"+{seconds:.1f}s" if seconds >= 0 else f"{seconds:.1f}s"


def render_trace(record: NotificationRecord) -> list[str]:
    lines = [
        f"notification {record.notification_id}  event {record.event_id}  user {record.user_id}",
        f"  {record.type} · {record.urgency} · {record.category} · locale {record.locale} · "
        f"status {record.status} · created {_when(record.created_at)}",
    ]
    marks = [
        f"{name} {_when(value)}"
        for name, value in (
            ("seen", record.seen_at),
            ("read", record.read_at),
            ("acknowledged", record.acked_at),
            ("archived", record.archived_at),
        )
        if value is not None
    ]
    if marks:
        lines.append("  " + " · ".join(marks))
    lines += ["", "decision (rule by rule)"]
    lines += [_trace_step(step) for step in record.decision] or ["  (no trace)"]
    lines += ["", "channels"]
    outcomes = channel_outcomes(record)
    lines += [_outcome(outcome) for outcome in outcomes] or ["  (none: nothing was sent)"]
    lines += ["", "delivery log"]
    for entry in record.delivery_log:
        provider = f"{entry['provider']}" if entry.get("provider") else ""
        extra = " ".join(
            part
            for part in (
                f"code={entry['code']}" if entry.get("code") else "",
                f"id={entry['provider_message_id']}" if entry.get("provider_message_id") else "",
                str(entry.get("detail") or ""),
            )
            if part
        )
        at = str(entry.get("at", ""))
        lines.append(
            f"  {_when(at)} {_offset(at, record.created_at):>8}  {entry.get('channel', '?'):<8} "
            f"{entry.get('outcome', '?'):<13} {provider:<9} {extra}".rstrip()
        )
    if not record.delivery_log:
        lines.append("  (empty)")
    return lines


def _trace_step(step: dict[str, Any]) -> str:
    channel = f"[{step['channel']}] " if step.get("channel") else ""
    return f"  {step.get('verdict', '?'):<6} {step.get('rule', '?'):<15} {channel}{step.get('reason', '')}"


def _outcome(outcome: ChannelOutcome) -> str:
    parts = [
        f"via {outcome.provider}" if outcome.provider else "",
        f"({outcome.provider_message_id})" if outcome.provider_message_id else "",
        f"— {outcome.reason}" if outcome.reason else "",
    ]
    return f"  {outcome.channel:<8} {outcome.state:<13} {' '.join(p for p in parts if p)}".rstrip()


def render_user(user_id: str, records: list[NotificationRecord]) -> list[str]:
    if not records:
        return [f"user {user_id}: no notifications on record"]
    lines = [f"user {user_id}: {len(records)} most recent notification(s), newest first"]
    for record in records:
        channels = ", ".join(f"{o.channel} {o.state}" for o in channel_outcomes(record)) or "-"
        flags = " ".join(
            flag for flag, value in (("read", record.read_at), ("acked", record.acked_at)) if value
        )
        lines.append(
            f"  {_when(record.created_at)}  {record.notification_id}  {record.type:<22} "
            f"{record.urgency:<8} {record.status:<10} {channels}{'  ' + flags if flags else ''}"
        )
    return lines
