"""The shared outbox: every delivery a sandbox accepted, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from local.sandboxes.web import iso, parse_iso, utc_now

ChannelName = Literal["email", "push", "sms", "realtime", "webhook"]


@dataclass(frozen=True)
class OutboxEntry:
    """One accepted delivery. `extra` holds provider specifics (e.g. `delivered_to_subscribers`)."""

    seq: int
    provider: str
    channel: ChannelName
    recipient: str
    subject: str | None
    body: str | None
    provider_id: str
    time: datetime
    request: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "provider": self.provider,
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject,
            "body": self.body,
            "provider_id": self.provider_id,
            "time": iso(self.time),
            "request": self.request,
            **self.extra,
        }


def _since_filter(since: int | str | datetime | None) -> Callable[[OutboxEntry], bool]:
    """`since` is a sequence number (entries after it) or a moment (entries strictly later)."""
    if since is None or since == "":
        return lambda _: True
    if isinstance(since, int) or (isinstance(since, str) and since.strip().isdigit()):
        seq = int(since)
        return lambda entry: entry.seq > seq
    moment = since if isinstance(since, datetime) else parse_iso(since)
    return lambda entry: entry.time > moment


class Outbox:
    """Thread-safe, append-only record of accepted deliveries (until `clear()`)."""

    def __init__(self) -> None:
        self._entries: list[OutboxEntry] = []
        self._seq = 0
        self._changed = threading.Condition()

    def record(
        self,
        *,
        provider: str,
        channel: ChannelName,
        recipient: str,
        subject: str | None,
        body: str | None,
        provider_id: str,
        request: dict[str, Any],
        **extra: Any,
    ) -> OutboxEntry:
        with self._changed:
            self._seq += 1
            entry = OutboxEntry(
                seq=self._seq,
                provider=provider,
                channel=channel,
                recipient=recipient,
                subject=subject,
                body=body,
                provider_id=provider_id,
                time=utc_now(),
                request=request,
                extra=extra,
            )
            self._entries.append(entry)
            self._changed.notify_all()
            return entry

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest entry ever recorded (a cursor for `since=`)."""
        with self._changed:
            return self._seq

    def entries(
        self,
        *,
        since: int | str | datetime | None = None,
        provider: str | None = None,
        channel: str | None = None,
        recipient: str | None = None,
    ) -> list[OutboxEntry]:
        after = _since_filter(since)
        with self._changed:
            snapshot = list(self._entries)
        return [
            entry
            for entry in snapshot
            if after(entry)
            and (provider is None or entry.provider == provider)
            and (channel is None or entry.channel == channel)
            and (recipient is None or entry.recipient == recipient)
        ]

    def wait_for(
        self,
        count: int = 1,
        *,
        timeout: float = 10.0,
        since: int | str | datetime | None = None,
        provider: str | None = None,
        channel: str | None = None,
        recipient: str | None = None,
    ) -> list[OutboxEntry]:
        """Block until at least `count` entries match; returns them or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.entries(since=since, provider=provider, channel=channel, recipient=recipient)
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"outbox: {len(found)} of {count} entries after {timeout}s "
                        f"(provider={provider}, channel={channel}, recipient={recipient})"
                    )
                self._changed.wait(remaining)

    def clear(self) -> None:
        """Forget every entry; sequence numbers keep increasing so old cursors stay valid."""
        with self._changed:
            self._entries.clear()

    def __len__(self) -> int:
        with self._changed:
            return len(self._entries)
