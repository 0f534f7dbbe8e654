"""A cluster's shard deciding with total caps counted across shards (cluster.totals): the
picks' caps checked and counted in Redis before the decision is written, and the request
decided again without what Redis refused."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..store.keys import us
from .model import Explained


@dataclass
class Reservation:
    """A decision's reservation in a cluster's shared counts (cluster.totals)."""

    ids: list  # the picks' proposition ids, made before the write: Redis counts them by id
    added: list  # per pick, the heads it was counted in (empty: not counted)
    held: bool  # something was granted: in flight until `totals.done()`
    refused: set  # (space, offer) of the picks refused

    def counted(self, picks=None) -> list[tuple[str, str]]:
        """(head, member) of what was counted, for the picks at these positions (all: None)."""
        return [(h, self.ids[i].hex()) for i in (range(len(self.ids)) if picks is None else picks)
                for h in self.added[i]]


def periods_back(checks: tuple, now: float) -> tuple:
    """Shared checks with each calendar period's window (a CapCheck, see Plan.shared_caps) as
    the µs from its start to `now`, as Redis takes a window."""
    return tuple(c if type(c[1]) is int else (c[0], us(now) - us(c[1].since(now)), c[2]) for c in checks)


async def reserve(engine, request, work, rounds: int = 3) -> tuple[object, Reservation]:
    """The decision's total caps checked and counted in Redis. When some pick is refused,
    what was granted is given back and the request decided again without the refused
    offers (at most `rounds` times; then they are dropped, as a cap taken at commit is), so
    the next best offer takes the place. Returns the decision and its reservation."""
    refused: set = set()
    for _ in range(rounds - 1):
        shared = await _share(engine, work, dropping=False)
        if not shared.refused:
            return work, shared
        if shared.held:
            engine.totals.done()
            await engine.totals.release(shared.counted())
        refused |= shared.refused
        work = engine._prepare(request, frozenset(refused))
        if not engine._records(work):
            break
    return work, await _share(engine, work)


async def _share(engine, work, dropping: bool = True) -> Reservation:
    """The picks' total caps checked and counted in Redis at once; `dropping`: the
    refused picks are dropped from the decision, as a cap taken at commit is."""
    plan, new_id = work.plan, engine.store.new_id
    asks = []
    now = min(work.moment.ts, time.time())  # as the shared counts take it: never ahead of the clock
    for i, p in enumerate(work.picks):
        checks, adds = plan.shared_caps(p.offer, p.space, p.fallback)
        if any(type(c[1]) is not int for c in checks):
            checks = periods_back(checks, now)
        if checks or adds:
            asks.append((i, checks, adds))
    ids = [new_id() for _ in work.picks]
    if not asks:
        return Reservation(ids, [()] * len(ids), False, set())
    granted = await engine.totals.reserve([(ids[i].hex(), c, a) for i, c, a in asks], us(work.moment.ts))
    added: list[tuple] = [()] * len(ids)
    refused = set()
    for (i, _, adds), ok in zip(asks, granted):
        if ok:
            added[i] = adds
        else:
            refused.add(i)
    names = {(work.picks[i].space, work.picks[i].offer.name) for i in refused}
    if refused and dropping:
        for i in refused:
            pick = work.picks[i]
            work.notes[(pick.space, pick.offer.name)] = Explained(pick.offer.name, "cap at commit",
                                                                  weight=pick.weight)
        keep = [i for i in range(len(ids)) if i not in refused]
        work.picks = [work.picks[i] for i in keep]
        ids, added = [ids[i] for i in keep], [added[i] for i in keep]
    return Reservation(ids, added, any(granted), names)
