"""Checked catalog → Python source, one module per offer space.

Names in the generated code are all ours (`_p3`, `_s1`, `_k0` ...); values written in
the source are Python literals made with repr() of checked ints, floats and strings,
and every other constant (dates, history keys) is passed in the namespace. User text
never becomes an identifier. Three compilations of a boolean expression:

    value(e)   the Kleene value: True, False or None
    truth(e)   a Python bool: is e exactly True? (what a rule needs: null fails closed)
    falsity(e) a Python bool: is e exactly False? (truth of `not e`)

truth/falsity let `a and b` short-circuit natively without building Kleene values.
"""
from __future__ import annotations

import math
import re
from collections import Counter

from ..lang import nodes as n
from ..lang.catalog import Catalog, Check, RuleRef
from ..lang.functions import FUNCTIONS
from ..lang.types import INT

_IDENT = re.compile(r"[a-z_][a-z0-9_.]*\Z")  # names allowed in comments: checked identifiers
_SIMPLE = (n.Literal, n.Attr, n.LetRef, n.Clock)
_LEAVES = frozenset(_SIMPLE)  # node types never counted as shared
_ARGS = "_c, _x, _m, _h"  # contact, context, Moment, history
_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.level = 0

    def write(self, line: str) -> None:
        self.lines.append("    " * self.level + line)

    def indent(self) -> None:
        self.level += 1

    def dedent(self) -> None:
        self.level -= 1

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"


def comment(text: str) -> str:
    return text if _IDENT.match(text) else "?"


