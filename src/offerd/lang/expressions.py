"""Expressions and lets → typed AST: names resolved against a catalog's declarations, every
node given its type and whether it may be null, each error reported once."""
from __future__ import annotations

from dataclasses import dataclass

from . import nodes as n
from .catalog import CONTACT_ID
from .diagnostics import Reporter, did_you_mean
from .domains import COMPARED, check_literals, derive
from .functions import CALLABLE, FUNCTIONS, HISTORY_FUNCTIONS, Function
from .precedence import check_coalesce
from .types import (BOOL, DATE, DURATION, ERROR, FLOAT, INT, LIST_ELEMS, ORDERED, STRING, TIME, Type,
                    list_of, unify)

CONSTANTS = ("now", "today", "propensity")


@dataclass
class Scope:
    """Where an expression is checked: it decides what `propensity` and lets may mean."""

    owner: str
    offer: str | None = None


class Expressions:
    """Types the expressions of one catalog. Lets are typed on first use, each once; the
    declarations it resolves names against are the checker's, collected before."""

    def __init__(self, r: Reporter, contact: dict[str, Type], context: dict[str, Type],
                 let_decls: dict[str, n.Let], offer_decls: dict, category_decls: dict,
                 group_decls: dict | None = None, domains: dict | None = None):
        self.r = r
        self.domains = {} if domains is None else domains  # (root, name) → Domain
        self.let_domains: dict = {}  # let → the Domain its value falls in, when known
        self.contact = contact
        self.context = context
        self.let_decls = let_decls
        self.offer_decls = offer_decls
        self.category_decls = category_decls
        self.group_decls = {} if group_decls is None else group_decls
        self.lets: dict[str, n.Expr] = {}
        self.let_order: list[str] = []
        self.let_stack: list[str] = []
        self.let_cycles: set[tuple[str, str]] = set()  # (let, let it uses): cycles already reported
        self.used_lets: set[str] = set()
        self.coalesced: set[int] = set()  # `??` nodes inside a chain already warned about

    def check_lets(self) -> None:
        """Type every let, each after the lets it uses."""
        for name in self._let_order():
            self._let(name)

    def _let_order(self) -> list[str]:
        """The lets, each after the lets it uses. Checking a let checks the lets it uses
        first, recursively: in this order each finds them checked already, so a long chain
        of lets cannot exhaust Python's stack. The walk runs without recursion, in the order
        checking would, and reports each cycle as checking would have met it."""
        uses = {name: _lets_used(d.expr, self.let_decls) for name, d in self.let_decls.items()}
        order: list[str] = []
        seen: set[str] = set()
        for root in self.let_decls:
            if root in seen:
                continue
            seen.add(root)
            path, stack = [root], [iter(uses[root])]
            while stack:
                used = next(stack[-1], None)
                if used is None:
                    order.append(path.pop())
                    stack.pop()
                elif used in path:
                    cycle = " → ".join(path[path.index(used):] + [used])
                    self.r.error(self.let_decls[used].span, f"let {used} refers to itself: {cycle}")
                    self.let_cycles.add((path[-1], used))
                elif used not in seen:
                    seen.add(used)
                    path.append(used)
                    stack.append(iter(uses[used]))
        return order

    def _let(self, name: str) -> n.Expr | None:
        if name in self.lets:
            return self.lets[name]
        if self.let_stack and (self.let_stack[-1], name) in self.let_cycles:
            return None
        if name in self.let_stack:
            cycle = " → ".join(self.let_stack[self.let_stack.index(name):] + [name])
            self.r.error(self.let_decls[name].span, f"let {name} refers to itself: {cycle}")
            return None
        self.let_stack.append(name)
        e = self.check(self.let_decls[name].expr, Scope(f"let {name}"))
        self.let_stack.pop()
        self.lets[name] = e
        self.let_order.append(name)
        if self.domains:
            self.let_domains[name] = derive(e, self.domains, self.let_domains)
        return e

    def check(self, e: n.Expr, scope: Scope) -> n.Expr:
        """The expression typed, names resolved; errors go to the reporter."""
        method = getattr(self, "_e_" + type(e).__name__)
        return method(e, scope)

    def _typed(self, e, t: Type, nullable: bool, **changes):
        return n.evolve(e, type=t, nullable=nullable, **changes)

    def _fail(self, e, message: str, hint: str | None = None):
        self.r.error(e.span, message, hint)
        return n.evolve(e, type=ERROR, nullable=True)

    def _e_Literal(self, e, scope):
        return self._typed(e, e.lit_type, False)

    def _e_ListLiteral(self, e, scope):
        items = tuple(self.check(i, scope) for i in e.items)
        if not items:
            return self._fail(e, "an empty list has no type", "remove the test, or list a value")
        t = items[0].type
        for i in items[1:]:
            u = unify(t, i.type)
            if u is None:
                return self._fail(i, f"a list mixes {t} and {i.type}")
            t = u
        if t != ERROR and t.name not in LIST_ELEMS:
            return self._fail(e, f"a list holds strings, numbers or dates, not {t}")
        items = tuple(_widen(i, t) for i in items)  # [1, 2.5] holds floats: join writes 1.0
        return self._typed(e, list_of(t) if t != ERROR else ERROR, False, items=items)

    def _e_Path(self, e, scope):
        root, rest = e.parts[0], e.parts[1:]
        if root not in ("contact", "context"):
            return self._fail(e, f"unknown name {'.'.join(e.parts)}; attributes start with contact. or context.",
                              did_you_mean(root, ("contact", "context")))
        if len(rest) > 1:
            return self._fail(e, f"{'.'.join(e.parts)}: attributes have one level, {root}.name")
        fields = self.contact if root == "contact" else self.context
        name = rest[0]
        if root == "contact" and name == CONTACT_ID:  # the request's contact id (never in a schema)
            return n.Attr(root, name, span=e.span, type=STRING, nullable=True, depth=e.depth)
        if name not in fields:
            other = self.context if root == "contact" else self.contact
            other_root = "context" if root == "contact" else "contact"
            hint = (f"did you mean {other_root}.{name}?" if name in other
                    else did_you_mean(name, fields, f"{root}."))
            return self._fail(e, f"unknown attribute {root}.{name}", hint)
        return n.Attr(root, name, span=e.span, type=fields[name], nullable=True, depth=e.depth)

    def _e_Name(self, e, scope):
        name = e.name
        if name in self.let_decls:  # lets may use lets; _let catches cycles
            let = self._let(name)
            self.used_lets.add(name)
            if let is None:
                return n.evolve(e, type=ERROR)
            return n.LetRef(name, span=e.span, type=let.type, nullable=let.nullable, depth=e.depth)
        if name in ("now", "today"):
            return n.Clock(name, span=e.span, type=TIME if name == "now" else DATE, nullable=False, depth=1)
        if name == "propensity":
            if scope.offer is None:
                return self._fail(e, f"propensity belongs to an offer; it cannot be used in {scope.owner}",
                                  "use it in an offer's eligible, weight or content")
            return n.Propensity(scope.offer, span=e.span, type=FLOAT, nullable=False, depth=1)
        if name in CALLABLE:
            return self._fail(e, f"{name} is a function; call it as {name}(...)")
        hint = did_you_mean(name, list(self.let_decls) + list(CONSTANTS))
        if hint is None:
            for root, fields in (("contact", self.contact), ("context", self.context)):
                if name in fields:
                    hint = f"did you mean {root}.{name}?"
                    break
        return self._fail(e, f"unknown name {name}", hint)

    def _e_Unary(self, e, scope):
        x = self.check(e.operand, scope)
        if x.type == ERROR:
            return self._typed(e, ERROR, True, operand=x)
        if e.op == "not":
            if x.type != BOOL:
                return self._fail(e, f"`not` needs a bool, not {x.type}")
            return self._typed(e, BOOL, x.nullable, operand=x)
        if not x.type.numeric:
            return self._fail(e, f"cannot negate a {x.type}")
        if isinstance(x, n.Literal):  # fold -5 into a literal
            return self._typed(n.Literal(-x.value, x.lit_type, span=e.span), x.type, False)
        return self._typed(e, x.type, x.nullable, operand=x)

    def _e_Binary(self, e, scope):
        out = self._binary(e, scope)
        if self.domains and out.type == BOOL and out.op in COMPARED:
            check_literals(out, self.r, self.domains, self.let_domains)
        return out

    def _binary(self, e, scope):
        if e.op == "??":  # before its operands: the outermost `??` of a chain warns for it all
            check_coalesce(e, self.r, self.coalesced)
        left, right = self.check(e.left, scope), self.check(e.right, scope)
        e = n.evolve(e, left=left, right=right)
        lt, rt, op = left.type, right.type, e.op
        if ERROR in (lt, rt):
            return self._typed(e, ERROR, True)
        nullable = left.nullable or right.nullable
        if op in ("and", "or"):
            for side in (left, right):
                if side.type != BOOL:
                    return self._fail(side, f"`{op}` needs bool operands, not {side.type}")
            return self._typed(e, BOOL, nullable)
        if op in ("==", "!="):
            u = unify(lt, rt)
            if u is None or u.collection:
                return self._fail(e, f"cannot compare {lt} with {rt}")
            return self._typed(e, BOOL, nullable)
        if op in ("<", "<=", ">", ">="):
            u = unify(lt, rt)
            if u is None or u.name not in ORDERED:
                return self._fail(e, f"cannot order {lt} and {rt} with {op}")
            return self._typed(e, BOOL, nullable)
        if op in ("in", "not in"):
            return self._membership(e, nullable)
        if op == "??":
            u = unify(lt, rt)
            if u is None:
                return self._fail(e, f"both sides of ?? must have one type, not {lt} and {rt}")
            return self._typed(e, u, right.nullable and left.nullable,
                               left=_widen(left, u), right=_widen(right, u))
        # arithmetic
        if op == "+" and lt == STRING and rt == STRING:
            return self._typed(e, STRING, nullable)
        if not (lt.numeric and rt.numeric):
            hint = "strings join with +, both sides strings" if STRING in (lt, rt) and op == "+" else None
            return self._fail(e, f"cannot apply {op} to {lt} and {rt}", hint)
        if op == "/":
            return self._typed(e, FLOAT, True)  # x / 0 is null
        t = INT if lt == INT and rt == INT else FLOAT
        # x % 0 is null; an int product outside the 64-bit range is null
        return self._typed(e, t, nullable or op == "%" or (op == "*" and t == INT))

    def _membership(self, e, nullable):
        lt, rt = e.left.type, e.right.type
        if rt.name == "list":
            # a list may hold nulls unless it is a literal of non-null items; then `in` is
            # null when nothing matches (see runtime.in_list)
            literal = isinstance(e.right, n.ListLiteral)
            nullable = nullable or not literal or any(i.nullable for i in e.right.items)
        if rt == STRING and lt == STRING:
            return self._typed(e, BOOL, nullable)
        if rt.collection and (unify(lt, rt.elem) is not None) and not lt.collection:
            return self._typed(e, BOOL, nullable)
        return self._fail(e, f"cannot test whether a {lt} is {e.op} a {rt}",
                          "`in` takes a list, a set<string>, or a string (substring)")

    def _e_Cond(self, e, scope):
        test, then, orelse = (self.check(x, scope) for x in (e.test, e.then, e.orelse))
        e = n.evolve(e, test=test, then=then, orelse=orelse)
        if ERROR in (test.type, then.type, orelse.type):
            return self._typed(e, ERROR, True)
        if test.type != BOOL:
            return self._fail(test, f"an if condition must be a bool, not {test.type}")
        u = unify(then.type, orelse.type)
        if u is None:
            return self._fail(e, f"then and else must have one type, not {then.type} and {orelse.type}")
        return self._typed(e, u, then.nullable or orelse.nullable,
                           then=_widen(then, u), orelse=_widen(orelse, u))

    def _e_Call(self, e, scope):
        fn = FUNCTIONS.get(e.fn)
        if fn is None:
            if e.fn in HISTORY_FUNCTIONS:
                return self._history(e, scope)
            hint = did_you_mean(e.fn, CALLABLE)
            if e.fn in CONSTANTS:
                hint = f"{e.fn} takes no arguments: write {e.fn}"
            return self._fail(e, f"unknown function {e.fn}", hint)
        if fn.attribute:  # has(contact.age): the attribute is not evaluated, so it may be null
            if len(e.args) != fn.arity:
                return self._fail(e, _arity(fn, len(e.args)))
            arg = self.check(e.args[0], scope)
            if not isinstance(arg, n.Attr) and arg.type != ERROR:
                return self._fail(e.args[0], f"{fn.name} takes {fn.takes}")
            return self._typed(e, fn.result(arg.type), fn.null, args=(arg,))
        args = tuple(self.check(a, scope) for a in e.args)
        e = n.evolve(e, args=args)
        if len(args) != fn.arity:
            return self._fail(e, _arity(fn, len(args)))
        if any(a.type == ERROR for a in args):
            return self._typed(e, ERROR, True)
        types = [a.type for a in args]
        result = fn.result(*types)
        if result is None:
            return self._fail(e, f"{fn.name} takes {fn.takes}, not {', '.join(map(str, types))}")
        if fn.check is not None and (problem := fn.check(args)) is not None:
            index, message, hint = problem
            return self._fail(args[index], message, hint)
        if fn.widen:
            args = tuple(_widen(a, result) for a in args)
        nullable = any(a.nullable for a in args) if fn.null is None else fn.null
        return self._typed(e, result, nullable, args=args)

    def _history(self, e, scope):
        fn = e.fn
        if len(e.args) != 2:
            return self._fail(e, f"{fn} takes an offer, category or group and a duration, "
                                 f"like {fn}(gold_upgrade, 30d)")
        ref, window = e.args
        if isinstance(ref, n.Name):
            name = ref.name
        elif isinstance(ref, n.Path):
            name = ".".join(ref.parts)
        else:
            return self._fail(ref, f"the first argument of {fn} names an offer, category or group")
        if name in self.offer_decls:
            kind = "offer"
        elif name in self.category_decls:
            kind = "category"
        elif name in self.group_decls and isinstance(ref, n.Name):
            kind = "group"
        else:
            return self._fail(ref, f"unknown offer, category or group {name}",
                              did_you_mean(name, list(self.offer_decls) + list(self.category_decls)
                                           + list(self.group_decls)))
        if not (isinstance(window, n.Literal) and window.lit_type == DURATION):
            return self._fail(window, f"the second argument of {fn} is a duration, like 30d")
        return n.History(fn, kind, name, window.value, "contact", span=e.span, type=INT,
                         nullable=False, depth=e.depth)


def _lets_used(e: n.Expr, lets) -> list[str]:
    """The lets an expression names, in the order checking it meets them (not the offers
    and categories history functions count, nor the arguments of unknown functions)."""
    out, stack = [], [e]
    while stack:
        x = stack.pop()
        if isinstance(x, n.Name) and x.name in lets and x.name not in out:
            out.append(x.name)
        elif isinstance(x, n.Call) and x.fn not in FUNCTIONS:
            continue
        stack.extend(reversed(n.children(x)))
    return out


def _arity(fn: Function, given: int) -> str:
    return f"{fn.name} takes {fn.arity} argument{'s' if fn.arity > 1 else ''}, not {given}"


def _widen(e: n.Expr, t: Type) -> n.Expr:
    """An int where a float is expected (both sides of ?? or if/else, min, max) becomes a
    float, so the value has the type the checker gave the whole expression."""
    if t == FLOAT and e.type == INT:
        if isinstance(e, n.Literal):
            return n.Literal(float(e.value), FLOAT, span=e.span, type=FLOAT, nullable=False)
        return n.Unary("float", e, span=e.span, type=FLOAT, nullable=e.nullable, depth=e.depth)
    return e
