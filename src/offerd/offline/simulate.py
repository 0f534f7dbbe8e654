"""Simulation: a catalog run over a population, nothing recorded, to see before going live
how offers would be distributed and which rule eliminated what.

The rules run in worker processes (every core), each contact's outcome per offer coming
from the compiled `explain` (eligible with its weight, or the first rule that removed it),
with the run's context and the contact's own context values over it. Arbitration (the
engine's `arbitrate`, as decisions choose) then runs in this process, contact by contact in
the population's order, so `total` caps apply as if the decisions happened in that order,
all at the simulation's time; contacts have no history (they are decided as new)."""
from __future__ import annotations

import datetime
import multiprocessing
import os
import random
import time
from collections import Counter
from itertools import chain
from operator import itemgetter

from ..compiler import SpaceCache
from ..compiler.space import Moment
from ..history import EMPTY
from ..lang.catalog import CONTACT_ID, Catalog
from ..lang.values import check_attributes
from ..engine.arbitrate import arbitrate, ranked
from ..engine.plan import Cap, Plan, reads_contact_id
from . import breakdown, population
from .compare import Comparison
from .population import BadRow
from .report import Inputs, OfferStats, Report, SpaceStats, rule_json

CHUNK = 256  # contacts per task sent to a worker
SAMPLE = 2000  # contacts whose weights make the weight distributions (a uniform sample)

_worker: dict = {}  # the catalog and compiled spaces, in each worker process (a run in process has its own)
_NONE: frozenset = frozenset()
_POSITION = itemgetter(0)


def _init(catalogs: list[Catalog], spaces: list[str], by: list[tuple[str, str]]) -> None:
    """A worker process's state (the pool's initializer)."""
    _worker.update(_state(catalogs, spaces, by))


def _state(catalogs: list[Catalog], spaces: list[str], by: list[tuple[str, str]]) -> dict:
    """What deciding rows needs: the compiled spaces and their rules made distinct. A run in
    process keeps its own (a server runs several simulations at once, in threads)."""
    cache = SpaceCache()
    versions = [[cache.get(catalog, s) for s in spaces] for catalog in catalogs]
    canon = [[distinct_rules(space)[0] for space in v] for v in versions]
    return {"versions": versions, "canon": canon,
            "split": [[split_rules(space, c) for space, c in zip(v, cv)] for v, cv in zip(versions, canon)],
            "schema": catalogs[0].contact, "context": catalogs[0].context, "domains": catalogs[0].domains,
            "ids": any(map(reads_contact_id, catalogs)),  # contact.id: the row's id among its attributes
            "by": by}


def distinct_rules(space) -> tuple[tuple[int, ...], list]:
    """A compiled space's rules made distinct: rule index → distinct id, and the distinct
    RuleRefs (equal RuleRefs are one rule, whatever the offer they were compiled for)."""
    ids: dict = {}
    return tuple(ids.setdefault(rule, len(ids)) for rule in space.rules), list(ids)


def split_rules(space, canon: tuple[int, ...]) -> dict:
    """distinct rule → its compiled `first clause not true`, for the rules of more than one
    clause: a simulation finds it for each contact they removed an offer for (a rule of one
    clause is that clause). Called directly, one call per rule: this runs per contact."""
    out: dict = {}
    for index, rule in enumerate(canon):
        if rule not in out:
            first = space.first_clause(index)
            if first is not None:
                out[rule] = first
    return out


