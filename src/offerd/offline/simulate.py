"""Simulation: a catalog run over a population, nothing recorded, to see before going live
how offers would be distributed and which rule eliminated what.

The population is cut into parts (parts.py) that workers decide on their own (evaluate.py):
every core of this machine by default, or the workers of a Dask cluster (engines.py). This
process adds up their counts and arbitrates, in the population's order, the contacts whose
offers depend on the contacts before them (`total` caps fill as if the decisions happened in
that order); the report is the same whatever the number of parts or workers. All decisions
happen at the simulation's time; contacts have no history (they are decided as new)."""
from __future__ import annotations

import datetime
import os
import pickle
import time
from collections import deque

from ..compiler.space import Moment
from ..lang.catalog import Catalog
from ..lang.values import check_attributes
from . import arbitration, breakdown, parts
from .arbitration import RunHistory, Sample, Version
from .compare import Comparison
from .evaluate import Job
from .population import BadRow
from .report import Inputs, Report, rule_json

ROWS = 4096  # rows per part when the rows come read already (a CSV file, a list)


class _Run:
    """One catalog version in a run: its arbiter, report, run counts and weight samples."""

    def __init__(self, version: Version, inputs: Inputs, workers: int):
        self.version, self.index, self.catalog = version, version.index, version.catalog
        self.compiled, self.positions = version.compiled, version.positions
        self.report = Report(inputs, version.new_stats(), workers=workers)
        self.run = RunHistory() if inputs.caps else None
        self.samples = [Sample() for _ in version.compiled]


def simulate(catalog: Catalog, spaces: list[str], source, at: datetime.datetime, workers: int | None = None,
             caps: bool = True, context: dict | None = None, total: int | None = None,
             progress=None, compare: Catalog | None = None, each=None, by: list[str] | None = None,
             label: str = "", compare_label: str = "", seed: int = 0, population_file: str | None = None,
             engine=None, part_bytes: int = parts.PART_BYTES) -> Report:
    """Decide every contact of `source` in `spaces`, recording nothing. `source` is a path
    (a file, a folder of files or a glob pattern: JSON Lines, CSV or Parquet), a list of
    them, or an iterable of Rows and BadRows (as population.read gives). `context` is every
    contact's, under its own values. With `compare`, the same contacts are decided by that
    catalog version too, and the report says who changes offers and why; with `by`
    (attribute names), the figures per value of each. `label`, `compare_label` and
    `population_file` name the inputs in the report; `seed` seeds the sample of weights.
    `engine` runs the parts (engines.py; default: `workers` processes of this machine).
    `progress(done, total, seconds)` is called as rows complete; `each(line, {space:
    offers})`, if given, with what each contact got (the fallback if nothing won), in the
    population's order."""
    from . import engines

    workers = workers or os.cpu_count() or 1
    if compare is not None and compare.contact != catalog.contact:
        raise ValueError("comparing needs the same contact schema in both catalog versions")
    attributes = [breakdown.resolve(catalog, name) for name in by or ()]
    # one context under every row's own: checked as a request's would be (types, closed sets,
    # ranges); InputError is a ValueError, which callers report
    context = check_attributes(catalog.context, context, "context", catalog.domains) if context else {}
    paths = [source] if isinstance(source, str) else (
        source if isinstance(source, list) and source and all(isinstance(x, str) for x in source) else None)
    population_file = population_file or (None if paths is None else ", ".join(paths))
    inputs = Inputs(label, catalog.hash, at, list(spaces), context, population_file,
                    [f"{root}.{name}" for root, name, _ in attributes], seed, caps,
                    (compare_label, compare.hash) if compare is not None else None)
    engine = engine or engines.Local(workers)
    runs = [_Run(Version(0, catalog, spaces), inputs, engine.workers)]
    if compare is not None:
        runs.append(_Run(Version(1, compare, spaces), Inputs(compare_label, compare.hash, at, list(spaces), context,
                                                             population_file, [], seed, caps), engine.workers))
    report = runs[0].report
    report.by = [breakdown.Breakdown(root, name, t, list(spaces)) for root, name, t in attributes]
    if compare is not None:
        report.compare = Comparison(runs[1].report, list(spaces))
    moment = Moment.at(at, catalog.timezone)
    job = Job([r.catalog for r in runs], list(spaces), [(root, name) for root, name, _ in attributes], moment,
              context, caps, seed, ordered=bool(attributes) or compare is not None or each is not None)
    started = time.perf_counter()
    count = None  # parts, if known
    if paths is not None:
        todo = parts.split(paths, catalog, part_bytes)
        several, count = len({p.path for p in todo}) > 1, len(todo)
        if not several and todo and todo[0].kind == "csv" and not engine.remote:
            todo, count = _chunks(parts.read(todo[0], catalog)[0]), None  # one CSV file: read here, rows sent
    else:
        todo, several = _chunks(source), False
    size = sum(p.size for p in todo if isinstance(p, parts.Part)) if count is not None else 0
    offset, seen_bytes, file_start, path = 0, 0, 0, None
    first = runs[0]
    keys = first.version.total_keys
    in_flight: deque = deque()

    def sent():
        """Each part with the run's totals as they are when it is sent: only its contacts that
        read a total may have to be arbitrated again, if the totals moved meanwhile."""
        for part in todo:
            in_flight.append(part)
            yield part, {k: n for k, n in first.run.proposed.items() if k in keys} if first.run is not None else {}

    for result in engine.map(job, sent(), count=count):
        part = in_flight.popleft()
        base = 0 if result.absolute else offset
        if isinstance(part, parts.Part) and part.path != path:
            path, file_start = part.path, offset
        _add(runs, result, base)
        for bad in result.bad:
            where = f" ({os.path.basename(path)}, line {bad.line + base - file_start})" if several else ""
            _bad(report, BadRow(bad.line + base, bad.problem + where))
        ordered = result.ordered
        if not job.ordered and (first.run is None or first.version.exact(result.snapshot, first.run.proposed,
                                                                          result.added)):
            arbitration.merge(first.report.spaces, result.tentative, base)  # as arbitrated there
            first.report.contacts += result.ordered_count
            if first.run is not None:
                first.run.add(result.added)
            ordered = []
        elif isinstance(ordered, bytes):
            ordered = pickle.loads(ordered)
        for line, per_version, values in ordered:
            line += base
            picks = [_arbitrate(r, line, per_space, moment.ts) for r, per_space in zip(runs, per_version)]
            if each is not None:
                each(line, {s: p[0] for s, p in zip(spaces, picks[0])})
            if values is not None:
                for b, value in zip(report.by, values):
                    b.add(value, picks[0])
            if compare is not None:
                report.compare.add(runs, picks, per_version)
            for r in runs:
                r.report.contacts += 1
        offset += result.lines
        if progress:  # bad rows count as done: they were read
            done = report.contacts + report.bad_count
            seen_bytes += part.size if isinstance(part, parts.Part) else 0
            guess = total if total is not None else (round(done * size / seen_bytes) if seen_bytes else None)
            progress(done, guess, time.perf_counter() - started)
    for r in runs:
        r.report.bad_count, r.report.bad_rows = report.bad_count, report.bad_rows
        _finish(r)
        r.report.seconds = time.perf_counter() - started
    for b in report.by:
        b.rule_keys = [[str(rule) for rule in distinct] for distinct in runs[0].version.distinct]
    report.seconds = time.perf_counter() - started
    if progress:
        done = report.contacts + report.bad_count
        progress(done, done, report.seconds)  # the end, whatever the estimate of the total was
    return report


