"""The vocabulary every layer shares: proposition statuses, what a proposition counts
toward, the caps a write re-checks, numeric limits, duration units, propensity, a catalog
version's hash. Plain values with no dependency: the language, the store and the engine
import it, never the reverse."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from . import periods

# A proposition's life: proposed by a decision, then reported presented, accepted or rejected
# (accepted and rejected imply presented).
STATUSES = ("proposed", "presented", "accepted", "rejected")
REPORTED = STATUSES[1:]  # what a status report may say
REF_KINDS = ("offer", "category", "space", "group")  # what a history count or a cap counts

INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # ODL's int: 64 bits, signed
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # seconds, longest first

PROPENSITY_WINDOW = 30 * 86400


def propensity(accepted: int, presented: int) -> float:
    """An offer's smoothed acceptance rate in a space: (accepted + 1) / (presented + 2), at
    most 1 (a late report can count an acceptance whose presentation fell out of the window)."""
    return min(1.0, (accepted + 1) / (presented + 2))


def fmt_duration(seconds: int) -> str:
    """Seconds as ODL writes them: `1d 2h`."""
    parts = []
    for unit, size in DURATION_UNITS.items():
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts)


@dataclass(frozen=True)
class Replay:
    """A decision's write found the first answer of the same request already stored (a
    retry): nothing was written; `value` is that answer."""

    value: bytes


def catalog_hash(sources: dict[str, str]) -> str:
    """A catalog version's identity: SHA-256 over its files' names and contents."""
    h = hashlib.sha256()
    for name in sorted(sources):
        data = sources[name].encode("utf-8", "surrogatepass")
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class CapCheck:
    """A cap to re-check inside the write transaction, against everything committed."""

    scope: str  # "contact" or "total"
    ref_kind: str  # offer category space group
    ref: str
    status: str
    window: float | None  # seconds; None = lifetime, or the calendar period
    limit: int
    # what a layer derives from it once and keeps with it (the store: its counter key)
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    calendar: str | None = None  # "day", "week", "month": counts from the period's start in `zone`
    zone: str = "UTC"

    def since(self, at: float) -> float | None:
        """The window's start for a decision at `at` (counts are of (since, at]); None: lifetime."""
        if self.calendar is not None:
            return periods.since(at, self.calendar, self.zone)
        return None if self.window is None else at - self.window


@dataclass(frozen=True)
class NewProposition:
    """An offer proposed in a space: what it counts toward and the caps to re-check when it
    is written. The engine builds one per offer and space and reuses it."""

    offer: str
    space: str
    categories: tuple[str, ...] = ()
    checks: tuple[CapCheck, ...] = ()
    groups: tuple[str, ...] = ()
    # what a layer derives from it once and keeps with it (the store: its encoded names and keys)
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @cached_property
    def counted(self) -> list[tuple[str, str]]:
        """What a proposition of it counts toward: the offer, the space, each category and group."""
        return ([("offer", self.offer), ("space", self.space)] + [("category", c) for c in self.categories]
                + [("group", g) for g in self.groups])

    @cached_property
    def per_contact(self) -> bool:
        return any(c.scope == "contact" for c in self.checks)

    @cached_property
    def contact_keys(self) -> frozenset[tuple[str, str, str]]:
        """What its per-contact caps count in the contact's history."""
        return frozenset((c.ref_kind, c.ref, c.status) for c in self.checks if c.scope == "contact")
