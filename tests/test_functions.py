"""The function table (offerd/lang/functions.py) is the one source of ODL's functions.

For every entry, and every argument type its typing rule accepts, a call is typed by the
checker as the entry says, compiled from the entry's template, and the compiled value agrees
with the tests' reference interpreter (which runs the entry's reference) on random arguments,
nulls included; the value has the promised type, and is null only where the checker allows.
"""
from __future__ import annotations

import ast
import datetime
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerd import lang
from offerd.compiler import Moment, compile_expression, runtime
from offerd.history import MemoryHistory
from offerd.lang import nodes as n
from offerd.lang.functions import FUNCTIONS
from offerd.lang.types import BOOL, DATE, DURATION, FLOAT, INT, SET_STRING, STRING, TIME, list_of
from offerd.lang.values import check_attributes

import reference  # tests/reference.py

CATALOG = lang.check({"t.offer": """
schema contact { s: string  i: int  f: float  b: bool  d: date  tags: set<string>
                 nums: list<int>  words: list<string>  fl: list<float>  ds: list<date> }
"""})

INT_MAX = 2**63 - 1
# per argument type: an attribute of that type (may be null) and expressions that are never null
ARGUMENTS = {
    STRING: ("contact.s", ['"aB"', '""', '"ß"', '(contact.s ?? "x")']),
    INT: ("contact.i", ["0", "3", "(-7)", "9223372036854775807", "(contact.i ?? 2)"]),
    FLOAT: ("contact.f", ["2.5", "(-0.5)", "0.0", "(contact.f ?? 1.5)"]),
    BOOL: ("contact.b", ["true", "(contact.b ?? false)"]),
    DATE: ("contact.d", ["2026-11-01", "today", "(contact.d ?? 2000-02-29)"]),
    SET_STRING: ("contact.tags", []),
    list_of(INT): ("contact.nums", ["[1, 2, 2]"]),
    list_of(STRING): ("contact.words", ['["a", "b"]']),
    list_of(FLOAT): ("contact.fl", ["[1.5, 2.0]"]),
    list_of(DATE): ("contact.ds", ["[2026-01-01]"]),
    TIME: (None, ["now"]),
    DURATION: (None, ["7d", "1d 12h"]),
}
# arguments that must be literals (checked at compile time), and literals they take
LITERAL_ARGUMENTS = {("format_date", 1): ['"%Y-%m-%d"', '"%a %d %b %y, %A %B %j %U %W %u %%"', '""', '"x%%%%y"']}
PYTHON = {"string": str, "int": int, "float": float, "bool": bool, "date": datetime.date,
          "time": datetime.datetime, "duration": int}

strings = st.text("aAbéß ", max_size=3)
ints = st.one_of(st.integers(-1000, 1000), st.sampled_from([0, -1, 2**62, INT_MAX, -INT_MAX - 1]))
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-9, 9).map(float))
dates = st.dates(datetime.date(1990, 1, 1), datetime.date(2030, 12, 31))
VALUES = {"s": strings, "i": ints, "f": floats, "b": st.booleans(), "d": dates,
          "tags": st.frozensets(strings, max_size=3), "nums": st.lists(ints, max_size=3),
          "words": st.lists(strings, max_size=3), "fl": st.lists(floats, max_size=3),
          "ds": st.lists(dates, max_size=3)}
contacts = st.fixed_dictionaries({}, optional={k: st.one_of(st.none(), v) for k, v in VALUES.items()}).map(
    lambda c: {**check_attributes(CATALOG.contact, {k: v for k, v in c.items() if v is not None}, "contact"),
               **{k: None for k, v in c.items() if v is None}})
moments = st.datetimes(datetime.datetime(2025, 1, 1), datetime.datetime(2028, 1, 1),
                       timezones=st.just(datetime.timezone.utc)).map(lambda t: Moment.at(t, "UTC"))


def signatures(fn):
    """Every tuple of argument types the entry's typing rule accepts (attributes only, for has)."""
    types = [t for t, (attr, _) in ARGUMENTS.items() if attr is not None or not fn.attribute]
    return [ts for ts in itertools.product(types, repeat=fn.arity) if fn.result(*ts) is not None]


CASES = [pytest.param(fn, ts, id=f"{fn.name}({', '.join(map(str, ts))})")
         for fn in FUNCTIONS.values() for ts in signatures(fn)]


def test_every_function_takes_some_arguments():
    assert all(signatures(fn) for fn in FUNCTIONS.values())


@pytest.mark.parametrize("fn", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_templates_name_only_what_generated_code_can_see(fn):
    code = fn.code.format(*["_p0"] * fn.arity, first=["_p0"] * fn.arity)
    names = {x.id for x in ast.walk(ast.parse(code, mode="eval")) if isinstance(x, ast.Name)}
    assert names <= (set(runtime.namespace()) | {"_p0"} | ({"_tdo"} if fn.today else set())
                     | ({"_local"} if fn.local else set()))


def same(actual, expected) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("fn, types", CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_call_agrees_with_the_table(fn, types, data):
    args = []
    for i, t in enumerate(types):
        attr, others = ARGUMENTS[t]
        if (fn.name, i) in LITERAL_ARGUMENTS:  # checked at compile time: a literal only
            args.append(data.draw(st.sampled_from(LITERAL_ARGUMENTS[fn.name, i])))
            continue
        args.append(data.draw(st.sampled_from(([attr] if attr else []) + ([] if fn.attribute else others))))
    text = f"{fn.name}({', '.join(args)})"
    compiled = compile_expression(CATALOG, text)
    call = compiled.expr
    assert isinstance(call, n.Call) and call.fn == fn.name
    assert call.type == fn.result(*types), text
    nullable = any(a.nullable for a in call.args) if fn.null is None else fn.null
    assert call.nullable == nullable, text
    history = MemoryHistory().view(None)
    for contact in data.draw(st.lists(contacts, min_size=1, max_size=4)):
        moment = data.draw(moments)
        where = f"{text} with {contact} on {moment.today}"
        expected = reference.evaluate(call, contact, {}, moment, history, CATALOG.lets)
        value = compiled.value(contact, {}, moment, history)
        assert same(value, expected), f"{where}: compiled {value!r}, reference {expected!r}"
        if value is None:
            assert call.nullable, f"{where}: null, but the checker says never"
        else:
            assert type(value) is PYTHON[call.type.name], f"{where}: {value!r} is not a {call.type}"
        if call.type == BOOL:
            assert compiled.truth(contact, {}, moment, history) is (expected is True), where
            assert compiled.falsity(contact, {}, moment, history) is (expected is False), where
