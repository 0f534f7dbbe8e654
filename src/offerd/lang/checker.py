"""AST → checked catalog: the declarations (schemas, lets, spaces, categories, groups, offers) and
their clauses, each error reported, with a hint where one helps; expressions are typed by
lang/expressions.py."""
from __future__ import annotations

import datetime

from ..domain import STATUSES, catalog_hash, fmt_duration
from ..periods import KINDS
from . import nodes as n
from .catalog import (CONTACT_ID, Catalog, CategoryDef, Check, DecisionCap, Domain, GroupDef, OfferDef, RuleRef,
                      SpaceDef, valid_local)
from .diagnostics import CatalogError, Reporter, Span, did_you_mean
from .domains import build as build_domain
from .expressions import Expressions, Scope
from .types import BOOL, ERROR, INT, LIST_ELEMS, SCALARS, STRING, Type, list_of

MAX_OFFERS = 50_000
RENDERABLE = ("string", "int", "float", "bool", "date")


class Checker:
    def __init__(self, modules: list[n.Module], sources: dict[str, str],
                 today: datetime.date | None = None):
        self.modules = modules
        self.sources = sources
        self.today = today
        self.r = Reporter()
        self.contact: dict[str, Type] = {}
        self.context: dict[str, Type] = {}
        self.domains: dict[tuple[str, str], Domain] = {}
        self.let_decls: dict[str, n.Let] = {}
        self.space_decls: dict[str, n.Space] = {}
        self.category_decls: dict[str, n.Category] = {}
        self.group_decls: dict[str, n.Group] = {}
        self.offer_decls: dict[str, n.Offer] = {}
        self.offer_spaces: dict[str, tuple[str, ...]] = {}
        # names resolve against the declarations above, once _collect has filled them
        self.exprs = Expressions(self.r, self.contact, self.context, self.let_decls, self.offer_decls,
                                 self.category_decls, self.group_decls, self.domains)

    # --- entry -------------------------------------------------------------------------

    def run(self) -> Catalog:
        timezone = self._collect()
        if len(self.offer_decls) > MAX_OFFERS:
            first = list(self.offer_decls.values())[MAX_OFFERS]
            self.r.error(first.span, f"catalog has {len(self.offer_decls)} offers; the limit is {MAX_OFFERS}")
            raise CatalogError(self.r.diagnostics, self.sources)
        self.exprs.check_lets()
        categories = {c.name: self._category(c) for c in self.category_decls.values()}
        groups = {g.name: self._group(g) for g in self.group_decls.values()}
        for o in self.offer_decls.values():
            self.offer_spaces[o.name] = self._offer_spaces(o)
        spaces = {s.name: self._space(s) for s in self.space_decls.values()}
        offers = tuple(self._offer(o, i) for i, o in enumerate(self.offer_decls.values()))
        for name, let in self.let_decls.items():
            if name not in self.exprs.used_lets:
                self.r.warning(let.span, f"let {name} is never used")
        order = {m.file: i for i, m in enumerate(self.modules)}
        self.r.diagnostics.sort(key=lambda d: (order.get(d.span.file, -1), d.span.line, d.span.col))
        if self.r.has_errors:
            raise CatalogError(self.r.diagnostics, self.sources)
        return Catalog(
            timezone=timezone, contact=self.contact, context=self.context, lets=self.exprs.lets,
            let_order=tuple(self.exprs.let_order), spaces=spaces, categories=categories,
            offers=offers, sources=self.sources, hash=catalog_hash(self.sources),
            diagnostics=tuple(self.r.diagnostics), groups=groups, domains=self.domains)

    def expression(self, e: n.Expr, offer: str | None = None) -> n.Expr:
        """One expression typed against the declarations, as if written in offer `offer` (tests,
        tools); afterwards `self.r` holds its errors alone."""
        self._collect()
        self.exprs.check_lets()
        self.r = self.exprs.r = Reporter()
        return self.exprs.check(e, Scope("expression", offer=offer))

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
                elif isinstance(d, n.Group) and unique("group", d.name, d.span):
                    self.group_decls[d.name] = d
                elif isinstance(d, n.Offer) and unique("offer", d.name, d.span):
                    self.offer_decls[d.name] = d
        for g in self.group_decls.values():  # history functions name groups as they name offers
            for kind, decls in (("offer", self.offer_decls), ("category", self.category_decls)):
                if g.name in decls:
                    self.r.error(g.span, f"group {g.name} has the name of {kind} {g.name} (declared at "
                                 f"{decls[g.name].span}); offers, categories and groups need distinct names",
                                 "rename the group")
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
            if d.name == "contact" and f.name == CONTACT_ID:
                self.r.error(f.span, "contact.id is the request's contact id; a schema cannot declare it",
                             "rename the attribute (say, customer_id); rules read the id as contact.id")
                continue
            if f.name in fields:
                self.r.error(f.span, f"attribute {d.name}.{f.name} is declared twice")
                continue
            fields[f.name] = self._type(f.type)
            if f.domain is not None:
                domain = build_domain(f.domain, fields[f.name], f"{d.name}.{f.name}", self.r)
                if domain is not None:
                    self.domains[(d.name, f.name)] = domain

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

    def _category(self, c: n.Category) -> CategoryDef:
        parent = c.name.rsplit(".", 1)[0] if "." in c.name else None
        if parent is not None and parent not in self.category_decls:
            self.r.error(c.span, f"category {c.name} has no parent: category {parent} is not declared",
                         f"declare `category {parent} {{ }}`")
        owner = f"category {c.name}"
        eligible, eligible_in, limits, in_decision = self._rules_and_limits(c.items, owner, "category", c.name)
        return CategoryDef(c.name, parent, eligible, limits, c.span, eligible_in, in_decision)

    def _group(self, g: n.Group) -> GroupDef:
        owner = f"group {g.name}"
        eligible, eligible_in, limits, in_decision = self._rules_and_limits(g.items, owner, "group", g.name)
        return GroupDef(g.name, eligible, eligible_in, limits, g.span, in_decision)

    def _rules_and_limits(self, items, owner: str, kind: str, name: str):
        """A category's or group's eligible rules (those for one space apart), caps and
        suppressions, and caps per decision. Rules here have no offer: no `propensity`."""
        eligible, eligible_in, limits, in_decision = [], {}, [], []
        for item in items:
            if isinstance(item, n.Rule):
                check = self._rule(item, Scope(owner), owner)
                if item.space is None:
                    eligible.append(check)
                elif item.space not in self.space_decls:
                    self.r.error(item.space_span, f"unknown space {item.space}",
                                 did_you_mean(item.space, self.space_decls))
                else:
                    eligible_in.setdefault(item.space, []).append(check)
            elif isinstance(item, (n.Cap, n.Suppress)):
                got = self._limit(item, owner, kind, name)
                if got is not None:  # None: refused, its error reported
                    (in_decision if isinstance(got, DecisionCap) else limits).append(got)
        return tuple(eligible), {k: tuple(v) for k, v in eligible_in.items()}, tuple(limits), tuple(in_decision)

    def _space(self, s: n.Space) -> SpaceDef:
        owner = f"space {s.name}"
        once: dict[str, Span] = {}
        channel, limit, fallback, fields, caps, eligible, in_decision = "inbound", 1, None, None, [], [], []
        for item in s.items:
            kind = item.kind if isinstance(item, n.Clause) else type(item).__name__.lower()
            if kind not in ("cap", "rule") and self._repeated(once, kind, item.span, owner):
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
            elif isinstance(item, n.Rule):  # no offer here: `propensity` is refused
                eligible.append(self._rule(item, Scope(owner), owner))
            elif isinstance(item, n.Cap):
                got = self._limit(item, owner, "space", s.name)
                if isinstance(got, DecisionCap):
                    in_decision.append(got)
                elif got is not None:
                    caps.append(got)
        return SpaceDef(s.name, channel, limit, fallback, tuple(caps), fields, s.span, tuple(eligible),
                        tuple(in_decision))

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

    def _limit(self, item, owner: str, ref_kind: str, ref: str) -> Check | DecisionCap | None:
        """A cap or suppression as a check on history; a cap per decision as a DecisionCap
        (None: refused, its error reported)."""
        if isinstance(item, n.Cap) and item.scope == "decision":
            return self._decision_cap(item, owner, ref_kind, ref)
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
        if item.calendar is not None:
            words.append(f"per calendar {item.calendar}")
            if item.calendar not in KINDS:
                self.r.error(item.calendar_span, f"unknown calendar period {item.calendar}; periods are "
                             f"{', '.join(KINDS)}", did_you_mean(item.calendar, KINDS) or "or a duration: per 7d")
        history = n.History(status, ref_kind, ref, item.window, item.scope, item.calendar, type=INT, nullable=False)
        test = n.Binary("<", history, _int(item.limit), type=BOOL, nullable=False)
        return Check(RuleRef("cap", owner, " ".join(words), item.span), test)

    def _decision_cap(self, item: n.Cap, owner: str, ref_kind: str, ref: str) -> DecisionCap | None:
        if ref_kind == "offer":
            self.r.error(item.span, "an offer cannot have a cap per decision",
                         "an offer is proposed at most once per decision; put the cap on a space, "
                         "category or group")
            return None
        if item.status is not None:
            self.r.error(item.status_span, f"a cap per decision counts the offers of one answer; "
                         f"it takes no status ({item.status})", f"write `cap {item.limit} per decision`")
            return None
        if item.limit < 1:
            self.r.error(item.span, "a cap per decision must be at least 1",
                         "to leave out every offer, remove them from the space")
            return None
        return DecisionCap(RuleRef("cap", owner, f"cap {item.limit} per decision", item.span), ref_kind, ref,
                           item.limit)

    def _offer_groups(self, item: n.Clause) -> tuple[str, ...]:
        groups: list[str] = []
        for name, span in zip(item.value, item.value_spans):
            if name not in self.group_decls:
                self.r.error(span, f"unknown group {name}", did_you_mean(name, self.group_decls)
                             or f"declare `group {name} {{ }}`")
            elif name in groups:
                self.r.error(span, f"group {name} is listed twice")
            else:
                groups.append(name)
        return tuple(groups)

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
        scope = Scope(owner, offer=o.name)
        spaces = self.offer_spaces[o.name]
        once: dict[str, Span] = {}
        category, chain, themes, valid, valid_rule, groups = None, (), (), None, None, ()
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
                elif item.kind == "groups":
                    groups = self._offer_groups(item)
                elif item.kind == "themes":
                    themes = item.value
                elif item.kind == "valid":
                    start, end, written = item.value
                    valid = (start, end)
                    valid_rule = RuleRef("valid", owner, f"valid {written}", item.span)
                    first, last = valid_local(valid)
                    start_text, end_text = written.split(" to ")
                    if first > last:
                        self.r.error(item.span, f"valid range ends ({end_text}) before it starts ({start_text})")
                    elif self.today is not None and last.date() < self.today:
                        self.r.warning(item.span, f"offer {o.name} stopped being valid on {end_text}")
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
                got = self._limit(item, owner, "offer", o.name)
                if got is not None:
                    limits.append(got)
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
            weight_in=weight_in, limits=tuple(limits), content=content, groups=groups)

    def _offer_in(self, offer: str, space: str, span: Span, spaces: tuple[str, ...]) -> bool:
        if space in spaces:
            return True
        if space not in self.space_decls:
            self.r.error(span, f"unknown space {space}", did_you_mean(space, self.space_decls))
        else:
            self.r.error(span, f"offer {offer} is not in space {space}", f"add {space} to its `spaces`")
        return False

    def _rule(self, item: n.Rule, scope: Scope, owner: str) -> Check:
        e = self.exprs.check(item.expr, scope)
        where = f" in {item.space}" if item.space else ""
        if item.kind == "eligible":
            if e.type not in (BOOL, ERROR):
                self.r.error(e.span, f"an eligible rule must be a bool, not {e.type}")
        elif not (e.type.numeric or e.type == ERROR):
            self.r.error(e.span, f"a weight must be a number, not {e.type}")
        return Check(RuleRef(item.kind, owner, f"{item.kind}{where}", item.span), e)

    def _content(self, item: n.Content, scope: Scope):
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
                    part = self.exprs.check(part, scope)
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

def _int(value: int) -> n.Literal:
    return n.Literal(value, INT, type=INT, nullable=False)


def _chain(category: str) -> tuple[str, ...]:
    parts = category.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _typeref(t: n.TypeRef) -> str:
    return f"{t.name}<{_typeref(t.arg)}>" if t.arg else t.name
