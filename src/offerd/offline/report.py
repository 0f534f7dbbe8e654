"""A simulation's report: per space and offer what was proposed, eligible, eliminated and
by which rule, refused by caps in the run; how another catalog version would differ; as
JSON and as plain-text tables."""
from __future__ import annotations

import datetime
import statistics
from collections import Counter
from dataclasses import dataclass, field


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
class Comparison:
    """How another catalog version decides the same contacts: which change offers, and why."""

    report: "Report"  # the other version's own report
    changed: dict[str, int] = field(default_factory=dict)  # space → contacts whose offers differ
    gained: dict[str, dict[str, int]] = field(default_factory=dict)  # space → offer → contacts
    lost: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # space → offer → why → contacts
    reordered: dict[str, int] = field(default_factory=dict)  # space → contacts with the same offers, ranked otherwise

    def to_json(self, contacts: int) -> dict:
        return {"catalog": self.report.catalog, "spaces": {space: {
            "contacts_changed": n, "share": n / contacts if contacts else 0.0,
            "only_reordered": self.reordered.get(space, 0),
            "gained": dict(sorted(self.gained[space].items(), key=lambda kv: -kv[1])),
            "lost": {o: {"contacts": sum(why.values()), "because": dict(sorted(why.items(), key=lambda kv: -kv[1]))}
                     for o, why in sorted(self.lost[space].items(), key=lambda kv: -sum(kv[1].values()))},
        } for space, n in self.changed.items()}, "report": self.report.to_json()}


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
    compare: Comparison | None = None  # against another catalog version, if asked

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
                "rank_shares": [{o: n / self.contacts for o, n in sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))}
                                for r in s.ranks] if self.contacts else [{} for _ in s.ranks],
                "fallback_only": s.fallback_only, "nothing": s.nothing,
                "offers": {o: {"proposed": st.proposed, "share": st.proposed / self.contacts if self.contacts else 0.0,
                               "eligible": st.eligible, "refused_by_caps_in_run": st.capped,
                               "proposed_in_an_earlier_space": st.elsewhere,
                               "eliminated": dict(sorted(st.eliminated.items(), key=lambda kv: -kv[1])),
                               "weight": weights(st)}
                           for o, st in s.offers.items()},
                "caps": s.caps,
            } for name, s in self.spaces.items()},
            **({"compare": self.compare.to_json(self.contacts)} if self.compare else {}),
        }


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
    if report.compare is not None:
        c = report.compare.to_json(report.contacts)
        out += ["", f"against catalog {c['catalog'][:12]}:"]
        for name, s in c["spaces"].items():
            out.append(f"space {name}: {s['contacts_changed']:,} contacts change offers ({s['share']:.1%}), "
                       f"{s['only_reordered']:,} of them only in rank")
            for offer, n in s["gained"].items():
                out.append(f"  + {offer}: {n:,} contacts")
            for offer, lost in s["lost"].items():
                why, n = next(iter(lost["because"].items()))
                out.append(f"  - {offer}: {lost['contacts']:,} contacts, mostly ({n:,}): {why}")
    return "\n".join(out)
