#!/usr/bin/env python3
"""offerd rule benchmark: compiled ODL against hand-written Python and interpreting peers,
and the compile time of large generated catalogs. `make bench` runs it; see README.md here.

Part 1 evaluates one eligibility predicate and weight over many seeded random contexts
(attributes sometimes absent) with every engine, in interleaved rounds so that machine noise
hits all engines alike, and reports the median ns per evaluation. Part 2 generates catalogs of
100 to 10,000 offers in one space and times parse+check, codegen+compile and one evaluate.
Results go to benchmarks/results/rules.{json,md} (a --quick run writes to benchmarks/scratch/).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import offerd
from offerd import compiler, history, lang
from offerd.lang.values import check_attributes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
perf_ns = time.perf_counter_ns

# --- part 1: one predicate, one weight ------------------------------------------------------

PREDICATE = ('contact.age >= 18 and contact.country in ["FR", "IT", "SE"] '
             'and context.page != "checkout" and contact.cart_total ?? 0 > 20')
WEIGHT = "10 + contact.cart_total / 100"

SOURCE = f"""\
schema contact {{ age: int country: string cart_total: float }}
schema context {{ page: string }}

space s {{ limit 1 }}

offer bench {{
  spaces s
  eligible {PREDICATE}
  weight {WEIGHT}
}}
"""

COUNTRIES = ("FR", "IT", "SE", "DE", "ES", "US", "GB")
PAGES = ("home", "product", "cart", "checkout", "search")


def raw_contexts(n: int, seed: int) -> list[tuple[dict, dict]]:
    """n (contact, context) pairs as a caller would send them: each attribute absent now and
    then (sometimes as a missing key, sometimes as None), cart totals sometimes ints."""
    rnd = random.Random(seed)

    def maybe(p_absent, make):
        if rnd.random() < p_absent:
            return "absent" if rnd.random() < 0.5 else None
        return make()

    out = []
    for _ in range(n):
        contact = {
            "age": maybe(0.10, lambda: rnd.randint(10, 80)),
            "country": maybe(0.10, lambda: rnd.choice(COUNTRIES)),
            "cart_total": maybe(0.25, lambda: (rnd.randint(0, 200) if rnd.random() < 0.2
                                               else round(rnd.uniform(0, 200), 2))),
        }
        context = {"page": maybe(0.10, lambda: rnd.choice(PAGES))}
        out.append(tuple({k: v for k, v in d.items() if v != "absent"} for d in (contact, context)))
    return out


def hand_written(contact, context, moment, history):
    """The limit: what a careful programmer writes by hand for the same rule, with ODL's null
    handling (absent is null; a null test fails the rule; a null weight drops the offer)."""
    age = contact.get("age")
    if age is None or not age >= 18:
        return []
    if contact.get("country") not in {"FR", "IT", "SE"}:  # None is in no set
        return []
    page = context.get("page")
    if page is None or page == "checkout":
        return []
    total = contact.get("cart_total")
    if not (0 if total is None else total) > 20:
        return []
    if total is None:  # the weight is null
        return []
    return [(0, 10 + total / 100)]


def hand_written_predicate(contact, context, moment, history):
    """hand_written's test alone: is the predicate exactly true?"""
    age = contact.get("age")
    if age is None or not age >= 18 or contact.get("country") not in {"FR", "IT", "SE"}:
        return False
    page = context.get("page")
    if page is None or page == "checkout":
        return False
    total = contact.get("cart_total")
    return (0 if total is None else total) > 20


def plain_lambda():
    """No null handling at all: raises KeyError on an absent attribute, so it only ever sees
    contexts where every attribute is present."""
    return lambda c, x, m, h: ([(0, 10 + c["cart_total"] / 100)]
                               if c["age"] >= 18 and c["country"] in {"FR", "IT", "SE"}
                               and x["page"] != "checkout" and c["cart_total"] > 20 else [])


def no_op(contact, context, moment, history):
    return []


# The peers, each in its own language. Same truth values on these contexts (checked on a
# sample); each call includes the input conversion the library needs.

RULE_ENGINE_PREDICATE = ("age != null and age >= 18 and country in ['FR', 'IT', 'SE'] "
                         "and page != null and page != 'checkout' "
                         "and (cart_total != null ? cart_total : 0) > 20")
RULE_ENGINE_WEIGHT = "cart_total != null ? 10 + cart_total / 100 : null"

CEL_PREDICATE = ('has(contact.age) && contact.age >= 18 '
                 '&& has(contact.country) && contact.country in ["FR", "IT", "SE"] '
                 '&& has(context.page) && context.page != "checkout" '
                 '&& (has(contact.cart_total) ? contact.cart_total : 0.0) > 20.0')
