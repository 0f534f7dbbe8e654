"""What the property and fuzz tests draw: random well-typed ODL expressions (every operator
and function, nulls everywhere), contacts, contexts, decision times and histories; and how
they compare compiled code's answers with the reference interpreter's."""
from __future__ import annotations

import datetime
import functools
import math
import os
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from offerd import lang
from offerd.compiler import Moment
from offerd.history import MemoryHistory, Proposition
from offerd.lang import nodes as n
from offerd.lang.values import check_attributes

# OFFERD_PROPERTY_SCALE=10 runs ten times the examples of the suite's default
SCALE = int(os.environ.get("OFFERD_PROPERTY_SCALE", "1"))

INT_MAX = 2**63 - 1
TIMEZONE = "Europe/Paris"

SCHEMAS = """
timezone "Europe/Paris"

schema contact {
  a: int  b: int  f: float  g: float  s: string  t: string  flag: bool
  d: date  e: date  tags: set<string>  nums: list<int>  words: list<string>
}
schema context { page: string  n: int }

let adult = contact.a >= 18
let senior = adult and contact.b >= 65
let score = contact.f * 2.0 + 1
let label = lower(contact.s ?? "x")
let picks = ["a", "b", contact.s]
"""

SOURCE = SCHEMAS + """
space web { channel inbound  limit 2  fallback hello  cap 3 per contact per 1d }

category loyalty { eligible adult }
category loyalty.upsell { cap 2 per contact per 7d }

offer promo { category loyalty.upsell  spaces web  weight 10 }
offer card { category loyalty  spaces web  weight score }
offer hello { spaces web }
"""

CATALOG = lang.check({"t.offer": SOURCE})

OFFERS = ("promo", "card", "hello")
CATEGORIES = ("loyalty", "loyalty.upsell")
CHAINS = {"promo": ("loyalty", "loyalty.upsell"), "card": ("loyalty",), "hello": ()}

ATTRIBUTES = {
    "int": ("contact.a", "contact.b", "context.n"),
    "float": ("contact.f", "contact.g"),
    "string": ("contact.s", "contact.t", "context.page"),
    "bool": ("contact.flag",),
    "date": ("contact.d", "contact.e"),
}
ALL_ATTRIBUTES = sum(ATTRIBUTES.values(), ()) + ("contact.tags", "contact.nums", "contact.words")
LETS = {"bool": ("adult", "senior"), "float": ("score",), "string": ("label",)}

# --- literals ------------------------------------------------------------------------------

SPECIAL_INTS = [0, 1, -1, 2, -2, 3, 7, 17, 18, 65, 100, -100, 2**31, 3037000499, 3037000500,
                -3037000500, 2**62, -(2**62), 2**62 + 1, INT_MAX, -INT_MAX, -(2**63)]
SPECIAL_FLOATS = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, 18.0, 0.1, 1e15, 2.0**62,
                  1e30, 1e-20]  # as literals: at most 40 characters
HUGE_FLOATS = [1e300, -1e300, 1e-300, 1.7976931348623157e308]
STRINGS = ["", "a", "b", "A", "ab", "abc", "é", "É", "ß", "x y", "1", "-5", "gold", 'q"', "\\"]
DURATIONS = ["1d", "7d", "30d", "12h", "90m", "45s", "1d 12h", "400d"]
DATE_PATTERNS = ['"%Y-%m-%d"', '"%a %d %b %y"', '"%A %B %j %U %W %u %%"', '""', '"%%Y"']
TIME_PATTERNS = ['"%H:%M:%S"', '"%I %p"']
DATES = [datetime.date(2026, 11, 1), datetime.date(2026, 6, 15), datetime.date(1, 1, 1),
         datetime.date(9999, 12, 31), datetime.date(2000, 2, 29)]


def _signed(text: str, negative: bool) -> str:
    return f"(-{text})" if negative else text


def int_literal(v: int) -> str:
    assert abs(v) <= INT_MAX
    return _signed(str(abs(v)), v < 0)


def float_literal(v: float) -> str:
    """ODL floats are digits.digits, no exponent."""
    text = format(Decimal(repr(abs(v))), "f")
    if "." not in text:
        text += ".0"
    assert float(text) == abs(v) and len(text) <= 40, text
    return _signed(text, math.copysign(1, v) < 0)


def string_literal(v: str) -> str:
    escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


