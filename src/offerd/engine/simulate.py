"""Simulation: a catalog run over a population, nothing recorded, to see before going live
how offers would be distributed and which rule eliminated what.

The rules run in worker processes (every core), each contact's outcome per offer coming
from the compiled `explain` (eligible with its weight, or the first rule that removed it).
Arbitration then runs in this process, contact by contact in the population's order, so
`total` caps apply as if the decisions happened in that order, all at the simulation's
time; contacts have no history (they are decided as new)."""
from __future__ import annotations

import datetime
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter

from ..compiler import SpaceCache
from ..compiler.space import Moment
from ..history import EMPTY
from ..lang.catalog import Catalog
from .plan import Plan
from . import population
from .population import BadRow

CHUNK = 256  # contacts per task sent to a worker
SAMPLE = 2000  # contacts whose weights make the weight distributions (a uniform sample)

_worker: dict = {}  # the catalog and compiled spaces, in each worker process


@dataclass
class OfferStats:
    proposed: int = 0
    eligible: int = 0
    eliminated: dict[str, int] = field(default_factory=dict)  # rule → contacts it removed the offer for
    capped: int = 0  # eligible and good enough, refused by a cap filled within the run
    elsewhere: int = 0  # eligible and good enough, but proposed in an earlier space of the same decision
    weights: list[float] = field(default_factory=list)  # in the sampled contacts


@dataclass
class SpaceStats:
    ranks: list[dict[str, int]]  # per rank (1 first): offer → contacts
    offers: dict[str, OfferStats]
    fallback_only: int = 0
    nothing: int = 0
    caps: dict[str, dict] = field(default_factory=dict)  # cap rule → {offer, first_bound_line, refused}
    # counted as the run goes, cheaply (C-level Counter updates), turned into offers at the end
    eliminations: Counter = field(default_factory=Counter)  # (position, rule index) → contacts
    eligibility: Counter = field(default_factory=Counter)  # position → contacts
    sampled: list = field(default_factory=list)  # eligible lists of a uniform sample of contacts
    decided: int = 0


@dataclass
class Report:
    catalog: str
    at: datetime.datetime
    spaces: dict[str, SpaceStats]
    contacts: int = 0
    bad_rows: list[str] = field(default_factory=list)
    bad_count: int = 0
    seconds: float = 0.0
    workers: int = 1
    caps: bool = True

    def to_json(self) -> dict:
        def weights(o: OfferStats) -> dict | None:
            if not o.weights:
                return None
            w = sorted(o.weights)
            return {"min": w[0], "p25": w[len(w) // 4], "p50": w[len(w) // 2], "p75": w[3 * len(w) // 4],
                    "max": w[-1], "mean": statistics.fmean(w), "contacts_sampled": len(w)}

        return {
            "catalog": self.catalog, "at": self.at.isoformat(), "contacts": self.contacts,
            "bad_rows": self.bad_count, "bad_row_examples": self.bad_rows, "seconds": round(self.seconds, 3),
            "contacts_per_second": round(self.contacts / self.seconds) if self.seconds else None,
            "workers": self.workers, "caps_applied": self.caps,
            "spaces": {name: {
                "ranks": [dict(sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))) for r in s.ranks],
                "fallback_only": s.fallback_only, "nothing": s.nothing,
                "offers": {o: {"proposed": st.proposed, "share": st.proposed / self.contacts if self.contacts else 0.0,
                               "eligible": st.eligible, "refused_by_caps_in_run": st.capped,
                               "proposed_in_an_earlier_space": st.elsewhere,
                               "eliminated": dict(sorted(st.eliminated.items(), key=lambda kv: -kv[1])),
                               "weight": weights(st)}
                           for o, st in s.offers.items()},
                "caps": s.caps,
            } for name, s in self.spaces.items()},
        }


def _init(catalog: Catalog, spaces: list[str]) -> None:
    cache = SpaceCache()
    _worker["spaces"] = [cache.get(catalog, s) for s in spaces]
    _worker["schema"] = catalog.contact


def _outcomes(task) -> list:
    """Per row: (line, per space (eligible [(pos, weight)], fails [(pos, rule index)])), or
    a BadRow. The rows come typed, or as JSON Lines text that is parsed here."""
    moment, context, raw, items = task
    spaces, out = _worker["spaces"], []
    for item in items:
        if raw:
            line_no, text = item
            item = text if isinstance(text, BadRow) else population.parse_json_line(line_no, text, _worker["schema"])
            if item is None:
                continue
            if isinstance(item, BadRow):
                out.append(item)
                continue
        out.append((item.line, [space.outcomes(item.attributes, context, moment, EMPTY) for space in spaces]))
    return out


