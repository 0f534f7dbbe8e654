"""A simulation's arbitration and the report counts it makes, the same in a worker and in
the process that runs the simulation: which offers each contact gets (the engine's
`arbitrate`), counted per space, offer, rank and cap; and how parts' counts add up.

`total` caps make a contact's offers depend on the contacts before it. A worker arbitrates
every contact with the run's totals as they were when its part was sent (a snapshot) plus
the part's own propositions (`Optimist`), and keeps apart the contacts that read a total.
The run, adding up the parts in population order, keeps a part's results if no total cap
could have decided otherwise with the real totals (`Version.exact`): the run's totals have
not moved since the snapshot, or the cap was full then, or stays below its limit after the
part. Otherwise it arbitrates that part's contacts that read a total again, in order."""
from __future__ import annotations

import hashlib
import heapq

from ..compiler import SpaceCache
from ..engine.arbitrate import arbitrate, ranked
from ..engine.plan import Cap, Plan
from ..lang.catalog import Catalog
from .report import OfferStats, SpaceStats, rule_json

SAMPLE = 2000  # contacts whose weights make the weight distributions (a uniform sample)
_NONE: frozenset = frozenset()


class Optimist:
    """A worker's history for one part: a contact has none; a total is the run's when the
    part was sent plus what the part proposed so far. `read` says a contact read one."""

    def __init__(self, snapshot: dict):
        self.snapshot, self.added, self.read = snapshot, {}, False

    def count(self, key, status, since, until) -> int:
        return 0

    def total(self, key, status, since, until) -> int:
        self.read = True
        return self.snapshot.get(key, 0) + self.added.get(key, 0)

    def add(self, counts: dict, keys: frozenset) -> None:
        for ref, k in counts.items():
            if ref in keys:
                self.added[ref] = self.added.get(ref, 0) + k


class RunHistory:
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


def distinct_rules(space) -> tuple[tuple[int, ...], list]:
    """A compiled space's rules made distinct: rule index → distinct id, and the distinct
    RuleRefs (equal RuleRefs are one rule, whatever the offer they were compiled for)."""
    ids: dict = {}
    return tuple(ids.setdefault(rule, len(ids)) for rule in space.rules), list(ids)


class Version:
    """One catalog version being simulated: its compiled spaces and plan, per space its
    rules made distinct, and the keys its total caps count."""

    def __init__(self, index: int, catalog: Catalog, spaces: list[str]):
        unknown = [s for s in spaces if s not in catalog.spaces]
        if unknown:
            raise ValueError(f"no space {unknown[0]!r} in catalog {catalog.hash[:12]}; "
                             f"spaces: {', '.join(sorted(catalog.spaces))}")
        self.index, self.catalog, self.spaces = index, catalog, list(spaces)
        self.plan = Plan(catalog)
        cache = SpaceCache()
        self.compiled = [cache.get(catalog, s) for s in spaces]
        self.positions = [{o.name: pos for pos, o in enumerate(c.offers)} for c in self.compiled]
        rules = [distinct_rules(c) for c in self.compiled]
        self.canon, self.distinct = [r[0] for r in rules], [r[1] for r in rules]
        self.totals = sorted({(cap.key, cap.check.limit) for c in self.compiled for o in c.offers
                              for cap in self.plan.caps(o, c.space.name) if cap.check.scope == "total"})
        self.total_keys = frozenset(key for key, _ in self.totals)

    def exact(self, snapshot: dict, now: dict, added: dict) -> bool:
        """Whether a part arbitrated with the totals of `snapshot` (its own propositions
        `added` on top) chose as it would have with the run's totals `now`: for each total
        cap, the totals did not move, or the cap was full already, or stays below its limit."""
        for key, limit in self.totals:
            then, real = snapshot.get(key, 0), now.get(key, 0)
            if real != then and then < limit and real + added.get(key, 0) >= limit:
                return False
        return True

    def new_stats(self) -> dict[str, SpaceStats]:
        return {c.space.name: SpaceStats([{} for _ in range(c.space.limit)], {o.name: OfferStats() for o in c.offers})
                for c in self.compiled}


def choose(v: Version, per_space, run, now: float) -> tuple[list, dict]:
    """The engine's arbitration for one contact in every space, in order: per space (won,
    lost), and this contact's propositions per (kind, ref). `run` None: caps ignored."""
    seen: set[str] = set()
    mine: dict[tuple[str, str], int] = {}
    out = []
    for space, outcome in zip(v.compiled, per_space):
        limit, lost = space.space.limit, []
        won = arbitrate(v.plan, space, ranked(outcome[0], 2 * limit + 2), limit, seen,
                        None if run is None else mine, run, now, lost=lost, recheck=run is not None)
        out.append((won, lost))
    return out, mine


