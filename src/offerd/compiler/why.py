"""Why a rule was not true for a contact: its first clause not true, the values that clause
read, and for a cap or suppression its count, limit and when it frees up.

Only explain asks, so each rule's clauses and reads are compiled on first need, from the
checked AST like every generated part, and a decision without explain never pays for them.
"""
from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass

from .. import periods
from ..domain import fmt_duration
from ..lang import nodes as n
from ..lang.catalog import Catalog, Check, RuleRef, has_time
from .expressions import ARGS, Constants, ExprCodegen, Frame, Writer


@dataclass(frozen=True)
class Read:
    """A value a clause read: `value` as ODL writes it, None when absent (null)."""

    name: str
    value: str | None


@dataclass(frozen=True)
class Clause:
    """One clause of a rule: its text and location, its result ("false" or "null", and
    "true" for an `or`'s operand) and the values it read."""

    text: str
    location: str
    result: str
    reads: tuple[Read, ...] = ()


@dataclass(frozen=True)
class Limit:
    """A cap's or suppression's state: `count` in the window against `limit`, and when the
    count falls below it if nothing more is counted (None: never, a lifetime cap or `cap 0`;
    the decision's own time when the count is below the limit already)."""

    count: int
    limit: int
    window: str
    counts: str
    frees_at: datetime.datetime | None


@dataclass(frozen=True)
class Why:
    """Why a rule was not true: the whole rule as written, its first clause not true (with
    an `or`'s operands), and for a cap or suppression its Limit."""

    rule_text: str
    clause: Clause | None = None
    operands: tuple[Clause, ...] = ()
    limit: Limit | None = None


_CLOCK_FUNCTIONS = frozenset(("hour", "weekday", "month"))


def _split(e: n.Expr, op: str) -> list[n.Expr]:
    """The operands of a chain of `op` (`a and b and c` → [a, b, c]), left to right."""
    if isinstance(e, n.Binary) and e.op == op:
        return _split(e.left, op) + _split(e.right, op)
    return [e]


def _reads(e: n.Expr) -> list[n.Expr]:
    """The values an expression reads, in the order written, each once: attributes, lets,
    clocks, history counts, propensities, and clock functions (`hour(now)`) whole."""
    out: dict[n.Expr, None] = {}

    def walk(x: n.Expr) -> None:
        if isinstance(x, (n.Attr, n.LetRef, n.Clock, n.History, n.Propensity)):
            out.setdefault(x)
        elif isinstance(x, n.Call) and x.fn in _CLOCK_FUNCTIONS and all(isinstance(a, n.Clock) for a in x.args):
            out.setdefault(x)
        elif isinstance(x, n.ListLiteral):
            for item in x.items:
                walk(item)
        else:
            for child in n.children(x):
                walk(child)

    walk(e)
    return list(out)


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"})  # as ODL writes strings


