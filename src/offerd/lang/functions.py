"""ODL's functions, one table entry each: how a call is typed, the Python the code generator
writes for it, its cost, and what it means (the reference the tests compare compiled code with).

Adding a function is adding an entry. The checker, the code generator and the tests' reference
interpreter read this table; the helpers a template calls (`_rt_...`) live in
compiler/runtime.py, the only names generated code can see.
"""
from __future__ import annotations

import datetime
import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from ..domain import INT_MAX, STATUSES
from . import nodes as n
from .types import BOOL, DATE, INT, ORDERED, STRING, TIME, Type, unify

# proposed(ref, 30d), presented(...), accepted(...), rejected(...): they count history, so the
# checker makes History nodes of them (an offer or category name and a duration literal are
# not values); not table entries.
HISTORY_FUNCTIONS = STATUSES


@dataclass(frozen=True)
class Function:
    """One function. `code` is a str.format template of a Python expression: {0}, {1} are the
    arguments' values, and it may call the runtime's `_rt_...` helpers and read `_tdo`."""

    name: str
    params: str  # the parameters as the language reference names them: "x, n" (editors show them)
    takes: str  # the arguments in words, for the error when they do not fit: "a string"
    result: Callable[..., Type | None]  # argument types → the result's type, or None: they do not fit
    code: str
    reference: Callable  # the meaning on Python values, for the tests' reference interpreter
    # None: null exactly when an argument is null, which the generated code and the reference
    # interpreter test first; True (may be null) or False (never): template and reference take nulls
    null: bool | None = None
    cost: int = 8  # against an attribute read's 1: the code generator tests cheap rules first
    widen: bool = False  # int arguments become floats when the result is a float (min, max)
    # the template reads each argument twice: {first[i]} is where argument i is evaluated first,
    # and the generator binds it to a name there
    bind: bool = False
    today: bool = False  # reads the decision's date: the template as `_tdo` (its ordinal), the
    # reference as a first argument
    bounds: Callable | None = None  # the arguments' (low, high) bounds → the result's; None: unbounded
    attribute: bool = False  # takes an attribute, unevaluated (has): not its value
    # reads the decision time in the catalog's timezone (Moment.local): the template as
    # `_local`, the reference as a first argument; `now` as an argument is written `_local`
    local: bool = False
    # the checked arguments → None, or (argument index, message, hint): what types cannot
    # say (format_date's pattern must be a literal of known directives)
    check: Callable | None = None

    @property
    def arity(self) -> int:
        return len(self.params.split(", "))
    # with `local`: the template when the argument needs no conversion (`now`, which the
    # moment holds in the catalog's timezone already, or a date): an attribute read, no call
    plain: str | None = None


def _ordered(a: Type, b: Type) -> Type | None:
    u = unify(a, b)
    return u if u is not None and u.name in ORDERED else None


