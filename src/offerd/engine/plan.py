"""What the engine derives once per catalog: each offer's caps as the store re-checks them,
its caps per decision, and how far back a decision must read a contact's history."""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..domain import PROPENSITY_WINDOW, CapCheck, NewProposition
from ..lang import nodes as n
from ..lang.catalog import CONTACT_ID, Catalog, Check, DecisionCap, OfferDef, RuleRef
from ..periods import LONGEST
from ..store import Indexer


@dataclass(frozen=True)
class Cap:
    """A `proposed` cap a new proposition counts toward: checked against offers chosen
    earlier in the same decision, and re-checked by the store at commit."""

    rule: RuleRef
    check: CapCheck
    key: tuple[str, str]  # what it counts, (kind, ref), as arbitration's counts are keyed
    counted: tuple[str, str, str]  # the same with its status, as the history's counter takes it


def _cap(check: Check, zone: str) -> Cap | None:
    e = check.expr
    if (check.rule.kind == "cap" and isinstance(e, n.Binary) and e.op == "<"
            and isinstance(e.left, n.History) and isinstance(e.right, n.Literal)):
        h = e.left
        if h.status == "proposed":  # a new proposition moves only `proposed` counts
            return Cap(check.rule, CapCheck(h.scope, h.ref_kind, h.ref, "proposed",
                                            None if h.window is None else float(h.window), e.right.value,
                                            calendar=h.calendar, zone=zone),
                       (h.ref_kind, h.ref), (h.ref_kind, h.ref, "proposed"))
    return None


def _exprs(catalog: Catalog):
    yield from catalog.lets.values()
    for space in catalog.spaces.values():
        yield from (c.expr for c in space.caps + space.eligible)
    for owner in [*catalog.categories.values(), *catalog.groups.values()]:
        yield from (c.expr for c in owner.eligible + owner.limits)
        yield from (c.expr for checks in owner.eligible_in.values() for c in checks)
    for o in catalog.offers:
        yield from (c.expr for c in o.eligible + o.limits)
        yield from (c.expr for checks in o.eligible_in.values() for c in checks)
        yield o.weight.expr
        yield from (c.expr for c in o.weight_in.values())
        for fields in o.content.values():
            yield from (p for _, t in fields for p in t.parts if not isinstance(p, str))


def _walk(expr):
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(n.children(e))


def reads_contact_id(catalog: Catalog) -> bool:
    """Does a rule, weight, let or content read `contact.id`? Then whoever decides puts the
    contact's id among its attributes (under CONTACT_ID); other catalogs pay nothing."""
    return any(type(x) is n.Attr and x.root == "contact" and x.name == CONTACT_ID
               for e in _exprs(catalog) for x in _walk(e))


def _history_nodes(expr):
    return (e for e in _walk(expr) if isinstance(e, n.History))


