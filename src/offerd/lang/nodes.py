"""The ODL syntax tree: frozen dataclasses, each with its span.

Spans, types and nullability are excluded from equality and hashing, so two
expressions that read the same compare equal (the code generator relies on this
to evaluate a repeated sub-expression once). The parser fills `span`; the checker
returns new trees with `type` and `nullable` filled and names resolved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..periods import LONGEST
from .diagnostics import NO_SPAN, Span
from .types import Type


def _meta():
    return field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


def _derived(default=None):
    return field(default=default, compare=False, repr=False, kw_only=True)


# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    span: Span = _meta()
    type: Type | None = _derived()  # set by the checker
    nullable: bool = _derived(True)  # set by the checker: may this evaluate to null?
    depth: int = _derived(1)  # nesting depth, bounded at parse time
    # Written in brackets: the parser sets it on those nodes alone (no field: most nodes have
    # none, and a catalog makes hundreds of thousands); the `??` precedence warning reads it.
    parens: ClassVar[bool] = False


@dataclass(frozen=True)
class Literal(Expr):
    value: object  # int float str bool datetime.date; durations are int seconds
    lit_type: Type


@dataclass(frozen=True)
class ListLiteral(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Path(Expr):
    """`contact.age`, or a dotted category name given to a history function."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class Name(Expr):
    """A bare name: a let, `now`, `today`, `propensity`, or an offer given to a history function."""

    name: str


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" or "not"
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / % == != < <= > >= and or ?? in "not in"
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Cond(Expr):
    test: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]


# Produced by the checker only.


@dataclass(frozen=True)
class Attr(Expr):
    root: str  # "contact" or "context"
    name: str


@dataclass(frozen=True)
class LetRef(Expr):
    name: str


@dataclass(frozen=True)
class Clock(Expr):
    which: str  # "now" or "today"


@dataclass(frozen=True)
class Propensity(Expr):
    offer: str  # the offer whose rule reads it; the space comes from the compiled space


@dataclass(frozen=True)
class History(Expr):
    """A count of this contact's propositions (scope "contact") or everyone's ("total")."""

    status: str  # proposed presented accepted rejected
    ref_kind: str  # "offer", "category", "space" or "group"
    ref: str
    window: int | None  # seconds; None = lifetime, or the calendar period
    scope: str = "contact"
    calendar: str | None = None  # "day", "week" or "month": counts from the period's start

    def reach(self) -> int | None:
        """How far back it counts, in seconds at most; None: lifetime."""
        return LONGEST[self.calendar] if self.calendar is not None else self.window


@dataclass(frozen=True)
class Template:
    """A content value: literal text and `{expr}` parts."""

    parts: tuple[str | Expr, ...]
    span: Span = _meta()


# --- declarations ------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeRef:
    name: str
    arg: TypeRef | None = None
    span: Span = _meta()


@dataclass(frozen=True)
class Timezone:
    name: str
    span: Span = _meta()


@dataclass(frozen=True)
class SchemaField:
    name: str
    type: TypeRef
    span: Span = _meta()
    domain: DomainSpec | None = None  # `in [...]` or `in LOW to HIGH`


@dataclass(frozen=True)
class DomainSpec:
    """A schema field's closed set (kind "set": its members) or range (kind "range": low,
    high), as written: each value with its span; the checker turns it into a Domain."""

    kind: str
    values: tuple[tuple[object, Span], ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Schema:
    name: str
    fields: tuple[SchemaField, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Let:
    name: str
    expr: Expr
    span: Span = _meta()


@dataclass(frozen=True)
class Cap:
    limit: int
    status: str | None  # None = proposed
    scope: str  # "contact", "total" or "decision" (one answer; window None)
    window: int | None  # seconds; None = lifetime (or a calendar period)
    span: Span = _meta()
    status_span: Span = _meta()
    calendar: str | None = None  # `per calendar week`: "week" (checked: day, week or month)
    calendar_span: Span = _meta()


@dataclass(frozen=True)
class Suppress:
    window: int
    status: str
    span: Span = _meta()
    status_span: Span = _meta()


@dataclass(frozen=True)
class Clause:
    """A one-value clause: channel, limit, fallback, category, groups, valid, themes, spaces."""

    kind: str
    value: object
    span: Span = _meta()
    value_spans: tuple[Span, ...] = _meta()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    optional: bool
    span: Span = _meta()


@dataclass(frozen=True)
class Fields:
    specs: tuple[FieldSpec, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Rule:
    """`eligible [in S:] expr` or `weight [in S:] expr`."""

    kind: str  # "eligible" or "weight"
    space: str | None
    expr: Expr
    span: Span = _meta()
    space_span: Span = _meta()


@dataclass(frozen=True)
class ContentField:
    name: str
    value: Template
    span: Span = _meta()


@dataclass(frozen=True)
class Content:
    space: str
    fields: tuple[ContentField, ...]
    span: Span = _meta()
    space_span: Span = _meta()


@dataclass(frozen=True)
class Space:
    name: str
    items: tuple[object, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Category:
    name: str
    items: tuple[object, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Group:
    """`group NAME { ... }`: a flat named set of offers (they join with `groups NAME`)."""

    name: str
    items: tuple[object, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Offer:
    name: str
    items: tuple[object, ...]
    span: Span = _meta()


@dataclass(frozen=True)
class Module:
    """One parsed file."""

    file: str
    decls: tuple[object, ...]


_CHILDREN = {
    Binary: lambda e: (e.left, e.right),
    Unary: lambda e: (e.operand,),
    Cond: lambda e: (e.test, e.then, e.orelse),
    Call: lambda e: e.args,
    ListLiteral: lambda e: e.items,
}


def children(e: Expr) -> tuple[Expr, ...]:
    get = _CHILDREN.get(type(e))
    return get(e) if get is not None else ()


def _cache_hash(cls) -> None:
    """Dataclass hashes recurse through the whole subtree on every call; the code generator
    hashes every sub-expression of a space, so remember each node's hash once computed."""
    compute = cls.__hash__

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = compute(self)
        return h

    cls.__hash__ = __hash__


for _cls in (Literal, ListLiteral, Path, Name, Unary, Binary, Cond, Call, Attr, LetRef, Clock,
             Propensity, History):
    _cache_hash(_cls)


def evolve(node, **changes):
    """A copy of a frozen node with some fields changed: dataclasses.replace without the
    cost of __init__ (the checker makes one per expression node)."""
    new = object.__new__(type(node))
    state = dict(node.__dict__)
    state.pop("_hash", None)
    state.update(changes)
    new.__dict__.update(state)
    return new