def count(v: Version, stats: dict[str, SpaceStats], line: int, per_space, chosen) -> list[tuple]:
    """The report's counts of one contact's arbitration. Per space: (the offers chosen, or
    the fallback; 1 if the fallback was given, else 0; the distinct rules that removed an
    offer, if the worker sent them; the offers passed over, as `arbitrate` lists them)."""
    out = []
    for space, (_, _, admitted, rules), (won, lost) in zip(v.compiled, per_space, chosen):
        st = stats[space.space.name]
        st.decided += 1
        for pos, _, why, cap in lost:
            offer = space.offers[pos].name
            if why == "already proposed":
                st.offers[offer].elsewhere += 1
            else:
                st.offers[offer].capped += 1
                key = str(cap.rule)
                entry = st.caps.get(key)
                if entry is None:
                    entry = st.caps[key] = {**rule_json(v.catalog, cap.rule), "scope": _scope(cap),
                                            "first_bound_line": line, "refused": 0, "offers": {}}
                entry["refused"] += 1
                entry["offers"][offer] = entry["offers"].get(offer, 0) + 1
        names = []
        for rank, (pos, _) in enumerate(won):
            offer = space.offers[pos].name
            names.append(offer)
            st.ranks[rank][offer] = st.ranks[rank].get(offer, 0) + 1
            st.offers[offer].proposed += 1
        state = 0
        if not won:
            if space.fallback is not None and admitted:  # the space's own rules hold it back too
                st.fallback_only += 1
                names.append(space.fallback.name)
                state = 1
            else:
                st.nothing += 1
        out.append((tuple(names), state, rules or _NONE, lost))
    return out


def _scope(cap) -> str:
    """What filled a cap that refused an offer in a run."""
    if not isinstance(cap, Cap):
        return "per decision: offers chosen earlier in the call"
    if cap.check.scope == "total":
        return "total: filled earlier in population order"
    return "per contact: offers chosen earlier in the call"


def merge(into: dict[str, SpaceStats], part: dict[str, SpaceStats], offset: int) -> None:
    """A part's counts (its lines numbered from `offset` + 1) added to the run's."""
    for name, p in part.items():
        st = into[name]
        st.decided += p.decided
        st.fallback_only += p.fallback_only
        st.nothing += p.nothing
        for mine, theirs in zip(st.ranks, p.ranks):
            for offer, k in theirs.items():
                mine[offer] = mine.get(offer, 0) + k
        for offer, o in p.offers.items():
            s = st.offers[offer]
            s.proposed += o.proposed
            s.capped += o.capped
            s.elsewhere += o.elsewhere
        for key, cap in p.caps.items():
            entry = st.caps.get(key)
            line = cap["first_bound_line"] + offset
            if entry is None:
                st.caps[key] = {**cap, "first_bound_line": line, "offers": dict(cap["offers"])}
                continue
            entry["first_bound_line"] = min(entry["first_bound_line"], line)
            entry["refused"] += cap["refused"]
            for offer, k in cap["offers"].items():
                entry["offers"][offer] = entry["offers"].get(offer, 0) + k


def sample_key(seed: int, contact_id: str) -> int:
    """Where a contact stands in the sample of weights: the SAMPLE contacts of smallest
    key make it, so any split of the population samples the same contacts."""
    return int.from_bytes(hashlib.blake2b(contact_id.encode("utf-8", "surrogatepass"), digest_size=8,
                                          key=seed.to_bytes(8, "big", signed=True)).digest(), "big")


class Sample:
    """The SAMPLE contacts of smallest key, with their eligible offers; mergeable."""

    def __init__(self):
        self.heap: list = []  # (-key, id, eligible): the largest key on top, the first to go

    def add(self, key: int, contact_id: str, eligible) -> None:
        if len(self.heap) < SAMPLE:
            heapq.heappush(self.heap, (-key, contact_id, tuple(sorted(eligible))))
        elif -key > self.heap[0][0]:
            heapq.heapreplace(self.heap, (-key, contact_id, tuple(sorted(eligible))))
        elif -key == self.heap[0][0]:  # the same key: the order of the rest decides, whatever the order seen
            entry = (-key, contact_id, tuple(sorted(eligible)))
            if entry > self.heap[0]:
                heapq.heapreplace(self.heap, entry)

    def merge(self, other: "Sample") -> None:
        """The entries `add` would keep of both (the largest tuples: smallest keys first)."""
        if other.heap:
            self.heap = heapq.nlargest(SAMPLE, self.heap + other.heap)
            heapq.heapify(self.heap)

    def eligible(self) -> list:
        return [e for _, _, e in self.heap]
