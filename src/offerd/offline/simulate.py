"""Simulation: a catalog run over a population, nothing recorded, to see before going live
how offers would be distributed and which rule eliminated what.

The rules run in worker processes (every core), each contact's outcome per offer coming
from the compiled `explain` (eligible with its weight, or the first rule that removed it).
Arbitration (the engine's `arbitrate`, as decisions choose) then runs in this process,
contact by contact in the population's order, so `total` caps apply as if the decisions happened in that order, all at the simulation's
time; contacts have no history (they are decided as new)."""
from __future__ import annotations

import datetime
import multiprocessing
import os
import random
import time
from operator import itemgetter

from ..compiler import SpaceCache
from ..compiler.space import Moment
from ..history import EMPTY
from ..lang.catalog import CONTACT_ID, Catalog
from ..lang.values import check_attributes
from ..engine.arbitrate import arbitrate, ranked
from ..engine.plan import Plan, reads_contact_id
from . import population
from .population import BadRow
from .report import Comparison, OfferStats, Report, SpaceStats

CHUNK = 256  # contacts per task sent to a worker
SAMPLE = 2000  # contacts whose weights make the weight distributions (a uniform sample)

_worker: dict = {}  # the catalog and compiled spaces, in each worker process


def _init(catalogs: list[Catalog], spaces: list[str]) -> None:
    cache = SpaceCache()
    _worker["versions"] = [[cache.get(catalog, s) for s in spaces] for catalog in catalogs]
    _worker["schema"] = catalogs[0].contact
    _worker["domains"] = catalogs[0].domains
    _worker["context"] = catalogs[0].context
    _worker["ids"] = any(map(reads_contact_id, catalogs))  # contact.id: the row's id among its attributes


def _outcomes(task) -> list:
    """Per row: (line, per version, per space (eligible [(pos, weight)], fails [(pos, rule
    index)])), or a BadRow. The rows come typed, or as JSON Lines text parsed here."""
    moment, context, raw, items = task
    versions, out = _worker["versions"], []
    for item in items:
        if raw:
            line_no, text = item
            item = text if isinstance(text, BadRow) else population.parse_json_line(
                line_no, text, _worker["schema"], _worker["domains"], _worker["context"])
            if item is None:
                continue
            if isinstance(item, BadRow):
                out.append(item)
                continue
        attrs = {**item.attributes, CONTACT_ID: item.contact_id} if _worker["ids"] else item.attributes
        ctx = {**context, **item.context} if item.context else context  # the row's own values win
        out.append((item.line, [[(*space.outcomes(attrs, ctx, moment, EMPTY),
                                  space.admits(attrs, ctx, moment, EMPTY)) for space in spaces]
                                for spaces in versions]))
    return out


class _Version:
    """One catalog version being simulated: its compiled spaces, report and run counts."""

    def __init__(self, catalog: Catalog, spaces: list[str], at: datetime.datetime, workers: int, caps: bool):
        unknown = [s for s in spaces if s not in catalog.spaces]
        if unknown:
            raise ValueError(f"no space {unknown[0]!r} in catalog {catalog.hash[:12]}; "
                             f"spaces: {', '.join(sorted(catalog.spaces))}")
        self.plan = Plan(catalog)
        cache = SpaceCache()
        self.compiled = [cache.get(catalog, s) for s in spaces]
        self.report = Report(catalog.hash, at, {
            s: SpaceStats([{} for _ in range(c.space.limit)], {o.name: OfferStats() for o in c.offers})
            for s, c in zip(spaces, self.compiled)}, workers=workers, caps=caps)
        self.run = _RunHistory() if caps else None
        self.rnd = random.Random(0)  # weight samples: the same report for the same input


