"""ODL's functions, one table entry each: how a call is typed, the Python the code generator
writes for it, its cost, and what it means (the reference the tests compare compiled code with).

Adding a function is adding an entry. The checker, the code generator and the tests' reference
interpreter read this table; the helpers a template calls (`_rt_...`) live in
compiler/runtime.py, the only names generated code can see.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from ..domain import STATUSES
from .types import BOOL, DATE, INT, ORDERED, STRING, Type, unify

# proposed(ref, 30d), presented(...), accepted(...), rejected(...): they count history, so the
# checker makes History nodes of them (an offer or category name and a duration literal are
# not values); not table entries.
HISTORY_FUNCTIONS = STATUSES


@dataclass(frozen=True)
class Function:
    """One function. `code` is a str.format template of a Python expression: {0}, {1} are the
    arguments' values, and it may call the runtime's `_rt_...` helpers and read `_tdo`."""

    name: str
    arity: int
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


def _ordered(a: Type, b: Type) -> Type | None:
    u = unify(a, b)
    return u if u is not None and u.name in ORDERED else None


def _bucket(x, count):
    """The value's text, hashed with BLAKE2b (8 bytes, big-endian) modulo count; null for count < 1."""
    if x is None or count is None or count < 1:
        return None
    digest = hashlib.blake2b(str(x).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("has", 1, "an attribute, like has(contact.age)", lambda x: BOOL, "({0} is not None)",
             lambda x: x is not None, null=False, attribute=True),
    Function("lower", 1, "a string", lambda s: STRING if s == STRING else None, "{0}.lower()", str.lower),
    Function("upper", 1, "a string", lambda s: STRING if s == STRING else None, "{0}.upper()", str.upper),
    Function("len", 1, "a string, list or set", lambda x: INT if x == STRING or x.collection else None,
             "_rt_len({0})", len),
    Function("starts_with", 2, "two strings", lambda s, p: BOOL if s == p == STRING else None,
             "{0}.startswith({1})", str.startswith),
    Function("min", 2, "two values of one ordered type", _ordered,
             "({0} if {first[0]} <= {first[1]} else {1})", min, widen=True, bind=True,
             bounds=lambda a, b: (min(a[0], b[0]), min(a[1], b[1]))),
    Function("max", 2, "two values of one ordered type", _ordered,
             "({0} if {first[0]} >= {first[1]} else {1})", max, widen=True, bind=True,
             bounds=lambda a, b: (max(a[0], b[0]), max(a[1], b[1]))),
    Function("abs", 1, "a number", lambda x: x if x.numeric else None, "-{0} if {0} < 0 else {0}", abs),
    Function("days_since", 1, "a date", lambda d: INT if d == DATE else None, "_tdo - {0}.toordinal()",
             lambda today, d: today.toordinal() - d.toordinal(), today=True),
    Function("days_until", 1, "a date", lambda d: INT if d == DATE else None, "{0}.toordinal() - _tdo",
             lambda today, d: d.toordinal() - today.toordinal(), today=True),
    # bucket(x, 0) is null
    Function("bucket", 2, "a string or int, and an int",
             lambda x, k: INT if x in (STRING, INT) and k == INT else None, "_rt_bucket({0}, {1})", _bucket,
             null=True, cost=40),
)}

CALLABLE = (*FUNCTIONS, *HISTORY_FUNCTIONS)  # every name that may be called


def template_attributes() -> set[str]:
    """The attributes the templates read (str.lower, date.toordinal ...): besides the code
    generator's own, the only ones generated code may read (the sandbox tests hold it to that)."""
    import ast

    trees = (ast.parse(f.code.format(*["x"] * f.arity, first=["x"] * f.arity)) for f in FUNCTIONS.values())
    return {a.attr for tree in trees for a in ast.walk(tree) if isinstance(a, ast.Attribute)}