def odl(value, zone) -> str | None:
    """A value as a rule author reads it: ODL's literals; None stays None (absent)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if isinstance(value, float):  # six decimals, unless that hides a small value: 4e-7 is not 0.0
        shown = round(value, 6)
        return repr(shown if shown or not value else value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(zone).isoformat(timespec="seconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return "[" + ", ".join(sorted(odl(v, zone) or "null" for v in value)) + "]"
    if isinstance(value, (list, tuple)):  # a list literal may hold nulls: `["a", contact.s]`
        return "[" + ", ".join(odl(v, zone) or "null" for v in value) + "]"
    return str(value)


class _Compiled:
    """Expressions compiled to one module, one function each: `fns[i](c, x, m, h)` is the
    value of the i-th; with `clauses`, `first(c, x, m, h)` is the index of the first clause
    not exactly true (None: all are)."""

    def __init__(self, catalog: Catalog, space: str, exprs: list[n.Expr], clauses: list[n.Expr] = ()):
        from .space import _compile  # the same namespace and guards as every generated part

        consts: dict = {}
        constants, out = Constants(consts), Writer()
        if clauses:  # `_first`: the index of the first clause not exactly true, in one call
            gen = ExprCodegen(catalog, constants, Frame(), space)
            body = Writer(level=1)
            for k, e in enumerate(clauses):
                body.write(f"if not {gen.truth(e)}: return {k}")
            body.write("return None")
            out.write(f"def _first({ARGS}):")
            out.indent()
            gen.prelude(out, body, [])
            out.dedent()
        for i, e in enumerate(exprs):
            gen = ExprCodegen(catalog, constants, Frame(), space)
            body = Writer(level=1)
            body.write(f"return {gen.value(e)}")
            out.write(f"def _f{i}({ARGS}):")
            out.indent()
            gen.prelude(out, body, [])
            out.dedent()
        out.write("_fns = (" + "".join(f"_f{i}, " for i in range(len(exprs))) + ("_first, " if clauses else "") + ")")
        fns = _compile(out.source(), consts, f"why {space}", "_fns")
        self.fns, self.first = (fns[:-1], fns[-1]) if clauses else (fns, None)


class _RuleWhy:
    """One rule's clauses, each with its operands (an `or`) and its reads, compiled together."""

    def __init__(self, catalog: Catalog, space: str, rule: RuleRef, expr: n.Expr):
        self.catalog, self.rule = catalog, rule
        exprs: list[n.Expr] = []

        def add(e: n.Expr) -> int:
            exprs.append(e)
            return len(exprs) - 1

        # the texts are cut from the source once, here: explain quotes them on every call
        self.text = catalog.text(rule.span)
        self.clauses = []  # ((text, location), its index, [((text, location), index, reads)], reads)
        for clause in _split(expr, "and"):
            operands = _split(clause, "or")
            ors = [(self._where(o), add(o), self._reads(o, add)) for o in operands] if len(operands) > 1 else []
            self.clauses.append((self._where(clause), add(clause), ors, [] if ors else self._reads(clause, add)))
        self.whole = add(expr)  # what `Explainer.failing` tests
        compiled = _Compiled(catalog, space, exprs, _split(expr, "and") if len(self.clauses) > 1 else ())
        self.fns, self.first = compiled.fns, compiled.first

    def _where(self, e: n.Expr) -> tuple[str, str]:
        return self.catalog.text(e.span), str(e.span)

    def passes(self, value) -> bool:
        """A rule holds when exactly true; a weight, when not null."""
        return value is not None if self.rule.kind == "weight" else value is True

    def _reads(self, e: n.Expr, add, lets: dict | None = None) -> list:
        """(name, index, the let's own reads or None) of each value `e` reads. Each let is
        expanded once (`lets`: name → its reads), so lets of lets stay linear."""
        lets = {} if lets is None else lets
        out = []
        for r in _reads(e):
            inner = None
            if isinstance(r, n.LetRef):
                inner = lets.get(r.name)
                if inner is None:
                    inner = lets[r.name] = self._reads(self.catalog.lets[r.name], add, lets)
            out.append((self._name(r), add(r), inner))
        return out

    def _name(self, r: n.Expr) -> str:
        if isinstance(r, n.Attr):
            return f"{r.root}.{r.name}"
        if isinstance(r, n.LetRef):
            return r.name
        if isinstance(r, n.Clock):
            return r.which
        if isinstance(r, n.Propensity):
            return "propensity"
        if r.span.line > 0:
            return self.catalog.text(r.span, 80)
        return f"{r.status}({r.ref_kind} {r.ref})"  # a cap's own count: no text of its own

    def explain(self, args, zone) -> Why:
        fns = self.fns
        for clause, idx, ors, reads in self.clauses:
            value = fns[idx](*args)
            if self.passes(value):
                continue
            text = self._clause(clause, "null" if value is None else "false", reads, args, zone)
            operands = tuple(self._clause(o, _result(fns[i](*args)), r, args, zone) for o, i, r in ors)
            return Why(self.text, text, operands)
        return Why(self.text)  # true now: a concurrent write changed it

    def _clause(self, where: tuple[str, str], result: str, reads, args, zone) -> Clause:
        out: list[Read] = []
        self._values(reads, args, zone, out, set())
        return Clause(where[0], where[1], result, tuple(out))

    def _values(self, reads, args, zone, out: list, seen: set) -> None:
        for name, idx, inner in reads:
            if name in seen:  # a let and its clause may read one value: shown (and walked) once
                continue
            seen.add(name)
            out.append(Read(name, odl(self.fns[idx](*args), zone)))
            if inner:  # a let: what it read too
                self._values(inner, args, zone, out, seen)


def _result(value) -> str:
    return "null" if value is None else "true" if value is True else "false"