CEL_WEIGHT = "has(contact.cart_total) ? dyn(10.0 + contact.cart_total / 100.0) : dyn(null)"

SIMPLEEVAL_PREDICATE = ("contact.get('age') is not None and contact['age'] >= 18 "
                        "and contact.get('country') in ('FR', 'IT', 'SE') "
                        "and context.get('page') is not None and context['page'] != 'checkout' "
                        "and (contact['cart_total'] if contact.get('cart_total') is not None else 0) > 20")
SIMPLEEVAL_WEIGHT = "10 + contact['cart_total'] / 100 if contact.get('cart_total') is not None else None"


def peer_rule_engine():
    import rule_engine

    ctx = rule_engine.Context(resolver=rule_engine.resolve_item, default_value=None)
    matches = rule_engine.Rule(RULE_ENGINE_PREDICATE, context=ctx).matches
    weight = rule_engine.Rule(RULE_ENGINE_WEIGHT, context=ctx).evaluate

    def run(c, x, m, h):
        thing = {**c, **x}
        if matches(thing):
            w = weight(thing)
            if w is not None:
                return [(0, float(w))]  # rule-engine computes in Decimal
        return []

    return run, ("merges contact and context into one flat dict per call (`contact.age` on a "
                 "dict is over 10x slower: each lookup first fails as an attribute and computes spelling suggestions); "
                 "the library coerces every value (floats to Decimal) on each call")


def peer_celpy():
    import celpy

    env = celpy.Environment()  # the interpreter; CompiledRunner mis-types has() in 0.5.0
    pred = env.program(env.compile(CEL_PREDICATE)).evaluate
    weight = env.program(env.compile(CEL_WEIGHT)).evaluate
    to_cel = celpy.json_to_cel

    def run(c, x, m, h):
        act = {"contact": to_cel(c), "context": to_cel(x)}
        if pred(act):
            w = weight(act)
            if w is not None:
                return [(0, float(w))]
        return []

    return run, "celpy.json_to_cel on both dicts per call, shared by the two programs"


def peer_cel_rust():
    import cel

    pred = cel.compile(CEL_PREDICATE).execute
    weight = cel.compile(CEL_WEIGHT).execute

    def run(c, x, m, h):
        data = {"contact": c, "context": x}
        if pred(data) is True:
            w = weight(data)
            if w is not None:
                return [(0, w)]
        return []

    return run, "the dicts are converted to CEL values inside each execute() (Rust)"


def peer_cel_cpp():
    from cel_expr_python import cel as cx

    env = cx.NewEnv(variables={"contact": cx.Type.Map(cx.Type.STRING, cx.Type.DYN),
                               "context": cx.Type.Map(cx.Type.STRING, cx.Type.DYN)})
    pred = env.compile(CEL_PREDICATE).eval
    weight = env.compile(CEL_WEIGHT).eval

    def run(c, x, m, h):
        data = {"contact": c, "context": x}
        if pred(data=data).value() is True:
            w = weight(data=data).value()
            if w is not None:
                return [(0, w)]
        return []

    return run, "the dicts are converted to CEL values inside each eval() (C++), results unwrapped"


def peer_simpleeval():
    from simpleeval import EvalWithCompoundTypes

    s = EvalWithCompoundTypes()
    pred_ast, weight_ast = s.parse(SIMPLEEVAL_PREDICATE), s.parse(SIMPLEEVAL_WEIGHT)
    evaluate = s.eval

    def run(c, x, m, h):
        s.names = {"contact": c, "context": x}
        if evaluate(SIMPLEEVAL_PREDICATE, previously_parsed=pred_ast) is True:
            w = evaluate(SIMPLEEVAL_WEIGHT, previously_parsed=weight_ast)
            if w is not None:
                return [(0, w)]
        return []

    return run, "none: walks the pre-parsed Python AST over the dicts"


PEERS = [  # (row name, distribution, factory → (function, note on its per-call conversion))
    ("rule-engine", "rule-engine", peer_rule_engine),
    ("cel-python (celpy)", "cel-python", peer_celpy),
    ("common-expression-language (Rust)", "common-expression-language", peer_cel_rust),
    ("cel-expr-python (C++)", "cel-expr-python", peer_cel_cpp),
    ("simpleeval", "simpleeval", peer_simpleeval),
]


HW = "hand-written, null-aware"
HW_PRED = "hand-written predicate, null-aware"
HW_PRESENT = "hand-written, null-aware, present-only"
BASELINE_LABEL = {HW: "", HW_PRED: " (vs hw predicate)", HW_PRESENT: " (vs hw present-only)"}


