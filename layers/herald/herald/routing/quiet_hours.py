"""Quiet hours in the user's IANA time zone, DST-correct.

Each instant is converted to the user's local wall-clock time; the window [start, end) is on the
wall clock, wrapping past midnight when start > end. Quiet hours end at the first instant whose wall
clock is outside the window: usually when the clock reads `end`, but a DST change can get there
first (spring forward jumps past `end`; fall back can jump back out of a window).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from herald.users import QuietHours


def in_quiet_hours(wall: time, window: QuietHours) -> bool:
    if window.start < window.end:
        return window.start <= wall < window.end
    return wall >= window.start or wall < window.end


def _local_instants(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The instants whose wall clock reads `wall` on `day` (two in a fall-back overlap)."""
    naive = datetime.combine(day, wall)
    instants = {naive.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    real = sorted(i for i in instants if i.astimezone(zone).replace(tzinfo=None) == naive)
    # In a spring-forward gap the wall time never occurs: fold=0 maps it just past the gap.
    return real or [naive.replace(tzinfo=zone, fold=0).astimezone(UTC)]


def quiet_hours_end(now: datetime, window: QuietHours | None, zone: ZoneInfo) -> datetime | None:
    """The UTC instant the current quiet hours end, or None when `now` is outside them."""
    if window is None:
        return None
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if not in_quiet_hours(wall, window):
        return None
    end_day = local.date()
    if window.start > window.end and wall >= window.start:
        end_day += timedelta(days=1)
    candidates = _local_instants(end_day, window.end, zone) + _local_instants(
        end_day + timedelta(days=1), window.end, zone
    )
    end = next(instant for instant in candidates if instant > now)
    change = _offset_change(now, end, zone)
    if change is not None and not in_quiet_hours(_wall(change, zone), window):
        return change
    return end


def _wall(instant: datetime, zone: ZoneInfo) -> time:
    return instant.astimezone(zone).time().replace(tzinfo=None)


def _offset_change(start: datetime, end: datetime, zone: ZoneInfo) -> datetime | None:
    """The first instant in (start, end] with a different UTC offset (a DST change), to the second."""
    offset = start.astimezone(zone).utcoffset()
    if end.astimezone(zone).utcoffset() == offset:
        return None
    low, high = math.floor(start.timestamp()), math.ceil(end.timestamp())  # transitions fall on whole seconds
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