class ExprCodegen:
    """Expression → Python expression text. Subclasses decide which nodes are preloaded
    into locals (attributes, lets, shared sub-expressions)."""

    def __init__(self, catalog: Catalog, consts: dict, space: str | None = None):
        self.catalog = catalog
        self.consts = consts  # name → value, for the namespace
        self._const_names: dict[object, str] = {}
        self.space = space
        self.attrs: dict[tuple[str, str], str] = {}
        self.lets: dict[str, str] = {}
        self.shared: dict[n.Expr, str] = {}
        self.temps = 0
        self.touched: set[str] = set()  # attribute variables read since the last touching()
        self.uses: set[str] = set()  # runtime locals the prelude must bind: _hc _ht _hp _tdo

    # --- names
    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def const(self, value) -> str:
        key = (type(value), value)
        if key not in self._const_names:
            name = f"_k{len(self.consts)}"
            self.consts[name] = value
            self._const_names[key] = name
        return self._const_names[key]

    def literal(self, value) -> str:
        if isinstance(value, bool) or value is None:
            return repr(value)
        if isinstance(value, (int, float)):
            return f"({value!r})" if value < 0 else repr(value)
        if isinstance(value, str):
            return repr(value)
        return self.const(value)  # dates

    def attr(self, e: n.Attr) -> str:
        key = (e.root, e.name)
        if key not in self.attrs:
            self.attrs[key] = f"_p{len(self.attrs)}"
        self.touched.add(self.attrs[key])
        return self.attrs[key]

    def load(self, var: str) -> str:
        root, name = next(k for k, v in self.attrs.items() if v == var)
        return f"{var} = {'_c' if root == 'contact' else '_x'}.get({name!r})"

    def touching(self, make):
        """make() and the attribute variables it read."""
        saved, self.touched = self.touched, set()
        try:
            return make(), self.touched
        finally:
            self.touched = saved | self.touched

    def let(self, name: str) -> str:
        if name not in self.lets:
            self.lets[name] = f"_l{len(self.lets)}"
        return self.lets[name]

    def bind(self, e: n.Expr, code: str) -> tuple[str, str]:
        """(first use, later uses) of a value needed twice."""
        if isinstance(e, _SIMPLE) or e in self.shared:
            return code, code
        t = self.temp()
        return f"({t} := {code})", t

    # --- value
    def value(self, e: n.Expr) -> str:
        if type(e) not in _LEAVES and e in self.shared:  # leaves are never shared: skip the hash
            return self.shared[e]
        return getattr(self, "_v_" + type(e).__name__)(e)

    def _v_Literal(self, e):
        return self.literal(e.value)

    def _v_ListLiteral(self, e):
        return "(" + "".join(self.value(i) + ", " for i in e.items) + ")"

    def _v_Attr(self, e):
        return self.attr(e)

    def _v_LetRef(self, e):
        return self.let(e.name)

    def _v_Clock(self, e):
        name = "_now" if e.which == "now" else "_today"
        self.uses.add(name)
        return name

    def _v_Propensity(self, e):
        self.uses.update(("_hp", "_ts"))
        return f"_hp({self.literal(e.offer)}, {self.literal(self.space)}, _ts)"

    def _v_History(self, e):
        fn = "_hc" if e.scope == "contact" else "_ht"
        self.uses.update((fn, "_ts"))
        key = self.const((e.ref_kind, e.ref))
        since = "None" if e.window is None else f"_ts - {e.window}"
        return f"{fn}({key}, {e.status!r}, {since}, _ts)"

    def _null_guard(self, operands, build) -> str:
        """`None if <any nullable operand is None> else build(*codes)`."""
        tests, codes = [], []
        for x in operands:
            code = self.value(x)
            if x.nullable:
                first, again = self.bind(x, code)
                tests.append(f"{first} is None")
                codes.append(again)
            else:
                codes.append(code)
        result = build(*codes)
        tests = list(dict.fromkeys(tests))  # `x - x` tests x once
        return f"(None if {' or '.join(tests)} else {result})" if tests else f"({result})"

    def _v_Unary(self, e):
        if e.op == "not":
            return self._null_guard([e.operand], lambda a: f"not {a}")
        if e.op == "float":  # the checker's widening of an int
            return self._null_guard([e.operand], lambda a: f"_rt_float({a})")
        return self._null_guard([e.operand], lambda a: f"-{a}")

    def _v_Binary(self, e):
        op, left, right = e.op, e.left, e.right
        if op in ("and", "or"):
            if not e.nullable:
                return f"({self.value(left)} {op} {self.value(right)})"
            # Kleene: one side false decides `and` (true decides `or`), else null wins
            wins, loses = ("False", "True") if op == "and" else ("True", "False")
            a, a2 = self.bind(left, self.value(left))
            b, b2 = self.bind(right, self.value(right))
            return f"({wins} if {a} is {wins} or {b} is {wins} else (None if {a2} is None or {b2} is None else {loses}))"
        if op == "??":
            if not left.nullable:
                return self.value(left)
            a, a2 = self.bind(left, self.value(left))
            return f"({self.value(right)} if {a} is None else {a2})"
        if op in ("in", "not in"):
            return self._membership(e, value=True)
        if op in ("/", "%"):
            return self._division(e)
        if op == "*" and e.type == INT:  # keep ints in 64 bits so a float conversion never overflows
            t = self.temp()
            return self._null_guard([left, right], lambda a, b: (
                f"{t} if -_rt_int_limit <= ({t} := {a} * {b}) <= _rt_int_limit else None"))
        return self._null_guard([left, right], lambda a, b: f"{a} {op} {b}")

    def _division(self, e):
        tests, codes = [], []
        for side in (e.left, e.right):
            code = self.value(side)
            if side is e.right and not (isinstance(side, n.Literal) and side.value != 0):
                first, again = self.bind(side, code)
                tests.append(f"not {first}")  # catches None and zero
                codes.append(again)
            elif side.nullable:
                first, again = self.bind(side, code)
                tests.append(f"{first} is None")
                codes.append(again)
            else:
                codes.append(code)
        body = f"{codes[0]} {e.op} {codes[1]}"
        return f"(None if {' or '.join(tests)} else {body})" if tests else f"({body})"

    def _membership(self, e, value: bool):
        """`in`/`not in`. A literal list of constants becomes a set (Python folds it into a
        frozenset constant). `value` False compiles the truth of the test."""
        left, right, negate = e.left, e.right, e.op == "not in"
        constant_list = isinstance(right, n.ListLiteral) and all(isinstance(i, n.Literal) for i in right.items)
        if right.type.name == "list" and not constant_list:  # may hold nulls: SQL's rule
            code = f"_rt_in_list({self.value(left)}, {self.value(right)})"
            if negate:
                code = self._kleene_not(code)
            return code if value else f"({code} is True)"
        if isinstance(right, n.ListLiteral):
            items = {i.value: None for i in right.items}
            rcode = "{" + ", ".join(self.literal(v) for v in items) + "}"
        else:
            rcode = self.value(right)
        word = "not in" if negate else "in"
        if not e.nullable:
            return f"({self.value(left)} {word} {rcode})"
        if not value and not negate and not right.nullable and right.type.collection:
            return f"({self.value(left)} in {rcode})"  # null is in no set or list: false, not an error
        tests, codes = [], []
        for x, code in ((left, self.value(left)), (right, rcode)):
            if x.nullable:
                first, again = self.bind(x, code)
                tests.append(first)
                codes.append(again)
            else:
                codes.append(code)
        body = f"{codes[0]} {word} {codes[1]}"
        if value:
            return f"(None if {' or '.join(f'{t} is None' for t in tests)} else {body})"
        return f"({' and '.join(f'{t} is not None' for t in tests)} and {body})"

    def _kleene_not(self, code):
        t = self.temp()
        return f"(None if ({t} := {code}) is None else not {t})"

    def _v_Cond(self, e):
        return f"({self.value(e.then)} if {self.truth(e.test)} else {self.value(e.orelse)})"

    def _v_Call(self, e):
        fn, args = FUNCTIONS[e.fn], e.args
        if fn.today:
            self.uses.update(("_tdo", "_today"))
        if fn.null is not None:  # the template takes nulls itself
            return fn.code.format(*map(self.value, args))
        if not fn.bind:
            return self._null_guard(args, fn.code.format)
        tests, again, first = [], [], []  # each argument bound where first evaluated
        for x in args:
            bound, name = self.bind(x, self.value(x))
            if x.nullable:
                tests.append(f"{bound} is None")
                bound = name
            again.append(name)
            first.append(bound)
        code = fn.code.format(*again, first=first)
        return f"(None if {' or '.join(tests)} else {code})" if tests else code

    # --- truth and falsity
    def truth(self, e: n.Expr) -> str:
        if type(e) not in _LEAVES and e in self.shared:
            name = self.shared[e]
            return name if not e.nullable else f"({name} is True)"
        if isinstance(e, n.Binary) and e.op in ("and", "or"):
            return f"({self.truth(e.left)} {e.op} {self.truth(e.right)})"
        if isinstance(e, n.Unary) and e.op == "not":
            return self.falsity(e.operand)
        if not e.nullable:
            return self.value(e)
        if isinstance(e, n.Binary) and e.op in _INVERSE:
            return self._compare(e.left, e.op, e.right)
        if isinstance(e, n.Binary) and e.op in ("in", "not in"):
            return self._membership(e, value=False)
        if isinstance(e, n.Cond):
            return f"({self.truth(e.then)} if {self.truth(e.test)} else {self.truth(e.orelse)})"
        return f"({self.value(e)} is True)"

    def falsity(self, e: n.Expr) -> str:
        if type(e) not in _LEAVES and e in self.shared:
            name = self.shared[e]
            return f"(not {name})" if not e.nullable else f"({name} is False)"
        if isinstance(e, n.Binary) and e.op in ("and", "or"):
            other = "or" if e.op == "and" else "and"
            return f"({self.falsity(e.left)} {other} {self.falsity(e.right)})"
        if isinstance(e, n.Unary) and e.op == "not":
            return self.truth(e.operand)
        if not e.nullable:
            return f"(not {self.value(e)})"
        if isinstance(e, n.Binary) and e.op in _INVERSE:
            # not (a < b) rather than a >= b: NaN compares false both ways
            return self._compare(e.left, e.op, e.right, negate=True)
        if isinstance(e, n.Binary) and e.op in ("in", "not in"):
            flipped = n.Binary("not in" if e.op == "in" else "in", e.left, e.right,
                               type=e.type, nullable=e.nullable)
            return self._membership(flipped, value=False)
        if isinstance(e, n.Cond):
            return f"({self.falsity(e.then)} if {self.truth(e.test)} else {self.falsity(e.orelse)})"
        return f"({self.value(e)} is False)"

    def _compare(self, left, op, right, negate=False) -> str:
        tests, codes = [], []
        for x in (left, right):
            code = self.value(x)
            if x.nullable:
                first, again = self.bind(x, code)
                tests.append(f"{first} is not None")
                codes.append(again)
            else:
                codes.append(code)
        body = f"{codes[0]} {op} {codes[1]}"
        tests.append(f"not ({body})" if negate else body)
        return "(" + " and ".join(tests) + ")"


    def _prelude(self, w: Writer, body: Writer, shared_lines: list[str], lazy=frozenset()) -> None:
        """Bind, before the body, everything the body uses: attributes (but those the body
        reads itself, `lazy`), lets, clocks."""
        let_lines = self._let_lines()
        for name in ("_now", "_ts", "_today"):
            if name in self.uses:
                w.write(f"{name} = _m.{name[1:]}")
        if "_tdo" in self.uses:
            w.write("_tdo = _today.toordinal()")
        for fn, method in (("_hc", "count"), ("_ht", "total"), ("_hp", "propensity")):
            if fn in self.uses:
                w.write(f"{fn} = _h.{method}")
        for var in self.attrs.values():
            if var not in lazy:
                w.write(self.load(var))
        for line in let_lines + shared_lines:
            w.write(line)
        w.lines.extend(body.lines)

    def _let_lines(self) -> list[str]:
        """Lets used here, in dependency order. Generating a let may reveal further lets
        and attributes, so this runs until nothing new appears."""
        done: dict[str, str] = {}
        while len(done) < len(self.lets):
            for name in self.catalog.let_order:
                if name in self.lets and name not in done:
                    saved, self.shared = self.shared, {}
                    done[name] = self.value(self.catalog.lets[name])
                    self.shared = saved
        return [f"{self.lets[name]} = {done[name]}" for name in self.catalog.let_order if name in done]


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


