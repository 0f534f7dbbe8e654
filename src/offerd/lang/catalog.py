"""The checked catalog: what the checker produces and the code generator consumes.

Every expression in it is typed, with names resolved (Attr, LetRef, Clock, Propensity,
History). Treat instances as immutable values."""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

from .. import periods
from .diagnostics import Diagnostic, Span
from .nodes import Expr, FieldSpec, Template
from .types import Type

# `contact.id`, the request's contact id (a visitor id for an anonymous visitor): compiled code
# reads it from the contact's attributes under this key, which no schema may declare; the
# engine puts it there only for catalogs that read it (engine.plan.reads_contact_id)
CONTACT_ID = "id"


@dataclass(frozen=True)
class RuleRef:
    """A rule as `explain` names it: kind, owner, a short text and where it is written."""

    kind: str  # valid eligible cap suppress weight
    owner: str  # "offer gold_upgrade", "category loyalty", "space web_home"
    text: str
    span: Span

    def __str__(self) -> str:
        return f"{self.span}: {self.owner}: {self.text}"


@dataclass(frozen=True)
class Check:
    """A rule and the boolean expression that must be exactly true for the offer to stay."""

    rule: RuleRef
    expr: Expr


@dataclass(frozen=True)
class DecisionCap:
    """`cap N per decision`: at most `limit` offers counting toward (ref_kind, ref) in one
    answer, all spaces of the call together. Not history: arbitration checks it."""

    rule: RuleRef
    ref_kind: str  # "space", "category" or "group"
    ref: str
    limit: int

    @property
    def key(self) -> tuple[str, str]:
        """(kind, ref), as arbitration counts a decision's picks."""
        return self.ref_kind, self.ref


@dataclass(frozen=True)
class SpaceDef:
    name: str
    channel: str
    limit: int
    fallback: str | None
    caps: tuple[Check, ...]
    fields: tuple[FieldSpec, ...] | None  # None: the space asks for no particular fields
    span: Span
    eligible: tuple[Check, ...] = ()  # every offer in the space must pass them
    decision_caps: tuple[DecisionCap, ...] = ()


@dataclass(frozen=True)
class CategoryDef:
    name: str
    parent: str | None
    eligible: tuple[Check, ...]
    limits: tuple[Check, ...]  # caps and suppressions, in declaration order
    span: Span
    eligible_in: dict[str, tuple[Check, ...]] = field(default_factory=dict)  # space → its extra rules
    decision_caps: tuple[DecisionCap, ...] = ()


@dataclass(frozen=True)
class GroupDef:
    """A flat named set of offers (`groups` in an offer) with rules and caps of its own."""

    name: str
    eligible: tuple[Check, ...]
    eligible_in: dict[str, tuple[Check, ...]]
    limits: tuple[Check, ...]  # caps and suppressions, in declaration order
    span: Span
    decision_caps: tuple[DecisionCap, ...] = ()


@dataclass(frozen=True)
class OfferDef:
    name: str
    index: int  # declaration order: file name order, then position
    span: Span
    category: str | None
    chain: tuple[str, ...]  # categories, root first
    themes: tuple[str, ...]
    spaces: tuple[str, ...]
    # as written: each end a date or a wall-clock datetime in the catalog's timezone (valid_local)
    valid: tuple[datetime.date, datetime.date] | None
    valid_rule: RuleRef | None
    eligible: tuple[Check, ...]
    eligible_in: dict[str, tuple[Check, ...]]
    weight: Check
    weight_in: dict[str, Check]
    limits: tuple[Check, ...]  # caps and suppressions, in declaration order
    content: dict[str, tuple[tuple[str, Template], ...]]
    groups: tuple[str, ...] = ()  # in the order the offer lists them


@dataclass(frozen=True)
class Domain:
    """The values a schema attribute (or each item of a set or list attribute) may take: a
    closed set of strings (`values`, with `listed` their written order), or an inclusive
    range `low` to `high` (ints, floats or dates). Inputs outside it are refused."""

    values: frozenset | None = None
    low: object = None
    high: object = None
    listed: tuple = ()

    def admits(self, v) -> bool:
        if self.values is not None:
            return v in self.values
        return self.low <= v <= self.high

    def describe(self, limit: int = 20) -> str:
        """`"gold", "platinum", "basic"` or `0 to 120`, as messages show it."""
        if self.values is None:
            return f"{show(self.low)} to {show(self.high)}"
        shown = ", ".join(show(v) for v in self.listed[:limit])
        more = len(self.listed) - limit
        return shown + (f", and {more} more" if more > 0 else "")