int_literals = st.one_of(
    st.sampled_from([v for v in SPECIAL_INTS if abs(v) <= INT_MAX]), st.integers(-1000, 1000)
).map(int_literal)
float_literals = st.one_of(
    st.sampled_from(SPECIAL_FLOATS),
    st.integers(-100_000, 100_000).map(lambda i: i / 100),
).map(float_literal)
string_literals = st.one_of(st.sampled_from(STRINGS), st.text("abAé \"\\\t", max_size=3)).map(string_literal)
date_literals = st.one_of(
    st.sampled_from(DATES), st.dates(datetime.date(2025, 1, 1), datetime.date(2027, 12, 31))
).map(lambda d: d.isoformat())
duration_literals = st.sampled_from(DURATIONS)


# --- type-directed expression generator ------------------------------------------------------


def opaque(strategy, name: str):
    """`strategy` under a short name: the nested strategies' repr would run to megabytes."""
    def draw_it(draw):
        return draw(strategy)

    draw_it.__name__ = draw_it.__qualname__ = name
    return st.composite(draw_it)()


def par(text: str) -> str:
    return f"({text})"


def call(fn: str, *args: str) -> str:
    return f"{fn}({', '.join(args)})"


class Gen:
    """Strategies for ODL source text of a given type: bool int float string date time
    duration, and the right-hand sides of `in`. Every compound is parenthesised, so the text
    parses as generated whatever the precedence."""

    def __init__(self, propensity: bool, refs=OFFERS + CATEGORIES):
        self.propensity = propensity  # `propensity` only means something in an offer
        self.refs = refs  # what history functions may count: offers and categories

    def num(self, depth: int):
        return st.one_of(self.expr("int", depth), self.expr("float", depth))

    @functools.lru_cache(maxsize=None)
    def expr(self, t: str, depth: int):
        leaves = self._leaves(t)
        if depth <= 0:
            return opaque(leaves, f"odl_{t}_leaf")
        return opaque(st.one_of(leaves, st.deferred(lambda: self._compound(t, depth - 1))), f"odl_{t}_{depth}")

    def _leaves(self, t: str):
        options = []
        names = ATTRIBUTES.get(t, ()) + LETS.get(t, ())
        if names:
            options.append(st.sampled_from(names))
        if t == "int":
            options.append(int_literals)
            options.append(st.builds(
                lambda fn, ref, dur: call(fn, ref, dur),
                st.sampled_from(("proposed", "presented", "accepted", "rejected")),
                st.sampled_from(self.refs), duration_literals))
        elif t == "float":
            options.append(float_literals)
            if self.propensity:
                options.append(st.just("propensity"))
        elif t == "bool":
            options.append(st.sampled_from(("true", "false")))
        elif t == "string":
            options.append(string_literals)
        elif t == "date":
            options += [date_literals, st.just("today")]
        elif t == "time":
            options.append(st.just("now"))
        elif t == "duration":
            options.append(duration_literals)
        return st.one_of(*options)

    def _compound(self, t: str, d: int):
        """One operator or function whose result is a `t`, on operands of depth `d`."""
        e = lambda u: self.expr(u, d)  # noqa: E731
        num = self.num(d)
        b = st.builds
        options = [  # every type has ?? and if/then/else
            b(lambda x, y: par(f"{x} ?? {y}"), e(t), e(t)),
            b(lambda c, x, y: par(f"if {c} then {x} else {y}"), e("bool"), e(t), e(t)),
        ]
        if t != "bool":
            options.append(b(call, st.sampled_from(("min", "max")), e(t), e(t)))
        if t == "int":
            options += [
                b(lambda x: par(f"-{x}"), e("int")),
                b(lambda x, op, y: par(f"{x} {op} {y}"), e("int"), st.sampled_from("+-*%"), e("int")),
                b(lambda x: call("len", x), st.one_of(e("string"), self.collection(d))),
                b(lambda x: call("abs", x), e("int")),
                b(call, st.sampled_from(("days_since", "days_until")), e("date")),
                b(lambda x, k: call("bucket", x, k), st.one_of(e("string"), e("int")),
                  st.one_of(e("int"), st.sampled_from(("1", "2", "10", "100", "0", "(-3)")))),
                b(lambda x: call("hour", x), e("time")),
                b(call, st.sampled_from(("weekday", "month")), st.one_of(e("date"), e("time"))),
                b(lambda x, k: call("round", x, k), e("int"), self.places(d)),
            ]
        elif t == "float":  # at least one float operand, or a division
            mixed = st.one_of(st.tuples(e("float"), num), st.tuples(num, e("float")))
            options += [
                b(lambda x: par(f"-{x}"), e("float")),
                b(lambda xy, op: par(f"{xy[0]} {op} {xy[1]}"), mixed, st.sampled_from("+-*%")),
                b(lambda x, y: par(f"{x} / {y}"), num, num),
                b(lambda xy: par(f"{xy[0]} ?? {xy[1]}"), mixed),
                b(lambda c, xy: par(f"if {c} then {xy[0]} else {xy[1]}"), e("bool"), mixed),
                b(lambda fn, xy: call(fn, *xy), st.sampled_from(("min", "max")), mixed),
                b(lambda x: call("abs", x), e("float")),
                b(lambda x, k: call("round", x, k), e("float"), self.places(d)),
            ]
        elif t == "string":
            options += [
                b(lambda x, y: par(f"{x} + {y}"), e("string"), e("string")),
                b(call, st.sampled_from(("lower", "upper")), e("string")),
                b(lambda x, k: call("format_number", x, k), num,
                  st.one_of(st.sampled_from(("0", "1", "2", "20")), e("int"))),
                b(lambda x, p: call("format_date", x, p), e("date"), st.sampled_from(DATE_PATTERNS)),
                b(lambda x, p: call("format_date", x, p), e("time"), st.sampled_from(DATE_PATTERNS + TIME_PATTERNS)),
                b(lambda xs, sep: call("join", xs, sep), self.collection(d), e("string")),
            ]
        elif t == "bool":
            options += [
                b(lambda x: par(f"not {x}"), e("bool")),
                b(lambda x, op, y: par(f"{x} {op} {y}"), e("bool"), st.sampled_from(("and", "or")), e("bool")),
                self.comparison(d),
                self.membership(d),
                b(lambda a: call("has", a), st.sampled_from(ALL_ATTRIBUTES)),
                b(lambda x, y: call("starts_with", x, y), e("string"), e("string")),
            ]
        return st.one_of(*options)

    def places(self, d: int):
        """round's decimals: mostly small, some any int (huge ones included)."""
        return st.one_of(st.sampled_from(("0", "1", "2", "(-1)", "(-2)", "(-19)", "20", "400")), self.expr("int", d))

    def comparison(self, d: int):
        e = lambda u: self.expr(u, d)  # noqa: E731
        ordered = st.one_of(
            st.tuples(self.num(d), self.num(d)), st.tuples(e("string"), e("string")),
            st.tuples(e("date"), e("date")), st.tuples(e("time"), e("time")),
            st.tuples(e("duration"), e("duration")))
        return st.one_of(
            st.builds(lambda xy, op: par(f"{xy[0]} {op} {xy[1]}"), ordered,
                      st.sampled_from(("==", "!=", "<", "<=", ">", ">="))),
            st.builds(lambda x, op, y: par(f"{x} {op} {y}"), e("bool"), st.sampled_from(("==", "!=")), e("bool")),
        )

    def list_literal(self, items):
        return st.lists(items, min_size=1, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")

    def collection(self, d: int):
        """Something `len` takes besides a string."""
        return st.one_of(
            st.sampled_from(("contact.tags", "contact.nums", "contact.words", "picks")),
            self.list_literal(self.num(d)), self.list_literal(self.expr("string", d)))

    def membership(self, d: int):
        e = lambda u: self.expr(u, d)  # noqa: E731
        int_list = self.list_literal(self.expr("int", d))
        pairs = st.one_of(
            st.tuples(self.num(d), st.one_of(
                self.list_literal(self.num(d)), st.just("contact.nums"),
                int_list.map(lambda xs: par(f"contact.nums ?? {xs}")))),
            st.tuples(e("string"), st.one_of(
                self.list_literal(e("string")), st.sampled_from(("contact.tags", "contact.words", "picks")),
                e("string"),  # substring
                self.list_literal(e("string")).map(lambda xs: par(f"contact.words ?? {xs}")))),
            st.tuples(e("date"), self.list_literal(e("date"))),
        )
        return st.builds(lambda xy, op: par(f"{xy[0]} {op} {xy[1]}"), pairs, st.sampled_from(("in", "not in")))


EXPRESSIONS = Gen(propensity=True)
TYPES = ("bool", "int", "float", "string", "date")
expressions = st.one_of(*(EXPRESSIONS.expr(t, 5) for t in TYPES))
bool_expressions = EXPRESSIONS.expr("bool", 5)


# --- random inputs ----------------------------------------------------------------------------

MISSING = object()
ints = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-1000, 1000))
floats = st.one_of(st.sampled_from(SPECIAL_FLOATS + HUGE_FLOATS), st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-1000, 1000).map(float))
strings = st.one_of(st.sampled_from(STRINGS), st.text("abAé \"\\\t", max_size=3))
dates = st.one_of(st.sampled_from(DATES), st.dates(datetime.date(2025, 1, 1), datetime.date(2027, 12, 31)))
VALUES = {
    "int": ints, "float": floats, "string": strings, "bool": st.booleans(), "date": dates,
    "set": st.one_of(st.frozensets(strings, max_size=3), st.lists(strings, max_size=3)),
    "list_int": st.lists(ints, max_size=4),
    "list_string": st.lists(strings, max_size=4),
}