def _chunks(items):
    """Rows read here, as parts of ROWS rows (their lines are the population's already),
    read as the parts are sent."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _add(runs: list[_Run], result, base: int) -> None:
    """A part's counts, samples and the contacts its worker arbitrated, added to the run's."""
    for r, counts_v, samples_v, stats in zip(runs, result.counts, result.samples, result.stats):
        for c, (removed, eligibility, by_rule, clauses), sample, mine in zip(r.compiled, counts_v, samples_v,
                                                                              r.samples):
            st = r.report.spaces[c.space.name]
            st.eliminations.update(removed)
            st.eligibility.update(eligibility)
            st.rule_contacts.update(by_rule)
            st.clause_contacts.update(clauses)
            mine.merge(sample)
        arbitration.merge(r.report.spaces, stats, base)
        r.report.contacts += result.contacts


def _bad(report: Report, row: BadRow) -> None:
    report.bad_count += 1
    if len(report.bad_rows) < 100:
        report.bad_rows.append(str(row))


def _arbitrate(r: _Run, line: int, per_space, now: float) -> list[tuple]:
    """The engine's arbitration for one contact, with `total` caps counted over the run
    (no run: caps ignored), in population order; its counts added to the report."""
    chosen, mine = arbitration.choose(r.version, per_space, r.run, now)
    if r.run is not None:
        r.run.add(mine)
    return arbitration.count(r.version, r.report.spaces, line, per_space, chosen)


def _finish(r: _Run) -> None:
    """The run's counters, per offer and per rule; the caps in the order they first bound."""
    v = r.version
    for space, canon, distinct, sample in zip(v.compiled, v.canon, v.distinct, r.samples):
        stats = r.report.spaces[space.space.name]
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
        # in the order they first bound, each cap's offers by count: the same whatever the parts
        stats.caps = dict(sorted(stats.caps.items(), key=lambda kv: (kv[1]["first_bound_line"], kv[0])))
        for entry in stats.caps.values():
            entry["offers"] = dict(sorted(entry["offers"].items(), key=lambda kv: (-kv[1], kv[0])))
        for eligible in sample.eligible():
            for pos, weight in eligible:
                stats.offers[names[pos]].weights.append(weight)


def _clauses(space, index: int, rule: int, contacts: int, counted) -> list[dict]:
    """A rule's clauses, each with the contacts for whom it was the first not true (a rule
    of one clause: all of them; a cap, a suppression or `valid`: none), as written."""
    texts = space.clauses(index)
    if len(texts) == 1:
        return [{"text": texts[0], "contacts": contacts}]
    return [{"text": text, "contacts": counted.get((rule, k), 0)} for k, text in enumerate(texts)]