def show(v) -> str:
    """A value as ODL writes it: strings quoted, dates ISO."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime.date):
        return v.isoformat()
    return repr(v)


def valid_local(valid: tuple) -> tuple[datetime.datetime, datetime.datetime]:
    """A `valid` range as wall-clock datetimes in the catalog's timezone, both inclusive: a
    date start is its 00:00, a date end its whole day (to 23:59:59.999999)."""
    start, end = valid
    if type(start) is datetime.date:
        start = datetime.datetime.combine(start, datetime.time.min)
    if type(end) is datetime.date:
        end = datetime.datetime.combine(end, datetime.time.max)
    return start, end


def valid_instants(valid: tuple, timezone: str) -> tuple[float, float]:
    """A `valid` range as epoch seconds, both inclusive. A wall-clock time a clock change
    skips or repeats is read with the offset in force before the change (fold 0). A date
    is whole: from its first instant to the microsecond before the next day's, so a last
    hour the clocks repeat is in it, as `today` would have it."""
    zone = periods.zone(timezone)
    start, end = valid
    lo = (periods.midnight(start, zone) if type(start) is datetime.date
          else start.replace(tzinfo=zone).timestamp())
    hi = (periods.midnight(end + datetime.timedelta(days=1), zone) - 1e-6 if type(end) is datetime.date
          else end.replace(tzinfo=zone).timestamp())
    return lo, hi


def has_time(valid: tuple | None) -> bool:
    """Does a `valid` range name a time of day (so it is tested on the decision time, not its date)?"""
    return valid is not None and any(type(v) is datetime.datetime for v in valid)


@dataclass(frozen=True)
class Catalog:
    timezone: str
    contact: dict[str, Type]
    context: dict[str, Type]
    lets: dict[str, Expr]
    let_order: tuple[str, ...]  # every let after the lets it uses
    spaces: dict[str, SpaceDef]
    categories: dict[str, CategoryDef]
    offers: tuple[OfferDef, ...]
    sources: dict[str, str] = field(repr=False)
    hash: str = ""
    diagnostics: tuple[Diagnostic, ...] = ()  # warnings
    groups: dict[str, GroupDef] = field(default_factory=dict)
    domains: dict[tuple[str, str], Domain] = field(default_factory=dict)  # (root, name) → its closed set or range
    _lines: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)  # text(): file → lines

    @property
    def offers_by_name(self) -> dict[str, OfferDef]:
        return {o.name: o for o in self.offers}

    def checks(self, offer: OfferDef, space: str) -> list[Check]:
        """The offer's rules in the space, in explain order (its `valid` dates aside): the
        space's eligible; each category's eligible then eligible in the space, root first;
        each group's likewise, in the offer's order; the offer's eligible, eligible in the
        space, caps and suppressions; its categories', then its groups' caps and
        suppressions; the space's caps."""
        space_def = self.spaces[space]
        chain = [self.categories[c] for c in offer.chain]
        groups = [self.groups[g] for g in offer.groups]
        out = list(space_def.eligible)
        for owner in chain + groups:
            out += owner.eligible
            out += owner.eligible_in.get(space, ())
        out += offer.eligible
        out += offer.eligible_in.get(space, ())
        out += offer.limits
        for owner in chain + groups:
            out += owner.limits
        out += space_def.caps
        return out

    def text(self, span: Span, limit: int = 240) -> str:
        """The source text a span covers, its whitespace runs made one space (a rule or a
        clause as written, for explain and reports), cut at `limit` characters with …."""
        lines = self._lines.get(span.file)
        if lines is None:  # split once per file: explain and reports quote many spans
            lines = self._lines[span.file] = self.sources.get(span.file, "").split("\n")  # as the parser counts
        lines = lines[span.line - 1:span.end_line]
        if not lines or span.line < 1:
            return ""
        if span.end_line == span.line:
            lines[0] = lines[0][span.col - 1:span.end_col - 1]
        else:
            lines[0], lines[-1] = lines[0][span.col - 1:], lines[-1][:span.end_col - 1]
        text = " ".join(" ".join(lines).split())
        return text if len(text) <= limit else text[:limit - 1] + "…"

    def offers_in(self, space: str) -> tuple[OfferDef, ...]:
        """The candidates of a space: offers listing it, its fallback excluded."""
        fallback = self.spaces[space].fallback
        return tuple(o for o in self.offers if space in o.spaces and o.name != fallback)
