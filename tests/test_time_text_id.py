"""ODL second edition: hour, weekday, month, round, format_number, format_date and join with
their exact values, nulls and errors; contact.id in rules, the engine and simulations; and
date-time `valid` ranges. (The table-wide and random checks against the reference
interpreter are in test_functions.py and test_properties.py.)"""
from __future__ import annotations

import datetime
import math
import zoneinfo

import pytest

from offerd import lang
from offerd.compiler import Moment, SpaceCache, compile_expression, compile_space
from offerd.compiler.analysis import interval
from offerd.engine import Engine, Request
from offerd.engine.plan import Plan
from offerd.history import MemoryHistory
from offerd.lang.functions import _round
from offerd.lang import CatalogError
from offerd.offline import population, simulate

UTC = datetime.timezone.utc
CATALOG = lang.check({"t.offer": """
timezone "Europe/Paris"
schema contact { i: int  f: float  s: string  d: date  tags: set<string>  words: list<string>
                 nums: list<int>  fl: list<float>  ds: list<date> }
"""})
HISTORY = MemoryHistory().view(None)


def value(text: str, contact: dict | None = None, at: datetime.datetime | None = None):
    moment = Moment.at(at or datetime.datetime(2026, 11, 2, 9, tzinfo=UTC), CATALOG.timezone)
    return compile_expression(CATALOG, text).value(contact or {}, {}, moment, HISTORY)


def error(text: str) -> str:
    with pytest.raises(CatalogError) as e:
        compile_expression(CATALOG, text)
    return str(e.value)


# --- hour, weekday, month: the catalog's timezone ------------------------------------------

@pytest.mark.parametrize("at, hour, weekday, month", [
    (datetime.datetime(2026, 11, 1, 22, 59, 59, tzinfo=UTC), 23, 7, 11),  # Sunday 23:59:59 in Paris
    (datetime.datetime(2026, 11, 1, 23, 0, tzinfo=UTC), 0, 1, 11),  # Monday 00:00 in Paris
    (datetime.datetime(2026, 11, 30, 23, 0, tzinfo=UTC), 0, 2, 12),  # 1 December in Paris
    (datetime.datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 3, 7, 3),  # summer time begins: 02:00 is skipped
    (datetime.datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 2, 7, 10),  # 02:30 CEST, before it repeats
    (datetime.datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 2, 7, 10),  # 02:30 CET, the repeat
])
def test_clock_functions_read_the_catalog_timezone(at, hour, weekday, month):
    assert value("hour(now)", at=at) == hour
    assert value("weekday(now)", at=at) == value("weekday(today)", at=at) == weekday
    assert value("month(now)", at=at) == value("month(today)", at=at) == month
    # a time that is not `now` itself is converted at run time, to the same answer
    assert value("hour(max(now, now))", at=at) == hour
    assert value("weekday(now ?? now)", at=at) == weekday


def test_clock_functions_of_dates_and_nulls():
    assert value("weekday(contact.d)", {"d": datetime.date(2026, 11, 8)}) == 7
    assert value("month(contact.d)", {"d": datetime.date(2000, 2, 29)}) == 2
    assert value("weekday(contact.d)") is None and value("month(contact.d)") is None
    assert "hour takes a time (now), not date" in error("hour(today)")
    assert "weekday takes a date or a time, not int" in error("weekday(contact.i)")
    assert interval(compile_expression(CATALOG, "hour(now) + weekday(today) * month(now)").expr, {}) \
        == pytest.approx((1.0, 23 + 7 * 12), abs=1e-9)


# --- round ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("round(2.5, 0)", 3.0), ("round(-2.5, 0)", -3.0), ("round(0.5, 0)", 1.0), ("round(1.5, 0)", 2.0),
    ("round(2.675, 2)", 2.68),  # as written, not as the binary float 2.67499999...
    ("round(1.005, 2)", 1.01), ("round(-0.4, 0)", 0.0), ("round(1234.5678, 1)", 1234.6),
    ("round(1234.5678, (-2))", 1200.0), ("round(0.004, 2)", 0.0), ("round(2.5, 400)", 2.5),
    ("round(123.0, (-400))", 0.0),
    ("round(1234, 2)", 1234), ("round(1250, (-2))", 1300), ("round((-1250), (-2))", -1300),
    ("round(1249, (-2))", 1200), ("round(9223372036854775807, (-18))", 9000000000000000000),
    ("round(9223372036854775807, (-19))", None),  # 10^19: outside 64 bits
    ("round(4999999999999999999, (-19))", 0), ("round(5, (-30))", 0),
])
def test_round_is_half_away_from_zero(text, expected):
    got = value(text)
    assert got == expected and type(got) is type(expected), (text, got)