@dataclass
class Engine:
    name: str
    kind: str  # offerd | reference | peer
    fn: Callable
    pairs: str  # which contexts: "all" or "present"
    baseline: str | None  # the row its ratio is taken against
    predicate_only: bool = False
    note: str = ""
    version: str = ""
    repeats: int = 1
    n: int = 0  # contexts per timed block
    times: list[float] = field(default_factory=list)  # ns per evaluation, one per block
    disagreements: int | None = None
    checked: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def same(a, b) -> bool:
    """Two engine results agree: the same truth, or the same offers with close weights."""
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if len(a) != len(b):
        return False
    return all(p == q and math.isclose(v, w, rel_tol=1e-9, abs_tol=1e-12)
               for (p, v), (q, w) in zip(a, b))


def tolerant(fn):
    def run(c, x, m, h):
        try:
            return fn(c, x, m, h)
        except Exception:
            return []
    return run


def timed_block(fn, pairs, moment, hist) -> float:
    """ns per call of fn over pairs, after a full garbage collection."""
    gc.collect()
    start = perf_ns()
    for c, x in pairs:
        fn(c, x, moment, hist)
    return (perf_ns() - start) / len(pairs)


def part1(args, log) -> dict:
    catalog = lang.check({"bench.offer": SOURCE})
    space = compiler.compile_space(catalog, "s")
    expr = compiler.compile_expression(catalog, PREDICATE)
    moment = space.moment(datetime.datetime.now(datetime.timezone.utc))
    hist = history.EMPTY

    raw = raw_contexts(args.contexts, args.seed)
    pairs = [(check_attributes(catalog.contact, c, "contact"), check_attributes(catalog.context, x, "context"))
             for c, x in raw]  # validated once, not timed: compiled code trusts its inputs
    present = [(c, x) for c, x in pairs if len(c) == len(catalog.contact) and len(x) == len(catalog.context)]
    sets = {"all": pairs, "present": present}
    expected = {key: [space.evaluate(c, x, moment, hist) for c, x in ps] for key, ps in sets.items()}
    eligible = sum(1 for r in expected["all"] if r) / len(pairs)
    log(f"part 1: {len(pairs):,} contexts ({len(present):,} with every attribute present), "
        f"{eligible:.1%} eligible")

    fast = args.repeats
    engines = [
        Engine("no-op function (loop + call floor)", "reference", no_op, "all", None, repeats=fast,
               note="the timing loop calling a function that returns []"),
        Engine("offerd space.evaluate", "offerd", space.evaluate, "all", HW, repeats=fast,
               version=offerd.__version__, note="inputs validated once up front (not timed)"),
        Engine(HW, "reference", hand_written, "all", HW, repeats=fast),
        Engine("offerd compile_expression().truth", "offerd", expr.truth, "all",
               HW_PRED, predicate_only=True, repeats=fast, version=offerd.__version__,
               note="predicate only, no weight"),
        Engine(HW_PRED, "reference", hand_written_predicate, "all",
               HW_PRED, predicate_only=True, repeats=fast, note="predicate only"),
        Engine("no-op function, present-only", "reference", no_op, "present", None, repeats=fast),
        Engine("offerd space.evaluate, present-only", "offerd", space.evaluate, "present",
               HW_PRESENT, repeats=fast, version=offerd.__version__),
        Engine(HW_PRESENT, "reference", hand_written, "present", HW_PRESENT, repeats=fast),
        Engine("plain lambda, no null handling, present-only", "reference", plain_lambda(), "present",
               HW_PRESENT, repeats=fast, note="would raise KeyError on an absent attribute"),
    ]
    skipped = []
    for name, dist, factory in PEERS:
        try:
            fn, note = factory()
        except Exception as e:  # not installed, or broken on this platform
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            log(f"  skip {name}: {reason}")
            skipped.append({"engine": name, "reason": reason})
            continue
        engines.append(Engine(name, "peer", fn, "all", HW, repeats=args.peer_repeats,
                              note=note, version=version_of(dist)))

    # Warm up and check agreement with offerd. Fast engines: every context; peers: a sample,
    # which also estimates their cost to size their timed blocks.
    for e in list(engines):
        ps, want = sets[e.pairs], expected[e.pairs]
        sample = len(ps) if e.kind != "peer" else min(len(ps), args.check)
        bad = errors = 0
        first_error = None
        start = perf_ns()
        for (c, x), w in zip(ps[:sample], want):
            try:
                got = e.fn(c, x, moment, hist)
            except Exception as ex:
                errors += 1
                first_error = first_error or f"{type(ex).__name__}: {ex}".splitlines()[0][:200]
                continue
            if e.fn is not no_op and not same(got, bool(w) if e.predicate_only else w):
                bad += 1
        per_call = (perf_ns() - start) / sample
        if errors == sample:
            log(f"  skip {e.name}: every call failed ({first_error})")
            skipped.append({"engine": e.name, "reason": f"every call failed: {first_error}"})
            engines.remove(e)
            continue
        if errors:  # raising is this engine's null: time it with the exception handling it needs
            e.fn = tolerant(e.fn)
            e.note += f"; raised on {errors} of {sample:,} sampled contexts, so timed inside try/except"
        e.disagreements, e.checked = (None, 0) if e.fn is no_op else (bad + errors, sample)
        if e.disagreements:
            log(f"  {e.name}: {e.disagreements} of {sample:,} results differ from offerd's"
                + (f" ({errors} raised, e.g. {first_error})" if errors else ""))
        if e.kind == "peer":
            e.n = min(len(ps), max(args.min_peer_contexts, int(args.peer_seconds * 1e9 / per_call)))
        else:
            e.n = len(ps)
    checked = ", ".join(f"{e.name.split(' (')[0]} {e.checked:,}" for e in engines if e.kind == "peer")
    log(f"  agreement with offerd checked on all contexts for offerd/hand-written, on samples for peers ({checked})")

    # Interleaved rounds: the fast engines back to back, then the peers, in a shuffled order.
    blocks = {e.name: sets[e.pairs][: e.n] for e in engines}
    order = random.Random(args.seed)
    rounds = max(e.repeats for e in engines)
    log(f"  timing: {rounds} rounds; fast engines {fast} blocks, peers {args.peer_repeats} "
        f"(peer blocks sized to ~{args.peer_seconds:g} s)")
    for r in range(rounds):
        for kind in ("fast", "peer"):
            group = [e for e in engines if (e.kind == "peer") == (kind == "peer") and r < e.repeats]
            order.shuffle(group)
            for e in group:
                try:
                    e.times.append(timed_block(e.fn, blocks[e.name], moment, hist))
                except Exception as ex:  # a context the check sample did not cover
                    reason = f"raised while timed: {type(ex).__name__}: {ex}".splitlines()[0][:200]
                    log(f"  skip {e.name}: {reason}")
                    skipped.append({"engine": e.name, "reason": reason})
                    engines.remove(e)
        log(f"  round {r + 1}/{rounds} done")

    by_name = {e.name: e for e in engines}
    offerd_eval = by_name["offerd space.evaluate"].median
    rows = []
    for e in engines:
        base = by_name[e.baseline].median if e.baseline else None
        rows.append({
            "engine": e.name, "kind": e.kind, "version": e.version, "contexts": e.n,
            "context_set": e.pairs, "predicate_only": e.predicate_only,
            "ns_median": round(e.median, 1), "ns_min": round(min(e.times), 1),
            "ns_max": round(max(e.times), 1), "blocks": len(e.times),
            "baseline": e.baseline,
            "ratio_to_baseline": round(e.median / base, 3) if base else None,
            "peer_over_offerd": round(e.median / offerd_eval, 1) if e.kind == "peer" else None,
            "disagreements": e.disagreements, "checked": e.checked, "note": e.note,
        })
    peers = [r for r in rows if r["kind"] == "peer"]
    hand = by_name[HW].median
    fastest = min(peers, key=lambda r: r["ns_median"]) if peers else None
    goals = {
        "offerd_over_hand_written": {
            "target": "<= 1.2", "value": round(offerd_eval / hand, 3),
            "value_by_min": round(min(by_name["offerd space.evaluate"].times)
                                  / min(by_name[HW].times), 3),
            "met": offerd_eval / hand <= 1.2},
        "fastest_peer_over_offerd": {
            "target": ">= 25", "peer": fastest and fastest["engine"],
            "value": fastest and round(fastest["ns_median"] / offerd_eval, 1),
            "met": bool(fastest) and fastest["ns_median"] / offerd_eval >= 25},
    }
    return {"predicate": PREDICATE, "weight": WEIGHT, "contexts": len(pairs),
            "present_contexts": len(present), "eligible_fraction": round(eligible, 4),
            "rows": rows, "skipped": skipped, "goals": goals,
            "generated_source": space.source}


