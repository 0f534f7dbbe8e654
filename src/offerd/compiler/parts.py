"""A space's generated parts, as Python source: `_evaluate`, `_explain`, `_top`, the renderers.

Each part is a module of its own, written from the space's SpacePlan (shared by all its
parts) with one Frame per generated function.
"""
from __future__ import annotations

from ..lang.catalog import Catalog, has_time, valid_instants
from .analysis import OfferPlan, SpacePlan
from .expressions import ARGS, Constants, ExprCodegen, Frame, Writer, comment


class SpaceCodegen:
    """One generated module of a space: `evaluate_source()`, `evaluate_source(explain=True)`,
    `evaluate_source(top=True)` or `render_source()`. `consts` is what the module must be
    compiled with; use one SpaceCodegen per module, and share the plan."""

    def __init__(self, catalog: Catalog, space: str, plan: SpacePlan):
        self.catalog = catalog
        self.space = space
        self.plan = plan
        self.constants = Constants()
        self.consts = self.constants.values

    def _codegen(self) -> ExprCodegen:
        """A new generated function's expression writer, in a frame of its own."""
        return ExprCodegen(self.catalog, self.constants, Frame(), self.space)

    def evaluate_source(self, explain: bool = False, top: bool = False) -> str:
        """`_evaluate(...)` → [(offer position, weight)] of the eligible offers; with
        explain, `_explain(...)` → (eligible, [(offer position, rule index)]); with top,
        `_top(need, ...)` → (eligible, complete): the offers by their weight's upper bound,
        highest first, stopping (complete False) once `need` eligible ones weigh more than
        any offer left could, so those are the `need` best of the space."""
        plan, ex = self.plan, self._codegen()
        shared_lines = ["_tw = ()", "_tn = 0"] if top else []
        reads = []  # with top: the shared names each shared line reads
        for e in plan.shared:
            ex.hits = set() if top else None
            shared_lines.append(ex.share(e))
            reads.append((ex.frame.shared[e], ex.hits))
        body = Writer(level=1)
        body.write("_el = []")
        many = len(plan.offers) > 2  # binding append pays off only when it is called often
        if many:
            body.write("_ap = _el.append")
        ap = "_ap" if many else "_el.append"
        lazy = frozenset()
        if explain:
            body.write("_fails = []")
            body.write("_fa = _fails.append")
            for o in plan.offers:
                body.write(f"# offer {comment(o.offer.name)}")
                self._explain_offer(body, ex, o, ap)
            body.write("return (_el, _fails)")
        else:
            lazy = plan.lazy
            codes, named = [], []  # in declaration order, as the names go; with top, the shared names each reads
            for o in plan.offers:
                ex.hits = set() if top else None
                codes.append(self._fast_codes(ex, o))
                named.append(ex.hits)
            ex.hits = None
            if top:
                later = self._placed(shared_lines, reads, named)
                self._top_body(body, ex, codes, ap, later)
                body.write("return (_el, not _skip)")
            else:
                for o, code in zip(plan.offers, codes):
                    body.write(f"# offer {comment(o.offer.name)}")
                    self._fast_offer(body, ex, o, code, ap)
                body.write("return _el")
        w = Writer()
        w.write(f"# offer space {comment(self.space)}, catalog {self.catalog.hash[:12]}")
        name, args = ("_explain", ARGS) if explain else ("_top", "_need, " + ARGS) if top else ("_evaluate", ARGS)
        w.write(f"def {name}({args}):")
        w.indent()
        ex.prelude(w, body, shared_lines, lazy)
        return w.source()

    def _placed(self, lines: list[str], reads: list[tuple[str, set]], named: list[set]) -> dict[int, list[str]]:
        """`_top` runs its sections of bounded offers only while they can still win, so a
        shared value only later sections read is computed at the start of the first of them:
        section k → its lines, taken out of `lines` (the rest stay before the offers). The
        offers with no bound run whatever the sections did: what they read stays before."""
        plan = self.plan
        section, k = {}, 0  # offer position → its section (0: the first, always run)
        for i, o in enumerate(plan.bounded):
            section[o.pos] = k
            if i in plan.stops:
                k += 1
        first: dict[str, int] = {}  # shared name → the first section that reads it (0: before the offers)
        for pos, names in enumerate(named):
            for name in names:
                first[name] = min(first.get(name, k), section.get(pos, 0))
        at = len(lines) - len(plan.shared)  # where the shared values' lines start
        later: dict[int, list[str]] = {}
        for j in range(len(plan.shared) - 1, -1, -1):  # readers before what they read: children come first
            name, children = reads[j]
            where = first.get(name, 0)
            for child in children:  # what this value reads is needed no later than it
                first[child] = min(first.get(child, where), where)
            if where > 0:
                later.setdefault(where, []).append(lines.pop(at + j))
        for section in later.values():
            section.reverse()  # taken last first: back to the order they were written in
        return later

    def _top_body(self, body: Writer, ex: ExprCodegen, codes, ap: str, later: dict[int, list[str]]) -> None:
        """`_top`: first the offers whose weight has an upper bound, highest bound first, in
        sections; a section runs only while fewer than `need` eligible offers weigh more
        than its first offer's bound. Then the offers with no bound: those whose weight
        reads no history have it computed first, and skip their rules when it is below the
        `need`-th best weight found. `_skip` records whether any offer was left out."""
        plan = self.plan
        bounded, stops = plan.bounded, plan.stops
        body.write("_go = True")
        base, section = body.level, 0
        for k, o in enumerate(bounded):
            body.write(f"# offer {comment(o.offer.name)}, weight at most {float(o.bound)!r}")
            self._fast_offer(body, ex, o, codes[o.pos], ap)
            if k in stops:  # every offer after this one weighs at most the next one's bound
                body.write("if _rt_len(_el) >= _need:")
                body.write("    _tw = _rt_best(_tw, _el, _tn, _need)  # the best weights so far, from the new ones")
                body.write("    _tn = _rt_len(_el)")
                body.write(f"    _go = _tw[-1] <= {float(bounded[k + 1].bound)!r}")
                body.level = base
                body.write("if _go:")
                body.indent()
                section += 1
                for line in later.get(section, ()):
                    body.write(line)
        body.level = base
        body.write("_skip = not _go")
        if not plan.free:
            return
        body.write("_thr = None")
        body.write("if _rt_len(_el) >= _need:")
        body.write("    _thr = _rt_best(_tw, _el, _tn, _need)[-1]")
        for o in plan.free:
            body.write(f"# offer {comment(o.offer.name)}, weight unbounded")
            if o.weighs_history:
                self._fast_offer(body, ex, o, codes[o.pos], ap)
                continue
            for key in self._lazy_loads(ex, o.weight_lazy, set()):
                body.write(ex.load(key))
            body.write(f"_w = {codes[o.pos][1]}")
            body.write("if _thr is not None and _w is not None and _w < _thr:")
            body.write("    _skip = True")
            body.write("else:")
            body.indent()
            self._fast_offer(body, ex, o, codes[o.pos], ap)
            body.level = base

    def _fast_codes(self, ex: ExprCodegen, o: OfferPlan) -> tuple[list[str], str]:
        """The code of the offer's tests (in declaration order, as names are handed out)
        and of its weight."""
        tests = [self._valid_test(ex, o.offer) if test is None else ex.truth(test) for test, _ in o.tests]
        return tests, ex.value(o.weight.expr)

    @staticmethod
    def _lazy_loads(ex: ExprCodegen, lazy: frozenset, loaded: set) -> list[tuple[str, str]]:
        """The attributes among `lazy` the offer has not read yet (and its code does read),
        in variable order."""
        if not lazy:
            return []
        attrs = ex.frame.attrs
        return sorted((a for a in lazy if a not in loaded and a in attrs), key=attrs.__getitem__)

    def _fast_offer(self, w: Writer, ex: ExprCodegen, o: OfferPlan, codes, ap: str) -> None:
        test_codes, weight_code = codes
        base, loaded, pending = w.level, set(), []

        def load(keys):
            for key in keys:
                w.write(ex.load(key))
                loaded.add(key)

        def flush():
            if pending:
                w.write("if " + " and ".join(pending) + ":")
                w.indent()
                pending.clear()

        for i in o.run:
            keys = self._lazy_loads(ex, o.tests[i][1], loaded)
            if keys:  # read just before the first test that needs them
                flush()
                load(keys)
            pending.append(test_codes[i])
        flush()
        load(self._lazy_loads(ex, o.weight_lazy, loaded))
        self._append_weight(w, o, ap, None, weight_code)
        w.level = base

    def _explain_offer(self, w: Writer, ex: ExprCodegen, o: OfferPlan, ap: str) -> None:
        keyword = "if"
        for idx, check in o.checks:
            # a rule removes the offer unless exactly true: false and null both fail
            test = self._valid_test(ex, o.offer, negate=True) if check is None else f"not {ex.truth(check.expr)}"
            w.write(f"{keyword} {test}:")
            w.indent()
            w.write(f"_fa(({o.pos}, {idx}))")
            w.dedent()
            keyword = "elif"
        if o.checks:
            w.write("else:")
            w.indent()
        self._append_weight(w, o, ap, o.weight_rule, ex.value(o.weight.expr))
        if o.checks:
            w.dedent()

    @staticmethod
    def _append_weight(w: Writer, o: OfferPlan, ap: str, fail_idx: int | None, code: str) -> None:
        if not o.weight.expr.nullable:
            w.write(f"{ap}(({o.pos}, {code}))")
            return
        w.write(f"_w = {code}")
        if fail_idx is None:
            w.write(f"if _w is not None: {ap}(({o.pos}, _w))")
        else:
            w.write(f"if _w is None: _fa(({o.pos}, {fail_idx}))")
            w.write(f"else: {ap}(({o.pos}, _w))")

    @staticmethod
    def _valid_test(ex: ExprCodegen, offer, negate=False) -> str:
        if has_time(offer.valid):  # a time of day: the decision time's instant, as epoch seconds
            ex.uses.add("_ts")
            lo, hi = (repr(t) for t in valid_instants(offer.valid, ex.catalog.timezone))
            clock = "_ts"
        else:
            ex.uses.add("_today")
            lo, hi = (ex.literal(d) for d in offer.valid)
            clock = "_today"
        return f"not ({lo} <= {clock} <= {hi})" if negate else f"{lo} <= {clock} <= {hi}"

    def render_source(self) -> str:
        """`_renderers[pos](...)` → ((field, text), ...) for an offer of this space; the
        space's fallback, if any, comes last."""
        out = Writer()
        names = []
        fallback = self.catalog.spaces[self.space].fallback
        extra = (self.catalog.offers_by_name[fallback],) if fallback else ()
        for pos, offer in enumerate(tuple(o.offer for o in self.plan.offers) + extra):
            ex = self._codegen()
            items = []
            for field, template in offer.content.get(self.space, ()):
                parts = [ex.literal(p) if isinstance(p, str) else f"_rt_text({ex.value(p)})"
                         for p in template.parts]
                text = parts[0] if len(parts) == 1 and isinstance(template.parts[0], str) else (
                    f"_rt_join(({', '.join(parts)},))" if parts else "''")
                items.append(f"({field!r}, {text})")
            body = Writer(level=1)
            body.write("return (" + "".join(i + ", " for i in items) + ")")
            name = f"_render_{pos}"
            names.append(name)
            out.write(f"# content of offer {comment(offer.name)}")
            out.write(f"def {name}({ARGS}):")
            out.indent()
            ex.prelude(out, body, [])
            out.dedent()
        out.write("_renderers = (" + "".join(f"{x}, " for x in names) + ")")
        return out.source()