def _outcomes(task, state: dict | None = None) -> tuple[list, list]:
    """(rows, counts) of a chunk. Per row: (line, per version, per space (eligible [(pos,
    weight)], fails [(pos, rule index)], admitted, the distinct rules that removed an offer
    if --by needs them), the row's --by values or None), or a BadRow. Counts, per version
    and space: (position, rule index) → contacts, position → contacts eligible, distinct
    rule → contacts it removed any offer for: counted here, in the workers, each contact
    once per rule, so the arbitrating process only adds them up. The rows come typed, or as
    JSON Lines text parsed here."""
    moment, context, raw, items = task
    state = _worker if state is None else state
    versions, canons, by, out = state["versions"], state["canon"], state["by"], []
    splits = state["split"]
    # per version and space: each contact's fails, eligible offers and distinct rules,
    # gathered with list appends (cheap per contact) and counted once per chunk; and
    # (distinct rule, clause) → contacts, for the rules of several clauses
    gathered = [[([], [], [], []) for _ in spaces] for spaces in versions]
    several = [[frozenset(split) for split in split_v] for split_v in splits]  # the rules of several clauses
    for item in items:
        if raw:
            line_no, text = item
            item = text if isinstance(text, BadRow) else population.parse_json_line(
                line_no, text, state["schema"], state["domains"], state["context"])
            if item is None:
                continue
            if isinstance(item, BadRow):
                out.append(item)
                continue
        attrs = {**item.attributes, CONTACT_ID: item.contact_id} if state["ids"] else item.attributes
        ctx = {**context, **item.context} if item.context else context  # the row's own values win
        per_version = []
        for spaces, canon_v, gathered_v, split_v, several_v in zip(versions, canons, gathered, splits, several):
            per_space = []
            for space, canon, (all_fails, all_eligible, all_rules, all_clauses), split, multi in zip(
                    spaces, canon_v, gathered_v, split_v, several_v):
                eligible, fails = space.outcomes(attrs, ctx, moment, EMPTY)
                all_fails.append(fails)
                all_eligible.append(eligible)
                rules = {canon[r] for _, r in fails} if fails else _NONE  # a contact once per rule
                all_rules.append(rules)
                if multi and rules:  # (rule, its first clause not true), counted per chunk like the rest
                    all_clauses.append([(r, split[r](attrs, ctx, moment, EMPTY)) for r in rules & multi])
                per_space.append((eligible, fails, space.admits(attrs, ctx, moment, EMPTY), rules if by else None))
            per_version.append(per_space)
        values = tuple((item.attributes if root == "contact" else ctx).get(name) for root, name in by) if by else None
        out.append((item.line, per_version, values))
    counts = [[(Counter(chain.from_iterable(f)), Counter(map(_POSITION, chain.from_iterable(e))),
                Counter(chain.from_iterable(r)), Counter(chain.from_iterable(c))) for f, e, r, c in v] for v in gathered]
    return out, counts


class _Version:
    """One catalog version being simulated: its compiled spaces, report and run counts, and
    per space its rules made distinct (equal RuleRefs are one rule, whatever the offer)."""

    def __init__(self, index: int, catalog: Catalog, inputs: Inputs, workers: int):
        spaces = inputs.spaces
        unknown = [s for s in spaces if s not in catalog.spaces]
        if unknown:
            raise ValueError(f"no space {unknown[0]!r} in catalog {catalog.hash[:12]}; "
                             f"spaces: {', '.join(sorted(catalog.spaces))}")
        self.index, self.catalog = index, catalog
        self.plan = Plan(catalog)
        cache = SpaceCache()
        self.compiled = [cache.get(catalog, s) for s in spaces]
        self.positions = [{o.name: pos for pos, o in enumerate(c.offers)} for c in self.compiled]
        # per space: rule index → distinct id, distinct id → RuleRef
        rules = [distinct_rules(c) for c in self.compiled]
        self.canon, self.distinct = [r[0] for r in rules], [r[1] for r in rules]
        self.report = Report(inputs, {
            s: SpaceStats([{} for _ in range(c.space.limit)], {o.name: OfferStats() for o in c.offers})
            for s, c in zip(spaces, self.compiled)}, workers=workers)
        self.run = _RunHistory() if inputs.caps else None
        self.rnd = random.Random(inputs.seed)  # weight samples: the same report for the same input