# --- part 2: compile time of generated catalogs ---------------------------------------------

CATALOG_HEAD = """\
schema contact {
  age: int
  country: string
  cart_total: float
  segment: string
  tags: set<string>
  vip: bool
  visits: int
  birthday: date
}

schema context {
  page: string
  device: string
}

let adult = contact.age >= 18
let big_cart = contact.cart_total ?? 0 > 100

space s {
  limit 3
  cap 20 per contact per 1d
}
"""
SEGMENTS = ("gold", "silver", "bronze", "platinum", "new")
TAGS = ("student", "family", "pro", "senior", "eco", "gamer")
DEVICES = ("mobile", "desktop", "tablet", "kiosk")
OFFERS_PER_FILE = 100


def generate_catalog(n: int, seed: int, today: datetime.date) -> tuple[dict[str, str], list[tuple[str, tuple[str, ...]]]]:
    """{file: text} for one space of n offers with varied rules, and (offer, category chain)
    for each offer (to build a history)."""
    rnd = random.Random(seed)
    n_cat = 10 + n // 100
    cats = []
    lines = []
    for i in range(n_cat):
        name = f"cat{i}"
        cats.append(name)
        items = []
        if rnd.random() < 0.5:
            items.append(f"cap {rnd.randint(2, 5)} per contact per 7d")
        if rnd.random() < 0.2:
            items.append(f"eligible contact.segment in {_strings(rnd.sample(SEGMENTS, 2))}")
        if rnd.random() < 0.2:
            items.append("suppress 14d after rejected")
        lines.append(f"category {name} {{ {'  '.join(items)} }}")
        if rnd.random() < 0.3:
            cats.append(f"{name}.sub")
            lines.append(f"category {name}.sub {{ cap 1 per contact per 1d }}")
    files = {"00_schema.offer": CATALOG_HEAD, "05_categories.offer": "\n".join(lines) + "\n"}

    start, end = today - datetime.timedelta(days=30), today + datetime.timedelta(days=365)

    def term(i):
        kind = rnd.random()
        if kind < 0.12:
            return f"contact.age >= {rnd.randint(16, 40)}"
        if kind < 0.18:
            return "adult"
        if kind < 0.30:
            return f"contact.country in {_strings(rnd.sample(COUNTRIES, rnd.randint(2, 5)))}"
        if kind < 0.36:
            return f'contact.country == "{rnd.choice(COUNTRIES)}"'
        if kind < 0.44:
            return f'context.page != "{rnd.choice(PAGES)}"'
        if kind < 0.48:
            return f"context.page in {_strings(rnd.sample(PAGES, 2))}"
        if kind < 0.56:
            return f"contact.cart_total ?? 0 > {rnd.randint(5, 150)}"
        if kind < 0.60:
            return "big_cart"
        if kind < 0.66:
            return f"contact.segment in {_strings(rnd.sample(SEGMENTS, 2))}"
        if kind < 0.71:
            return f'"{rnd.choice(TAGS)}" in contact.tags'
        if kind < 0.74:
            return "contact.vip" if rnd.random() < 0.5 else "not contact.vip"
        if kind < 0.79:
            return f"contact.visits ?? 0 >= {rnd.randint(1, 10)}"
        if kind < 0.84:
            return f'context.device == "{rnd.choice(DEVICES)}"'
        if kind < 0.92:
            return f"proposed(o{rnd.randrange(n)}, 7d) < {rnd.randint(2, 5)}"
        if kind < 0.96:
            return f"accepted({rnd.choice(cats)}, 30d) == 0"
        if kind < 0.98:
            return "has(contact.birthday) and days_until(contact.birthday) <= 7"
        return f"bucket(contact.country, 100) < {rnd.randint(10, 90)}"

    def weight(i):
        kind = rnd.random()
        if kind < 0.35:
            return str(rnd.randint(1, 50))
        if kind < 0.6:
            return f"{rnd.randint(1, 20)} + contact.cart_total / 100"
        if kind < 0.75:
            return f"if contact.vip then {rnd.randint(20, 50)} else {rnd.randint(1, 10)}"
        if kind < 0.9:
            return f"{rnd.randint(10, 30)} - proposed(o{i}, 7d)"
        return f"{rnd.randint(5, 40)} * propensity"

    offers = []
    for first in range(0, n, OFFERS_PER_FILE):
        text = []
        for i in range(first, min(n, first + OFFERS_PER_FILE)):
            category = rnd.choice(cats) if rnd.random() < 0.7 else None
            items = ["spaces s"]
            if category:
                items.append(f"category {category}")
            if rnd.random() < 0.2:
                items.append(f"valid {start} to {end}")
            items.append("eligible " + " and ".join(term(i) for _ in range(rnd.randint(1, 4))))
            if rnd.random() < 0.3:
                items.append(f"eligible {term(i)} or {term(i)}")
            items.append(f"weight {weight(i)}")
            if rnd.random() < 0.3:
                items.append(f"cap {rnd.randint(1, 5)} per contact per 7d")
            if rnd.random() < 0.1:
                items.append(f"cap {rnd.randint(100, 10000)} total per 1d")
            if rnd.random() < 0.2:
                items.append("suppress 30d after rejected")
            text.append(f"offer o{i} {{\n  " + "\n  ".join(items) + "\n}\n")
            chain = tuple(".".join(category.split(".")[: k + 1]) for k in range(category.count(".") + 1)) if category else ()
            offers.append((f"o{i}", chain))
        files[f"10_offers_{first // OFFERS_PER_FILE:04d}.offer"] = "\n".join(text)
    return files, offers