class Plan:
    """Per catalog: the caps and the store's NewProposition of each (offer, space), and
    the history horizon (seconds back from the decision; None: all of it)."""

    def __init__(self, catalog: Catalog, shared: bool = False):
        self.catalog = catalog
        self.shared = shared  # in a cluster, `total` caps are counted across shards (cluster.totals)
        self.offers = catalog.offers_by_name
        mine = [h for e in _exprs(catalog) for h in _history_nodes(e) if h.scope == "contact"]
        windows = [h.reach() for h in mine]
        self.indexer = Indexer(frozenset((h.ref_kind, h.ref, h.status) for h in mine))
        self.reads_history = bool(windows)
        # a status count reads every proposition kept: one made before its window may reach
        # the status inside it
        status = any(h.status != "proposed" for h in mine)
        self.horizon: float | None = None if None in windows or status else float(max(windows, default=0))
        # what pruning must keep: every window, totals' too (lifetime totals have counters
        # that are never pruned); None if a rule reads a contact's whole history
        every = [PROPENSITY_WINDOW if isinstance(x, n.Propensity) else x.reach()
                 for e in _exprs(catalog) for x in _walk(e)
                 if isinstance(x, n.Propensity) or isinstance(x, n.History) and x.reach() is not None]
        self.retention: float | None = None if None in windows else float(max(every, default=0))
        # what totals read: the store keeps counters at every grain for these only (a lifetime
        # total reads them too, when it ends before the last prune)
        totals = {(x.ref_kind, x.ref, x.status) for e in _exprs(catalog) for x in _walk(e)
                  if isinstance(x, n.History) and x.scope == "total"}
        rated = {x.offer for e in _exprs(catalog) for x in _walk(e) if isinstance(x, n.Propensity)}
        self.totals = frozenset(totals | {("pair", f"{offer}/{space}", status) for offer in rated
                                            for space in catalog.spaces for status in ("presented", "accepted")})
        simple = {"string": str, "int": int, "float": float, "bool": bool, "date": datetime.date}
        # stored attributes of these Python types need no conversion (the codec keeps ints in 64 bits)
        # (attributes with a closed set or range are checked against it: not listed here)
        self.scalars = {k: simple[t.name] for k, t in catalog.contact.items()
                        if t.name in simple and ("contact", k) not in catalog.domains}
        self.sets = {k: simple[t.elem.name] for k, t in catalog.contact.items()
                     if t.name == "set" and t.elem.name in ("string", "int", "bool", "date")
                     and ("contact", k) not in catalog.domains}
        self.reads_contact_id = reads_contact_id(catalog)
        self.compiled: dict = {}  # space → CompiledSpace, filled by the engine on first use
        self.fitted: dict[int, tuple[dict, dict]] = {}  # id(stored profile) → (it, _fit of it), kept alive here
        self._caps: dict[tuple[str, str], tuple[Cap, ...]] = {}
        self._in_decision: dict[tuple[str, str], tuple[DecisionCap, ...]] = {}
        # does any space, category or group cap the offers of one decision?
        self.decision_caps = any(x.decision_caps for x in [*catalog.spaces.values(), *catalog.categories.values(),
                                                            *catalog.groups.values()])
        self._props: dict[tuple[str, str], NewProposition] = {}
        self._shared: dict[tuple[str, str], tuple] = {}
        # shared counts: what each total cap counts, and the longest sliding window over it (µs)
        self.shared_heads: dict[str, int] = {}
        for offer in catalog.offers if shared else ():
            for space in offer.spaces:
                for c in self.caps(offer, space):
                    if c.check.scope == "total":
                        h = f"{c.check.ref_kind}:{c.check.ref}"
                        w = _reach_us(c.check)
                        self.shared_heads[h] = max(self.shared_heads.get(h, 0), w)

    def caps(self, offer: OfferDef, space: str) -> tuple[Cap, ...]:
        key = (offer.name, space)
        got = self._caps.get(key)
        if got is None:
            checks = list(self.catalog.spaces[space].caps)
            for cat in offer.chain:
                checks += self.catalog.categories[cat].limits
            for group in offer.groups:
                checks += self.catalog.groups[group].limits
            checks += offer.limits
            zone = self.catalog.timezone
            got = self._caps[key] = tuple(c for c in (_cap(k, zone) for k in checks) if c is not None)
        return got

    def in_decision(self, offer: OfferDef, space: str) -> tuple[DecisionCap, ...]:
        """The caps per decision the offer counts toward in the space: the space's, its
        categories' (root first), its groups'."""
        key = (offer.name, space)
        got = self._in_decision.get(key)
        if got is None:
            owners = [self.catalog.spaces[space]] + [self.catalog.categories[c] for c in offer.chain] \
                + [self.catalog.groups[g] for g in offer.groups]
            got = self._in_decision[key] = tuple(c for o in owners for c in o.decision_caps)
        return got

    def proposition(self, offer: OfferDef, space: str, fallback: bool = False) -> NewProposition:
        """What the store records, built once per (offer, space): a fallback ignores caps."""
        key = (offer.name, space if not fallback else space + "\0fallback")
        got = self._props.get(key)
        if got is None:
            checks = () if fallback else tuple(c.check for c in self.caps(offer, space)
                                               if not (self.shared and c.check.scope == "total"))
            got = self._props[key] = NewProposition(offer.name, space, offer.chain, checks, offer.groups)
        return got

    def shared_caps(self, offer: OfferDef, space: str, fallback: bool = False) -> tuple[tuple, tuple[str, ...]]:
        """In a cluster: a proposition's total caps as the shared counts check them, (head,
        window µs or -1, limit) each, and the heads it adds to (a fallback: no checks)."""
        key = (offer.name, space if not fallback else space + "\0fallback")
        got = self._shared.get(key)
        if got is None:
            checks = () if fallback else tuple(
                (f"{c.check.ref_kind}:{c.check.ref}", _window_us(c.check), c.check.limit)
                for c in self.caps(offer, space) if c.check.scope == "total")
            counted = [f"offer:{offer.name}", f"space:{space}"] + [f"category:{c}" for c in offer.chain] \
                + [f"group:{g}" for g in offer.groups]
            got = self._shared[key] = (checks, tuple(h for h in counted if h in self.shared_heads))
        return got


def _reach_us(check: CapCheck) -> int:
    """How far back a shared count reaches, in µs (0: lifetime, kept as a counter)."""
    if check.calendar is not None:
        return LONGEST[check.calendar] * 1_000_000
    return 0 if check.window is None else int(check.window * 1e6)


def _window_us(check: CapCheck):
    """A shared count's window as Redis takes it: µs back from the decision, -1 for lifetime;
    a calendar period's stays the CapCheck, whose start each decision finds (engine.shared)."""
    if check.calendar is not None:
        return check
    return -1 if check.window is None else int(check.window * 1e6)