def test_round_nulls_non_finite_and_bounds():
    assert value("round(contact.f, 2)") is None and value("round(1.5, contact.i)") is None
    assert value("round(contact.f, 0)", {"f": 1e300}) == 1e300
    assert value("round(contact.f * contact.f, 2)", {"f": 1e300}) == math.inf  # inf stays inf
    # rounded up past the largest float: infinite, in the compiled code and in the reference alike
    biggest = {"f": 1.7976931348623157e308}
    assert value("round(contact.f, (-293))", biggest) == math.inf == _round(biggest["f"], -293)
    assert math.isnan(value("round(contact.f * contact.f - contact.f * contact.f, 2)", {"f": 1e300}))
    assert str(value("round(contact.f, 0)", {"f": -0.2})) == "0.0"  # no -0.0 in content
    assert "round takes a number and an int (decimals), not float, float" in error("round(1.5, 2.0)")
    lo, hi = interval(compile_expression(CATALOG, "round(if has(contact.i) then 0.04 else 9.96, 1)").expr, {})
    assert lo <= 0.0 and hi >= 10.0 and hi < 10.1  # within half a unit of the decimal kept
    assert interval(compile_expression(CATALOG, "round(1.0, contact.i ?? 0)").expr, {}) == (-math.inf, math.inf)


# --- format_number -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("format_number(12345.6, 0)", "12,346"), ("format_number(1234.5, 2)", "1,234.50"),
    ("format_number(0.5, 0)", "1"), ("format_number(2.5, 0)", "3"), ("format_number(-2.5, 0)", "-3"),
    ("format_number(-1234567, 0)", "-1,234,567"), ("format_number(999.995, 2)", "1,000.00"),
    ("format_number(-0.001, 2)", "0.00"), ("format_number(12, 3)", "12.000"), ("format_number(0, 0)", "0"),
    ("format_number(9223372036854775807, 0)", "9,223,372,036,854,775,807"),
    ("format_number(1.5, (-3))", "2"),  # decimals below 0 are 0, above 20 are 20
    ("format_number(0.1, 99)", "0.10000000000000000000"),
])
def test_format_number(text, expected):
    assert value(text) == expected


def test_format_number_nulls_and_extremes():
    assert value("format_number(contact.f, 2)") is None and value("format_number(1.5, contact.i)") is None
    assert value("format_number(contact.f, 2)", {"f": 1e300}) == format(10**300, ",") + ".00"
    assert value("format_number(contact.f * contact.f, 2)", {"f": 1e300}) == "inf"
    assert value("format_number(1.5, contact.i)", {"i": 2**62}) == "1.50000000000000000000"


# --- format_date ------------------------------------------------------------------------------------

def test_format_date_writes_the_catalog_time():
    at = datetime.datetime(2026, 11, 1, 23, 5, 9, tzinfo=UTC)  # Monday 2 November, 00:05:09 in Paris
    assert value('format_date(now, "%A %d %B %Y, %H:%M:%S")', at=at) == "Monday 02 November 2026, 00:05:09"
    assert value('format_date(now, "%a %b %y %I %p %j %u %U %W %m %%d 100%%")', at=at) == \
        "Mon Nov 26 12 AM 306 1 44 44 11 %d 100%"
    assert value('format_date(today, "%d/%m/%Y")', at=at) == "02/11/2026"
    assert value('format_date(contact.d, "%Y-%m-%d")', {"d": datetime.date(7, 1, 1)}) == "0007-01-01"
    assert value('format_date(contact.d, "%Y")') is None
    assert value('format_date(today, "")') == "" and value('format_date(today, "{0.__class__}")') == "{0.__class__}"


@pytest.mark.parametrize("pattern, message", [
    ('"%s"', "has %s, not a directive it knows"),
    ('"%(x)s"', "has %(, not a directive it knows"),
    ('"%"', "a lone % at its end"),
    ('"%-d"', "has %-, not a directive"),
    ('"%H"', "%H needs a time (now)"),
])
def test_format_date_patterns_are_checked_when_compiled(pattern, message):
    text = error(f"format_date(contact.d, {pattern})")
    assert message in text and "<expression>:1:" in text


