"""What the code generator derives from a checked space before writing code: its SpacePlan.

Pure functions over the checked AST (cost, selectivity, conjuncts, bounds, what an
expression reads), and `SpacePlan`, computed once per compiled space and shared by all
of its generated parts (evaluate, explain, top, render).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..lang import nodes as n
from ..lang.catalog import Catalog, Check, OfferDef, RuleRef
from ..lang.functions import FUNCTIONS

SIMPLE = (n.Literal, n.Attr, n.LetRef, n.Clock)
LEAVES = frozenset(SIMPLE)  # node types never counted as shared
_INF = float("inf")
_ANY = (-_INF, _INF)
_NO_ATTRS: frozenset = frozenset()  # one object for the many tests that read no lazy attribute
TOP_MIN_OFFERS = 32  # below this, a space is evaluated whole: ranking by bound saves nothing


def cost(e: n.Expr) -> int:
    """A rough static cost, to test cheap things first."""
    own = FUNCTIONS[e.fn].cost if isinstance(e, n.Call) else {n.History: 60, n.Propensity: 60}.get(type(e), 1)
    if isinstance(e, n.Binary) and e.op in ("in", "not in") and isinstance(e.right, n.ListLiteral) \
            and all(isinstance(i, n.Literal) for i in e.right.items):
        return 1 + cost(e.left)  # one frozenset lookup, whatever the list's length
    return own + sum(cost(c) for c in n.children(e))


def selectivity(e: n.Expr) -> int:
    """Equality and membership tests reject most contacts; != rejects few."""
    if isinstance(e, n.Binary):
        return {"==": 0, "in": 0, "<": 1, "<=": 1, ">": 1, ">=": 1, "!=": 2}.get(e.op, 1)
    return 1


def conjuncts(e: n.Expr) -> list[n.Expr]:
    if isinstance(e, n.Binary) and e.op == "and":
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def subexpressions(e: n.Expr):
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(n.children(x))


def interval(e: n.Expr, lets: dict[str, n.Expr], known: dict | None = None) -> tuple[float, float]:
    """Bounds (low, high) that a numeric expression's value always lies within, from the
    checked AST alone; (-inf, inf) when nothing is known. Used to evaluate the offers whose
    weight can be highest first. `known`: the bounds of lets, worked out already."""
    if isinstance(e, n.Literal):
        v = e.value
        return _out(float(v), float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else _ANY
    if isinstance(e, n.LetRef):
        if known is not None and e.name in known:
            return known[e.name]
        return interval(lets[e.name], lets, known)
    if isinstance(e, n.History):
        return (0.0, _INF)  # a count
    if isinstance(e, n.Propensity):
        return (0.0, 1.0)  # a rate: (accepted + 1) / (presented + 2), at most 1
    if isinstance(e, n.Cond):
        a, b = interval(e.then, lets, known), interval(e.orelse, lets, known)
        return (min(a[0], b[0]), max(a[1], b[1]))
    if isinstance(e, n.Unary) and e.op == "-":
        lo, hi = interval(e.operand, lets, known)
        return (-hi, -lo)
    if isinstance(e, n.Call) and FUNCTIONS[e.fn].bounds is not None:
        return FUNCTIONS[e.fn].bounds(*(interval(a, lets, known) for a in e.args))
    if isinstance(e, n.Binary) and e.op in ("+", "-", "*", "??"):
        a, b = interval(e.left, lets, known), interval(e.right, lets, known)
        if e.op == "??":
            return (min(a[0], b[0]), max(a[1], b[1]))
        if e.op == "+":
            return _out(a[0] + b[0], a[1] + b[1])
        if e.op == "-":
            return _out(a[0] - b[1], a[1] - b[0])
        if _INF in (abs(a[0]), abs(a[1]), abs(b[0]), abs(b[1])):
            return _ANY
        products = [x * y for x in a for y in b]
        return _out(min(products), max(products))
    return _ANY


def _out(lo: float, hi: float) -> tuple[float, float]:
    """Bounds widened by one float step each way: a float sum or product, or an int made
    float, may have rounded toward the inside."""
    return math.nextafter(lo, -_INF), math.nextafter(hi, _INF)


def reads_history(e: n.Expr, history_lets: set[str]) -> bool:
    """Does e read history, itself or through a let?"""
    for x in subexpressions(e):
        if isinstance(x, (n.History, n.Propensity)):
            return True
        if isinstance(x, n.LetRef) and x.name in history_lets:
            return True
    return False


def dead(x: n.Expr) -> bool:
    """A `??` whose left is never null: the code generator writes its left alone, so what
    its right reads is never read."""
    return type(x) is n.Binary and x.op == "??" and not x.left.nullable


def live_children(x: n.Expr) -> tuple:
    """The children whose code is written (all but a dead `??`'s right)."""
    return (x.left,) if dead(x) else n.children(x)


def reads(roots, shared, lets: list | None = None) -> set[tuple[str, str]]:
    """The attributes (root, name) the code of `roots` reads itself: not through a let or
    a shared sub-expression, which are bound before the offers. Exactly what the code
    reads, which lazy loading relies on. `lets`, if given, receives the lets it names."""
    out = set()
    stack = list(roots)
    attr, let_ref, leaves, children = n.Attr, n.LetRef, LEAVES, live_children  # locals: this walks every rule
    while stack:
        x = stack.pop()
        kind = type(x)
        if kind is attr:
            out.add((x.root, x.name))
        elif kind is let_ref:
            if lets is not None:
                lets.append(x.name)
        elif kind not in leaves and x not in shared:  # a let's attributes are bound before the offers
            stack.extend(children(x))
    return out


@dataclass(slots=True)
class OfferPlan:
    """One offer of a space, as the generated functions test it."""

    pos: int
    offer: OfferDef
    checks: list[tuple[int, Check | None]]  # (rule index, check) in declaration order; None: valid dates
    weight_rule: int
    weight: Check
    tests: list[tuple[n.Expr | None, frozenset]] = field(default_factory=list)  # conjuncts, and their lazy reads
    run: list[int] = field(default_factory=list)  # the order the fast path runs `tests` in
    weight_lazy: frozenset = _NO_ATTRS  # the lazy attributes the weight reads
    bound: float = _INF  # the weight's upper bound; inf when unknown
    weighs_history: bool = True  # does the weight read history?


class SpacePlan:
    """Everything the generated parts of one space share, computed once: the offers' checks
    (rules numbered as `explain` reports them), the sub-expressions bound once per call, each
    offer's tests in fast-path order, the attributes an offer reads itself (lazy), and the
    best-first order of `_top`."""

    def __init__(self, catalog: Catalog, space: str):
        self.catalog = catalog
        self.space = space
        self.rules: list[RuleRef] = []
        self.offers: list[OfferPlan] = []
        for pos, offer in enumerate(catalog.offers_in(space)):
            checks = []
            if offer.valid is not None:
                checks.append((self._rule(offer.valid_rule), None))
            checks += [(self._rule(k.rule), k) for k in catalog.checks(offer, space)]  # explain order
            weight = offer.weight_in.get(space, offer.weight)
            self.offers.append(OfferPlan(pos, offer, checks, self._rule(weight.rule), weight))
        self.shared, names, lets = self._shared()
        shared = set(self.shared)
        for o in self.offers:
            _fast_tests(o, shared)
        self.lazy = self._lazy(shared, names, lets)
        self._bounds()

    def _rule(self, rule: RuleRef) -> int:
        self.rules.append(rule)
        return len(self.rules) - 1

    def _shared(self) -> tuple[list[n.Expr], list[list[set]], set[str]]:
        """The sub-expressions met more than once in this space, each evaluated once per call,
        children first, in the order the offers meet them; and, found on the way, the
        attributes each offer's rules name and the lets the rules name."""
        roots: dict[n.Expr, list] = {}  # each distinct rule once: [how often it occurs, attributes it names]
        names_of: list[list[set]] = []  # per offer, the attributes each of its rules names
        for o in self.offers:
            names = []
            for e in [check.expr for _, check in o.checks if check is not None] + [o.weight.expr]:
                entry = roots.get(e)
                if entry is None:
                    entry = roots[e] = [0, set()]
                entry[0] += 1
                names.append(entry[1])
            names_of.append(names)
        counts: dict[n.Expr, list[int]] = {}  # plain dicts, one loop, one hash a node: this walks every rule
        count, children, skip = counts.get, n.children, frozenset(SIMPLE + (n.ListLiteral,))
        lets: set[str] = set()
        binary, attr, let_ref, literals = n.Binary, n.Attr, n.LetRef, n.ListLiteral

        def walk(root: n.Expr, k: int, attrs: set | None) -> None:
            """Count root's sub-expressions k times; note in `attrs` and `lets` what it names
            (attrs None: code that is never written, whose names are not read)."""
            stack = [root]
            while stack:
                x = stack.pop()
                kind = type(x)
                if kind not in skip:
                    seen = count(x)
                    if seen is None:
                        counts[x] = [k]
                    else:
                        seen[0] += k
                    if attrs is not None and kind is binary and x.op == "??" and not x.left.nullable:
                        stack.append(x.left)
                        walk(x.right, k, None)  # counted as the old code did, but never read
                    else:
                        stack.extend(children(x))
                elif kind is literals:
                    stack.extend(x.items)
                elif attrs is None:
                    continue
                elif kind is attr:
                    attrs.add((x.root, x.name))
                elif kind is let_ref:
                    lets.add(x.name)

        for root, (k, attrs) in roots.items():
            walk(root, k, attrs)
        candidates = {e for e, (k,) in counts.items() if k > 1}
        order: dict[n.Expr, None] = {}

        def visit(e: n.Expr) -> None:
            if e in order:  # placed already, with its children
                return
            for child in children(e):
                if type(child) not in LEAVES:
                    visit(child)
            if e in candidates:
                order[e] = None

        for o in self.offers:
            for _, check in o.checks:
                if check is not None and type(check.expr) not in LEAVES:
                    visit(check.expr)
            if type(o.weight.expr) not in LEAVES:
                visit(o.weight.expr)
        return list(order), names_of, lets

    def _lazy(self, shared: set, names_of: list[list[set]], lets_named: set[str]) -> frozenset:
        """Attributes only one offer reads, and no let or shared expression: that offer reads
        them itself, just before the first test that needs them, so a contact rejected by
        an earlier test never pays for them. Each test keeps the lazy attributes it reads."""
        preloaded: set = set()
        todo = list(lets_named)
        for e in self.shared:  # bound before the offers: what its written code names is read there,
            preloaded |= reads(live_children(e), shared, todo)  # the lets it names included
        lets = set()
        while todo:  # the lets named, and the lets they name
            name = todo.pop()
            if name not in lets:
                lets.add(name)
                preloaded |= reads([self.catalog.lets[name]], (), todo)  # lets are bound before shared ones
        # An attribute no let or shared expression reads is read directly wherever a rule names
        # it, so the attributes the offer's rules name stand for those it reads itself.
        named = [set().union(*names) for names in names_of]
        readers: Counter = Counter()
        for attrs in named:
            readers.update(attrs)
        lazy = frozenset(a for a, k in readers.items() if k == 1 and a not in preloaded)
        for o, attrs in zip(self.offers, named):
            if not attrs.isdisjoint(lazy):  # few offers read a lazy attribute; the rest keep none
                o.tests = [(t, lazy.intersection(reads([t], shared)) if t is not None else t_lazy)
                           for t, t_lazy in o.tests]
                o.weight_lazy = lazy.intersection(reads([o.weight.expr], shared))
        return lazy

    def _bounds(self) -> None:
        """Each weight's upper bound and whether it reads history; the order of `_top`."""
        lets = self.catalog.lets
        # the lets' bounds and whether they read history, each let after the lets it uses: a
        # chain of lets costs no recursion, and one let used twice is not walked twice
        known: dict[str, tuple[float, float]] = {}
        self.history_lets: set[str] = set()
        for name in self.catalog.let_order:
            known[name] = interval(lets[name], lets, known)
            if reads_history(lets[name], self.history_lets):
                self.history_lets.add(name)
        for o in self.offers:
            b = interval(o.weight.expr, lets, known)[1]
            o.bound = b if b == b else _INF  # NaN, from odd literals, counts as unbounded
            o.weighs_history = reads_history(o.weight.expr, self.history_lets)
        # `_top` pays off in a large space with some bounded weights, or weights that read no history
        self.ranks_by_bound = len(self.offers) >= TOP_MIN_OFFERS and any(
            o.bound < _INF or not o.weighs_history for o in self.offers)
        self.bounded = sorted((o for o in self.offers if o.bound < _INF), key=lambda o: -o.bound)
        self.free = [o for o in self.offers if o.bound == _INF]
        self.stops = stops(len(self.bounded))


def _fast_tests(o: OfferPlan, shared: set) -> None:
    """The offer's tests (None: its valid dates), and the order the fast path runs them in:
    cheapest first."""
    keys = []  # (cost, selectivity, order)
    for order, (_, check) in enumerate(o.checks):
        if check is None:
            o.tests.append((None, _NO_ATTRS))
            keys.append((0, 0, order))
            continue
        for part in conjuncts(check.expr):
            c = 0 if part in shared else cost(part)
            o.tests.append((part, _NO_ATTRS))
            keys.append((c, selectivity(part), order))
    o.run = sorted(range(len(keys)), key=keys.__getitem__)


def stops(n_bounded: int) -> set[int]:
    """After which of the bounded offers `_top` checks whether the rest can be skipped:
    every n/32 offers in a large space, so that it stops soon after it can (a 1,000-offer
    space decided in 0.87 of the time checks every n/8 took), never less often than every
    n/8, and no more often than every 8 offers where that allows (each check sorts a little)."""
    step = max(1, min(n_bounded // 8, max(8, n_bounded // 32)))
    return set(range(step - 1, n_bounded - 1, step))
