"""The unread digest's rules (herald.digest, decision 020): which notifications, which people, when."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from herald.catalog import load_catalog
from herald.digest import (
    DIGEST_INDEX,
    DIGEST_TYPE,
    INDEX_ATTRIBUTES,
    LEGACY_DIGEST_INDEX,
    DigestEntry,
    DigestSettings,
    Skipped,
    digest_data,
    digest_id,
    due_days,
    email_blocked,
    notification_url,
    select,
    window_closed,
)
from herald.models import Category, Channel, Urgency
from herald.settings import ConfigurationError, load
from herald.stores.notifications import NotificationRecord, stamp
from herald.users import Preferences, QuietHours, UserProfile
from tests.support.aws import template

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DIGEST = load_catalog().entry(DIGEST_TYPE)
ENVIRONMENT = {
    "USERS_TABLE": "users",
    "PRESENCE_TABLE": "presence",
    "SUPPRESSION_TABLE": "suppression",
    "NOTIFICATIONS_TABLE": "notifications",
    "RATE_COUNTERS_TABLE": "rates",
    "IDEMPOTENCY_TABLE": "idempotency",
    "EMAIL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/email",
    "APP_BASE_URL": "https://app.example.com",
}


def person(**overrides: Any) -> UserProfile:
    return UserProfile.model_validate({"user_id": "42", "email": "ana@example.com", **overrides})


def record(
    number: int = 1, *, due: datetime = NOW - timedelta(minutes=1), **fields: Any
) -> NotificationRecord:
    created = due - timedelta(days=1)
    return NotificationRecord(
        user_id="42",
        notification_id=f"ntf-{number:032x}",
        event_id=f"evt-{number}",
        type=fields.pop("type", "order_shipped"),
        category=fields.pop("category", Category.TRANSACTIONAL),
        urgency=Urgency.MEDIUM,
        locale="en",
        created_at=fields.pop("created_at", created),
        status="dispatched",
        **NotificationRecord.digest_fields(due),
        **fields,
    )


# -- the index partitions a run reads ---------------------------------------------------------------


def test_a_run_reads_today_and_the_lookback_days_before_it_oldest_first() -> None:
    assert due_days(NOW, 3) == ["2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30"]


def test_the_partitions_are_utc_days_whatever_the_clock_zone() -> None:
    tokyo_morning = datetime(2026, 12, 1, 8, 0, tzinfo=person(time_zone="Asia/Tokyo").zone)  # 23:00 UTC

    assert due_days(tokyo_morning, 0) == ["2026-11-30"]


# -- the person's local daytime -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "zone", "open_"),
    [
        (datetime(2026, 11, 30, 9, 0, tzinfo=UTC), "Europe/Lisbon", True),  # 09:00 local, the first minute
        (datetime(2026, 11, 30, 8, 59, tzinfo=UTC), "Europe/Lisbon", False),  # 08:59
        (datetime(2026, 11, 30, 20, 59, tzinfo=UTC), "Europe/Lisbon", True),  # 20:59, the last minute
        (datetime(2026, 11, 30, 21, 0, tzinfo=UTC), "Europe/Lisbon", False),  # 21:00: evening
        (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "America/New_York", False),  # 07:00 in New York
        (datetime(2026, 11, 30, 3, 30, tzinfo=UTC), "Asia/Kolkata", True),  # 09:00 in India (+05:30)
        (datetime(2026, 11, 30, 3, 29, tzinfo=UTC), "Asia/Kolkata", False),  # 08:59 there
    ],
)
def test_a_digest_goes_only_in_the_local_window(utc: datetime, zone: str, open_: bool) -> None:
    closed = window_closed(utc, person(time_zone=zone), 9, 21)

    assert (closed is None) is open_, closed


def test_summer_time_moves_the_window_with_the_clock() -> None:
    new_york = person(time_zone="America/New_York")

    # 09:00 local is 13:00 UTC in summer (EDT) and 14:00 UTC in winter (EST)
    assert window_closed(datetime(2026, 7, 1, 13, 0, tzinfo=UTC), new_york, 9, 21) is None
    assert window_closed(datetime(2026, 12, 1, 13, 0, tzinfo=UTC), new_york, 9, 21) is not None


def test_never_during_quiet_hours_even_in_the_window() -> None:
    late_sleeper = person(time_zone="UTC", quiet_hours=QuietHours(start=time(23, 0), end=time(11, 0)))

    assert "quiet hours" in str(window_closed(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), late_sleeper, 9, 21))
    assert window_closed(datetime(2026, 11, 30, 11, 0, tzinfo=UTC), late_sleeper, 9, 21) is None


# -- which notifications --------------------------------------------------------------------------------


def test_due_unread_notifications_are_kept_oldest_first() -> None:
    newer, older = record(1, due=NOW - timedelta(minutes=1)), record(2, due=NOW - timedelta(hours=5))

    keep, skip = select([newer, older], now=NOW, watermark=None, preferences=Preferences())

    assert [r.notification_id for r in keep] == [older.notification_id, newer.notification_id]
    assert skip == []


def test_one_not_due_yet_waits_in_neither_list() -> None:
    keep, skip = select(
        [record(due=NOW + timedelta(seconds=1))], now=NOW, watermark=None, preferences=Preferences()
    )

    assert (keep, skip) == ([], [])


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"read_at": NOW - timedelta(hours=1)}, Skipped.READ),
        ({"archived_at": NOW - timedelta(hours=1)}, Skipped.ARCHIVED),
        ({"acked_at": NOW - timedelta(hours=1)}, Skipped.ACKNOWLEDGED),
    ],
)
def test_read_archived_or_acknowledged_ones_are_dropped_with_the_reason(
    fields: dict[str, Any], why: Skipped
) -> None:
    done = record(**fields)

    keep, skip = select([done], now=NOW, watermark=None, preferences=Preferences())

    assert keep == [] and skip == [(done, why)]


def test_read_all_covers_what_was_created_up_to_its_watermark() -> None:
    before, at, after = (
        record(1, created_at=NOW - timedelta(days=2)),
        record(2, created_at=NOW - timedelta(days=1)),
        record(3, created_at=NOW - timedelta(days=1) + timedelta(microseconds=1)),
    )

    keep, skip = select(
        [before, at, after], now=NOW, watermark=stamp(NOW - timedelta(days=1)), preferences=Preferences()
    )

    assert keep == [after]
    assert skip == [(before, Skipped.READ_ALL), (at, Skipped.READ_ALL)]


def test_a_type_or_category_muted_since_is_dropped_but_security_cannot_be_muted() -> None:
    shipped, reply = record(1), record(2, type="comment_reply")
    alert = record(3, type="security_alert", category=Category.SECURITY)
    preferences = Preferences(
        muted_types=frozenset({"comment_reply"}), muted_categories=frozenset({"security"})
    )

    keep, skip = select([shipped, reply, alert], now=NOW, watermark=None, preferences=preferences)

    assert keep == [shipped, alert]
    assert skip == [(reply, Skipped.MUTED)]


def test_email_turned_off_for_a_category_keeps_its_notifications_out_of_the_digest() -> None:
    # GIVEN email turned off for transactional notifications (not the category, not email at all)
    shipped = record(1)
    alert = record(2, type="security_alert", category=Category.SECURITY)
    preferences = Preferences(
        muted_channels={
            Category.TRANSACTIONAL: frozenset({Channel.EMAIL}),
            Category.SECURITY: frozenset({Channel.EMAIL}),
        }
    )

    keep, skip = select([shipped, alert], now=NOW, watermark=None, preferences=preferences)

    # THEN the transactional one never reaches a digest email; security cannot be turned off this way
    assert keep == [alert]
    assert skip == [(shipped, Skipped.EMAIL_MUTED)]


# -- who may get one at all -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"email": None}, Skipped.NO_EMAIL),
        ({"preferences": {"channels": {"email": False}}}, Skipped.EMAIL_OFF),
        ({"preferences": {"muted_types": [DIGEST_TYPE]}}, Skipped.DIGEST_MUTED),
        ({"preferences": {"muted_categories": ["transactional"]}}, Skipped.DIGEST_MUTED),
        ({"preferences": {"muted_channels": {"transactional": ["email"]}}}, Skipped.DIGEST_MUTED),
        ({"preferences": {"muted_channels": {"transactional": ["push"]}}}, None),
        ({"preferences": {"channels": {"push": False}, "muted_types": ["order_shipped"]}}, None),
    ],
)
def test_no_digest_without_an_address_email_on_and_the_digest_unmuted(
    overrides: dict[str, Any], why: Skipped | None
) -> None:
    assert email_blocked(person(**overrides), DIGEST) == why


# -- the digest itself ----------------------------------------------------------------------------------


def test_the_digest_id_is_the_same_for_every_run_of_the_person_day_and_sequence() -> None:
    first = digest_id("42", date(2026, 11, 30), 0)

    assert first == digest_id("42", date(2026, 11, 30), 0)
    assert first.startswith("dgs-") and len(first) == 36
    others = {digest_id("43", date(2026, 11, 30), 0), digest_id("42", date(2026, 12, 1), 0)}
    assert len({first, digest_id("42", date(2026, 11, 30), 1), *others}) == 4


def test_the_email_lists_newest_first_with_a_link_into_the_app_for_each() -> None:
    entries = [
        DigestEntry(
            notification_id=f"ntf-{n}",
            type="order_shipped",
            title=f"Order {n} shipped",
            url=notification_url("https://app.example.com/", f"ntf-{n}"),
            created_at=stamp(NOW - timedelta(hours=n)),
        )
        for n in (3, 1, 2)
    ]

    data = digest_data(entries, "https://app.example.com/")

    assert data == {
        "count": 3,
        "items": [
            {"title": "Order 1 shipped", "url": "https://app.example.com/notifications/ntf-1"},
            {"title": "Order 2 shipped", "url": "https://app.example.com/notifications/ntf-2"},
            {"title": "Order 3 shipped", "url": "https://app.example.com/notifications/ntf-3"},
        ],
        "inbox_url": "https://app.example.com/notifications",
    }


def test_the_catalog_entry_is_email_only_and_transactional() -> None:
    assert DIGEST.channels == {"email"} and DIGEST.category is Category.TRANSACTIONAL
    assert DIGEST.escalation == ()


# -- settings -------------------------------------------------------------------------------------------


def test_settings_default_to_nine_until_nine_once_a_day() -> None:
    settings = load(DigestSettings, ENVIRONMENT)

    assert (settings.local_hour, settings.local_end_hour) == (9, 21)
    assert settings.min_interval_seconds == 12 * 3600
    assert settings.lookback_days == 3


def test_a_window_that_ends_before_it_starts_fails_at_cold_start() -> None:
    with pytest.raises(ConfigurationError, match="DIGEST_LOCAL_HOUR"):
        load(DigestSettings, {**ENVIRONMENT, "DIGEST_LOCAL_HOUR": "21"})


def test_the_app_link_must_be_a_web_address() -> None:
    with pytest.raises(ConfigurationError, match="APP_BASE_URL"):
        load(DigestSettings, {**ENVIRONMENT, "APP_BASE_URL": "app.example.com"})


def test_the_index_is_chosen_by_the_template_and_is_never_another() -> None:
    assert load(DigestSettings, ENVIRONMENT).index == DIGEST_INDEX == "DigestPending"
    assert load(DigestSettings, {**ENVIRONMENT, "DIGEST_INDEX": "DigestDue"}).index == LEGACY_DIGEST_INDEX
    with pytest.raises(ConfigurationError, match="DIGEST_INDEX"):
        load(DigestSettings, {**ENVIRONMENT, "DIGEST_INDEX": "Unread"})


# -- the index projects what a run reads (decision 033) -------------------------------------------------

KEYS = {"user_id", "notification_id", "digest_day", "digest_due_at"}
# What the senders' claims and outcomes, presence and the inbox's seen mark write on a record.
DELIVERY_WRITES = {"deliveries", "delivery_log", "task_token", "in_app", "updated_at", "seen_at", "unread_at"}


def _notifications_indexes() -> list[dict[str, Any]]:
    return template()["Resources"]["NotificationsTable"]["Properties"]["GlobalSecondaryIndexes"]


def test_the_digest_index_projects_what_a_run_reads_and_nothing_a_delivery_writes() -> None:
    (index,) = [i for i in _notifications_indexes() if i.get("IndexName") == DIGEST_INDEX]

    assert [k["AttributeName"] for k in index["KeySchema"]] == ["digest_day", "digest_due_at"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert set(index["Projection"]["NonKeyAttributes"]) == INDEX_ATTRIBUTES
    assert not INDEX_ATTRIBUTES & DELIVERY_WRITES


def _projected(item: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name in KEYS | INDEX_ATTRIBUTES}


@pytest.mark.parametrize(
    ("fields", "kept", "why"),
    [
        ({}, True, None),
        ({"read_at": NOW - timedelta(hours=1)}, False, Skipped.READ),
        ({"archived_at": NOW - timedelta(hours=1)}, False, Skipped.ARCHIVED),
        ({"acked_at": NOW - timedelta(hours=1)}, False, Skipped.ACKNOWLEDGED),
        ({"type": "comment_reply"}, False, Skipped.MUTED),
    ],
)
def test_a_projected_index_item_is_a_record_the_rules_judge_as_the_whole_one(
    fields: dict[str, Any], kept: bool, why: Skipped | None
) -> None:
    # GIVEN a record as the router and the senders leave it (plan, trace, delivery log, in-app render)
    full = record(
        data={"order_id": "A-1", "carrier": "UPS"},
        decision=[{"channel": "push", "decision": "send"}],
        plan=[{"channel": "push"}, {"channel": "email"}],
        deliveries={"push": {"state": "sent"}},
        delivery_log=[{"channel": "push", "outcome": "sent"}],
        inbox=True,
        in_app={"title": "Order A-1 shipped"},
        **fields,
    )
    item = full.model_dump(mode="json", exclude_none=True)
    preferences = Preferences(muted_types=["comment_reply"])

    # WHEN the digest reads it through the index (only the keys and the projected attributes)
    projected = NotificationRecord.model_validate(_projected(item))
    keep, skip = select([projected], now=NOW, watermark=None, preferences=preferences)

    # THEN it is the same notification to the digest, judged as the whole record would be
    read = INDEX_ATTRIBUTES | KEYS
    assert projected.model_dump(include=read) == full.model_dump(include=read)
    assert [r.notification_id for r in keep] == ([full.notification_id] if kept else [])
    assert [w for _, w in skip] == ([why] if why else [])


def test_an_existing_stack_moves_to_the_new_index_one_index_per_deploy() -> None:
    """CloudFormation adds or deletes one GSI per table update: with KeepDigestDueIndex=true the
    stack of before gains DigestPending and the digest still reads DigestDue; with the default it
    loses DigestDue and the digest reads DigestPending. Function, permission and index follow one
    condition."""
    resources = template()["Resources"]
    before = {"DigestDue", "Unread", "ByNotification"}

    def names(keep: bool) -> set[str]:
        found = set()
        for index in _notifications_indexes():
            if "Fn::If" in index:
                condition, when_true, when_false = index["Fn::If"]
                assert condition == "KeepsDigestDueIndex"
                index = when_true if keep else when_false
            if "IndexName" in index:
                found.add(index["IndexName"])
        return found

    migrating, after = names(True), names(False)
    assert len(migrating ^ before) == 1 and migrating - before == {DIGEST_INDEX}
    assert len(after ^ migrating) == 1 and migrating - after == {LEGACY_DIGEST_INDEX}
    condition = template()["Conditions"]["KeepsDigestDueIndex"]
    assert condition == {"Fn::Equals": [{"Ref": "KeepDigestDueIndex"}, "true"]}
    assert template()["Parameters"]["KeepDigestDueIndex"]["Default"] == "false"

    digest = resources["DigestFunction"]["Properties"]
    chosen = {"Fn::If": ["KeepsDigestDueIndex", LEGACY_DIGEST_INDEX, DIGEST_INDEX]}
    assert digest["Environment"]["Variables"]["DIGEST_INDEX"] == chosen
    statements = [st for p in digest["Policies"] if "Statement" in p for st in p["Statement"]]
    (query,) = [st for st in statements if st["Action"] == "dynamodb:Query"]
    assert query["Resource"] == {"Fn::Sub": ["${NotificationsTable.Arn}/index/${Index}", {"Index": chosen}]}