def _strings(items) -> str:
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def catalog_contexts(n: int, seed: int, catalog) -> list[tuple[dict, dict]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        contact = {"age": rnd.randint(12, 80), "country": rnd.choice(COUNTRIES),
                   "cart_total": round(rnd.uniform(0, 300), 2), "segment": rnd.choice(SEGMENTS),
                   "tags": rnd.sample(TAGS, rnd.randint(0, 3)), "vip": rnd.random() < 0.2,
                   "visits": rnd.randint(0, 20),
                   "birthday": datetime.date(1990, 1, 1) + datetime.timedelta(days=rnd.randrange(10000))}
        context = {"page": rnd.choice(PAGES), "device": rnd.choice(DEVICES)}
        for d in (contact, context):
            for k in list(d):
                if rnd.random() < 0.1:
                    del d[k]
        out.append((check_attributes(catalog.contact, contact, "contact"),
                    check_attributes(catalog.context, context, "context")))
    return out


def build_history(offers, now: float, seed: int, events: int = 300):
    """One contact's history: `events` propositions of random offers over the last 30 days."""
    rnd = random.Random(seed)
    props = []
    for _ in range(events):
        offer, chain = rnd.choice(offers)
        t = now - rnd.uniform(0, 30 * 86400)
        extra = {}
        r = rnd.random()
        if r < 0.5:
            extra["presented"] = t + 1
        if r < 0.1:
            extra["accepted"] = t + 60
        elif r < 0.2:
            extra["rejected"] = t + 60
        props.append(history.Proposition("c1", offer, "s", chain, t, extra))
    return history.MemoryHistory(props).view("c1")


def part2(args, log) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for size in args.sizes:
        sources, offers = generate_catalog(size, args.seed + size, now.date())
        repeats = args.compile_repeats if size < 10_000 else max(1, args.compile_repeats - 1)
        check_ns, build_ns = [], []
        catalog = space = None
        for _ in range(repeats):
            gc.collect()
            t0 = perf_ns()
            catalog = lang.check(sources)
            t1 = perf_ns()
            space = compiler.CompiledSpace(catalog, "s")
            t2 = perf_ns()
            check_ns.append(t1 - t0)
            build_ns.append(t2 - t1)
        assert len(space.offers) == size, (len(space.offers), size)
        moment = space.moment(now)
        hist = build_history(offers, moment.ts, args.seed)
        pairs = catalog_contexts(args.eval_contexts, args.seed, catalog)
        for c, x in pairs[:3]:  # warm up
            space.evaluate(c, x, moment, hist)
        eval_ns, eligible = [], []
        gc.collect()
        for c, x in pairs:
            t0 = perf_ns()
            result = space.evaluate(c, x, moment, hist)
            eval_ns.append(perf_ns() - t0)
            eligible.append(len(result))
        check_s, build_s = statistics.median(check_ns) / 1e9, statistics.median(build_ns) / 1e9
        row = {
            "offers": size, "files": len(sources), "categories": len(catalog.categories),
            "source_bytes": sum(len(s) for s in sources.values()),
            "generated_lines": len(space.source.splitlines()), "rules": len(space.rules),
            "repeats": repeats,
            "parse_check_s": round(check_s, 4), "codegen_compile_s": round(build_s, 4),
            "total_s": round(check_s + build_s, 4),
            "parse_check_runs_s": [round(t / 1e9, 4) for t in check_ns],
            "codegen_compile_runs_s": [round(t / 1e9, 4) for t in build_ns],
            "evaluate_us_median": round(statistics.median(eval_ns) / 1e3, 1),
            "evaluate_us_max": round(max(eval_ns) / 1e3, 1), "evaluate_calls": len(pairs),
            "eligible_median": statistics.median(eligible),
        }
        rows.append(row)
        log(f"part 2: {size:>6,} offers: parse+check {check_s:7.3f} s, codegen+compile {build_s:7.3f} s, "
            f"evaluate {row['evaluate_us_median']:9.1f} µs (median of {len(pairs)}), "
            f"{row['generated_lines']:,} generated lines")
        del catalog, space, sources
    big = next((r for r in rows if r["offers"] == 10_000), None)
    goal = {"target": "10,000 offers: parse+check + codegen+compile < 5 s",
            "value": big and big["total_s"], "codegen_compile_s": big and big["codegen_compile_s"],
            "met": bool(big) and big["total_s"] < 5}
    return {"rows": rows, "goal": goal}


# --- reporting ------------------------------------------------------------------------------

def machine() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "platform": platform.platform(), "processor": platform.machine(),
        "cpu_count": os.cpu_count(), "load_average": _load(),
        "offerd": offerd.__version__, "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty_src": bool(git("status", "--porcelain", "--", "src")),
    }


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fmt_ns(v: float) -> str:
    return f"{v:,.0f}"


