"""What the engine takes and gives: plain values, no gRPC."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import ClassVar

from ..compiler.why import Why


class EngineError(Exception):
    """A request the engine refuses, with a message a person can act on."""


class BadRequest(EngineError):
    """Malformed input: a bad attribute, an unknown space, a naive time (INVALID_ARGUMENT)."""


class UnknownSpace(EngineError):
    """The live catalog has no such space (NOT_FOUND)."""


class NoCatalog(EngineError):
    """No catalog is live yet (FAILED_PRECONDITION)."""


# Request and Proposal are made once per call and per offer proposed: plain slotted classes,
# which a frozen dataclass's per-field object.__setattr__ would make several times dearer.
# Nothing in offerd changes one once made.
@dataclass(slots=True)
class Request:
    spaces: tuple[str, ...]
    contact_id: str | None = None  # None: an unknown contact (no profile, no history)
    anonymous: bool = False  # a visitor id: history, no stored profile
    attributes: dict = field(default_factory=dict)  # contact attributes; win over the stored profile
    context: dict = field(default_factory=dict)
    max_offers: int | None = None  # per space, at most the space's limit
    categories: tuple[str, ...] = ()  # keep offers in these categories or below them
    themes: tuple[str, ...] = ()  # keep offers with at least one of these themes
    dry_run: bool = False  # decide, record nothing
    explain: bool = False
    explain_all: bool = False  # with explain: every rule that removed an offer, not only the first
    time: datetime.datetime | None = None  # aware; None: the clock
    request_id: str | None = None  # a recorded decision retried with it gets its first answer
    batch: bytes | None = None  # a batch row's note key: decided once, whenever sent again (retries.batch_key)


@dataclass(slots=True)
class Proposal:
    offer: str
    rank: int  # 1 = best
    weight: float | None  # None for a fallback
    content: dict[str, str]
    id: str | None  # hex proposition id; None for a dry run
    fallback: bool = False


@dataclass(frozen=True)
class Explained:
    """Why one offer of a space won or lost. `kind`: won, valid, eligible, cap, suppress,
    weight (null), arbitration (lost on weight or limit), cap in decision (taken by offers
    chosen earlier in this call), already proposed (in another space of this call),
    filtered (by the request's categories or themes), cap at commit (a concurrent decision
    took the cap first)."""

    offer: str
    kind: str
    rule: str | None = None  # "file:line:col: owner: text"
    weight: float | None = None
    rank: int | None = None
    why: Why | None = None  # a rule that removed the offer: why it was not true
    also: tuple[Explained, ...] = ()  # with explain_all: its other rules not true either


@dataclass(frozen=True)
class SpaceResult:
    space: str
    proposals: tuple[Proposal, ...]
    explain: tuple[Explained, ...] | None = None


@dataclass(frozen=True)
class Decision:
    time: datetime.datetime
    catalog: str  # the catalog hash that decided
    spaces: tuple[SpaceResult, ...]
    replayed: ClassVar[bool] = False  # True in a Replayed: a retried request's first answer, given again

    def offers(self, space: str) -> list[str]:
        return [p.offer for r in self.spaces if r.space == space for p in r.proposals]


class Replayed(Decision):
    """A retried request's first answer, given again (engine.retries)."""

    replayed = True
