"""A tree-walking reference interpreter of the checked ODL AST, for tests only.

It is written from the semantics docs/language.md states, not
from the code generator, so that the compiled code can be checked against it. It favours
being obviously right over being fast: every node is evaluated from scratch, lets included.
A function call means its entry's `reference` in offerd/lang/functions.py: plain Python
beside, not derived from, the template the code generator emits from the same entry.

Values: null is None; bools are True/False; ints, floats, strings, dates as Python's;
`now` is an aware datetime; durations are int seconds; list literals evaluate to tuples,
list attributes are tuples and set attributes frozensets (as `check_attributes` makes them).
A node whose checked type is float yields a float (int widens to float, as `unify` says).
"""
from __future__ import annotations

import datetime

from offerd.lang import nodes as n
from offerd.lang.functions import FUNCTIONS

INT_LIMIT = 2**63 - 1

_ARITHMETIC = ("+", "-", "*", "/", "%")
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


def evaluate(expr: n.Expr, contact: dict, context: dict, moment, history,
             lets: dict[str, n.Expr], space: str | None = None):
    """The value of a checked expression: True/False/None for a bool, else the value or None."""
    return _Interpreter(contact, context, moment, history, lets, space).eval(expr)


class _Interpreter:
    def __init__(self, contact, context, moment, history, lets, space):
        self.roots = {"contact": contact, "context": context}
        self.moment = moment
        self.history = history
        self.lets = lets
        self.space = space

    def eval(self, e: n.Expr):
        value = getattr(self, "_" + type(e).__name__)(e)
        if (e.type is not None and e.type.name == "float" and isinstance(value, int)
                and not isinstance(value, bool)):
            value = float(value)  # int widens to float
        return value

    # --- leaves ------------------------------------------------------------------------

    def _Literal(self, e: n.Literal):
        return e.value

    def _ListLiteral(self, e: n.ListLiteral):
        return tuple(self.eval(i) for i in e.items)

    def _Attr(self, e: n.Attr):
        return self.roots[e.root].get(e.name)  # a missing key and None are both null

    def _LetRef(self, e: n.LetRef):
        return self.eval(self.lets[e.name])

    def _Clock(self, e: n.Clock):
        return self.moment.now if e.which == "now" else self.moment.today

    def _Propensity(self, e: n.Propensity):
        return self.history.propensity(e.offer, self.space, self.moment.ts)

    def _History(self, e: n.History):
        until = self.moment.ts
        since = None if e.window is None else until - e.window
        if e.calendar is not None:  # the period's first instant, found afresh from the local date
            since = calendar_start(self.moment.local, e.calendar) - 1e-6
        count = self.history.count if e.scope == "contact" else self.history.total
        return count((e.ref_kind, e.ref), e.status, since, until)

    # --- operators ---------------------------------------------------------------------

    def _Unary(self, e: n.Unary):
        x = self.eval(e.operand)
        if x is None:
            return None
        if e.op == "not":
            return not x
        if e.op == "float":  # the checker's widening of an int where a float is expected
            return float(x)
        return -x

    def _Binary(self, e: n.Binary):
        op = e.op
        if op == "and":
            return kleene_and(self.eval(e.left), self.eval(e.right))
        if op == "or":
            return kleene_or(self.eval(e.left), self.eval(e.right))
        if op == "??":
            left = self.eval(e.left)
            return self.eval(e.right) if left is None else left
        left, right = self.eval(e.left), self.eval(e.right)
        if op == "in":
            return membership(left, right)
        if op == "not in":
            return kleene_not(membership(left, right))
        if left is None or right is None:
            return None
        if op in _COMPARISONS:
            return compare(op, left, right)
        return arithmetic(op, left, right)

    def _Cond(self, e: n.Cond):
        # like SQL CASE: only an exactly-true condition takes the then branch
        return self.eval(e.then) if self.eval(e.test) is True else self.eval(e.orelse)

    def _Call(self, e: n.Call):
        fn = FUNCTIONS[e.fn]  # each function's meaning is its table entry's reference
        args = [self.eval(a) for a in e.args]
        if fn.null is None and any(a is None for a in args):
            return None
        if fn.today:
            return fn.reference(self.moment.today, *args)
        if fn.local:
            return fn.reference(self.moment.local, *args)
        return fn.reference(*args)


# --- the semantics, one function each ------------------------------------------------------