def simulate(catalog: Catalog, spaces: list[str], source, at: datetime.datetime, workers: int | None = None,
             caps: bool = True, context: dict | None = None, total: int | None = None,
             progress=None, compare: Catalog | None = None, each=None) -> Report:
    """Decide every contact of `source` in `spaces`, recording nothing. `source` is a
    population file's path (.jsonl is then parsed by the workers) or an iterable of Rows
    and BadRows (as population.read gives). With `compare`, the same contacts are decided
    by that catalog version too, and the report says who changes offers and why.
    `progress(done, total, seconds)` is called as rows complete; `each(line, {space:
    offers})`, if given, with what each contact got (the fallback if nothing won), in the
    population's order."""
    workers = workers or os.cpu_count() or 1
    if compare is not None and compare.contact != catalog.contact:
        raise ValueError("comparing needs the same contact schema in both catalog versions")
    versions = [_Version(c, spaces, at, workers, caps) for c in (catalog, compare) if c is not None]
    report = versions[0].report
    if compare is not None:
        report.compare = Comparison(versions[1].report, {s: 0 for s in spaces}, {s: {} for s in spaces},
                                    {s: {} for s in spaces})
    catalogs = [catalog] + ([compare] if compare is not None else [])
    moment = Moment.at(at, catalog.timezone)
    started = time.perf_counter()
    if isinstance(source, str):
        population.check_columns(source, catalog)
    raw = isinstance(source, str) and not source.endswith(".csv") and workers > 1
    items = population.jsonl_lines(source) if raw else (
        population.read(source, catalog) if isinstance(source, str) else source)
    # one context under every row's own: checked as a request's would be (types, closed sets, ranges);
    # InputError is a ValueError, which callers report
    context = check_attributes(catalog.context, context, "context", catalog.domains) if context else {}

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
            _init(catalogs, spaces)
            for task in tasks():
                yield _outcomes(task)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init, initargs=(catalogs, spaces)) as pool:
            pending = []
            for task in tasks():  # about two tasks per worker in flight, answers in order
                pending.append(pool.apply_async(_outcomes, (task,)))
                while len(pending) > 2 * workers:
                    yield pending.pop(0).get()
            for r in pending:
                yield r.get()

    for outcomes in results():
        for entry in outcomes:
            if isinstance(entry, BadRow):
                _bad(report, entry)
                continue
            line, outcomes_per_version = entry
            picks = [_arbitrate(v.report, v.plan, v.compiled, line, per_space, v.run, moment.ts, v.rnd)
                     for v, per_space in zip(versions, outcomes_per_version)]
            if each is not None:
                each(line, dict(zip(spaces, picks[0])))
            if compare is not None:
                _diff(report.compare, versions[0].compiled, versions[1].compiled, picks[0], picks[1],
                      outcomes_per_version[1])
            for v in versions:
                v.report.contacts += 1
        if progress:  # bad rows count as done: they were read
            progress(report.contacts + report.bad_count, total, time.perf_counter() - started)
    for v in versions:
        v.report.bad_count, v.report.bad_rows = report.bad_count, report.bad_rows
        _finish(v.report, v.compiled)
        v.report.seconds = time.perf_counter() - started
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


def _arbitrate(report: Report, plan: Plan, compiled, line: int, per_space, run: _RunHistory | None, now: float,
               rnd) -> list[tuple[str, ...]]:
    """The engine's arbitration for one contact, with `total` caps counted over the run
    (`run` None: caps ignored); the offers chosen, per space."""
    seen: set[str] = set()
    picks = []
    mine: dict[tuple[str, str], int] = {}  # this contact's propositions so far, per (kind, ref)
    for space, (eligible, fails, admitted) in zip(compiled, per_space):
        stats = report.spaces[space.space.name]
        stats.eliminations.update(fails)
        stats.eligibility.update(map(_POSITION, eligible))
        stats.decided += 1
        if len(stats.sampled) < SAMPLE:  # reservoir sampling of contacts
            stats.sampled.append(eligible)
        else:
            j = rnd.randrange(stats.decided)
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
                entry = stats.caps.setdefault(str(cap.rule), {"offer": offer, "first_bound_line": line,
                                                             "refused": 0})
                entry["refused"] += 1
        names = []
        for rank, (pos, _) in enumerate(won):
            offer = space.offers[pos].name
            names.append(offer)
            stats.ranks[rank][offer] = stats.ranks[rank].get(offer, 0) + 1
            stats.offers[offer].proposed += 1
        if not won:
            if space.fallback is not None and admitted:  # the space's own rules hold it back too
                stats.fallback_only += 1
                names.append(space.fallback.name)
            else:
                stats.nothing += 1
        picks.append(tuple(names))
    if run is not None:
        run.add(mine)
    return picks


def _diff(comparison: Comparison, base, compiled, before, after, outcomes) -> None:
    """Who changes offers between the versions, and why each lost offer was lost: the rule
    that removed it in the other version, or that it was eligible there but not chosen."""
    for mine, space, old, new, (eligible, fails, _) in zip(base, compiled, before, after, outcomes):
        if old == new:
            continue
        name = space.space.name
        comparison.changed[name] += 1
        if set(old) == set(new):
            comparison.reordered[name] = comparison.reordered.get(name, 0) + 1
            continue
        gained = comparison.gained[name]
        for offer in set(new) - set(old):
            gained[offer] = gained.get(offer, 0) + 1
        lost = set(old) - set(new)
        if not lost:
            continue
        positions = {o.name: pos for pos, o in enumerate(space.offers)}
        removed = {pos: rule for pos, rule in fails}
        for offer in lost:
            pos = positions.get(offer)
            if mine.fallback is not None and offer == mine.fallback.name:
                why = ("the fallback: an offer won instead" if space.fallback is not None
                       and space.fallback.name == offer else "the fallback: the other version's differs, or an offer won")
            elif pos is None:
                why = "not in this space in the other version"
            elif pos in removed:
                why = str(space.rules[removed[pos]])
            else:
                why = "eligible, not chosen (outweighed, capped, or proposed in an earlier space)"
            entry = comparison.lost[name].setdefault(offer, {})
            entry[why] = entry.get(why, 0) + 1


_POSITION = itemgetter(0)


def _finish(report: Report, compiled) -> None:
    """The run's counters, per offer."""
    for space in compiled:
        stats = report.spaces[space.space.name]
        names = [o.name for o in space.offers]
        for (pos, rule), count in stats.eliminations.items():
            st = stats.offers[names[pos]]
            key = str(space.rules[rule])
            st.eliminated[key] = st.eliminated.get(key, 0) + count
        for pos, count in stats.eligibility.items():
            stats.offers[names[pos]].eligible = count
        for eligible in stats.sampled:
            for pos, weight in eligible:
                stats.offers[names[pos]].weights.append(weight)