def _value_strategy(t):
    key = t.name if t.elem is None else ("set" if t.name == "set" else f"list_{t.elem.name}")
    return VALUES[key]


def attributes(schema: dict, root: str):
    """A dict of attribute values, each present, missing or None; converted as a request's."""
    fields = {name: st.one_of(st.just(MISSING), st.none(), _value_strategy(t)) for name, t in schema.items()}

    def convert(raw):
        given = {k: v for k, v in raw.items() if v is not MISSING}
        out = check_attributes(schema, given, root)
        out.update({k: None for k, v in given.items() if v is None})  # None is null, as a missing key
        return out

    return st.fixed_dictionaries(fields).map(convert)


@st.composite
def moments(draw):
    when = draw(st.datetimes(datetime.datetime(2026, 1, 1), datetime.datetime(2027, 1, 1),
                             timezones=st.just(datetime.timezone.utc)))
    return Moment.at(when, TIMEZONE)


@st.composite
def histories(draw, moment: Moment, offers=OFFERS, chains=CHAINS, spaces=("web",), groups=None):
    """A MemoryHistory around the decision time (some events after it), viewed by a known
    contact, another one, or an unknown one."""
    props = []
    for _ in range(draw(st.integers(0, 10))):
        offer = draw(st.sampled_from(offers))
        t = moment.ts - draw(st.sampled_from((0, 1, 3600, 86400, 86401, 7 * 86400, 29 * 86400, -60)) |
                             st.integers(-86400, 45 * 86400))
        events = {}
        for status in draw(st.sampled_from(((), ("presented",), ("accepted",), ("rejected",),
                                            ("presented", "accepted"), ("presented", "rejected")))):
            events[status] = t + draw(st.integers(0, 3 * 86400))
        props.append(Proposition(draw(st.sampled_from(("c1", "c2"))), offer, draw(st.sampled_from(spaces)),
                                 chains[offer], t, events, () if groups is None else groups[offer]))
    return SeenHistory(props, draw(st.sampled_from(("c1", "c1", "c2", None))))