def calendar_start(local, kind: str) -> float:
    """The first instant of the day, week (from Monday) or month holding the aware local
    datetime `local`: its first day's midnight in local's zone, or where the clocks skip
    midnight, the first instant whose local date is that day."""
    day = local.date()
    if kind == "week":
        day -= datetime.timedelta(days=day.weekday())
    elif kind == "month":
        day = day.replace(day=1)
    zone = local.tzinfo
    t = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp() - 14 * 3600
    while datetime.datetime.fromtimestamp(t, zone).date() < day:  # scan by minutes from before any offset
        t += 60
    return t


def kleene_not(x):
    return None if x is None else not x


def kleene_and(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def kleene_or(a, b):
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def compare(op: str, a, b) -> bool:
    return {
        "==": lambda: a == b,
        "!=": lambda: a != b,
        "<": lambda: a < b,
        "<=": lambda: a <= b,
        ">": lambda: a > b,
        ">=": lambda: a >= b,
    }[op]()


def membership(x, items):
    """`x in items`: null on a null side; a substring test on strings; on a list with null
    items, true if one equals x, else null if one is null, else false."""
    if x is None or items is None:
        return None
    if isinstance(items, str):
        return x in items
    if isinstance(items, frozenset):
        return x in items
    saw_null = False
    for item in items:
        if item is None:
            saw_null = True
        elif item == x:
            return True
    return None if saw_null else False


def arithmetic(op: str, a, b):
    """Both operands non-null. Null on division by zero and on int * int overflow."""
    if op == "+":
        return a + b  # numbers, or two strings joined
    if op == "-":
        return a - b
    if op == "*":
        result = a * b
        if _is_int(a) and _is_int(b) and not -INT_LIMIT <= result <= INT_LIMIT:
            return None
        return result
    if b == 0:
        return None
    if op == "/":
        return a / b  # true division: always a float
    if op == "%":
        return a % b  # Python's floored modulo
    raise AssertionError(f"unknown operator {op}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def within(valid, moment) -> bool:
    """Inside a `valid` range: a date end compares with today (the day in the catalog's
    timezone, whole); a date-time end with the decision time, read in that timezone."""
    zone = moment.local.tzinfo
    start, end = valid
    after = (moment.now >= start.replace(tzinfo=zone) if isinstance(start, datetime.datetime)
             else moment.today >= start)
    before = (moment.now <= end.replace(tzinfo=zone) if isinstance(end, datetime.datetime)
              else moment.today <= end)
    return after and before


# --- a whole offer in a space --------------------------------------------------------------


def explain_offer(catalog, space: str, offer, contact: dict, context: dict, moment, history):
    """("eligible", weight), or ("removed", rule) with `rule` the RuleRef of the first rule
    that is not exactly true, in explain order: valid; the space's eligible rules; the
    category chain's eligible rules, root first, each category's `eligible in` the space
    after its own; the groups' likewise, in the offer's order; the offer's eligible rules;
    its eligible rules for the space; its caps and suppressions in declaration order; its
    categories' caps and suppressions, root first; its groups'; the space's caps. Then a null weight removes the offer (rule = the weight's rule)."""
    removed = removing_rules(catalog, space, offer, contact, context, moment, history, first=True)
    if removed:
        return ("removed", removed[0])
    o = catalog.offers_by_name[offer] if isinstance(offer, str) else offer
    weight = o.weight_in.get(space, o.weight)
    return ("eligible", evaluate(weight.expr, contact, context, moment, history, catalog.lets, space))


def removing_rules(catalog, space: str, offer, contact: dict, context: dict, moment, history, first=False):
    """Every rule that removes the offer, in explain order (with `first`, only the first),
    its weight's rule last if the weight is null."""
    o = catalog.offers_by_name[offer] if isinstance(offer, str) else offer

    def run(e):
        return evaluate(e, contact, context, moment, history, catalog.lets, space)

    out = []
    if o.valid is not None and not within(o.valid, moment):
        out.append(o.valid_rule)
    chain = [catalog.categories[c] for c in o.chain]
    groups = [catalog.groups[g] for g in o.groups]
    checks = list(catalog.spaces[space].eligible)
    for owner in chain + groups:
        checks += list(owner.eligible) + list(owner.eligible_in.get(space, ()))
    checks += list(o.eligible)
    checks += list(o.eligible_in.get(space, ()))
    checks += list(o.limits)
    checks += [k for c in chain for k in c.limits]
    checks += [k for g in groups for k in g.limits]
    checks += list(catalog.spaces[space].caps)
    for check in checks:
        if out and first:
            return out
        if run(check.expr) is not True:
            out.append(check.rule)
    weight = o.weight_in.get(space, o.weight)
    if not (out and first) and run(weight.expr) is None:
        out.append(weight.rule)
    return out
