"""Closed sets and ranges of schema attributes (`segment: string in ["gold", "basic"]`,
`age: int in 0 to 120`): each field's written domain checked into a catalog Domain, and the
literals rules compare such attributes with checked against it (a string outside a closed
set is an error; a number or date outside a range, a warning: the test is never true)."""
from __future__ import annotations

import datetime

from . import nodes as n
from .catalog import Domain, show
from .diagnostics import Reporter, did_you_mean
from .types import Type

COMPARED = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
_RANGED = {"int": (int,), "float": (int, float), "date": (datetime.date,)}


def build(spec: n.DomainSpec, t: Type, attr: str, r: Reporter) -> Domain | None:
    """The Domain of field `attr` of type `t`, or None after reporting why it cannot be."""
    base = t.elem if t.collection else t
    if base.name == "error":
        return None
    if spec.kind == "set":
        if base.name != "string":
            hint = ("a bool is only true or false: drop the `in [...]`" if base.name == "bool" else
                    f"for {_a(base)}, give a range: `{attr.split('.')[1]}: {t} in LOW to HIGH`")
            r.error(spec.span, f"a closed set lists strings; {attr} is {_a(t)}", hint)
            return None
        if not spec.values:
            r.error(spec.span, f"the closed set of {attr} is empty", "list at least one value")
            return None
        seen: set = set()
        ok = True
        for value, span in spec.values:
            if not isinstance(value, str):
                r.error(span, f"a closed set lists strings, not {show(value)}", f'write "{value}"')
                ok = False
            elif value in seen:
                r.error(span, f"{show(value)} is listed twice in the closed set of {attr}")
                ok = False
            seen.add(value)
        listed = tuple(v for v, _ in spec.values)
        return Domain(values=frozenset(listed), listed=listed) if ok else None
    kinds = _RANGED.get(base.name)
    if kinds is None:
        hint = ('list its values instead: `in ["a", "b"]`' if base.name == "string" else
                "a range applies to int, float and date attributes")
        r.error(spec.span, f"a range needs numbers or dates; {attr} is {_a(t)}", hint)
        return None
    bounds = []
    for value, span in spec.values:
        if not isinstance(value, kinds) or isinstance(value, bool):
            r.error(span, f"the range of {attr} ({t}) cannot start or end at {show(value)}",
                    f"give {'dates' if base.name == 'date' else base.name + 's'} as bounds")
            return None
        bounds.append(float(value) if base.name == "float" else value)
    low, high = bounds
    if low > high:
        r.error(spec.span, f"the range of {attr} ends ({show(high)}) before it starts ({show(low)})")
        return None
    return Domain(low=low, high=high)


def _a(t: Type) -> str:
    return f"an {t}" if str(t)[0] in "aeiou" else f"a {t}"


def derive(e: n.Expr, domains: dict, let_domains: dict) -> Domain | None:
    """What a typed expression may evaluate to, when non-null: an attribute's domain, through
    lets, `??` and if/else with literals or other such expressions (a range grows to cover
    them). None when unknown."""
    if isinstance(e, n.Attr):
        return None if e.type.collection else domains.get((e.root, e.name))
    if isinstance(e, n.LetRef):
        return let_domains.get(e.name)
    if isinstance(e, n.Unary) and e.op == "float":
        return derive(e.operand, domains, let_domains)
    if isinstance(e, n.Binary) and e.op == "??":
        parts = (e.left, e.right)
    elif isinstance(e, n.Cond):
        parts = (e.then, e.orelse)
    else:
        return None
    found = [derive(p, domains, let_domains) for p in parts]
    if all(d is None for d in found):
        return None
    merged = None
    for p, d in zip(parts, found):
        if d is None:
            if not isinstance(p, n.Literal):
                return None
            d = Domain(values=frozenset([p.value]), listed=(p.value,)) if isinstance(p.value, str) else \
                Domain(low=p.value, high=p.value)
        merged = d if merged is None else _union(merged, d)
        if merged is None:
            return None
    return merged


def _union(a: Domain, b: Domain) -> Domain | None:
    if a.values is not None and b.values is not None:
        listed = a.listed + tuple(v for v in b.listed if v not in a.values)
        return Domain(values=a.values | b.values, listed=listed)
    if a.values is None and b.values is None:
        return Domain(low=min(a.low, b.low), high=max(a.high, b.high))
    return None


def _name(e: n.Expr) -> str:
    if isinstance(e, n.Attr):
        return f"{e.root}.{e.name}"
    if isinstance(e, n.LetRef):
        return e.name
    if isinstance(e, n.Unary):
        return _name(e.operand)
    return "this expression"


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def check_literals(e: n.Binary, r: Reporter, domains: dict, let_domains: dict) -> None:
    """Report the literals of a typed comparison that its closed set or range rules out."""
    left, right, op = e.left, e.right, e.op
    if op in ("in", "not in"):
        if isinstance(right, n.ListLiteral):
            d = derive(left, domains, let_domains)
            if d is not None:
                for item in right.items:
                    if isinstance(item, n.Literal):
                        _member(item, d, _name(left), r)
        elif isinstance(right, n.Attr) and right.type.collection and isinstance(left, n.Literal):
            d = domains.get((right.root, right.name))
            if d is not None:
                _member(left, d, f"{right.root}.{right.name}", r)
        return
    if isinstance(right, n.Literal):
        side, lit = left, right
    elif isinstance(left, n.Literal):
        side, lit, op = right, left, _FLIP[op]
    else:
        return
    d = derive(side, domains, let_domains)
    if d is None or isinstance(lit.value, bool):
        return
    name = _name(side)
    if d.values is not None:
        if op in ("==", "!=") and isinstance(lit.value, str):
            _member(lit, d, name, r)
        return
    if isinstance(lit.value, str):
        return
    v, low, high = lit.value, d.low, d.high
    if op in ("==", "!="):
        same, outside = low == high == v, not low <= v <= high
        always, never = (same, outside) if op == "==" else (outside, same)
    else:
        always = {"<": high < v, "<=": high <= v, ">": low > v, ">=": low >= v}[op]
        never = {"<": low >= v, "<=": low > v, ">": high <= v, ">=": high < v}[op]
    if not (always or never):
        return
    if always:
        r.warning(e.span, f"this comparison is always true when {name} is present: it is in {d.describe()}")
    else:
        r.warning(e.span, f"this comparison is never true: {name} is in {d.describe()}")


def _member(lit: n.Literal, d: Domain, name: str, r: Reporter) -> None:
    v = lit.value
    if d.values is not None:
        if isinstance(v, str) and v not in d.values:
            close = did_you_mean(show(v), [show(x) for x in d.listed])
            mean = f"{close} " if close else ""
            r.error(lit.span, f"{show(v)} is not a value of {name}", f"{mean}{name} is one of {d.describe()}")
        return
    if not isinstance(v, (str, bool)) and not d.low <= v <= d.high:
        r.warning(lit.span, f"{show(v)} is outside the range of {name}, {d.describe()}: it never matches")
