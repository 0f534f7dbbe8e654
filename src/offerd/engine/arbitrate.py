"""Arbitration: which of a space's eligible offers one decision proposes. Decisions and
simulations both choose here.

The eligible offers come by weight, highest first, ties in declaration order; an offer
already proposed in an earlier space of the decision is passed over, as is one the
request's filters drop; a `proposed` cap is checked with the offers already chosen in the
same decision added to the counts the history gives, and a cap per decision with those
offers alone; at most `limit` are chosen."""
from __future__ import annotations

import heapq
from operator import itemgetter

from ..compiler.runtime import counter
from ..compiler.space import CompiledSpace
from .plan import Plan

_WEIGHT = itemgetter(1)


def ranked(eligible: list[tuple[int, float]], enough: int | None):
    """The eligible offers by weight, highest first, ties in declaration order (a reverse
    sort is stable). When `enough` are likely to settle arbitration, the top ones come from
    a partial selection and the full sort is made only if arbitration asks for more."""
    if enough is None or len(eligible) <= 2 * enough:
        eligible.sort(key=_WEIGHT, reverse=True)
        yield from eligible
        return
    yield from heapq.nlargest(enough, eligible, key=_WEIGHT)  # = sorted(..., reverse=True)[:enough]
    yield from sorted(eligible, key=_WEIGHT, reverse=True)[enough:]


def top_ranked(compiled: CompiledSpace, need: int, args):
    """`ranked` for large spaces whose weights have upper bounds: the `need` best come
    from `compiled.top`, which skips offers that cannot reach them; the whole space is
    evaluated only if arbitration turns down enough of those to ask for more."""
    eligible, complete = compiled.top(need, *args)
    eligible.sort()  # they came in bound order: back to declaration order (positions are unique),
    if complete:     # so that the stable sort by weight keeps ties in that order
        yield from ranked(eligible, need)
        return
    eligible.sort(key=_WEIGHT, reverse=True)  # stable: ties keep declaration order
    given = eligible[:need]
    yield from given
    # The whole space, read again: counts may have moved since (another process's commit),
    # so skip what was given by position rather than by rank.
    done = {pos for pos, _ in given}
    rest = compiled.evaluate(*args)
    rest.sort(key=_WEIGHT, reverse=True)
    yield from (pw for pw in rest if pw[0] not in done)


def arbitrate(plan: Plan, compiled: CompiledSpace, candidates, limit: int, seen: set[str],
              chosen: dict[tuple[str, str], int] | None, history, now: float, keep=None, lost: list | None = None,
              explain: bool = False, recheck: bool = False) -> list[tuple[int, float]]:
    """The offers chosen in one space, [(position, weight)] best first.

    `candidates`: (position, weight) best first (`ranked`, `top_ranked`). `seen`: offer
    names chosen in earlier spaces of this decision; `chosen`: (kind, ref) → offers chosen
    so far in this decision that count toward it (None: caps are not checked here, a
    simulation without caps); both are updated. A cap is checked against `history`'s
    count at `now` plus `chosen`; the compiled rules checked it against `history` alone,
    so it is checked here only once `chosen` adds to it, unless `recheck` (the rules saw
    another history: a simulation's). `keep(offer)` False: the
    request's filters drop the offer. `lost`, if a list, receives (position, weight, why,
    cap or None) for each offer passed over; with `explain`, every candidate is read, so
    that each loser says why, the limit too."""
    space = compiled.space.name
    offers = compiled.offers
    counting = [None]  # the history's counter at `now`, made on the first per-contact count
    won: list[tuple[int, float]] = []
    taken = 0
    for candidate in candidates:
        if taken >= limit and not explain:
            break  # the rest lost arbitration; only explain needs to know each one
        offer = offers[candidate[0]]
        cap = None
        if offer.name in seen:
            why = "already proposed"
        elif keep is not None and not keep(offer):
            why = "filtered"
        elif taken >= limit:
            why = "arbitration"
        elif (chosen or recheck) and (cap := _cap_taken(plan, offer, space, chosen, history, now, recheck,
                                                        counting)):
            why = "cap in decision"
        else:
            won.append(candidate)
            taken += 1
            seen.add(offer.name)
            if chosen is not None:
                for ref in plan.proposition(offer, space).counted:  # built once per (offer, space)
                    chosen[ref] = chosen.get(ref, 0) + 1
            continue
        if lost is not None:
            lost.append((*candidate, why, cap))
    return won


def _cap_taken(plan: Plan, offer, space: str, chosen, history, now: float, recheck: bool, counting: list):
    """The first cap per decision, then `proposed` cap, of the offer that the offers
    already chosen in this decision would take to its limit, or None."""
    if plan.decision_caps:
        for cap in plan.in_decision(offer, space):
            if chosen.get(cap.key, 0) >= cap.limit:
                return cap
    for cap in plan.caps(offer, space):
        c, key = cap.check, cap.key
        mine = chosen.get(key, 0)
        if not mine and not recheck:
            continue
        since = (None if c.window is None else now - c.window) if c.calendar is None else c.since(now)  # inline: hot
        if c.scope == "total":
            count = history.total(key, "proposed", since, now)
        else:
            if counting[0] is None:
                counting[0] = counter(history, now)
            count = counting[0](cap.counted, since)
        if count + mine >= c.limit:
            return cap
    return None
