"""`herald send --wait`: what became of a sent notification, read from the records the router and
the senders write (the same reading as `herald trace`), until every channel has settled or the
time is up. For an audience, each member's notification (`event_id#user_id`) is read in batches."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from herald.delivery import QUEUED
from herald.models import Audience
from herald.routing.decision import notification_id_for
from herald.stores.dynamo import batch_get
from herald.stores.notifications import NotificationRecord
from herald.stores.users import UserStore
from herald.topics import TopicStore
from herald_cli.timeline import channel_outcomes

# A channel in one of these has not settled yet (the router handed it over, a sender holds it, it
# waits to be retried, or an escalation step has not come).
UNSETTLED = frozenset({QUEUED, "sending", "retry", "waiting"})
MAX_WAITED_MEMBERS = 10_000


def settled(record: NotificationRecord) -> bool:
    return all(outcome.state not in UNSETTLED for outcome in channel_outcomes(record))


def members(users: UserStore, topics: TopicStore, audience: Audience, limit: int) -> list[str]:
    """The audience as the router pages through it (at most `limit`)."""

    def pages(
        page: Callable[[dict[str, Any] | None], tuple[list[str], dict[str, Any] | None]],
    ) -> Iterator[str]:
        cursor: dict[str, Any] | None = None
        while True:
            ids, cursor = page(cursor)
            yield from ids
            if cursor is None:
                return

    if audience.role is not None:
        found = pages(lambda c: users.user_ids_with_role(str(audience.role), 100, c))
    elif audience.topic is not None:
        found = pages(lambda c: topics.followers(str(audience.topic), 100, c))
    else:
        found = pages(lambda c: users.everyone(100, c))
    chosen: list[str] = []
    for user_id in found:
        if len(chosen) == limit:
            break
        chosen.append(user_id)
    return chosen


@dataclass
class Progress:
    expected: int
    records: dict[str, NotificationRecord] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return len(self.records) == self.expected and all(settled(r) for r in self.records.values())

    def summary(self) -> list[str]:
        statuses = Counter(r.status for r in self.records.values())
        channels = Counter(
            f"{o.channel} {o.state}" for r in self.records.values() for o in channel_outcomes(r)
        )
        lines = [f"{len(self.records)} of {self.expected} routed: " + _counts(statuses)]
        if channels:
            lines.append("  channels: " + _counts(channels))
        return lines


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "-"


def wait_for(
    dynamodb: Any,
    notifications_table: str,
    keys: dict[str, str],
    *,
    timeout: float,
    interval: float = 1.0,
) -> Progress:
    """Poll the records named by `keys` (user id -> notification id) until all are routed and
    settled, or `timeout` seconds pass."""
    progress = Progress(expected=len(keys))
    deadline = time.monotonic() + timeout
    while True:
        found = batch_get(
            dynamodb,
            {notifications_table: [{"user_id": u, "notification_id": n} for u, n in keys.items()]},
            consistent=True,
        )[notifications_table]
        progress.records = {str(i["user_id"]): NotificationRecord.model_validate(i) for i in found}
        if progress.done or time.monotonic() >= deadline:
            return progress
        time.sleep(interval)


def notification_keys(event_id: str, user_id: str | None, recipients: list[str]) -> dict[str, str]:
    """user id -> the notification id the router gives them (`event_id`, or `event_id#user_id`)."""
    if user_id is not None:
        return {user_id: notification_id_for(event_id)}
    return {member: notification_id_for(f"{event_id}#{member}") for member in recipients}