def test_format_date_pattern_must_be_a_literal():
    assert "pattern must be a string literal" in error("format_date(today, contact.s)")
    assert "pattern must be a string literal" in error('format_date(today, "%Y" + "")')


# --- join -------------------------------------------------------------------------------------------

def test_join():
    assert value('join(contact.tags, ", ")', {"tags": frozenset({"b", "a", "C"})}) == "C, a, b"  # sorted
    assert value('join(contact.words, "/")', {"words": ("z", "a")}) == "z/a"  # in order
    assert value('join(["a", contact.s, "b"], "-")') == "a-b"  # null items left out
    assert value('join(contact.fl, " ")', {"fl": (1.0, 2.5)}) == "1.0 2.5"  # each as content text
    assert value('join(contact.ds, ",")', {"ds": (datetime.date(2026, 1, 2),)}) == "2026-01-02"
    assert value('join([1, 2.5], "-")') == "1.0-2.5"  # a list mixing ints and floats holds floats
    assert value('join([contact.i, 2.5], "-")', {"i": 1}) == "1.0-2.5"
    assert value('join(contact.tags, ",")') is None and value('join(["a"], contact.s)') is None
    assert value('join(contact.nums, ",")', {"nums": ()}) == ""
    assert "join takes a list or set, and a string" in error('join(contact.s, ",")')


# --- contact.id --------------------------------------------------------------------------------------

ID_CATALOG = """
schema contact { age: int }
space web { limit 1  fallback none }
offer arm { spaces web  eligible bucket(contact.id, 2) == 1  weight 2  content web { t "{contact.id}" } }
offer none { spaces web  content web { t "[{contact.id}]" } }
"""


def test_contact_id_is_a_nullable_string_no_schema_declares():
    catalog = lang.check({"c.offer": ID_CATALOG})
    e = compile_expression(catalog, "contact.id").expr
    assert e.type.name == "string" and e.nullable
    with pytest.raises(CatalogError, match="a schema cannot declare it"):
        lang.check({"c.offer": "schema contact { id: string }"})
    assert "unknown attribute context.id" in str(pytest.raises(
        CatalogError, compile_expression, catalog, "context.id").value)


def test_the_engine_gives_contact_id_only_to_catalogs_that_read_it():
    catalog = lang.check({"c.offer": ID_CATALOG})
    assert Plan(catalog).reads_contact_id
    assert not Plan(lang.check({"c.offer": ID_CATALOG.replace("contact.id", "contact.age")})).reads_contact_id
    engine = Engine(None, catalog)
    at = datetime.datetime(2026, 11, 2, 9, tzinfo=UTC)

    def decide(contact_id, anonymous=False):
        d = engine.decide(Request(("web",), contact_id, anonymous, time=at, dry_run=True))
        (result,) = d.spaces
        return [(p.offer, p.content["t"]) for p in result.proposals]

    assert decide("alice") == [("arm", "alice")]  # bucket("alice", 2) == 1
    assert decide("bob") == [("none", "[bob]")]
    assert decide("v2", anonymous=True) == [("arm", "v2")]  # a visitor's id is its contact id
    assert decide(None) == [("none", "[]")]  # unknown: null


def test_simulations_see_the_population_id(tmp_path):
    catalog = lang.check({"c.offer": ID_CATALOG})
    path = tmp_path / "people.jsonl"
    path.write_text("".join(f'{{"id": "{i}", "age": 30}}\n' for i in ("alice", "bob", "v2", "1", "3")))
    at = datetime.datetime(2026, 11, 2, 9, tzinfo=UTC)
    for workers in (1, 2):
        source = str(path) if workers > 1 else population.read(str(path), catalog)
        r = simulate.simulate(catalog, ["web"], source, at, workers=workers).to_json()
        assert r["spaces"]["web"]["offers"]["arm"]["proposed"] == 3, workers  # alice, v2, 3


# --- valid with date-times --------------------------------------------------------------------------

VALID = """
timezone "Europe/Paris"
space web { limit 1 }
offer flash { spaces web  weight 1  valid 2027-11-26T08:00 to 2027-11-26T20:00:30 }
offer mixed { spaces web  weight 1  valid 2027-11-01 to 2027-11-26T20:00 }
offer days { spaces web  weight 1  valid 2027-11-01 to 2027-11-26 }
"""


