"""What a simulation's worker does with one part of the population: read and type its rows,
run the compiled rules on each contact (the compiled `explain`: every offer's weight, or the
first rule that removed it), count what the report needs, sample weights, and arbitrate the
contacts whose offers do not depend on the contacts before them (arbitration.py). The rest
are arbitrated with the run's totals when the part was sent, and sent back also as compact
candidate lists, in case the run must arbitrate them again in population order."""
from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter

from ..compiler.space import Moment
from ..history import EMPTY
from ..lang import gc_paused
from ..lang.catalog import CONTACT_ID, Catalog
from ..engine.plan import reads_contact_id
from . import arbitration, parts, population
from .population import BadRow

CHUNK = 256  # contacts whose counts are gathered together (C-level Counter updates)
_NONE: frozenset = frozenset()
_POSITION = itemgetter(0)


@dataclass(frozen=True)
class Job:
    """A simulation's inputs, the same for every part: sent once to each worker."""

    catalogs: list[Catalog]  # the catalog, and the one compared with
    spaces: list[str]
    by: list[tuple[str, str]]  # (root, name) of each --by attribute
    moment: Moment
    context: dict
    caps: bool
    seed: int
    ordered: bool  # every contact arbitrated by the run (--by, --compare, per-contact output)

    @property
    def key(self) -> tuple:
        return (tuple(c.hash for c in self.catalogs), tuple(self.spaces), tuple(self.by), self.caps)


@dataclass
class PartResult:
    """A part's outcome. Lines are the part's own (from 1) unless `absolute`."""

    lines: int  # lines the part holds (its successors' lines start after them)
    absolute: bool
    bad: list[BadRow] = field(default_factory=list)
    counts: list = field(default_factory=list)  # per version and space: the four Counters (_outcomes)
    samples: list = field(default_factory=list)  # per version and space: an arbitration.Sample
    stats: list = field(default_factory=list)  # per version: {space: SpaceStats} of contacts that read no total
    contacts: int = 0  # arbitrated here, reading no total
    # (line, per version per space outcome, --by values), pickled: the run reads them only if it
    # arbitrates them itself (most parts come back exact, and unpickling them was most of its work)
    ordered: bytes | list = field(default_factory=list)
    ordered_count: int = 0
    # the contacts of `ordered` as arbitrated here (without --by, --compare): their counts, the
    # totals they were arbitrated with, and what they added to the totals
    tentative: dict = field(default_factory=dict)
    snapshot: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)


_states: dict = {}  # per process: jobs' compiled states, by Job.key, the most recent last
KEPT = 4  # states a worker keeps (a Dask worker may serve the parts of several runs in turn)


def state(job: Job) -> dict:
    got = _states.pop(job.key, None)
    if got is None:
        got = new_state(job.catalogs, job.spaces, job.by)
        while len(_states) >= KEPT:
            del _states[next(iter(_states))]
    _states[job.key] = got
    return got


def new_state(catalogs: list[Catalog], spaces: list[str], by: list[tuple[str, str]]) -> dict:
    """What deciding rows needs: the compiled spaces and their rules made distinct."""
    versions = [arbitration.Version(i, c, spaces) for i, c in enumerate(catalogs)]
    compiled = [v.compiled for v in versions]
    canon = [v.canon for v in versions]
    return {"versions": compiled, "arbiters": versions, "canon": canon,
            "split": [[split_rules(space, c) for space, c in zip(v, cv)] for v, cv in zip(compiled, canon)],
            "schema": catalogs[0].contact, "context": catalogs[0].context, "domains": catalogs[0].domains,
            "catalog": catalogs[0], "ids": any(map(reads_contact_id, catalogs)), "by": by}


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


def run_part(job: Job, item, own_state: dict | None = None) -> PartResult:
    """One part, with the run's totals when it was sent: (a parts.Part read here, or a list
    of Rows and BadRows read by the run; {total's key: count}). The cyclic garbage collector
    waits until the part is done: what a part makes has no cycles, and its passes over a big
    heap (a Dask worker's) cost up to a sixth of the time. Only in a worker process: the
    switch is the whole process's, and a server runs simulations in threads."""
    if own_state is not None:
        return _run_part(job, item, own_state)
    with gc_paused():
        return _run_part(job, item, own_state)


