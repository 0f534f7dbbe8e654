"""Calendar cap windows: where a day, week and month start in a timezone (daylight-saving
days of 23 and 25 hours, midnight skipped), the same start in the rules, the store's
re-check at commit and the reference; and how far back the history is read and kept."""
import datetime
import zoneinfo

from hypothesis import given, settings, strategies as st

from offerd import lang, periods
from offerd.domain import CapCheck, NewProposition
from offerd.engine.plan import Plan
from offerd.store import Store
from offerd.store.keys import Contact
from reference import calendar_start

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def local(*args, zone=PARIS) -> float:
    return datetime.datetime(*args, tzinfo=zone).timestamp()


def hours(kind: str, at: float, zone: str = "Europe/Paris") -> float:
    start, end = periods.bounds(at, kind, zone)
    return (end - start) / 3600


def test_daylight_saving_days_last_23_and_25_hours():
    assert hours("day", local(2026, 3, 29, 12)) == 23
    assert hours("day", local(2026, 10, 25, 12)) == 25
    assert hours("day", local(2026, 11, 2, 12)) == 24
    assert hours("week", local(2026, 3, 29, 12)) == 7 * 24 - 1  # the week of the 23-hour Sunday
    assert hours("month", local(2026, 10, 3)) == 31 * 24 + 1
    start, _ = periods.bounds(local(2026, 10, 25, 23, 30), "day", "Europe/Paris")
    assert start == local(2026, 10, 25)  # 23:30 CET is still the 25th, which began 24.5 hours before


def test_weeks_start_on_monday_and_months_on_the_first():
    sunday = local(2026, 11, 8, 23, 59, 59)
    assert periods.bounds(sunday, "week", "Europe/Paris") == (local(2026, 11, 2), local(2026, 11, 9))
    assert periods.bounds(local(2026, 12, 31, 23), "month", "Europe/Paris") == (local(2026, 12, 1), local(2027, 1, 1))
    assert periods.bounds(local(2028, 2, 29, 12), "month", "Europe/Paris")[1] == local(2028, 3, 1)


def test_a_day_whose_midnight_the_clocks_skip_starts_at_the_change():
    cairo = zoneinfo.ZoneInfo("Africa/Cairo")  # 2023-04-28: 00:00 became 01:00
    start, end = periods.bounds(local(2023, 4, 28, 12, zone=cairo), "day", "Africa/Cairo")
    assert datetime.datetime.fromtimestamp(start, cairo).hour == 1
    assert datetime.datetime.fromtimestamp(start - 1, cairo).date() == datetime.date(2023, 4, 27)
    assert (end - start) / 3600 == 23


def test_an_instant_a_hair_before_midnight_is_in_the_day_it_ends():
    ts = local(2026, 11, 3) - 5e-7  # fromtimestamp rounds it up to midnight
    assert periods.bounds(ts, "day", "Europe/Paris") == (local(2026, 11, 2), local(2026, 11, 3))


def test_the_remembered_period_never_answers_for_another_instant():
    # each (kind, zone) remembers its last period: going back and forth must not reuse it wrongly
    for at in (local(2026, 11, 2, 12), local(2026, 11, 1, 12), local(2026, 11, 2, 0), local(2026, 11, 1, 23, 59)):
        start, end = periods.bounds(at, "day", "Europe/Paris")
        assert start <= at < end and end - start == 86400


def test_no_period_is_longer_than_the_history_kept_for_it():
    """Where clocks move most: two hours (Antarctica/Troll), half an hour (Lord Howe), a day
    across the date line (Apia, 2011; Kwajalein, 1993): each period fits in LONGEST."""
    longest = {kind: 0.0 for kind in periods.KINDS}
    for zone, year in (("Antarctica/Troll", 2024), ("Australia/Lord_Howe", 2024), ("Pacific/Apia", 2011),
                       ("Pacific/Kwajalein", 1993), ("America/Sao_Paulo", 2018)):
        tz = zoneinfo.ZoneInfo(zone)
        at = datetime.datetime(year, 1, 1, 12, tzinfo=tz).timestamp()
        while datetime.datetime.fromtimestamp(at, tz).year == year:
            for kind in periods.KINDS:
                start, end = periods.bounds(at, kind, zone)
                longest[kind] = max(longest[kind], end - start)
            at += 86400
    assert longest["day"] == 26 * 3600  # Troll
    for kind in periods.KINDS:
        assert longest[kind] <= periods.LONGEST[kind], kind


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Africa/Cairo",
         "America/Sao_Paulo", "Pacific/Apia", "UTC"]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=946684800 * 10**6, max_value=2208988800 * 10**6), st.sampled_from(periods.KINDS),
       st.sampled_from(ZONES))
def test_the_period_start_matches_the_reference(micros, kind, zone):
    """The reference finds the start by scanning minutes for the first with the period's
    first local date: no zoneinfo arithmetic shared with the code under test. Decision
    times are whole microseconds."""
    ts = micros / 1e6
    moment_local = datetime.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(zone))
    expected = calendar_start(moment_local, kind)
    start, end = periods.bounds(ts, kind, zone)
    assert start == expected
    assert start <= ts < end


def test_the_store_rechecks_a_calendar_cap_from_the_period_start(tmp_path):
    """At commit, the store counts from local midnight: a proposition at 23:59 Paris time
    fills the day's cap until 00:00 Paris, not for 24 hours."""
    daily = CapCheck("contact", "offer", "a", "proposed", None, 1, calendar="day", zone="Europe/Paris")
    weekly = CapCheck("total", "offer", "b", "proposed", None, 2, calendar="week", zone="Europe/Paris")
    a = [NewProposition("a", "web", (), (daily,))]
    b = [NewProposition("b", "web", (), (weekly,))]
    store = Store(str(tmp_path / "db"))
    try:
        ann = Contact("ann")
        assert store.record_decision(ann, local(2026, 11, 2, 23, 59), a)[0] is not None
        assert store.record_decision(ann, local(2026, 11, 2, 23, 59, 59), a) == [None]
        assert store.record_decision(ann, local(2026, 11, 3, 0, 0), a)[0] is not None
        sunday = local(2026, 11, 8, 23, 0)
        assert store.record_decision(Contact("x"), local(2026, 11, 2, 0, 0), b)[0] is not None
        assert store.record_decision(Contact("y"), sunday, b)[0] is not None
        assert store.record_decision(Contact("z"), sunday + 1, b) == [None]  # 2 this week, everyone's
        assert store.record_decision(Contact("z"), local(2026, 11, 9), b)[0] is not None  # Monday
    finally:
        store.close()


def test_history_is_read_and_kept_for_the_longest_calendar_period():
    catalog = lang.check({"a.offer": 'timezone "Europe/Paris"\nspace web { limit 1 }\n'
                          "offer a { spaces web  cap 1 per contact per calendar month  cap 9 total per calendar week }\n"})
    plan = Plan(catalog)
    assert plan.horizon == periods.LONGEST["month"] == 32 * 86400  # 31 days and a clock change
    assert plan.retention == periods.LONGEST["month"]
    assert plan.totals == frozenset({("offer", "a", "proposed")})
    texts = [c.rule.text for c in catalog.offers[0].limits]
    assert texts == ["cap 1 per contact per calendar month", "cap 9 total per calendar week"]