def _bucket(x, count):
    """The value's text, hashed with BLAKE2b (8 bytes, big-endian) modulo count; null for count < 1."""
    if x is None or count is None or count < 1:
        return None
    digest = hashlib.blake2b(str(x).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def _in_zone(local: datetime.datetime, x):
    """A date as it is; a time in the zone of `local` (the catalog's)."""
    return x.astimezone(local.tzinfo) if isinstance(x, datetime.datetime) else x


def _date_or_time(x: Type) -> Type | None:
    return INT if x in (DATE, TIME) else None


def _round_fraction(v: Fraction, places: int) -> Fraction:
    """v to `places` decimals, half away from zero, exactly."""
    scale = Fraction(10) ** places
    units = math.floor(abs(v) * scale + Fraction(1, 2))
    return (units if v >= 0 else -units) / scale


def _round(x, places):
    """Half away from zero on the decimal Python prints for x; an int stays an int (null
    outside 64 bits), a float's infinities and NaN stay."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return x
        if places > 400:  # a float has no digit that far
            return x + 0.0
        if places < -400:
            return 0.0
        try:
            return float(_round_fraction(Fraction(repr(x)), places)) + 0.0
        except OverflowError:  # rounded up past the largest float: infinite, as a float sum would be
            return math.copysign(math.inf, x)
    if places >= 0:
        return x
    if places < -30:
        return 0
    r = int(_round_fraction(Fraction(x), places))
    return r if abs(r) <= INT_MAX else None


def _format_number(x, places):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    places = max(0, min(20, places))
    v = Fraction(repr(x)) if isinstance(x, float) else Fraction(x)
    units = abs(_round_fraction(v, places) * 10**places)
    digits = str(int(units)).rjust(places + 1, "0")
    whole, decimals = digits[:len(digits) - places], digits[len(digits) - places:]
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return ("-" if v < 0 and units else "") + ",".join(groups) + ("." + decimals if places else "")


DATE_DIRECTIVES = "YymdjAaBbuUW%"  # format_date's, for dates and times
TIME_DIRECTIVES = "HIpMS"  # for times only


def _format_date(local, x, pattern):
    x = _in_zone(local, x)
    out, i = "", 0
    while i < len(pattern):
        if pattern[i] != "%":
            out += pattern[i]
        else:
            i += 1
            d = pattern[i]
            # strftime as the C locale has it, but the year always in four digits
            out += f"{x.year:04d}" if d == "Y" else x.strftime("%" + d)
        i += 1
    return out


def _date_pattern(args) -> tuple[int, str, str] | None:
    allowed = " ".join("%" + d for d in (DATE_DIRECTIVES + TIME_DIRECTIVES).replace("%", ""))
    pattern = args[1]
    if not (isinstance(pattern, n.Literal) and isinstance(pattern.value, str)):
        return 1, "format_date's pattern must be a string literal", 'write it in the rule, like "%d %B %Y"'
    text, i, time = pattern.value, 0, args[0].type == TIME
    while (i := text.find("%", i)) >= 0:
        d = text[i + 1:i + 2]
        if not d or d not in DATE_DIRECTIVES + TIME_DIRECTIVES:
            what = f"%{d}" if d else "a lone % at its end"
            return 1, f"format_date's pattern has {what}, not a directive it knows", f"use {allowed}; %% is a percent sign"
        if d in TIME_DIRECTIVES and not time:
            return 1, f"format_date's %{d} needs a time (now); a date has no time of day", None
        i += 2
    return None


def _round_bounds(x, places):
    """round(x, n) is within half a unit of n's last decimal of x: the most for the least n."""
    if not places[0] >= -20:
        return (-math.inf, math.inf)
    half = 0.5 * 10.0 ** -places[0]
    return (math.nextafter(x[0] - half, -math.inf), math.nextafter(x[1] + half, math.inf))


def _join(items, sep):
    if isinstance(items, frozenset):
        items = sorted(items)
    texts = []
    for i in items:
        if i is None:
            continue
        texts.append("true" if i is True else "false" if i is False else i.isoformat()
                     if isinstance(i, datetime.date) else str(i))
    return sep.join(texts)


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("has", "attr", "an attribute, like has(contact.age)", lambda x: BOOL, "({0} is not None)",
             lambda x: x is not None, null=False, attribute=True),
    Function("lower", "s", "a string", lambda s: STRING if s == STRING else None, "{0}.lower()", str.lower),
    Function("upper", "s", "a string", lambda s: STRING if s == STRING else None, "{0}.upper()", str.upper),
    Function("len", "x", "a string, list or set", lambda x: INT if x == STRING or x.collection else None,
             "_rt_len({0})", len),
    Function("starts_with", "s, p", "two strings", lambda s, p: BOOL if s == p == STRING else None,
             "{0}.startswith({1})", str.startswith),
    Function("min", "a, b", "two values of one ordered type", _ordered,
             "({0} if {first[0]} <= {first[1]} else {1})", min, widen=True, bind=True,
             bounds=lambda a, b: (min(a[0], b[0]), min(a[1], b[1]))),
    Function("max", "a, b", "two values of one ordered type", _ordered,
             "({0} if {first[0]} >= {first[1]} else {1})", max, widen=True, bind=True,
             bounds=lambda a, b: (max(a[0], b[0]), max(a[1], b[1]))),
    Function("abs", "x", "a number", lambda x: x if x.numeric else None, "-{0} if {0} < 0 else {0}", abs),
    Function("days_since", "date", "a date", lambda d: INT if d == DATE else None, "_tdo - {0}.toordinal()",
             lambda today, d: today.toordinal() - d.toordinal(), today=True),
    Function("days_until", "date", "a date", lambda d: INT if d == DATE else None, "{0}.toordinal() - _tdo",
             lambda today, d: d.toordinal() - today.toordinal(), today=True),
    # bucket(x, 0) is null
    Function("bucket", "x, n", "a string or int, and an int",
             lambda x, k: INT if x in (STRING, INT) and k == INT else None, "_rt_bucket({0}, {1})", _bucket,
             null=True, cost=40),
    Function("hour", "t", "a time (now)", lambda t: INT if t == TIME else None, "_rt_hour({0}, _local)",
             lambda local, t: t.astimezone(local.tzinfo).hour, local=True, bounds=lambda t: (0.0, 23.0),
             plain="{0}.hour"),
    Function("weekday", "x", "a date or a time", _date_or_time, "_rt_weekday({0}, _local)",
             lambda local, x: _in_zone(local, x).weekday() + 1, local=True, bounds=lambda x: (1.0, 7.0),
             plain="{0}.isoweekday()"),
    Function("month", "x", "a date or a time", _date_or_time, "_rt_month({0}, _local)",
             lambda local, x: _in_zone(local, x).month, local=True, bounds=lambda x: (1.0, 12.0),
             plain="{0}.month"),
    # null also for an int rounded outside 64 bits (round(9e18, -19))
    Function("round", "x, n", "a number and an int (decimals)",
             lambda x, k: x if x.numeric and k == INT else None, "_rt_round({0}, {1})",
             lambda x, k: None if x is None or k is None else _round(x, k), null=True, bounds=_round_bounds),
    # decimals outside 0..20 are taken as the nearest of those
    Function("format_number", "x, n", "a number and an int (decimals, 0 to 20)",
             lambda x, k: STRING if x.numeric and k == INT else None, "_rt_format_number({0}, {1})",
             _format_number, cost=40),
    Function("format_date", "x, pattern", 'a date or a time, and a pattern like "%d %B %Y"',
             lambda x, p: STRING if x in (DATE, TIME) and p == STRING else None, "_rt_format_date({0}, {1}, _local)",
             _format_date, local=True, cost=40, check=_date_pattern),
    Function("join", "xs, sep", "a list or set, and a string (the separator)",
             lambda xs, sep: STRING if xs.collection and sep == STRING else None, "_rt_join_items({0}, {1})",
             _join, cost=40),
)}

CALLABLE = (*FUNCTIONS, *HISTORY_FUNCTIONS)  # every name that may be called


def template_attributes() -> set[str]:
    """The attributes the templates read (str.lower, date.toordinal ...): besides the code
    generator's own, the only ones generated code may read (the sandbox tests hold it to that)."""
    import ast

    codes = [f.code for f in FUNCTIONS.values()] + [f.plain for f in FUNCTIONS.values() if f.plain]
    trees = (ast.parse(code.format(*["x"] * 2, first=["x"] * 2)) for code in codes)
    return {a.attr for tree in trees for a in ast.walk(tree) if isinstance(a, ast.Attribute)}