class Explainer:
    """A compiled space's `why`: rule index (as explain numbers rules) → why it was not true."""

    def __init__(self, catalog: Catalog, space: str, plan):
        self.catalog, self.space = catalog, space
        self.zone = periods.zone(catalog.timezone)
        self.checks: dict[int, tuple] = {}  # rule index → (offer, check or None for `valid`)
        self.rules_of: dict[int, list[int]] = {}  # offer position → its rules, in explain order
        for o in plan.offers:
            for idx, check in o.checks:
                self.checks[idx] = (o.offer, check)
            self.checks[o.weight_rule] = (o.offer, o.weight)
            self.rules_of[o.pos] = [idx for idx, _ in o.checks] + [o.weight_rule]
        self.rules = plan.rules
        self._compiled: dict[RuleRef, _RuleWhy] = {}
        self._texts: dict[RuleRef, str] = {}
        self._by_index: dict[int, _RuleWhy] = {}  # a plain int key: RuleRef hashes its fields each time
        self._lock = threading.Lock()

    def why(self, idx: int, contact: dict, context: dict, moment, history) -> Why:
        offer, check = self.checks[idx]
        rule = self.rules[idx]
        if check is None:
            return self._valid(offer, rule, moment)
        limit = _limit_of(check)
        if limit is not None:
            return Why(self._text(rule), limit=self._limit(*limit, moment, history))
        return self._rule(idx, check.expr).explain((contact, context, moment, history), self.zone)

    def failing(self, pos: int, contact: dict, context: dict, moment, history) -> list[int]:
        """Every rule of the offer at `pos` that is not true, in explain order (a null
        weight among them)."""
        args = (contact, context, moment, history)
        out = []
        for idx in self.rules_of[pos]:
            offer, check = self.checks[idx]
            if check is None:
                ok = self._valid_now(offer, moment)
            else:
                rule = self._rule(idx, check.expr)
                ok = rule.passes(rule.fns[rule.whole](*args))
            if not ok:
                out.append(idx)
        return out

    def clauses(self, idx: int) -> tuple[str, ...]:
        """The rule's clauses as written (none for `valid`, a cap or a suppression)."""
        offer, check = self.checks[idx]
        if check is None or _limit_of(check) is not None:
            return ()
        rule = self._rule(idx, check.expr)
        return tuple(where[0] for where, _, _, _ in rule.clauses)

    def first_clause(self, idx: int):
        """A compiled function `(contact, context, moment, history) →` the index of the
        rule's first clause not exactly true (None: all are), for a rule of several clauses;
        None for another rule. What a simulation calls per contact: one call per rule."""
        offer, check = self.checks[idx]
        if check is None or _limit_of(check) is not None:
            return None
        return self._rule(idx, check.expr).first

    def _rule(self, idx: int, expr: n.Expr) -> _RuleWhy:
        """The rule at `idx`, compiled on first need: once per rule, whatever the offers it
        applies to (a category's rule is one rule for all its offers)."""
        got = self._by_index.get(idx)
        if got is None:
            with self._lock:
                rule = self.rules[idx]
                got = self._compiled.get(rule)
                if got is None:
                    got = self._compiled[rule] = _RuleWhy(self.catalog, self.space, rule, expr)
                self._by_index[idx] = got
        return got

    def _valid_now(self, offer, moment) -> bool:
        from ..lang.catalog import valid_instants

        if has_time(offer.valid):
            lo, hi = valid_instants(offer.valid, self.catalog.timezone)
            return lo <= moment.ts <= hi
        return offer.valid[0] <= moment.today <= offer.valid[1]

    def _valid(self, offer, rule: RuleRef, moment) -> Why:
        read = (Read("now", odl(moment.now, self.zone)) if has_time(offer.valid)
                else Read("today", moment.today.isoformat()))
        text = self._text(rule)
        return Why(text, Clause(text, str(rule.span), "false", (read,)))

    def _text(self, rule: RuleRef) -> str:
        """A rule's text as written, cut from the source once."""
        got = self._texts.get(rule)
        if got is None:
            got = self._texts[rule] = self.catalog.text(rule.span)
        return got

    def _limit(self, h: n.History, limit: int, moment, history) -> Limit:
        ts, key = moment.ts, (h.ref_kind, h.ref)
        count = history.count if h.scope == "contact" else history.total
        if h.calendar is not None:
            since = periods.since(ts, h.calendar, self.catalog.timezone)
            window = f"calendar {h.calendar}"
        else:
            since = None if h.window is None else ts - h.window
            window = "lifetime" if h.window is None else fmt_duration(h.window)
        held = count(key, h.status, since, ts)
        if limit <= 0:  # `cap 0`: the offer is paused, whatever the count
            frees = None
        elif held < limit:  # below its limit now (a write since the rules ran): free already
            frees = ts
        elif h.calendar is not None:
            frees = periods.bounds(ts, h.calendar, self.catalog.timezone)[1]
        elif since is None:
            frees = None
        else:  # the limit-th latest event leaves the window first
            latest = getattr(history, "latest", None) if h.scope == "contact" else None
            at = latest(key, h.status, limit, ts) if latest is not None else None
            frees = (at if at is not None else _halve(count, key, h.status, limit, since, ts)) + h.window
        who = "this contact" if h.scope == "contact" else "all contacts"
        return Limit(held, limit, window, f"{h.status} of {h.ref_kind} {h.ref}, {who}",
                     None if frees is None else datetime.datetime.fromtimestamp(frees, datetime.timezone.utc))


def _halve(count, key, status: str, limit: int, since: float, ts: float) -> float:
    """The least window start, in whole microseconds, whose count up to `ts` is below
    `limit` (counts fall as the start grows): the limit-th latest event's time. At most 64
    halvings: floats far in the future are coarser than a microsecond."""
    lo, hi = int(since * 1_000_000), int(ts * 1_000_000) + 1
    for _ in range(64):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if count(key, status, mid / 1_000_000, ts) < limit:
            hi = mid
        else:
            lo = mid
    return hi / 1_000_000


def _limit_of(check: Check) -> tuple[n.History, int] | None:
    """A cap (`count < limit`) or suppression (`count == 0`): (its history count, its limit)."""
    if check.rule.kind not in ("cap", "suppress"):
        return None
    e = check.expr
    if isinstance(e, n.Binary) and isinstance(e.left, n.History) and isinstance(e.right, n.Literal):
        return e.left, (e.right.value if e.op == "<" else 1)
    return None