def simulate(catalog: Catalog, spaces: list[str], source, at: datetime.datetime, workers: int | None = None,
             caps: bool = True, context: dict | None = None, total: int | None = None,
             progress=None, compare: Catalog | None = None, each=None, by: list[str] | None = None,
             label: str = "", compare_label: str = "", seed: int = 0, population_file: str | None = None) -> Report:
    """Decide every contact of `source` in `spaces`, recording nothing. `source` is a
    population file's path (.jsonl is then parsed by the workers) or an iterable of Rows
    and BadRows (as population.read gives). `context` is every contact's, under its own
    values. With `compare`, the same contacts are decided by that catalog version too, and
    the report says who changes offers and why; with `by` (attribute names), the figures
    per value of each. `label`, `compare_label` and `population_file` name the inputs in
    the report; `seed` seeds the sample of weights. `progress(done, total, seconds)` is
    called as rows complete; `each(line, {space: offers})`, if given, with what each
    contact got (the fallback if nothing won), in the population's order."""
    workers = workers or os.cpu_count() or 1
    if compare is not None and compare.contact != catalog.contact:
        raise ValueError("comparing needs the same contact schema in both catalog versions")
    attributes = [breakdown.resolve(catalog, name) for name in by or ()]
    # one context under every row's own: checked as a request's would be (types, closed sets,
    # ranges); InputError is a ValueError, which callers report
    context = check_attributes(catalog.context, context, "context", catalog.domains) if context else {}
    if isinstance(source, str):
        population.check_columns(source, catalog)
        population_file = population_file or source
    inputs = Inputs(label, catalog.hash, at, list(spaces), context, population_file,
                    [f"{root}.{name}" for root, name, _ in attributes], seed, caps,
                    (compare_label, compare.hash) if compare is not None else None)
    versions = [_Version(0, catalog, inputs, workers)]
    if compare is not None:
        versions.append(_Version(1, compare, Inputs(compare_label, compare.hash, at, list(spaces), context,
                                                    population_file, [], seed, caps), workers))
    report = versions[0].report
    report.by = [breakdown.Breakdown(root, name, t, list(spaces)) for root, name, t in attributes]
    if compare is not None:
        report.compare = Comparison(versions[1].report, list(spaces))
    catalogs = [v.catalog for v in versions]
    moment = Moment.at(at, catalog.timezone)
    started = time.perf_counter()
    raw = isinstance(source, str) and not source.endswith(".csv") and workers > 1
    items = population.jsonl_lines(source) if raw else (
        population.read(source, catalog) if isinstance(source, str) else source)
    by_keys = [(root, name) for root, name, _ in attributes]

    def tasks():
        chunk: list = []
        for item in items:
            if isinstance(item, BadRow):  # typed rows: read here already
                _bad(report, item)
                continue
            chunk.append(item)
            if len(chunk) == CHUNK:
                yield (moment, context, raw, chunk)
                chunk = []
        if chunk:
            yield (moment, context, raw, chunk)

    def results():
        if workers == 1:
            state = _state(catalogs, spaces, by_keys)
            for task in tasks():
                yield _outcomes(task, state)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init, initargs=(catalogs, spaces, by_keys)) as pool:
            pending = []
            for task in tasks():  # about two tasks per worker in flight, answers in order
                pending.append(pool.apply_async(_outcomes, (task,)))
                while len(pending) > 2 * workers:
                    yield pending.pop(0).get()
            for r in pending:
                yield r.get()

    for outcomes, counts in results():
        for v, counts_v in zip(versions, counts):
            for c, (removed, eligibility, by_rule, clauses) in zip(v.compiled, counts_v):
                stats = v.report.spaces[c.space.name]
                stats.eliminations.update(removed)
                stats.eligibility.update(eligibility)
                stats.rule_contacts.update(by_rule)
                stats.clause_contacts.update(clauses)
        for entry in outcomes:
            if isinstance(entry, BadRow):
                _bad(report, entry)
                continue
            line, outcomes_per_version, values = entry
            picks = [_arbitrate(v, line, per_space, moment.ts) for v, per_space in zip(versions, outcomes_per_version)]
            if each is not None:
                each(line, {s: p[0] for s, p in zip(spaces, picks[0])})
            if values is not None:
                for b, value in zip(report.by, values):
                    b.add(value, picks[0])
            if compare is not None:
                report.compare.add(versions, picks, outcomes_per_version)
            for v in versions:
                v.report.contacts += 1
        if progress:  # bad rows count as done: they were read
            progress(report.contacts + report.bad_count, total, time.perf_counter() - started)
    for v in versions:
        v.report.bad_count, v.report.bad_rows = report.bad_count, report.bad_rows
        _finish(v)
        v.report.seconds = time.perf_counter() - started
    for b in report.by:
        b.rule_keys = [[str(rule) for rule in distinct] for distinct in versions[0].distinct]
    report.seconds = time.perf_counter() - started
    if progress:
        done = report.contacts + report.bad_count
        progress(done, done, report.seconds)  # the end, whatever the estimate of the total was
    return report


def _bad(report: Report, row: BadRow) -> None:
    report.bad_count += 1
    if len(report.bad_rows) < 100:
        report.bad_rows.append(str(row))


class _RunHistory:
    """The history a simulation's caps are checked against: every contact is decided at
    the simulation's time and has no history of its own, so a contact's count is 0 and a
    total is the propositions made so far in the run."""

    def __init__(self):
        self.proposed: dict[tuple[str, str], int] = {}  # (kind, ref) → propositions in the run

    def count(self, key, status, since, until) -> int:
        return 0

    def total(self, key, status, since, until) -> int:
        return self.proposed.get(key, 0)

    def add(self, counts: dict[tuple[str, str], int]) -> None:
        for ref, k in counts.items():
            self.proposed[ref] = self.proposed.get(ref, 0) + k


