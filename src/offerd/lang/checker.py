"""AST → checked catalog. Reports every error at once, with a hint where one helps."""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from ..domain import STATUSES, fmt_duration
from . import nodes as n
from .catalog import Catalog, CategoryDef, Check, OfferDef, RuleRef, SpaceDef
from .diagnostics import CatalogError, Reporter, Span, did_you_mean
from .functions import CALLABLE, FUNCTIONS, HISTORY_FUNCTIONS, Function
from .types import (BOOL, DATE, DURATION, ERROR, FLOAT, INT, LIST_ELEMS, ORDERED, SCALARS, STRING,
                    TIME, Type, list_of, unify)

MAX_OFFERS = 50_000
CONSTANTS = ("now", "today", "propensity")
RENDERABLE = ("string", "int", "float", "bool", "date")


def catalog_hash(sources: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(sources):
        data = sources[name].encode("utf-8", "surrogatepass")
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


@dataclass
class _Scope:
    """Where an expression is checked: it decides what `propensity` and lets may mean."""

    owner: str
    offer: str | None = None


class Checker:
    def __init__(self, modules: list[n.Module], sources: dict[str, str],
                 today: datetime.date | None = None):
        self.modules = modules
        self.sources = sources
        self.today = today
        self.r = Reporter()
        self.contact: dict[str, Type] = {}
        self.context: dict[str, Type] = {}
        self.let_decls: dict[str, n.Let] = {}
        self.lets: dict[str, n.Expr] = {}
        self.let_order: list[str] = []
        self.let_stack: list[str] = []
        self.let_cycles: set[tuple[str, str]] = set()  # (let, let it uses): cycles already reported
        self.used_lets: set[str] = set()
        self.space_decls: dict[str, n.Space] = {}
        self.category_decls: dict[str, n.Category] = {}
        self.offer_decls: dict[str, n.Offer] = {}
        self.offer_spaces: dict[str, tuple[str, ...]] = {}

    # --- entry -------------------------------------------------------------------------

    def run(self) -> Catalog:
        timezone = self._collect()
        if len(self.offer_decls) > MAX_OFFERS:
            first = list(self.offer_decls.values())[MAX_OFFERS]
            self.r.error(first.span, f"catalog has {len(self.offer_decls)} offers; the limit is {MAX_OFFERS}")
            raise CatalogError(self.r.diagnostics, self.sources)
        for name in self._let_order():
            self._let(name)
        categories = {c.name: self._category(c) for c in self.category_decls.values()}
        for o in self.offer_decls.values():
            self.offer_spaces[o.name] = self._offer_spaces(o)
        spaces = {s.name: self._space(s) for s in self.space_decls.values()}
        offers = tuple(self._offer(o, i) for i, o in enumerate(self.offer_decls.values()))
        for name, let in self.let_decls.items():
            if name not in self.used_lets:
                self.r.warning(let.span, f"let {name} is never used")
        order = {m.file: i for i, m in enumerate(self.modules)}
        self.r.diagnostics.sort(key=lambda d: (order.get(d.span.file, -1), d.span.line, d.span.col))
        if self.r.has_errors:
            raise CatalogError(self.r.diagnostics, self.sources)
        return Catalog(
            timezone=timezone, contact=self.contact, context=self.context, lets=self.lets,
            let_order=tuple(self.let_order), spaces=spaces, categories=categories,
            offers=offers, sources=self.sources, hash=catalog_hash(self.sources),
            diagnostics=tuple(self.r.diagnostics))

    # --- declarations ------------------------------------------------------------------

    def _collect(self) -> str:
        timezone, tz_span = "UTC", None
        seen: dict[tuple[str, str], Span] = {}

        def unique(kind: str, name: str, span: Span) -> bool:
            first = seen.get((kind, name))
            if first is not None:
                self.r.error(span, f"{kind} {name} is declared twice; first at {first}")
                return False
            seen[(kind, name)] = span
            return True

        for module in self.modules:
            for d in module.decls:
                if isinstance(d, n.Timezone):
                    if tz_span is not None:
                        self.r.error(d.span, f"timezone is declared twice; first at {tz_span}")
                    timezone, tz_span = d.name, d.span
                    self._check_timezone(d)
                elif isinstance(d, n.Schema):
                    if d.name not in ("contact", "context"):
                        self.r.error(d.span, f"unknown schema {d.name}; schemas are contact and context",
                                     did_you_mean(d.name, ("contact", "context")))
                    elif unique("schema", d.name, d.span):
                        self._schema(d)
                elif isinstance(d, n.Let) and unique("let", d.name, d.span):
                    self.let_decls[d.name] = d
                elif isinstance(d, n.Space) and unique("space", d.name, d.span):
                    self.space_decls[d.name] = d
                elif isinstance(d, n.Category) and unique("category", d.name, d.span):
                    self.category_decls[d.name] = d
                elif isinstance(d, n.Offer) and unique("offer", d.name, d.span):
                    self.offer_decls[d.name] = d
        return timezone

    def _check_timezone(self, d: n.Timezone) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(d.name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zones = zoneinfo.available_timezones()
            self.r.error(d.span, f"unknown timezone {d.name!r}",
                         did_you_mean(d.name, zones) or 'use an IANA name such as "Europe/Paris"')

    def _schema(self, d: n.Schema) -> None:
        fields = self.contact if d.name == "contact" else self.context
        for f in d.fields:
            if f.name in fields:
                self.r.error(f.span, f"attribute {d.name}.{f.name} is declared twice")
                continue
            fields[f.name] = self._type(f.type)

    def _type(self, t: n.TypeRef) -> Type:
        if t.name in SCALARS and t.arg is None:
            return SCALARS[t.name]
        if t.name == "set" and t.arg is not None and t.arg.name == "string" and t.arg.arg is None:
            return Type("set", STRING)
        if t.name == "list" and t.arg is not None and t.arg.name in LIST_ELEMS and t.arg.arg is None:
            return list_of(SCALARS[t.arg.name])
        known = list(SCALARS) + ["set<string>"] + [f"list<{e}>" for e in LIST_ELEMS]
        self.r.error(t.span, f"unknown type {_typeref(t)}; types are {', '.join(known)}",
                     did_you_mean(_typeref(t), known))
        return ERROR

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
        e = self._expr(self.let_decls[name].expr, _Scope(f"let {name}"))
        self.let_stack.pop()
        self.lets[name] = e
        self.let_order.append(name)
        return e

    def _category(self, c: n.Category) -> CategoryDef:
        parent = c.name.rsplit(".", 1)[0] if "." in c.name else None
        if parent is not None and parent not in self.category_decls:
            self.r.error(c.span, f"category {c.name} has no parent: category {parent} is not declared",
                         f"declare `category {parent} {{ }}`")
        owner = f"category {c.name}"
        eligible, limits = [], []
        for item in c.items:
            if isinstance(item, n.Rule):
                eligible.append(self._rule(item, _Scope(owner), owner))
            elif isinstance(item, (n.Cap, n.Suppress)):
                limits.append(self._limit(item, owner, "category", c.name))
        return CategoryDef(c.name, parent, tuple(eligible), tuple(limits), c.span)

    def _space(self, s: n.Space) -> SpaceDef:
        owner = f"space {s.name}"
        once: dict[str, Span] = {}
        channel, limit, fallback, fields, caps = "inbound", 1, None, None, []
        for item in s.items:
            kind = item.kind if isinstance(item, n.Clause) else type(item).__name__.lower()
            if kind != "cap" and self._repeated(once, kind, item.span, owner):
                continue
            if isinstance(item, n.Clause) and kind == "channel":
                channel = item.value
                if channel not in ("inbound", "outbound"):
                    self.r.error(item.value_spans[0], f"unknown channel {channel}; channels are inbound and outbound",
                                 did_you_mean(channel, ("inbound", "outbound")))
            elif isinstance(item, n.Clause) and kind == "limit":
                limit = item.value
                if limit < 1:
                    self.r.error(item.value_spans[0], "a space's limit must be at least 1")
            elif isinstance(item, n.Clause) and kind == "fallback":
                fallback = item.value
                span = item.value_spans[0]
                if fallback not in self.offer_decls:
                    self.r.error(span, f"unknown offer {fallback}", did_you_mean(fallback, self.offer_decls))
                elif s.name not in self.offer_spaces.get(fallback, ()):
                    self.r.error(span, f"fallback {fallback} is not in space {s.name}",
                                 f"add {s.name} to the `spaces` of offer {fallback}")
            elif isinstance(item, n.Fields):
                fields = self._fields(item, owner)
            elif isinstance(item, n.Cap):
                caps.append(self._limit(item, owner, "space", s.name))
        return SpaceDef(s.name, channel, limit, fallback, tuple(caps), fields, s.span)

    def _fields(self, item: n.Fields, owner: str):
        seen = set()
        for f in item.specs:
            if f.name in seen:
                self.r.error(f.span, f"field {f.name} is listed twice in {owner}")
            seen.add(f.name)
        return item.specs

    def _repeated(self, once: dict[str, Span], kind: str, span: Span, owner: str) -> bool:
        if kind in once:
            self.r.error(span, f"{owner} has two `{kind}` clauses; first at {once[kind]}")
            return True
        once[kind] = span
        return False

    def _limit(self, item, owner: str, ref_kind: str, ref: str) -> Check:
        status = item.status or "proposed"
        if status not in STATUSES:
            self.r.error(item.status_span, f"unknown status {status}; statuses are {', '.join(STATUSES)}",
                         did_you_mean(status, STATUSES))
        if isinstance(item, n.Suppress):
            text = f"suppress {fmt_duration(item.window)} after {status}"
            history = n.History(status, ref_kind, ref, item.window, "contact", type=INT, nullable=False)
            test = n.Binary("==", history, _int(0), type=BOOL, nullable=False)
            return Check(RuleRef("suppress", owner, text, item.span), test)
        words = [f"cap {item.limit}"] + ([status] if item.status else [])
        words.append("per contact" if item.scope == "contact" else "total")
        if item.window is not None:
            words.append(f"per {fmt_duration(item.window)}")
        history = n.History(status, ref_kind, ref, item.window, item.scope, type=INT, nullable=False)
        test = n.Binary("<", history, _int(item.limit), type=BOOL, nullable=False)
        return Check(RuleRef("cap", owner, " ".join(words), item.span), test)

    def _offer_spaces(self, o: n.Offer) -> tuple[str, ...]:
        spaces: list[str] = []
        for item in o.items:
            if isinstance(item, n.Clause) and item.kind == "spaces":
                for name, span in zip(item.value, item.value_spans):
                    if name not in self.space_decls:
                        self.r.error(span, f"unknown space {name}", did_you_mean(name, self.space_decls))
                    elif name in spaces:
                        self.r.error(span, f"space {name} is listed twice")
                    else:
                        spaces.append(name)
        return tuple(spaces)

    def _offer(self, o: n.Offer, index: int) -> OfferDef:
        owner = f"offer {o.name}"
        scope = _Scope(owner, offer=o.name)
        spaces = self.offer_spaces[o.name]
        once: dict[str, Span] = {}
        category, chain, themes, valid, valid_rule = None, (), (), None, None
        eligible, eligible_in, weight, weight_in, limits, content = [], {}, None, {}, [], {}
        for item in o.items:
            if isinstance(item, n.Clause):
                if self._repeated(once, item.kind, item.span, owner):
                    continue
                if item.kind == "category":
                    category = item.value
                    if category not in self.category_decls:
                        self.r.error(item.value_spans[0], f"unknown category {category}",
                                     did_you_mean(category, self.category_decls))
                    else:
                        chain = _chain(category)
                elif item.kind == "themes":
                    themes = item.value
                elif item.kind == "valid":
                    valid = item.value
                    valid_rule = RuleRef("valid", owner, f"valid {valid[0]} to {valid[1]}", item.span)
                    if valid[0] > valid[1]:
                        self.r.error(item.span, f"valid range ends ({valid[1]}) before it starts ({valid[0]})")
                    elif self.today is not None and valid[1] < self.today:
                        self.r.warning(item.span, f"offer {o.name} stopped being valid on {valid[1]}")
            elif isinstance(item, n.Rule):
                if item.space is not None and not self._offer_in(o.name, item.space, item.space_span, spaces):
                    continue
                check = self._rule(item, scope, owner)
                if item.kind == "eligible" and item.space is None:
                    eligible.append(check)
                elif item.kind == "eligible":
                    eligible_in.setdefault(item.space, []).append(check)
                elif item.space is None:
                    if not self._repeated(once, "weight", item.span, owner):
                        weight = check
                elif not self._repeated(once, f"weight in {item.space}", item.span, owner):
                    weight_in[item.space] = check
            elif isinstance(item, (n.Cap, n.Suppress)):
                limits.append(self._limit(item, owner, "offer", o.name))
            elif isinstance(item, n.Content):
                if self._repeated(once, f"content {item.space}", item.span, owner):
                    continue
                if self._offer_in(o.name, item.space, item.space_span, spaces):
                    content[item.space] = self._content(item, scope)
        for space in spaces:
            self._required_fields(o, space, content.get(space, ()))
        if not spaces:
            self.r.warning(o.span, f"offer {o.name} is in no space, so it is never proposed",
                           "add a `spaces` clause")
        if weight is None:
            weight = Check(RuleRef("weight", owner, "weight 0 (default)", o.span), _int(0))
        return OfferDef(
            name=o.name, index=index, span=o.span, category=category, chain=chain, themes=themes,
            spaces=spaces, valid=valid, valid_rule=valid_rule, eligible=tuple(eligible),
            eligible_in={k: tuple(v) for k, v in eligible_in.items()}, weight=weight,
            weight_in=weight_in, limits=tuple(limits), content=content)

    def _offer_in(self, offer: str, space: str, span: Span, spaces: tuple[str, ...]) -> bool:
        if space in spaces:
            return True
        if space not in self.space_decls:
            self.r.error(span, f"unknown space {space}", did_you_mean(space, self.space_decls))
        else:
            self.r.error(span, f"offer {offer} is not in space {space}", f"add {space} to its `spaces`")
        return False

    def _rule(self, item: n.Rule, scope: _Scope, owner: str) -> Check:
        e = self._expr(item.expr, scope)
        where = f" in {item.space}" if item.space else ""
        if item.kind == "eligible":
            if e.type not in (BOOL, ERROR):
                self.r.error(e.span, f"an eligible rule must be a bool, not {e.type}")
        elif not (e.type.numeric or e.type == ERROR):
            self.r.error(e.span, f"a weight must be a number, not {e.type}")
        return Check(RuleRef(item.kind, owner, f"{item.kind}{where}", item.span), e)

    def _content(self, item: n.Content, scope: _Scope):
        fields, seen = [], set()
        spec = self.space_decls[item.space]
        allowed = next((i.specs for i in spec.items if isinstance(i, n.Fields)), None)
        for f in item.fields:
            if f.name in seen:
                self.r.error(f.span, f"content field {f.name} is given twice")
                continue
            seen.add(f.name)
            if allowed is not None and f.name not in {a.name for a in allowed}:
                self.r.error(f.span, f"space {item.space} has no field {f.name}",
                             did_you_mean(f.name, [a.name for a in allowed]))
            parts = []
            for part in f.value.parts:
                if isinstance(part, n.Expr):
                    part = self._expr(part, scope)
                    if part.type.name not in RENDERABLE and part.type != ERROR:
                        self.r.error(part.span, f"cannot render a {part.type} in content",
                                     "render one value, e.g. len(...) or an if/then/else")
                parts.append(part)
            fields.append((f.name, n.Template(tuple(parts), span=f.value.span)))
        return tuple(fields)

    def _required_fields(self, o: n.Offer, space: str, given) -> None:
        spec = self.space_decls[space]
        allowed = next((i.specs for i in spec.items if isinstance(i, n.Fields)), None)
        names = {name for name, _ in given}
        missing = [f.name for f in allowed or () if not f.optional and f.name not in names]
        if missing:
            span = next((c.span for c in o.items if isinstance(c, n.Content) and c.space == space), o.span)
            self.r.error(span, f"offer {o.name} gives no {', '.join(missing)} for space {space}",
                         f"space {space} requires: {', '.join(f.name for f in allowed if not f.optional)}")

    # --- expressions -------------------------------------------------------------------

    def _expr(self, e: n.Expr, scope: _Scope) -> n.Expr:
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
        items = tuple(self._expr(i, scope) for i in e.items)
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
        x = self._expr(e.operand, scope)
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
        left, right = self._expr(e.left, scope), self._expr(e.right, scope)
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
        test, then, orelse = (self._expr(x, scope) for x in (e.test, e.then, e.orelse))
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
            arg = self._expr(e.args[0], scope)
            if not isinstance(arg, n.Attr) and arg.type != ERROR:
                return self._fail(e.args[0], f"{fn.name} takes {fn.takes}")
            return self._typed(e, fn.result(arg.type), fn.null, args=(arg,))
        args = tuple(self._expr(a, scope) for a in e.args)
        e = n.evolve(e, args=args)
        if len(args) != fn.arity:
            return self._fail(e, _arity(fn, len(args)))
        if any(a.type == ERROR for a in args):
            return self._typed(e, ERROR, True)
        types = [a.type for a in args]
        result = fn.result(*types)
        if result is None:
            return self._fail(e, f"{fn.name} takes {fn.takes}, not {', '.join(map(str, types))}")
        if fn.widen:
            args = tuple(_widen(a, result) for a in args)
        nullable = any(a.nullable for a in args) if fn.null is None else fn.null
        return self._typed(e, result, nullable, args=args)

    def _history(self, e, scope):
        fn = e.fn
        if len(e.args) != 2:
            return self._fail(e, f"{fn} takes an offer or category and a duration, like {fn}(gold_upgrade, 30d)")
        ref, window = e.args
        if isinstance(ref, n.Name):
            name = ref.name
        elif isinstance(ref, n.Path):
            name = ".".join(ref.parts)
        else:
            return self._fail(ref, f"the first argument of {fn} names an offer or category")
        if name in self.offer_decls:
            kind = "offer"
        elif name in self.category_decls:
            kind = "category"
        else:
            return self._fail(ref, f"unknown offer or category {name}",
                              did_you_mean(name, list(self.offer_decls) + list(self.category_decls)))
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


def _int(value: int) -> n.Literal:
    return n.Literal(value, INT, type=INT, nullable=False)


def _chain(category: str) -> tuple[str, ...]:
    parts = category.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _typeref(t: n.TypeRef) -> str:
    return f"{t.name}<{_typeref(t.arg)}>" if t.arg else t.name