_INF = float("inf")
_ANY = (-_INF, _INF)
TOP_MIN_OFFERS = 32  # below this, a space is evaluated whole: ranking by bound saves nothing


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


class SpaceCodegen(ExprCodegen):
    """One offer space → a module with `_evaluate` (the fast path), or `_explain`, or the
    content renderers. `plan` lists, per offer, the checks in explain order."""

    def __init__(self, catalog: Catalog, space: str):
        super().__init__(catalog, {}, space)
        self.space_def = catalog.spaces[space]
        self.offers = catalog.offers_in(space)
        self.rules: list[RuleRef] = []
        self.preloaded: set[str] = set()  # attributes read by shared sub-expressions
        self.plan: list[tuple[list[tuple[int, Check]], tuple[int, Check]]] = []
        for offer in self.offers:
            checks = []
            if offer.valid is not None:
                checks.append((self._rule(offer.valid_rule), None))
            chain = [self.catalog.categories[c] for c in offer.chain]
            for c in chain:
                checks += [(self._rule(k.rule), k) for k in c.eligible]
            checks += [(self._rule(k.rule), k) for k in offer.eligible]
            checks += [(self._rule(k.rule), k) for k in offer.eligible_in.get(space, ())]
            checks += [(self._rule(k.rule), k) for k in offer.limits]
            for c in chain:
                checks += [(self._rule(k.rule), k) for k in c.limits]
            checks += [(self._rule(k.rule), k) for k in self.space_def.caps]
            weight = offer.weight_in.get(space, offer.weight)
            self.plan.append((checks, (self._rule(weight.rule), weight)))
        lets = catalog.lets
        # the lets' bounds and whether they read history, each let after the lets it uses: a
        # chain of lets costs no recursion, and one let used twice is not walked twice
        known: dict[str, tuple[float, float]] = {}
        self.history_lets: set[str] = set()
        for name in catalog.let_order:
            known[name] = interval(lets[name], lets, known)
            if self._reads_history(lets[name]):
                self.history_lets.add(name)
        # each offer's highest weight (NaN, from odd literals, counts as unbounded)
        self.bounds = [b if b == b else _INF for b in (interval(w.expr, lets, known)[1] for _, (_, w) in self.plan)]
        # `_top` pays off in a large space with some bounded weights, or weights that read no history
        self.ranks_by_bound = len(self.offers) >= TOP_MIN_OFFERS and any(
            b < _INF or not self._reads_history(w.expr) for b, (_, (_, w)) in zip(self.bounds, self.plan))

    def _rule(self, rule: RuleRef) -> int:
        self.rules.append(rule)
        return len(self.rules) - 1

    def _share(self) -> None:
        """Mark the sub-expressions met more than once in this space: evaluated once per call."""
        roots: Counter = Counter()  # each distinct rule once, with how often it occurs
        for checks, (_, weight) in self.plan:
            roots.update(check.expr for _, check in checks if check is not None)
            roots[weight.expr] += 1
        counts: Counter = Counter()
        skip = _SIMPLE + (n.ListLiteral,)
        for root, k in roots.items():
            for x in subexpressions(root):
                if not isinstance(x, skip):
                    counts[x] += k
        self._candidates = {e for e, k in counts.items() if k > 1}

    def _emit_shared(self, e: n.Expr, out: list[str]) -> None:
        """Define shared sub-expressions, children first, as they are first met."""
        if type(e) in _LEAVES or e in self.shared:  # a leaf, or emitted already with its children
            return
        for child in n.children(e):
            self._emit_shared(child, out)
        if e in self._candidates and e not in self.shared:
            code, attrs = self.touching(lambda: self.value(e))
            self.preloaded |= attrs
            name = f"_s{len(self.shared)}"
            self.shared[e] = name
            out.append(f"{name} = {code}")

    def _valid_test(self, offer, negate=False) -> str:
        self.uses.add("_today")
        lo, hi = (self.literal(d) for d in offer.valid)
        return f"not ({lo} <= _today <= {hi})" if negate else f"{lo} <= _today <= {hi}"

    def evaluate_source(self, explain: bool = False, top: bool = False) -> str:
        """`_evaluate(...)` → [(offer position, weight)] of the eligible offers; with
        explain, `_explain(...)` → (eligible, [(offer position, rule index)]); with top,
        `_top(need, ...)` → (eligible, complete): the offers by their weight's upper bound,
        highest first, stopping (complete False) once `need` eligible ones weigh more than
        any offer left could, so those are the `need` best of the space."""
        self._share()
        shared_lines: list[str] = ["_tw = ()", "_tn = 0"] if top else []
        body = Writer()
        body.level = 1
        body.write("_el = []")
        many = len(self.offers) > 2  # binding append pays off only when it is called often
        if many:
            body.write("_ap = _el.append")
        self.append = "_ap" if many else "_el.append"
        if explain:
            body.write("_fails = []")
            body.write("_fa = _fails.append")
        offers = []
        for pos, (offer, (checks, (weight_idx, weight))) in enumerate(zip(self.offers, self.plan)):
            for _, check in checks:
                if check is not None:
                    self._emit_shared(check.expr, shared_lines)
            self._emit_shared(weight.expr, shared_lines)
            offers.append((pos, offer, checks, weight_idx, weight))
        lazy: set[str] = set()
        if explain:
            for pos, offer, checks, weight_idx, weight in offers:
                body.write(f"# offer {comment(offer.name)}")
                self._explain_offer(body, pos, offer, checks, weight_idx, weight)
        else:
            plans = [self._fast_plan(*o) for o in offers]
            lazy = self._lazy_attrs(plans)
            if top:
                self._top_body(body, offers, plans, lazy)
            else:
                for (pos, offer, *_), plan in zip(offers, plans):
                    body.write(f"# offer {comment(offer.name)}")
                    self._fast_offer(body, pos, plan, lazy)
        body.write("return (_el, _fails)" if explain else "return (_el, not _skip)" if top else "return _el")
        w = Writer()
        w.write(f"# offer space {comment(self.space)}, catalog {self.catalog.hash[:12]}")
        name, args = ("_explain", _ARGS) if explain else ("_top", "_need, " + _ARGS) if top else ("_evaluate", _ARGS)
        w.write(f"def {name}({args}):")
        w.indent()
        self._prelude(w, body, shared_lines, lazy)
        return w.source()

    def _top_body(self, body: Writer, offers, plans, lazy: set[str]) -> None:
        """`_top`: first the offers whose weight has an upper bound, highest bound first, in
        sections; a section runs only while fewer than `need` eligible offers weigh more
        than its first offer's bound. Then the offers with no bound: those whose weight
        reads no history have it computed first, and skip their rules when it is below the
        `need`-th best weight found. `_skip` records whether any offer was left out."""
        bounded = sorted((i for i in range(len(offers)) if self.bounds[i] < _INF), key=lambda i: -self.bounds[i])
        free = [i for i in range(len(offers)) if self.bounds[i] == _INF]
        stops = self._stops(len(bounded))
        body.write("_go = True")
        base = body.level
        for k, i in enumerate(bounded):
            (pos, offer, *_), plan = offers[i], plans[i]
            body.write(f"# offer {comment(offer.name)}, weight at most {float(self.bounds[i])!r}")
            self._fast_offer(body, pos, plan, lazy)
            if k in stops:  # every offer after this one weighs at most the next one's bound
                body.write("if _rt_len(_el) >= _need:")
                body.write("    _tw = _rt_best(_tw, _el, _tn, _need)  # the best weights so far, from the new ones")
                body.write("    _tn = _rt_len(_el)")
                body.write(f"    _go = _tw[-1] <= {float(self.bounds[bounded[k + 1]])!r}")
                body.level = base
                body.write("if _go:")
                body.indent()
        body.level = base
        body.write("_skip = not _go")
        if not free:
            return
        body.write("_thr = None")
        body.write("if _rt_len(_el) >= _need:")
        body.write("    _thr = _rt_best(_tw, _el, _tn, _need)[-1]")
        for i in free:
            (pos, offer, *_), plan = offers[i], plans[i]
            weight, code, attrs = plan[1]
            body.write(f"# offer {comment(offer.name)}, weight unbounded")
            if self._reads_history(weight.expr):
                self._fast_offer(body, pos, plan, lazy)
                continue
            for var in sorted(attrs & lazy):
                body.write(self.load(var))
            body.write(f"_w = {code}")
            body.write("if _thr is not None and _w is not None and _w < _thr:")
            body.write("    _skip = True")
            body.write("else:")
            body.indent()
            self._fast_offer(body, pos, plan, lazy)
            body.level = base

    def _reads_history(self, e: n.Expr) -> bool:
        for x in subexpressions(e):
            if isinstance(x, (n.History, n.Propensity)):
                return True
            if isinstance(x, n.LetRef) and x.name in self.history_lets:
                return True
        return False

    @staticmethod
    def _stops(n_bounded: int, checks: int = 8) -> set[int]:
        """After which of the bounded offers `_top` checks whether the rest can be skipped:
        about every n/checks offers (each check sorts a little)."""
        step = max(1, n_bounded // checks)
        return set(range(step - 1, n_bounded - 1, step))

    def _fast_plan(self, pos, offer, checks, weight_idx, weight: Check):
        """The offer's tests, cheapest first, each with the attributes it reads; its weight."""
        tests = []  # (cost, selectivity, order, code, attributes)
        for order, (_, check) in enumerate(checks):
            if check is None:
                tests.append((0, 0, order, self._valid_test(offer), set()))
                continue
            for part in conjuncts(check.expr):
                c = 0 if part in self.shared else cost(part)
                code, attrs = self.touching(lambda: self.truth(part))
                tests.append((c, selectivity(part), order, code, attrs))
        tests.sort(key=lambda t: t[:3])
        weight_code, weight_attrs = self.touching(lambda: self.value(weight.expr))
        return tests, (weight, weight_code, weight_attrs)

    def _lazy_attrs(self, plans) -> set[str]:
        """Attributes only one offer reads, and no let or shared expression: that offer reads
        them itself, just before the first test that needs them, so a contact rejected by
        an earlier test never pays for them."""
        _, preloaded = self.touching(self._let_lines)
        preloaded |= self.preloaded
        readers: Counter = Counter()
        for tests, (_, _, weight_attrs) in plans:
            readers.update(set().union(weight_attrs, *(t[4] for t in tests)))
        return {v for v, k in readers.items() if k == 1 and v not in preloaded}

    def _fast_offer(self, w: Writer, pos: int, plan, lazy: set[str]) -> None:
        tests, (weight, weight_code, weight_attrs) = plan
        base, loaded, pending = w.level, set(), []

        def load(attrs):
            for var in sorted(attrs & lazy - loaded):
                w.write(self.load(var))
                loaded.add(var)

        def flush():
            if pending:
                w.write("if " + " and ".join(pending) + ":")
                w.indent()
                pending.clear()

        for *_, code, attrs in tests:
            if attrs & lazy - loaded:
                flush()
                load(attrs)
            pending.append(code)
        flush()
        load(weight_attrs)
        self._append_weight(w, pos, weight, None, weight_code)
        w.level = base

    def _explain_offer(self, w: Writer, pos: int, offer, checks, weight_idx: int, weight: Check) -> None:
        keyword = "if"
        for idx, check in checks:
            # a rule removes the offer unless exactly true: false and null both fail
            test = self._valid_test(offer, negate=True) if check is None else f"not {self.truth(check.expr)}"
            w.write(f"{keyword} {test}:")
            w.indent()
            w.write(f"_fa(({pos}, {idx}))")
            w.dedent()
            keyword = "elif"
        if checks:
            w.write("else:")
            w.indent()
        self._append_weight(w, pos, weight, weight_idx)
        if checks:
            w.dedent()

    def _append_weight(self, w: Writer, pos: int, weight: Check, fail_idx: int | None,
                       code: str | None = None) -> None:
        code = code or self.value(weight.expr)
        ap = self.append
        if not weight.expr.nullable:
            w.write(f"{ap}(({pos}, {code}))")
            return
        w.write(f"_w = {code}")
        if fail_idx is None:
            w.write(f"if _w is not None: {ap}(({pos}, _w))")
        else:
            w.write(f"if _w is None: _fa(({pos}, {fail_idx}))")
            w.write(f"else: {ap}(({pos}, _w))")

    def render_source(self) -> str:
        """`_renderers[pos](...)` → ((field, text), ...) for an offer of this space; the
        space's fallback, if any, comes last."""
        out = Writer()
        names = []
        fallback = self.catalog.spaces[self.space].fallback
        extra = (self.catalog.offers_by_name[fallback],) if fallback else ()
        for pos, offer in enumerate(self.offers + extra):
            fields = offer.content.get(self.space, ())
            self.attrs, self.lets, self.shared, self.uses = {}, {}, {}, set()
            items = []
            for field, template in fields:
                parts = [self.literal(p) if isinstance(p, str) else f"_rt_text({self.value(p)})"
                         for p in template.parts]
                text = parts[0] if len(parts) == 1 and isinstance(template.parts[0], str) else (
                    f"_rt_join(({', '.join(parts)},))" if parts else "''")
                items.append(f"({field!r}, {text})")
            body = Writer()
            body.level = 1
            body.write("return (" + "".join(i + ", " for i in items) + ")")
            name = f"_render_{pos}"
            names.append(name)
            out.write(f"# content of offer {comment(offer.name)}")
            out.write(f"def {name}({_ARGS}):")
            out.indent()
            self._prelude(out, body, [])
            out.dedent()
        out.write("_renderers = (" + "".join(f"{x}, " for x in names) + ")")
        return out.source()


def expression_source(catalog: Catalog, expr: n.Expr, consts: dict) -> str:
    """`_value`, `_truth` and `_falsity` of one checked expression (tests and tools)."""
    out = Writer()
    for name, mode in (("_value", "value"), ("_truth", "truth"), ("_falsity", "falsity")):
        gen = ExprCodegen(catalog, consts)
        gen._const_names = {(type(v), v): k for k, v in consts.items()}
        body = Writer()
        body.level = 1
        if mode != "value" and expr.type.name != "bool":
            body.write("return False")  # only a bool is ever exactly true or false
        else:
            body.write(f"return {getattr(gen, mode)(expr)}")
        out.write(f"def {name}({_ARGS}):")
        out.indent()
        gen._prelude(out, body, [])
        out.dedent()
    return out.source()