class SeenHistory:
    """A MemoryHistory as one contact sees it, with a repr that rebuilds it (for failures)."""

    def __init__(self, propositions: list[Proposition], contact: str | None):
        self.propositions, self.contact = propositions, contact
        view = MemoryHistory(propositions).view(contact)
        self.count, self.total, self.propensity = view.count, view.total, view.propensity

    def __repr__(self) -> str:
        return f"MemoryHistory({self.propositions!r}).view({self.contact!r})"


@st.composite
def environments(draw, contact_schema=None, context_schema=None, **history_options):
    moment = draw(moments())
    return (draw(attributes(contact_schema or CATALOG.contact, "contact")),
            draw(attributes(context_schema or CATALOG.context, "context")),
            moment, draw(histories(moment, **history_options)))


# --- comparing values -------------------------------------------------------------------------


def same(actual, expected) -> bool:
    """Equal values of the same type; floats within rounding (or both NaN)."""
    if actual is None or expected is None:
        return actual is None and expected is None
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, float):
        if math.isnan(expected):
            return math.isnan(actual)
        return actual == expected or math.isclose(actual, expected, rel_tol=1e-9)
    return actual == expected


PYTHON_TYPES = {"bool": bool, "int": int, "float": float, "string": str, "date": datetime.date,
                "time": datetime.datetime, "duration": int}


def walk(e: n.Expr):
    yield e
    for child in n.children(e):
        yield from walk(child)


def describe(what, contact, context, moment, history) -> str:
    return (f"\n{what}\ncontact: {contact}\ncontext: {context}\n"
            f"now: {moment.now!r} today: {moment.today}\nhistory: {history!r}")


def run(fn, what: str, where: str, *args):
    """Call compiled code; evaluation must never raise."""
    try:
        return fn(*args)
    except Exception as e:
        raise AssertionError(f"{what} raised {e!r}" + where) from e


# One bug at a time (report_multiple_bugs=False): shrinking every distinct failure takes minutes.
FAST = settings(max_examples=400 * SCALE, deadline=None, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow])
