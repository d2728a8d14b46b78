"""Property test: the inbox's unread / unseen counts and listings are exact under any interleaving of
new notifications (some created before a read-all but written after it), reads, seens, archives and
read-alls, checked against a plain model after every step. On moto, provisioned from template.yaml
(the Unread index and the ByCreated local index as declared)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.inbox import Archived, Inbox, Mark
from herald.models import Category, Urgency
from herald.routing.decision import notification_id_for
from herald.stores.notifications import NotificationRecord, NotificationStore, stamp
from tests.support.stack import MotoStack, provisioned_environment

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_users = itertools.count()


@dataclass
class Model:
    created: dict[str, datetime] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    watermark: datetime | None = None

    def is_read(self, nid: str) -> bool:
        return nid in self.read or (self.watermark is not None and self.created[nid] <= self.watermark)

    def unread(self) -> set[str]:
        return {n for n in self.created if not self.is_read(n) and n not in self.archived}

    def unseen(self) -> set[str]:
        return {n for n in self.unread() if n not in self.seen}

    def newest_first(self, ids: set[str]) -> list[str]:
        return sorted(ids, key=lambda n: self.created[n], reverse=True)


# A step: ("new", created offset from the clock in ms; negative = created before, written now),
# ("read"|"seen"|"archive", which existing notification), ("read_all",). The clock advances 0-3 ms.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(min_value=-5, max_value=0)),
        st.tuples(st.sampled_from(["read", "seen", "archive"]), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("read_all"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def stack() -> Iterator[MotoStack]:
    with pytest.MonkeyPatch.context() as monkeypatch, provisioned_environment(monkeypatch) as provisioned:
        yield provisioned


def _record(user_id: str, nid: str, created: datetime) -> NotificationRecord:
    return NotificationRecord(
        user_id=user_id,
        notification_id=nid,
        event_id=nid,
        type="order_shipped",
        category=Category.TRANSACTIONAL,
        urgency=Urgency.MEDIUM,
        locale="en",
        created_at=created,
        status="dispatched",
        inbox=True,
        unread_at=stamp(created),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, clock_steps=st.lists(st.integers(min_value=0, max_value=3), min_size=25, max_size=25))
def test_counts_and_listings_match_the_model_after_every_step(
    stack: MotoStack, plan: list[tuple[str, int]], clock_steps: list[int]
) -> None:
    client = stack.client("dynamodb")
    inbox = Inbox(client, stack.tables["NotificationsTable"], stack.tables["UsersTable"])
    store = NotificationStore(client, stack.tables["NotificationsTable"])
    user_id = f"prop-{next(_users)}"
    model = Model()
    clock = T0
    # Every notification gets its own microsecond so "newest first" has one right answer.
    for index, ((action, argument), advance) in enumerate(zip(plan, clock_steps, strict=False)):
        clock += timedelta(milliseconds=advance)
        if action == "new":
            nid = notification_id_for(f"{user_id}#{index}")
            created = clock + timedelta(milliseconds=argument, microseconds=index + 1)
            assert store.create(_record(user_id, nid, created))
            model.created[nid] = created
        elif action == "read_all":
            at = inbox.read_all(user_id, now=clock)
            assert at == stamp(max(clock, model.watermark or clock))
            model.watermark = max(clock, model.watermark or clock)
        elif model.created:
            nid = sorted(model.created)[argument % len(model.created)]
            marked = inbox.mark(user_id, nid, Mark(action), now=clock)
            assert marked is not None
            entry = marked.entry
            {"read": model.read, "seen": model.seen, "archive": model.archived}[action].add(nid)
            if action == "read":
                model.seen.add(nid)
            assert (entry.read_at is not None) == model.is_read(nid)

        counts = inbox.counts(user_id)
        assert (counts.unread, counts.unseen) == (len(model.unread()), len(model.unseen()))

    unread_page, _ = inbox.page(user_id, limit=100, unread=True)
    assert [e.record.notification_id for e in unread_page] == model.newest_first(model.unread())
    visible = set(model.created) - model.archived
    listed, _ = inbox.page(user_id, limit=100)
    assert [e.record.notification_id for e in listed] == model.newest_first(visible)
    for entry in listed:
        nid = entry.record.notification_id
        assert (entry.read_at is not None) == model.is_read(nid)
        assert (entry.seen_at is not None) == (nid in model.seen or model.is_read(nid))
    archived, _ = inbox.page(user_id, limit=100, archived=Archived.ONLY)
    assert [e.record.notification_id for e in archived] == model.newest_first(model.archived)


def test_pages_cover_everything_once_in_order(stack: MotoStack) -> None:
    """GIVEN 23 notifications, some archived, some read WHEN listed 5 at a time THEN every page
    follows the previous one, nothing repeats or goes missing, for each listing."""
    client = stack.client("dynamodb")
    inbox = Inbox(client, stack.tables["NotificationsTable"], stack.tables["UsersTable"])
    store = NotificationStore(client, stack.tables["NotificationsTable"])
    user_id = f"pages-{next(_users)}"
    model = Model()
    for index in range(23):
        nid = notification_id_for(f"{user_id}#{index}")
        created = T0 + timedelta(seconds=index)
        store.create(_record(user_id, nid, created))
        model.created[nid] = created
        if index % 4 == 0:
            inbox.mark(user_id, nid, Mark.ARCHIVE, now=T0 + timedelta(minutes=1))
            model.archived.add(nid)
        elif index % 3 == 0:
            inbox.mark(user_id, nid, Mark.READ, now=T0 + timedelta(minutes=1))
            model.read.add(nid)

    def walk(**filters: object) -> list[str]:
        ids: list[str] = []
        cursor = None
        for _ in range(20):
            page, cursor = inbox.page(user_id, limit=5, cursor=cursor, **filters)  # type: ignore[arg-type]
            assert len(page) <= 5
            ids += [e.record.notification_id for e in page]
            if cursor is None:
                return ids
        raise AssertionError("the cursor never ended")

    assert walk() == model.newest_first(set(model.created) - model.archived)
    assert walk(unread=True) == model.newest_first(model.unread())
    assert walk(archived=Archived.INCLUDE) == model.newest_first(set(model.created))
    assert walk(archived=Archived.ONLY, unread=True) == model.newest_first(model.archived - model.read)
