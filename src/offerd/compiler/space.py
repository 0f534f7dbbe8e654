"""A compiled offer space: an immutable value, safe to share between threads."""
from __future__ import annotations

import datetime
import threading
import zoneinfo
from dataclasses import dataclass
from typing import NamedTuple

from ..lang import gc_paused
from ..lang.catalog import Catalog, OfferDef, RuleRef
from . import runtime
from .analysis import SpacePlan
from .parts import SpaceCodegen
from .why import Explainer, Why


class Moment(NamedTuple):
    """A decision time, as generated code reads it. A named tuple: made once per decision,
    it costs one allocation (a frozen dataclass sets each field through object.__setattr__)."""

    now: datetime.datetime  # aware, UTC
    ts: float  # epoch seconds
    today: datetime.date  # in the catalog's timezone
    local: datetime.datetime  # `now` in the catalog's timezone (hours, weekdays, calendar periods)

    @classmethod
    def at(cls, when: datetime.datetime, timezone: str = "UTC") -> Moment:
        if when.tzinfo is None:
            raise ValueError("decision time must carry a timezone")
        now = when.astimezone(datetime.timezone.utc)
        zone = _ZONES.get(timezone)
        if zone is None:
            zone = _ZONES[timezone] = zoneinfo.ZoneInfo(timezone)  # names come from catalogs: few
        local = when.astimezone(zone)
        return cls(now, now.timestamp(), local.date(), local)


_ZONES: dict[str, zoneinfo.ZoneInfo] = {}


@dataclass(frozen=True)
class Outcome:
    """What `explain` says of one offer: its weight if eligible, else the rule that removed it."""

    offer: OfferDef
    eligible: bool
    weight: float | None
    rule: RuleRef | None
    index: int | None = None  # the rule's index, for `why`


def _truth(catalog: Catalog, expr, label: str):
    """One checked bool expression compiled alone: whether it is exactly true."""
    from .expressions import expression_source

    consts: dict = {}
    return _compile(expression_source(catalog, expr, consts), consts, label, "_truth")


def _compile(source: str, consts: dict, label: str, name: str):
    namespace = runtime.namespace()
    namespace.update(consts)
    exec(compile(source, f"<offerd {label}>", "exec"), namespace)
    return namespace[name]