def simulate(catalog: Catalog, spaces: list[str], source, at: datetime.datetime, workers: int | None = None,
             caps: bool = True, context: dict | None = None, total: int | None = None,
             progress=None) -> Report:
    """Decide every contact of `source` in `spaces`, recording nothing. `source` is a
    population file's path (.jsonl is then parsed by the workers) or an iterable of Rows
    and BadRows (as population.read gives). `progress(done, total, seconds)` is called as
    rows complete."""
    unknown = [s for s in spaces if s not in catalog.spaces]
    if unknown:
        raise ValueError(f"no space {unknown[0]!r} in the catalog; spaces: {', '.join(sorted(catalog.spaces))}")
    workers = workers or os.cpu_count() or 1
    plan = Plan(catalog)
    cache = SpaceCache()
    compiled = [cache.get(catalog, s) for s in spaces]
    moment = Moment.at(at, catalog.timezone)
    report = Report(catalog.hash, at, {
        s: SpaceStats([{} for _ in range(c.space.limit)], {o.name: OfferStats() for o in c.offers})
        for s, c in zip(spaces, compiled)}, workers=workers, caps=caps)
    run_counts: dict[tuple[str, str], int] = {}  # propositions made in the run, per (kind, ref)
    rnd = random.Random(0)  # weight samples: the same report for the same input
    started = time.perf_counter()
    raw = isinstance(source, str) and not source.endswith(".csv") and workers > 1
    items = population.jsonl_lines(source) if raw else (
        population.read(source, catalog) if isinstance(source, str) else source)
    context = context or {}

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
            _init(catalog, spaces)
            for task in tasks():
                yield _outcomes(task)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init, initargs=(catalog, spaces)) as pool:
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
            _arbitrate(report, plan, compiled, entry[0], entry[1], run_counts, caps, rnd)
            report.contacts += 1
        if progress:  # bad rows count as done: they were read
            progress(report.contacts + report.bad_count, total, time.perf_counter() - started)
    _finish(report, compiled)
    report.seconds = time.perf_counter() - started
    if progress:
        done = report.contacts + report.bad_count
        progress(done, done, report.seconds)  # the end, whatever the estimate of the total was
    return report


def _bad(report: Report, row: BadRow) -> None:
    report.bad_count += 1
    if len(report.bad_rows) < 100:
        report.bad_rows.append(str(row))


def _arbitrate(report: Report, plan: Plan, compiled, line: int, per_space, run_counts, caps: bool, rnd) -> None:
    """The engine's arbitration for one contact, with `total` caps counted over the run."""
    seen: set[str] = set()
    mine: dict[tuple[str, str], int] = {}  # this contact's propositions so far, per (kind, ref)
    for space, (eligible, fails) in zip(compiled, per_space):
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
        chosen = 0
        for pos, weight in sorted(eligible, key=lambda pw: (-pw[1], pw[0])):
            if chosen >= space.space.limit:
                break
            offer = space.offers[pos]
            if offer.name in seen:
                stats.offers[offer.name].elsewhere += 1
                continue
            cap = _full_cap(plan, offer, space.space.name, run_counts, mine) if caps else None
            if cap is not None:
                stats.offers[offer.name].capped += 1
                entry = stats.caps.setdefault(str(cap.rule), {"offer": offer.name, "first_bound_line": line,
                                                             "refused": 0})
                entry["refused"] += 1
                continue
            seen.add(offer.name)
            stats.ranks[chosen][offer.name] = stats.ranks[chosen].get(offer.name, 0) + 1
            stats.offers[offer.name].proposed += 1
            chosen += 1
            for ref in plan.proposition(offer, space.space.name).counted:
                run_counts[ref] = run_counts.get(ref, 0) + 1
                mine[ref] = mine.get(ref, 0) + 1
        if chosen == 0:
            if space.fallback is not None:
                stats.fallback_only += 1
            else:
                stats.nothing += 1


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


def _full_cap(plan: Plan, offer, space: str, run_counts, mine):
    """The first `proposed` cap of the offer that the run (total caps) or this contact's
    propositions in this decision (per-contact caps) have filled, or None."""
    for cap in plan.caps(offer, space):
        c = cap.check
        counts = run_counts if c.scope == "total" else mine
        if counts.get((c.ref_kind, c.ref), 0) >= c.limit:
            return cap
    return None


def progress_bar(out=sys.stderr):
    """A progress callback drawing one line: done, share, rate, ETA."""
    last = [None]

    def draw(done: int, total: int | None, seconds: float) -> None:
        if last[0] == (done, total):
            return  # the end, drawn already
        last[0] = (done, total)
        rate = done / seconds if seconds > 0 else 0.0
        if total:
            eta = (total - done) / rate if rate else 0.0
            line = f"simulate: {done:,}/{total:,} rows ({done / total:.0%}), {rate:,.0f}/s, ETA {eta:,.0f} s"
        else:
            line = f"simulate: {done:,} rows, {rate:,.0f}/s"
        out.write("\r" + line.ljust(78))
        if total and done >= total:
            out.write("\n")
        out.flush()
    return draw


def tables(report: Report) -> str:
    """The report as plain-text tables."""
    out = [f"catalog {report.catalog[:12]} at {report.at.isoformat()}: {report.contacts:,} contacts "
           f"({report.bad_count:,} bad rows skipped) in {report.seconds:.1f} s on {report.workers} "
           f"process{'es' if report.workers != 1 else ''}; caps {'applied in order' if report.caps else 'ignored'}"]
    for name, s in report.spaces.items():
        out += ["", f"space {name}: fallback only {s.fallback_only:,}, nothing {s.nothing:,}", "",
                f"{'offer':<24} {'proposed':>9} {'share':>7} {'eligible':>9} {'capped':>7} {'earlier':>8}  "
                "most eliminated by"]
        for offer, st in sorted(s.offers.items(), key=lambda kv: (-kv[1].proposed, kv[0])):
            top = max(st.eliminated.items(), key=lambda kv: kv[1], default=None)
            why = f"{top[1]:,} {top[0]}" if top else ""
            share = st.proposed / report.contacts if report.contacts else 0.0
            out.append(f"{offer:<24} {st.proposed:>9,} {share:>7.1%} {st.eligible:>9,} {st.capped:>7,} "
                       f"{st.elsewhere:>8,}  {why}")
        for rule, c in s.caps.items():
            out.append(f"cap bound from line {c['first_bound_line']}: {rule} ({c['refused']:,} refused)")
    return "\n".join(out)
