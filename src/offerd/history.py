"""The history a compiled space reads: counts of propositions by status in a window.

The LMDB store implements the same three methods (`StoredHistory`); `MemoryHistory` is
the plain in-memory version, used by tests, benchmarks and engines without a store. Windows are half-open,
`since < t <= until`; `since=None` means lifetime. `accepted` and `rejected` imply
`presented` (the caller records the implied event)."""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from .domain import PROPENSITY_WINDOW, propensity

Key = tuple[str, str]  # ("offer" | "category" | "space" | "group", name)


class HistoryView(Protocol):
    def count(self, key: Key, status: str, since: float | None, until: float) -> int:
        """This contact's propositions of `key` that reached `status` in the window."""

    def total(self, key: Key, status: str, since: float | None, until: float) -> int:
        """The same over all contacts."""

    def propensity(self, offer: str, space: str, until: float) -> float:
        """(accepted + 1) / (presented + 2), at most 1, for the offer in the space, last 30 days,
        all contacts."""

    # optional: `latest(key, status, n, until)`, the time of the contact's n-th most recent
    # event (explain finds when a cap frees with it; without it, by halving over `count`)


@dataclass
class Proposition:
    contact: str
    offer: str
    space: str
    categories: tuple[str, ...]  # the offer's category chain when it was proposed
    time: float
    events: dict[str, float] = field(default_factory=dict)  # status → time
    groups: tuple[str, ...] = ()  # the offer's groups when it was proposed

    def keys(self) -> list[Key]:
        return ([("offer", self.offer), ("space", self.space)] + [("category", c) for c in self.categories]
                + [("group", g) for g in self.groups])

    def times(self) -> dict[str, float]:
        out = {"proposed": self.time, **self.events}
        for s in ("accepted", "rejected"):
            if s in out and "presented" not in out:
                out["presented"] = out[s]
        return out


class MemoryHistory:
    """All propositions, indexed by (key, status) → sorted event times, per contact and overall."""

    def __init__(self, propositions=()):
        self._mine: dict[tuple[str, Key, str], list[float]] = defaultdict(list)
        self._all: dict[tuple[Key, str], list[float]] = defaultdict(list)
        self._pairs: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for p in propositions:
            self.add(p)

    def add(self, p: Proposition) -> None:
        for status, t in p.times().items():
            for key in p.keys():
                bisect.insort(self._mine[(p.contact, key, status)], t)
                bisect.insort(self._all[(key, status)], t)
            bisect.insort(self._pairs[(p.offer, p.space, status)], t)

    def view(self, contact: str | None) -> "ContactHistory":
        return ContactHistory(self, contact)


def _in_window(times: list[float], since: float | None, until: float) -> int:
    hi = bisect.bisect_right(times, until)
    lo = 0 if since is None else bisect.bisect_right(times, since)
    return max(hi - lo, 0)


class ContactHistory:
    """One contact's view of a MemoryHistory; an unknown contact (None) has no events."""

    def __init__(self, history: MemoryHistory, contact: str | None):
        self._h, self._contact = history, contact

    def count(self, key, status, since, until) -> int:
        if self._contact is None:
            return 0
        return _in_window(self._h._mine.get((self._contact, key, status), ()), since, until)

    def latest(self, key, status, n: int, until: float) -> float | None:
        """The time of the n-th most recent event up to `until`; None if there are fewer."""
        times = self._h._mine.get((self._contact, key, status), ()) if self._contact is not None else ()
        hi = bisect.bisect_right(times, until)
        return times[hi - n] if n >= 1 and hi >= n else None

    def total(self, key, status, since, until) -> int:
        return _in_window(self._h._all.get((key, status), ()), since, until)

    def propensity(self, offer, space, until) -> float:
        since = until - PROPENSITY_WINDOW
        accepted = _in_window(self._h._pairs.get((offer, space, "accepted"), ()), since, until)
        presented = _in_window(self._h._pairs.get((offer, space, "presented"), ()), since, until)
        return propensity(accepted, presented)


EMPTY = MemoryHistory().view(None)
