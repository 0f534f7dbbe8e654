"""Calendar periods (a day, a week from Monday, a month) in a timezone: where the one holding
an instant starts. Caps `per calendar day|week|month` count from there; the rules, the
arbitration and the store's re-check at commit all ask here, so they agree to the
microsecond. Plain stdlib: the language, the engine and the store import it."""
from __future__ import annotations

import datetime
import zoneinfo

KINDS = ("day", "week", "month")
# How far back a period's counts may reach: its longest length, with a day to spare for clock
# changes (an hour in most zones, two in Antarctica/Troll, a whole day where a zone moved
# across the date line). What the history reads and keeps for calendar caps.
LONGEST = {"day": 2 * 86400, "week": 8 * 86400, "month": 32 * 86400}

_ZONES: dict[str, zoneinfo.ZoneInfo] = {}
_LAST: dict[tuple[str, str], tuple[float, float]] = {}  # (kind, zone) → the last period found, [start, end)


def zone(name: str) -> zoneinfo.ZoneInfo:
    got = _ZONES.get(name)
    if got is None:
        got = _ZONES[name] = zoneinfo.ZoneInfo(name)  # names come from checked catalogs: few
    return got


def _first_day(day: datetime.date, kind: str) -> datetime.date:
    if kind == "week":
        return day - datetime.timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    return day


def _next_first_day(first: datetime.date, kind: str) -> datetime.date:
    if kind == "day":
        return first + datetime.timedelta(days=1)
    if kind == "week":
        return first + datetime.timedelta(days=7)
    return (first.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def midnight(day: datetime.date, tz: zoneinfo.ZoneInfo) -> float:
    """The first instant of `day` in `tz`. Where the clocks skip midnight, local 00:00 does
    not exist, and zoneinfo reads it with the offset before the change: that instant is the
    change itself, the day's first. Where midnight happens twice, fold 0 is the first."""
    return datetime.datetime.combine(day, datetime.time(0), tz).timestamp()


def bounds(ts: float, kind: str, tz_name: str) -> tuple[float, float]:
    """[start, end) in epoch seconds of the `kind` period holding the instant `ts`."""
    key = (kind, tz_name)
    last = _LAST.get(key)
    if last is not None and last[0] <= ts < last[1]:
        return last
    tz = zone(tz_name)
    first = _first_day(datetime.datetime.fromtimestamp(ts, tz).date(), kind)
    start = midnight(first, tz)
    if ts < start:  # fromtimestamp rounds to the microsecond: an instant just before midnight
        first = _first_day(first - datetime.timedelta(days=1), kind)  # belongs to the period before
        start = midnight(first, tz)
    got = (start, midnight(_next_first_day(first, kind), tz))
    _LAST[key] = got  # one tuple, swapped whole: safe across threads
    return got


def since(ts: float, kind: str, tz_name: str) -> float:
    """A count's window start for the period holding `ts`: windows are half-open,
    (since, until], so the period's first microsecond counts."""
    return bounds(ts, kind, tz_name)[0] - 1e-6