def _arbitrate(v: _Version, line: int, per_space, now: float) -> list[tuple]:
    """The engine's arbitration for one contact, with `total` caps counted over the run
    (no run: caps ignored). Per space: (the offers chosen, or the fallback; 1 if the
    fallback was given, else 0; the distinct rules that removed an offer, if the worker
    sent them; the offers passed over in arbitration, as `arbitrate` lists them)."""
    report, plan, run = v.report, v.plan, v.run
    seen: set[str] = set()
    out = []
    mine: dict[tuple[str, str], int] = {}  # this contact's propositions so far, per (kind, ref)
    for space, (eligible, _, admitted, rules) in zip(v.compiled, per_space):
        stats = report.spaces[space.space.name]
        stats.decided += 1
        if len(stats.sampled) < SAMPLE:  # reservoir sampling of contacts
            stats.sampled.append(eligible)
        else:
            j = v.rnd.randrange(stats.decided)
            if j < SAMPLE:
                stats.sampled[j] = eligible
        limit, lost = space.space.limit, []
        won = arbitrate(plan, space, ranked(eligible, 2 * limit + 2), limit, seen,
                        None if run is None else mine, run, now, lost=lost, recheck=run is not None)
        for pos, _, why, cap in lost:
            offer = space.offers[pos].name
            if why == "already proposed":
                stats.offers[offer].elsewhere += 1
            else:
                stats.offers[offer].capped += 1
                key = str(cap.rule)
                entry = stats.caps.get(key)
                if entry is None:
                    entry = stats.caps[key] = {**rule_json(v.catalog, cap.rule), "scope": _scope(cap),
                                               "first_bound_line": line, "refused": 0, "offers": {}}
                entry["refused"] += 1
                entry["offers"][offer] = entry["offers"].get(offer, 0) + 1
        names = []
        for rank, (pos, _) in enumerate(won):
            offer = space.offers[pos].name
            names.append(offer)
            stats.ranks[rank][offer] = stats.ranks[rank].get(offer, 0) + 1
            stats.offers[offer].proposed += 1
        state = 0
        if not won:
            if space.fallback is not None and admitted:  # the space's own rules hold it back too
                stats.fallback_only += 1
                names.append(space.fallback.name)
                state = 1
            else:
                stats.nothing += 1
        out.append((tuple(names), state, rules or _NONE, lost))
    if run is not None:
        run.add(mine)
    return out


def _scope(cap) -> str:
    """What filled a cap that refused an offer in a run."""
    if not isinstance(cap, Cap):
        return "per decision: offers chosen earlier in the call"
    if cap.check.scope == "total":
        return "total: filled earlier in population order"
    return "per contact: offers chosen earlier in the call"


def _finish(v: _Version) -> None:
    """The run's counters, per offer and per rule."""
    for space, canon, distinct in zip(v.compiled, v.canon, v.distinct):
        stats = v.report.spaces[space.space.name]
        names = [o.name for o in space.offers]
        keys = [str(rule) for rule in distinct]
        removed: dict[int, dict[str, int]] = {}  # distinct rule → offer → contacts
        for (pos, rule), count in stats.eliminations.items():
            st = stats.offers[names[pos]]
            key = keys[canon[rule]]
            st.eliminated[key] = st.eliminated.get(key, 0) + count
            per_offer = removed.setdefault(canon[rule], {})
            per_offer[names[pos]] = per_offer.get(names[pos], 0) + count
        index = {}  # distinct rule → a rule index of it
        for i, rule in enumerate(canon):
            index.setdefault(rule, i)
        for rule, count in sorted(stats.rule_contacts.items(), key=lambda kv: (-kv[1], keys[kv[0]])):
            offers = removed[rule]
            stats.rules[keys[rule]] = {**rule_json(v.catalog, distinct[rule]), "contacts": count,
                                       "offers_removed": sum(offers.values()),
                                       "offers": dict(sorted(offers.items(), key=lambda kv: (-kv[1], kv[0]))),
                                       "clauses": _clauses(space, index[rule], rule, count, stats.clause_contacts)}
        for pos, count in stats.eligibility.items():
            stats.offers[names[pos]].eligible = count
        for eligible in stats.sampled:
            for pos, weight in eligible:
                stats.offers[names[pos]].weights.append(weight)


def _clauses(space, index: int, rule: int, contacts: int, counted) -> list[dict]:
    """A rule's clauses, each with the contacts for whom it was the first not true (a rule
    of one clause: all of them; a cap, a suppression or `valid`: none), as written."""
    texts = space.clauses(index)
    if len(texts) == 1:
        return [{"text": texts[0], "contacts": contacts}]
    return [{"text": text, "contacts": counted.get((rule, k), 0)} for k, text in enumerate(texts)]