def test_valid_date_times_are_inclusive_instants_in_the_catalog_timezone():
    catalog = lang.check({"c.offer": VALID}, today=datetime.date(2027, 1, 1))
    space = compile_space(catalog, "web", SpaceCache())
    history = MemoryHistory().view(None)

    def eligible(at: str) -> list[str]:
        moment = space.moment(datetime.datetime.fromisoformat(at))
        return [space.offers[pos].name for pos, _ in space.evaluate({}, {}, moment, history)]

    assert eligible("2027-10-31T22:59:59+00:00") == []
    assert eligible("2027-10-31T23:00:00+00:00") == ["mixed", "days"]  # 1 November, 00:00 in Paris
    assert eligible("2027-11-26T06:59:59.999999+00:00") == ["mixed", "days"]
    assert eligible("2027-11-26T07:00:00+00:00") == ["flash", "mixed", "days"]
    assert eligible("2027-11-26T19:00:00+00:00") == ["flash", "mixed", "days"]  # 20:00 in Paris: inclusive
    assert eligible("2027-11-26T19:00:00.000001+00:00") == ["flash", "days"]
    assert eligible("2027-11-26T19:00:30+00:00") == ["flash", "days"]
    assert eligible("2027-11-26T19:00:30.000001+00:00") == ["days"]
    assert eligible("2027-11-26T22:59:59.999999+00:00") == ["days"]  # the whole day of a date end
    assert eligible("2027-11-26T23:00:00+00:00") == []
    rules = {o.name: o.valid_rule.text for o in catalog.offers}
    assert rules == {"flash": "valid 2027-11-26T08:00 to 2027-11-26T20:00:30",
                     "mixed": "valid 2027-11-01 to 2027-11-26T20:00", "days": "valid 2027-11-01 to 2027-11-26"}
    assert space.source.count("<= _ts <=") == 2  # date-times test the instant
    assert space.source.count("<= _today <=") == 1  # date-only ranges stay as they were


def test_valid_date_time_warnings_and_errors():
    late = lang.check({"c.offer": VALID}, today=datetime.date(2027, 11, 27))
    warned = [d.message for d in late.diagnostics if "stopped being valid" in d.message]
    assert warned == ["offer flash stopped being valid on 2027-11-26T20:00:30",
                      "offer mixed stopped being valid on 2027-11-26T20:00",
                      "offer days stopped being valid on 2027-11-26"]
    same_day = lang.check({"c.offer": VALID}, today=datetime.date(2027, 11, 26))
    assert not [d for d in same_day.diagnostics if "stopped being valid" in d.message]
    with pytest.raises(CatalogError, match=r"ends \(2027-11-26T23:59\) before it starts \(2027-11-27\)"):
        lang.check({"c.offer": "space web {}\noffer o { spaces web  valid 2027-11-27 to 2027-11-26T23:59 }"})
    lang.check({"c.offer": "space web {}\noffer o { spaces web  valid 2027-11-26T23:59 to 2027-11-26 }"})
    with pytest.raises(CatalogError, match="invalid date-time 2027-11-26T24:00"):
        lang.check({"c.offer": "space web {}\noffer o { spaces web  valid 2027-11-26 to 2027-11-26T24:00 }"})
    with pytest.raises(CatalogError, match="written only in `valid`"):
        lang.check({"c.offer": "space web {}\noffer o { spaces web  eligible today > 2027-11-26T07:59 }"})


def test_a_valid_date_end_keeps_a_last_hour_the_clocks_repeat():
    """Beirut fell back at midnight on 30 October 2022 (00:00 to 23:00): the 29th's last
    hour came twice, and a range ending on the 29th holds both, as `today` would."""
    from offerd.lang.catalog import valid_instants

    beirut = zoneinfo.ZoneInfo("Asia/Beirut")
    lo, hi = valid_instants((datetime.datetime(2022, 10, 29, 12), datetime.date(2022, 10, 29)), "Asia/Beirut")
    second = datetime.datetime(2022, 10, 29, 23, 30, fold=1, tzinfo=beirut).timestamp()
    assert datetime.datetime.fromtimestamp(second, beirut).utcoffset() == datetime.timedelta(hours=2)
    assert lo <= second <= hi
    assert datetime.datetime.fromtimestamp(hi + 1e-6, beirut).date() == datetime.date(2022, 10, 30)