def table_rows(p1: dict) -> list[list[str]]:
    out = []
    for r in p1["rows"]:
        ratio = f"{r['ratio_to_baseline']:,.2f}x" if r["ratio_to_baseline"] is not None else "—"
        if r["ratio_to_baseline"] is not None:
            ratio += BASELINE_LABEL[r["baseline"]]
        peer = f"{r['peer_over_offerd']:,.1f}x" if r["peer_over_offerd"] is not None else "—"
        agree = "—" if r["disagreements"] is None else f"{r['disagreements']}/{r['checked']:,}"
        out.append([r["engine"], f"{r['contexts']:,}", fmt_ns(r["ns_median"]), fmt_ns(r["ns_min"]),
                    ratio, peer, agree])
    return out


HEADERS = ["engine", "contexts", "ns/eval (median)", "ns/eval (min)", "x hand-written",
           "peer / offerd", "disagree"]


def text_table(headers, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def compile_rows(p2: dict) -> list[list[str]]:
    return [[f"{r['offers']:,}", f"{r['files']:,}", f"{r['generated_lines']:,}", f"{r['parse_check_s']:.3f}",
             f"{r['codegen_compile_s']:.3f}", f"{r['total_s']:.3f}", f"{r['evaluate_us_median']:,.1f}",
             f"{r['eligible_median']:g}"] for r in p2["rows"]]


COMPILE_HEADERS = ["offers", "files", "generated lines", "parse+check s", "codegen+compile s", "total s",
                   "evaluate µs (median)", "eligible (median)"]


def goal_lines(result: dict) -> list[str]:
    lines = []
    p1, p2 = result.get("part1"), result.get("part2")
    if p1:
        g = p1["goals"]["offerd_over_hand_written"]
        lines.append(f"{'MET ' if g['met'] else 'MISS'} offerd space.evaluate within 1.2x of the hand-written "
                     f"null-aware function: {g['value']:.2f}x (by min: {g['value_by_min']:.2f}x)")
        g = p1["goals"]["fastest_peer_over_offerd"]
        if g["peer"]:
            lines.append(f"{'MET ' if g['met'] else 'MISS'} at least 25x faster than the fastest peer: "
                         f"{g['value']:,.1f}x ({g['peer']})")
        else:
            lines.append("n/a  at least 25x faster than the fastest peer: no peer could run")
    if p2:
        g = p2["goal"]
        if g["value"] is None:
            lines.append("n/a  10,000 offers compile in under 5 s: not measured (see --sizes)")
        else:
            lines.append(f"{'MET ' if g['met'] else 'MISS'} 10,000 offers compile in under 5 s: {g['value']:.2f} s "
                         f"(of which codegen+compile {g['codegen_compile_s']:.2f} s)")
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    out = [f"# offerd rule benchmark{' (quick run)' if result['quick'] else ''}", "",
           f"{m['date']} · Python {m['python']} ({m['implementation']}) · {m['cpu_count']} CPUs · "
           f"{m['platform']} · load average {m['load_average']} at start, {m.get('load_average_end')} at end · offerd {m['offerd']} "
           f"(commit {m['git_commit']}{', src/ modified' if m['git_dirty_src'] else ''})", "",
           "Produced by `benchmarks/rules.py` (`make bench`); benchmarks/README.md says what each figure means.", ""]
    p1 = result.get("part1")
    if p1:
        out += ["## Rule evaluation", "",
                f"Predicate `{p1['predicate']}`, weight `{p1['weight']}`, over {p1['contexts']:,} seeded random "
                f"contexts ({p1['present_contexts']:,} with every attribute present; "
                f"{p1['eligible_fraction']:.1%} eligible). A result is `[(0, weight)]` or `[]`. Ratios are of "
                "medians; \"x hand-written\" compares with the hand-written row of the same kind (all "
                "contexts; predicate only; only the contexts with every attribute present). Peer times "
                "include each library's per-call input conversion.", "",
                md_table(HEADERS, table_rows(p1)), ""]
        notes = [f"- **{r['engine']}** ({r['version']}): {r['note']}" for r in p1["rows"] if r["kind"] == "peer"]
        notes += [f"- skipped **{s['engine']}**: {s['reason']}" for s in p1["skipped"]]
        if notes:
            out += ["Per-call conversion and notes:", ""] + notes + [""]
        out += ["Generated code for the space:", "", "```python", p1["generated_source"].rstrip(), "```", ""]
    p2 = result.get("part2")
    if p2:
        out += ["## Compile time of generated catalogs", "",
                "One space holding every offer; rules mix comparisons, `in` lists, `??`, lets, category caps "
                "and suppressions, history functions (`proposed(o12, 7d) < 3`) and propensity. Times are "
                "medians of the repeats; evaluate is one call over the whole space with a 300-event history.", "",
                md_table(COMPILE_HEADERS, compile_rows(p2)), ""]
    out += ["## Goals", ""] + [f"- {g}" for g in goal_lines(result)] + [""]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a fast sanity run: fewer contexts and repeats, catalogs of 100 and 1,000 offers; "
                             "writes to benchmarks/scratch/ unless --out is given")
    parser.add_argument("--contexts", type=int, help="contexts for part 1 (default 100,000; quick 10,000)")
    parser.add_argument("--repeats", type=int, help="timed blocks per fast engine (default 9; quick 3)")
    parser.add_argument("--peer-repeats", type=int, help="timed blocks per peer (default 3; quick 2)")
    parser.add_argument("--peer-seconds", type=float,
                        help="a peer's timed block is cut to about this long (default 2; quick 0.25)")
    parser.add_argument("--min-peer-contexts", type=int, default=500, help="smallest peer block (default 500)")
    parser.add_argument("--check", type=int, help="contexts on which peers are checked against offerd (default 3,000; quick 500)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        help="catalog sizes for part 2 (default 100,1000,10000; quick 100,1000)")
    parser.add_argument("--compile-repeats", type=int, help="compilations per size (default 3, one fewer at 10,000; quick 1)")
    parser.add_argument("--eval-contexts", type=int, default=50, help="evaluate calls per catalog in part 2 (default 50)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--only", choices=("rules", "compile"), help="run one part only")
    parser.add_argument("--out", help="folder for rules.json and rules.md (default benchmarks/results)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    q = args.quick
    defaults = dict(contexts=(10_000, 100_000), repeats=(3, 9), peer_repeats=(2, 3), peer_seconds=(0.25, 2.0),
                    check=(500, 3_000), sizes=([100, 1_000], [100, 1_000, 10_000]), compile_repeats=(1, 3))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    out_dir = args.out or os.path.join(HERE, "scratch" if q else "results")

    started = time.perf_counter()
    log = lambda msg: print(msg, flush=True)
    result = {"quick": q, "machine": machine(),
              "args": {k: v for k, v in vars(args).items() if k not in ("out", "no_write")}}
    m = result["machine"]
    log(f"offerd {offerd.__version__} (commit {m['git_commit']}{', src/ modified' if m['git_dirty_src'] else ''}) · "
        f"Python {m['python']} · {m['cpu_count']} CPUs · load {m['load_average']}{' · quick run' if q else ''}")
    if args.only in (None, "rules"):
        result["part1"] = part1(args, log)
        log("")
        log(text_table(HEADERS, table_rows(result["part1"])))
        for s in result["part1"]["skipped"]:
            log(f"skipped {s['engine']}: {s['reason']}")
        log("peer times include the per-call input conversion each library needs:")
        for r in result["part1"]["rows"]:
            if r["kind"] == "peer":
                log(f"  {r['engine']} {r['version']}: {r['note']}")
        log("")
    if args.only in (None, "compile"):
        result["part2"] = part2(args, log)
        log("")
        log(text_table(COMPILE_HEADERS, compile_rows(result["part2"])))
        log("")
    for line in goal_lines(result):
        log(line)
    result["machine"]["load_average_end"] = _load()
    result["seconds"] = round(time.perf_counter() - started, 1)
    if not args.no_write:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "rules.json"), "w") as f:
            json.dump(result, f, indent=2, default=str)
            f.write("\n")
        with open(os.path.join(out_dir, "rules.md"), "w") as f:
            f.write(markdown(result))
        log(f"wrote {os.path.relpath(out_dir, os.getcwd())}/rules.json and rules.md")
    log(f"done in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
