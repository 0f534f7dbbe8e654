"""Checked expression → Python expression text, within one generated function's Frame.

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

import itertools
import re

from ..lang import nodes as n
from ..lang.catalog import Catalog
from ..lang.functions import FUNCTIONS
from ..lang.types import DATE, INT, TIME
from ..periods import KINDS
from .analysis import LEAVES as _LEAVES
from .analysis import SIMPLE as _SIMPLE

_IDENT = re.compile(r"[a-z_][a-z0-9_.]*\Z")  # names allowed in comments: checked identifiers
ARGS = "_c, _x, _m, _h"  # contact, context, Moment, history
_LOCAL = n.Clock("local", type=TIME, nullable=False)  # `now` in the catalog's timezone, for functions
_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


class Writer:
    def __init__(self, level: int = 0):
        self.lines: list[str] = []
        self.level = level

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


class Constants:
    """A generated module's constants (dates, history keys), passed in its namespace as
    `_k0`, `_k1` ...; `values` is what the module is compiled with."""

    def __init__(self, values: dict | None = None):
        self.values = {} if values is None else values
        self._names = {(type(v), v): k for k, v in self.values.items()}

    def name(self, value) -> str:
        key = (type(value), value)
        if key not in self._names:
            name = f"_k{len(self.values)}"
            self.values[name] = value
            self._names[key] = name
        return self._names[key]


class Frame:
    """One generated function's names: its attribute and let variables, the shared
    sub-expressions bound before its body, its temporaries, and the runtime locals its
    prelude must bind (`_ts`, `_hc` ...). Each generated function has a frame of its own."""

    __slots__ = ("attrs", "lets", "shared", "uses", "temps")

    def __init__(self):
        self.attrs: dict[tuple[str, str], str] = {}  # (root, name) → `_p0`
        self.lets: dict[str, str] = {}  # let name → `_l0`
        self.shared: dict[n.Expr, str] = {}  # sub-expression → `_s0`
        self.uses: set[str] = set()  # runtime locals the prelude must bind: _hc _ht _hp _tdo
        self.temps = itertools.count(1)

    def for_lets(self) -> Frame:
        """The same frame without its shared sub-expressions: lets are bound before them."""
        inner = Frame()
        inner.attrs, inner.lets, inner.uses, inner.temps = self.attrs, self.lets, self.uses, self.temps
        return inner


class ExprCodegen:
    """Expressions → Python expression text in one function's frame: the attributes,
    lets and shared sub-expressions they read become the frame's locals."""

    def __init__(self, catalog: Catalog, constants: Constants, frame: Frame, space: str | None = None):
        self.catalog = catalog
        self.constants = constants
        self.frame = frame
        self.space = space
        self.hits: set[str] | None = None  # if a set, the code written adds the shared names it reads

    @property
    def uses(self) -> set[str]:
        """The frame's runtime locals: a visitor adds those its code names (`_ts`, `_hc` ...)."""
        return self.frame.uses

    # --- names
    def temp(self) -> str:
        return f"_t{next(self.frame.temps)}"

    def const(self, value) -> str:
        return self.constants.name(value)

    def literal(self, value) -> str:
        if isinstance(value, bool) or value is None:
            return repr(value)
        if isinstance(value, (int, float)):
            return f"({value!r})" if value < 0 else repr(value)
        if isinstance(value, str):
            return repr(value)
        return self.const(value)  # dates

    def attr(self, e: n.Attr) -> str:
        attrs = self.frame.attrs
        key = (e.root, e.name)
        if key not in attrs:
            attrs[key] = f"_p{len(attrs)}"
        return attrs[key]

    def load(self, key: tuple[str, str]) -> str:
        root, name = key
        return f"{self.frame.attrs[key]} = {'_c' if root == 'contact' else '_x'}.get({name!r})"

    def let(self, name: str) -> str:
        lets = self.frame.lets
        if name not in lets:
            lets[name] = f"_l{len(lets)}"
        return lets[name]

    def share(self, e: n.Expr) -> str:
        """Bind e, met more than once, to a name of the frame: the line that binds it."""
        code = self.value(e)
        name = f"_s{len(self.frame.shared)}"
        self.frame.shared[e] = name
        return f"{name} = {code}"

    def bind(self, e: n.Expr, code: str) -> tuple[str, str]:
        """(first use, later uses) of a value needed twice."""
        if isinstance(e, _SIMPLE) or e in self.frame.shared:
            return code, code
        t = self.temp()
        return f"({t} := {code})", t

    # --- value
    def _hit(self, name: str) -> str:
        if self.hits is not None:
            self.hits.add(name)
        return name

    def value(self, e: n.Expr) -> str:
        if type(e) not in _LEAVES and e in self.frame.shared:  # leaves are never shared: skip the hash
            return self._hit(self.frame.shared[e])
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
        name = {"now": "_now", "today": "_today", "local": "_local"}[e.which]
        self.uses.add(name)
        return name

    def _v_Propensity(self, e):
        self.uses.update(("_hp", "_ts"))
        return f"_hp({self.literal(e.offer)}, {self.literal(self.space)}, _ts)"

    def _v_History(self, e):
        since = "None" if e.window is None else f"_ts - {e.window}"
        if e.calendar is not None:  # the period's start, found once per call (see prelude)
            since = f"_p{e.calendar}"
            self.uses.update((since, "_ts"))
        if e.scope == "contact":  # runtime.counter: the status in the key, the window's end bound once
            self.uses.update(("_hc", "_ts"))
            return f"_hc({self.const((e.ref_kind, e.ref, e.status))}, {since})"
        self.uses.update(("_ht", "_ts"))
        return f"_ht({self.const((e.ref_kind, e.ref))}, {e.status!r}, {since}, _ts)"

    def _operands(self, operands, test: str) -> tuple[list[str], list[str]]:
        """The operands' codes, and `<first use> <test>` for each nullable one (bound on
        first use, since the code uses it again)."""
        tests, codes = [], []
        for x in operands:
            code = self.value(x)
            if x.nullable:
                first, code = self.bind(x, code)
                tests.append(f"{first} {test}")
            codes.append(code)
        return tests, codes

    def _null_guard(self, operands, build) -> str:
        """`None if <any nullable operand is None> else build(*codes)`."""
        tests, codes = self._operands(operands, "is None")
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
        if fn.local:
            # `now` in the catalog's timezone is the moment's `local`: no conversion at run time
            args = tuple(_LOCAL if type(a) is n.Clock and a.which == "now" else a for a in args)
            if fn.plain is not None and (args[0] is _LOCAL or args[0].type == DATE):
                return self._null_guard(args, fn.plain.format)  # hour(now) is `_local.hour`
            self.uses.add("_local")
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
        if type(e) not in _LEAVES and e in self.frame.shared:
            name = self._hit(self.frame.shared[e])
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
        if type(e) not in _LEAVES and e in self.frame.shared:
            name = self._hit(self.frame.shared[e])
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
        tests, codes = self._operands((left, right), "is not None")
        body = f"{codes[0]} {op} {codes[1]}"
        tests.append(f"not ({body})" if negate else body)
        return "(" + " and ".join(tests) + ")"

    # --- the function around the expressions
    def prelude(self, w: Writer, body: Writer, shared_lines: list[str], lazy=frozenset()) -> None:
        """Bind, before the body, everything the body uses: attributes (but those the body
        reads itself, `lazy`), lets, clocks."""
        let_lines = self._let_lines()
        uses = self.frame.uses
        for name in ("_now", "_ts", "_today", "_local"):
            if name in uses:
                w.write(f"{name} = _m.{name[1:]}")
        if "_tdo" in uses:
            w.write("_tdo = _today.toordinal()")
        for kind in KINDS:
            if f"_p{kind}" in uses:
                w.write(f"_p{kind} = _rt_since(_ts, {kind!r}, {self.catalog.timezone!r})")
        if "_hc" in uses:
            w.write("_hc = _rt_counter(_h, _ts)")
        for fn, method in (("_ht", "total"), ("_hp", "propensity")):
            if fn in uses:
                w.write(f"{fn} = _h.{method}")
        for key in self.frame.attrs:
            if key not in lazy:
                w.write(self.load(key))
        for line in let_lines + shared_lines:
            w.write(line)
        w.lines.extend(body.lines)

    def _let_lines(self) -> list[str]:
        """Lets used here, in dependency order. Generating a let may reveal further lets
        and attributes, so this runs until nothing new appears."""
        lets = self.frame.lets
        inner = ExprCodegen(self.catalog, self.constants, self.frame.for_lets(), self.space)
        done: dict[str, str] = {}
        while len(done) < len(lets):
            for name in self.catalog.let_order:
                if name in lets and name not in done:
                    done[name] = inner.value(self.catalog.lets[name])
        return [f"{lets[name]} = {done[name]}" for name in self.catalog.let_order if name in done]


def expression_source(catalog: Catalog, expr: n.Expr, consts: dict) -> str:
    """`_value`, `_truth` and `_falsity` of one checked expression (tests and tools)."""
    out = Writer()
    constants = Constants(consts)
    for name, mode in (("_value", "value"), ("_truth", "truth"), ("_falsity", "falsity")):
        gen = ExprCodegen(catalog, constants, Frame())
        body = Writer(level=1)
        if mode != "value" and expr.type.name != "bool":
            body.write("return False")  # only a bool is ever exactly true or false
        else:
            body.write(f"return {getattr(gen, mode)(expr)}")
        out.write(f"def {name}({ARGS}):")
        out.indent()
        gen.prelude(out, body, [])
        out.dedent()
    return out.source()
