"""Property tests: quiet hours across DST changes, and channels a user refused are never used."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.catalog import load_catalog
from herald.models import Channel, NotificationRequest
from herald.routing.decision import RoutingInput, decide
from herald.routing.quiet_hours import in_quiet_hours, quiet_hours_end
from herald.stores.keys import email_address, push_address, sms_address
from herald.users import QuietHours, UserProfile

pytestmark = pytest.mark.unit

# Zones with DST in both hemispheres, a half-hour offset, a 30-min DST shift, and none at all.
ZONES = [
    "Europe/Lisbon",
    "Europe/Paris",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
]
# Instants around 2026's DST changes in those zones, so the transitions are well covered.
TRANSITIONS = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 4, 16, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
]

walls = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
windows = (
    st.tuples(walls, walls).filter(lambda p: p[0] != p[1]).map(lambda p: QuietHours(start=p[0], end=p[1]))
)
instants = st.one_of(
    st.builds(
        lambda base, minutes: base + timedelta(minutes=minutes),
        st.sampled_from(TRANSITIONS),
        st.integers(-36 * 60, 36 * 60),
    ),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
)


def wall_clock(instant: datetime, zone: ZoneInfo) -> time:
    return instant.astimezone(zone).time().replace(tzinfo=None)


@settings(max_examples=400, deadline=None)
@given(now=instants, window=windows, zone_name=st.sampled_from(ZONES))
def test_quiet_hours_end_is_the_first_instant_outside_the_window(
    now: datetime, window: QuietHours, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    end = quiet_hours_end(now, window, zone)

    if end is None:
        assert not in_quiet_hours(wall_clock(now, zone), window)
        return
    assert in_quiet_hours(wall_clock(now, zone), window)
    assert now < end <= now + timedelta(hours=25)
    assert not in_quiet_hours(wall_clock(end, zone), window)
    # Every instant until the end is still quiet (checked each 15 minutes: windows are on the quarter).
    probe = now
    while probe < end - timedelta(minutes=1):
        assert in_quiet_hours(wall_clock(probe, zone), window), probe
        probe += timedelta(minutes=15)


def test_deferral_across_spring_forward_ends_when_the_clock_jumps_past_the_end() -> None:
    paris = ZoneInfo("Europe/Paris")
    window = QuietHours(start=time(22), end=time(2, 30))  # 02:30 does not exist on 2026-03-29 in Paris

    end = quiet_hours_end(datetime(2026, 3, 28, 23, 0, tzinfo=UTC), window, paris)

    assert end == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the clock jumps from 02:00 to 03:00 CEST


def test_deferral_in_the_repeated_hour_of_fall_back_uses_the_next_occurrence() -> None:
    paris = ZoneInfo("Europe/Paris")
    window = QuietHours(start=time(2), end=time(2, 30))  # 02:00–03:00 happens twice on 2026-10-25

    first = quiet_hours_end(datetime(2026, 10, 25, 0, 10, tzinfo=UTC), window, paris)
    second = quiet_hours_end(datetime(2026, 10, 25, 1, 10, tzinfo=UTC), window, paris)

    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert second == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_fall_back_can_end_quiet_hours_by_turning_the_clock_back_out_of_the_window() -> None:
    sydney = ZoneInfo("Australia/Sydney")  # 2026-04-05 03:00 AEDT becomes 02:00 AEST
    window = QuietHours(start=time(2, 15), end=time(0, 0))

    end = quiet_hours_end(datetime(2026, 4, 4, 15, 15, tzinfo=UTC), window, sydney)  # 02:15 AEDT

    assert end == datetime(2026, 4, 4, 16, 0, tzinfo=UTC)  # the clock reads 02:00 again: outside


# -- never a channel the user opted out of or is suppressed on ---------------------------------

CATALOG = load_catalog()
USER_FACING = [name for name, entry in CATALOG.types.items() if entry.category != "system"]


@st.composite
def routing_inputs(draw: st.DrawFn) -> RoutingInput:
    type_name = draw(st.sampled_from(sorted(CATALOG.types)))
    tokens = draw(st.lists(st.sampled_from(["t1", "t2", "t3"]), unique=True, max_size=3))
    user = UserProfile(
        user_id="7",
        email=draw(st.sampled_from([None, "u@example.com"])),
        phone=draw(st.sampled_from([None, "+14155550100"])),
        time_zone=draw(st.sampled_from(ZONES)),
        quiet_hours=draw(st.one_of(st.none(), windows)),
        devices={t: {"platform": "ios", "registered_at": "2026-01-01T00:00:00Z"} for t in tokens},
        preferences={
            "channels": draw(st.dictionaries(st.sampled_from(list(Channel)), st.booleans())),
            "marketing_opt_in": draw(st.booleans()),
            "muted_categories": draw(st.lists(st.sampled_from(["transactional", "marketing", "security"]))),
            "muted_types": draw(st.lists(st.sampled_from(sorted(CATALOG.types)))),
            "muted_channels": draw(
                st.dictionaries(
                    st.sampled_from(["transactional", "marketing", "security", "system"]),
                    st.lists(st.sampled_from(["email", "push", "sms", "realtime"]), max_size=3),
                    max_size=3,
                )
            ),
        },
        sms_marketing_consent=draw(
            st.sampled_from([None, {"given_at": "2026-01-01T00:00:00Z", "source": "signup"}])
        ),
        webhook=draw(st.sampled_from([None, {"url": "https://h.example.com", "secret_name": "s"}])),
    )
    addresses = [email_address("u@example.com"), sms_address("+14155550100")] + [
        push_address(t) for t in tokens
    ]
    suppressed = frozenset(draw(st.lists(st.sampled_from(addresses), unique=True)))
    request = NotificationRequest(
        event_id="e-1",
        type=type_name,
        user_id="7",
        urgency=draw(st.one_of(st.none(), st.sampled_from(["critical", "high", "medium", "low"])))
        if type_name in USER_FACING
        else None,
    )
    return RoutingInput(
        request=request,
        entry=CATALOG.entry(type_name),
        user=user,
        online=draw(st.booleans()),
        suppressed=suppressed,
        rate_usage=draw(st.dictionaries(st.sampled_from(list(Channel)), st.integers(0, 40))),
        rate_limits={Channel.EMAIL: 20, Channel.PUSH: 30, Channel.SMS: 5},
        now=draw(instants),
    )


@settings(max_examples=500, deadline=None)
@given(given_input=routing_inputs())
def test_never_a_channel_the_user_opted_out_of_or_is_suppressed_on(given_input: RoutingInput) -> None:
    decision = decide(given_input)
    user = given_input.user
    assert user is not None
    planned = list(decision.deliveries)
    if decision.escalation:
        planned += [step.delivery for step in decision.escalation.steps]

    entry = given_input.entry
    if planned and entry.category.value in ("transactional", "marketing"):
        assert entry.category not in user.preferences.muted_categories
        assert entry.name not in user.preferences.muted_types
    if planned and (entry.category.value == "marketing" or decision.urgency.value == "low"):
        assert user.preferences.marketing_opt_in
    for delivery in planned:
        assert user.preferences.channel_enabled(delivery.channel), delivery
        if entry.category.value in ("transactional", "marketing"):  # the matrix's mutable rows
            assert not user.preferences.channel_muted_for(entry.category, delivery.channel), delivery
        if delivery.channel is Channel.SMS and entry.category.value == "marketing":
            assert user.sms_marketing_consent is not None
        assert delivery.channel in given_input.entry.channels
        if delivery.channel is Channel.EMAIL:
            assert email_address(delivery.to or "") not in given_input.suppressed
        if delivery.channel is Channel.SMS:
            assert sms_address(delivery.to or "") not in given_input.suppressed
        if delivery.channel is Channel.PUSH:
            assert delivery.device_tokens
            assert not {push_address(t) for t in delivery.device_tokens} & given_input.suppressed
        if delivery.channel is Channel.REALTIME:
            assert given_input.online