class CompiledSpace:
    """The space's offers compiled to one Python function, with `explain` and `render`
    compiled on first use. Pure: reads its arguments, writes nothing.

    `evaluate(contact, context, moment, history)` → [(offer position, weight)] for the
    eligible offers, in declaration order; `contact` and `context` must already be checked
    against the schemas (lang.values.check_attributes). It is the generated function itself,
    not a wrapper: nothing stands between a caller and the compiled rules."""

    def __init__(self, catalog: Catalog, space: str):
        with gc_paused():
            self._build(catalog, space)

    def _build(self, catalog: Catalog, space: str) -> None:
        plan = self._plan = SpacePlan(catalog, space)  # every part is generated from it
        gen = SpaceCodegen(catalog, space, plan)
        self.catalog_hash = catalog.hash
        self.timezone = catalog.timezone
        self.space = catalog.spaces[space]
        self.offers: tuple[OfferDef, ...] = tuple(o.offer for o in plan.offers)
        fallback = catalog.spaces[space].fallback
        self.fallback: OfferDef | None = catalog.offers_by_name[fallback] if fallback else None
        self.rules: tuple[RuleRef, ...] = tuple(plan.rules)
        self.ranks_by_bound = plan.ranks_by_bound  # `top` can stop early (see SpacePlan)
        # the space's own rules, alone: they hold back its fallback too (see `admits`)
        self._gate = tuple(_truth(catalog, check.expr, f"space {space} rule")
                           for check in catalog.spaces[space].eligible)
        self.source = gen.evaluate_source()
        self._evaluate = _compile(self.source, gen.consts, f"space {space}", "_evaluate")
        self.evaluate = self._evaluate
        self._catalog = catalog
        self._lock = threading.Lock()
        self._lazy: dict[str, object] = {}

    def admits(self, contact: dict, context: dict, moment: Moment, history) -> bool:
        """Whether the space's own `eligible` rules are all exactly true: without them, its
        fallback is not given either (a consent rule holds for every offer of the space)."""
        return all(truth(contact, context, moment, history) for truth in self._gate)

    def moment(self, when: datetime.datetime) -> Moment:
        return Moment.at(when, self.timezone)

    def explain(self, contact: dict, context: dict, moment: Moment, history) -> list[Outcome]:
        """Every offer of the space, with its weight or the first rule (in declaration
        order) that removed it."""
        fn = self._part("explain")
        eligible, fails = fn(contact, context, moment, history)
        out: list[Outcome | None] = [None] * len(self.offers)
        for pos, weight in eligible:
            out[pos] = Outcome(self.offers[pos], True, weight, None)
        for pos, rule in fails:
            out[pos] = Outcome(self.offers[pos], False, None, self.rules[rule], rule)
        return out

    def why(self, rule: int, contact: dict, context: dict, moment: Moment, history) -> Why:
        """Why the rule at index `rule` (as `explain` numbers them) is not true: its first
        clause not true and the values that clause read, or a cap's count and free-up time."""
        return self._part("why").why(rule, contact, context, moment, history)

    def clauses(self, rule: int) -> tuple[str, ...]:
        """The clauses of the rule at index `rule`, as written (none for valid, caps, suppressions)."""
        return self._part("why").clauses(rule)

    def first_clause(self, rule: int):
        """For a rule of several clauses, its compiled `(contact, context, moment, history) →`
        index of the first clause not true; else None."""
        return self._part("why").first_clause(rule)

    def failing(self, pos: int, contact: dict, context: dict, moment: Moment, history) -> list[int]:
        """Every rule of the offer at `pos` that is not true, in explain order."""
        return self._part("why").failing(pos, contact, context, moment, history)

    def top(self, need: int, contact: dict, context: dict, moment: Moment, history) -> tuple[list, bool]:
        """(eligible, complete): like `evaluate`, but the offers come by their weight's upper
        bound, highest first, and the evaluation may stop (complete False) once `need`
        eligible offers weigh more than any offer not evaluated could. The `need` best of
        the list (weight, then declaration order) are then the `need` best of the space."""
        return self._part("top")(need, contact, context, moment, history)

    def outcomes(self, contact: dict, context: dict, moment: Moment, history) -> tuple[list, list]:
        """`explain` in its raw form, cheap to send between processes: ([(position,
        weight)] of the eligible offers, [(position, rule index)] of the others)."""
        return self._part("explain")(contact, context, moment, history)

    def render(self, pos: int, contact: dict, context: dict, moment: Moment, history) -> dict[str, str]:
        """The content of the offer at `pos` for this space, each field rendered as text."""
        fn = self._part("render")[pos]
        return dict(fn(contact, context, moment, history))

    def render_fallback(self, contact: dict, context: dict, moment: Moment, history) -> dict[str, str]:
        """The content of the space's fallback offer."""
        return dict(self._part("render")[len(self.offers)](contact, context, moment, history))

    def warm(self) -> None:
        """Compile now what a decision would compile on first use (a server does this
        before switching catalogs, so no request pays for it)."""
        self._part("render")
        if self.ranks_by_bound:
            self._part("top")

    def source_of(self, part: str) -> str:
        self._part(part)
        return self._lazy[part + "_source"]

    def _part(self, part: str):
        if part not in self._lazy:
            with self._lock:
                if part not in self._lazy:
                    with gc_paused():
                        self._build_part(part)
        return self._lazy[part]

    def _build_part(self, part: str) -> None:
        if part == "why":  # compiles each rule when first asked
            self._lazy[part] = Explainer(self._catalog, self.space.name, self._plan)
            return
        gen = SpaceCodegen(self._catalog, self.space.name, self._plan)
        if part == "explain":
            source, name = gen.evaluate_source(explain=True), "_explain"
        elif part == "top":
            source, name = gen.evaluate_source(top=True), "_top"
        else:
            source, name = gen.render_source(), "_renderers"
        self._lazy[part + "_source"] = source
        self._lazy[part] = _compile(source, gen.consts, f"{part} {self.space.name}", name)
