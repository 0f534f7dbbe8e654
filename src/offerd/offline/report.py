"""A simulation's report and its JSON: the run's inputs; per space and offer what was
proposed, eligible, eliminated and by which rule (each contact counted once per rule),
refused by caps in the run; per value of an attribute (breakdown.py); how another catalog
version decides the same contacts (compare.py). The text and HTML reports are drawn from
this JSON (report_text.py, report_html.py), so the three show the same facts."""
from __future__ import annotations

import datetime
import statistics
from collections import Counter
from dataclasses import dataclass, field

from ..lang.catalog import Catalog, RuleRef

# the JSON keys that change from one run of the same inputs to the next
VOLATILE = ("seconds", "contacts_per_second", "workers")


@dataclass
class Inputs:
    """What a run was given, as every report states it."""

    label: str  # the catalog: its folder, or its version's label on a server
    hash: str
    at: datetime.datetime
    spaces: list[str]
    context: dict  # the run's context, typed; a contact's own values win over it
    population: str | None = None  # the file; None: rows given otherwise (a request, a list)
    by: list[str] = field(default_factory=list)
    seed: int = 0  # of the uniform sample of contacts whose weights are shown
    caps: bool = True
    compare: tuple[str, str] | None = None  # the other version's (label, hash)

    def to_json(self, contacts: int, bad: int) -> dict:
        out = {"catalog": {"label": self.label, "hash": self.hash}, "at": self.at.isoformat(),
               "context": {k: plain(v) for k, v in sorted(self.context.items())}, "spaces": list(self.spaces),
               "population": {"file": self.population, "contacts": contacts, "bad_rows": bad},
               "by": list(self.by), "seed": self.seed, "caps_applied": self.caps}
        if self.compare is not None:
            out["compare"] = {"label": self.compare[0], "hash": self.compare[1]}
        return out


def plain(v):
    """A typed attribute value as JSON has it: dates ISO, sets as sorted lists."""
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, frozenset):
        return sorted(map(plain, v), key=str)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def rule_json(catalog: Catalog, rule: RuleRef) -> dict:
    """A rule as reports show it: kind, owner, where it is written and the text as written."""
    written = catalog.text(rule.span) if rule.span.line > 0 and not rule.text.endswith("(default)") else ""
    return {"kind": rule.kind, "owner": rule.owner, "at": str(rule.span), "text": written or rule.text}


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
    caps: dict[str, dict] = field(default_factory=dict)  # cap rule → {scope, ..., first_bound_line, refused, offers}
    rules: dict[str, dict] = field(default_factory=dict)  # rule → its JSON entry, made at the end
    # counted as the run goes, cheaply (C-level Counter updates), turned into the above at the end
    eliminations: Counter = field(default_factory=Counter)  # (position, rule index) → contacts
    rule_contacts: Counter = field(default_factory=Counter)  # distinct rule → contacts it removed any offer for
    clause_contacts: Counter = field(default_factory=Counter)  # (distinct rule, clause) → contacts
    eligibility: Counter = field(default_factory=Counter)  # position → contacts
    sampled: list = field(default_factory=list)  # eligible lists of a uniform sample of contacts
    decided: int = 0


@dataclass
class Report:
    inputs: Inputs
    spaces: dict[str, SpaceStats]
    contacts: int = 0
    bad_rows: list[str] = field(default_factory=list)
    bad_count: int = 0
    seconds: float = 0.0
    workers: int = 1
    by: list = field(default_factory=list)  # breakdown.Breakdown, one per --by attribute
    compare: object = None  # compare.Comparison against another catalog version, if asked

    @property
    def catalog(self) -> str:
        return self.inputs.hash

    @property
    def at(self) -> datetime.datetime:
        return self.inputs.at

    def to_json(self) -> dict:
        n = self.contacts
        return {
            "run": self.inputs.to_json(n, self.bad_count),
            "catalog": self.inputs.hash, "at": self.inputs.at.isoformat(), "contacts": n,
            "bad_rows": self.bad_count, "bad_row_examples": self.bad_rows, "seconds": round(self.seconds, 3),
            "contacts_per_second": round(n / self.seconds) if self.seconds else None,
            "workers": self.workers, "caps_applied": self.inputs.caps,
            "spaces": {name: _space_json(s, n) for name, s in self.spaces.items()},
            **({"by": {b.attribute: b.to_json() for b in self.by}} if self.by else {}),
            **({"compare": self.compare.to_json(n)} if self.compare is not None else {}),
        }


def _by_count(items) -> list:
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))


def _weights(o: OfferStats) -> dict | None:
    if not o.weights:
        return None
    w = sorted(o.weights)
    return {"min": w[0], "p25": w[len(w) // 4], "p50": w[len(w) // 2], "p75": w[3 * len(w) // 4],
            "max": w[-1], "mean": statistics.fmean(w), "contacts_sampled": len(w)}


def _space_json(s: SpaceStats, contacts: int) -> dict:
    return {
        "ranks": [dict(_by_count(r.items())) for r in s.ranks],
        "rank_shares": [{o: k / contacts for o, k in _by_count(r.items())} if contacts else {} for r in s.ranks],
        "fallback_only": s.fallback_only, "nothing": s.nothing,
        "offers": {o: {"proposed": st.proposed, "share": st.proposed / contacts if contacts else 0.0,
                       "by_rank": [r.get(o, 0) for r in s.ranks],
                       "eligible": st.eligible, "refused_by_caps_in_run": st.capped,
                       "proposed_in_an_earlier_space": st.elsewhere,
                       "eliminated": dict(_by_count(st.eliminated.items())),
                       "weight": _weights(st)}
                   for o, st in sorted(s.offers.items(), key=lambda kv: (-kv[1].proposed, kv[0]))},
        "rules": s.rules,
        "caps": s.caps,
    }
