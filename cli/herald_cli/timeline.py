"""A notification record as support reads it, printed: the decision trace, then each channel's
outcome, then the delivery log as a timeline (`herald trace`), and a person's recent notifications
(`herald user`). The outcomes come from `herald.timeline`, as the console's do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from herald.stores.notifications import NotificationRecord
from herald.timeline import ChannelOutcome, channel_outcomes


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