def _run_part(job: Job, item, own_state: dict | None) -> PartResult:
    part, snapshot = item
    st = own_state if own_state is not None else state(job)
    if isinstance(part, parts.Part):
        items, lines = parts.read(part, st["catalog"])
        raw, result = part.kind == "jsonl", PartResult(0, False)
    else:
        items, lines, raw, result = part, [0], False, PartResult(0, True)
    arbiters = st["arbiters"]
    result.samples = [[arbitration.Sample() for _ in job.spaces] for _ in arbiters]
    result.stats = [v.new_stats() for v in arbiters]
    result.tentative, result.snapshot = arbiters[0].new_stats(), snapshot
    counts = [[(Counter(), Counter(), Counter(), Counter()) for _ in job.spaces] for _ in arbiters]
    history = arbitration.Optimist(snapshot) if job.caps else None
    now = job.moment.ts
    chunk: list = []

    def flush():
        out, chunk_counts = _outcomes(job, raw, chunk, st)
        for mine, theirs in zip(counts, chunk_counts):
            for a, b in zip(mine, theirs):
                for x, y in zip(a, b):
                    x.update(y)
        for entry in out:
            if isinstance(entry, BadRow):
                result.bad.append(entry)
                continue
            line, per_version, values, key, contact_id = entry
            for samples, per_space in zip(result.samples, per_version):
                for sample, outcome in zip(samples, per_space):
                    sample.add(key, contact_id, outcome[0])
            if not job.ordered:
                v = arbiters[0]
                if history is not None:
                    history.read = False
                chosen, mine = arbitration.choose(v, per_version[0], history, now)
                if history is None or not history.read and v.total_keys.isdisjoint(mine):
                    arbitration.count(v, result.stats[0], line, per_version[0], chosen)
                    result.contacts += 1
                    continue
                arbitration.count(v, result.tentative, line, per_version[0], chosen)
                history.add(mine, v.total_keys)
            result.ordered.append((line, per_version, values))
        chunk.clear()

    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            flush()
    if chunk:
        flush()
    result.lines = lines[0]
    result.counts = counts
    if history is not None:
        result.added = history.added
    result.ordered_count = len(result.ordered)
    if own_state is None:  # sent back to the run from another process
        result.ordered = pickle.dumps(result.ordered, protocol=pickle.HIGHEST_PROTOCOL)
    return result


def _outcomes(job: Job, raw: bool, items: list, st: dict) -> tuple[list, list]:
    """(rows, counts) of a chunk. Per row: (line, per version, per space (eligible [(pos,
    weight)], fails [(pos, rule index)], admitted, the distinct rules that removed an offer
    if --by needs them), the row's --by values or None, its sample key, its id), or a
    BadRow. Counts, per version and space: (position, rule index) → contacts, position →
    contacts eligible, distinct rule → contacts it removed any offer for, (distinct rule,
    clause) → contacts: each contact once per rule. The rows come typed, or as JSON Lines
    text parsed here."""
    moment, context, seed = job.moment, job.context, job.seed
    versions, canons, by, out = st["versions"], st["canon"], st["by"], []
    splits = st["split"]
    drop_fails = len(versions) == 1  # without --compare, the run reads no fails: none sent
    # per version and space: each contact's fails, eligible offers and distinct rules,
    # gathered with list appends (cheap per contact) and counted once per chunk; and
    # (distinct rule, clause) → contacts, for the rules of several clauses
    gathered = [[([], [], [], []) for _ in spaces] for spaces in versions]
    several = [[frozenset(split) for split in split_v] for split_v in splits]  # the rules of several clauses
    for item in items:
        if raw:
            line_no, text = item
            item = text if isinstance(text, BadRow) else population.parse_json_line(
                line_no, text, st["schema"], st["domains"], st["context"])
            if item is None:
                continue
        if isinstance(item, BadRow):
            out.append(item)
            continue
        attrs = {**item.attributes, CONTACT_ID: item.contact_id} if st["ids"] else item.attributes
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
                per_space.append((eligible, None if drop_fails else fails, space.admits(attrs, ctx, moment, EMPTY),
                                  rules if by else None))
            per_version.append(per_space)
        values = tuple((item.attributes if root == "contact" else ctx).get(name) for root, name in by) if by else None
        out.append((item.line, per_version, values, arbitration.sample_key(seed, item.contact_id), item.contact_id))
    counts = [[(Counter(chain.from_iterable(f)), Counter(map(_POSITION, chain.from_iterable(e))),
                Counter(chain.from_iterable(r)), Counter(chain.from_iterable(c))) for f, e, r, c in v] for v in gathered]
    return out, counts
