"""`--compare`: how another catalog version decides the same contacts. Per space, which
contacts change offers, and for each offer one of the versions proposes and the other does
not, why the other does not, counted per version side by side: not eligible (which rule);
capped or suppressed (which rule); a total cap filled earlier in population order; a cap
per decision, or a contact's cap, taken by offers chosen earlier in the same call;
outweighed by other offers (weight, then the space's limit); proposed in an earlier space
of the call; filtered; the fallback given way to an offer; not in the space there."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.plan import Cap
from .report import rule_json

# why a version does not propose an offer the other version proposes
NOT_ELIGIBLE = "not eligible"
LIMITED = "capped or suppressed"
NO_WEIGHT = "no weight (null)"
TOTAL_CAP = "a total cap filled earlier in population order"
DECISION_CAP = "a cap per decision, taken by offers chosen earlier in the call"
CONTACT_CAP = "a cap taken by offers chosen earlier in the call"
OUTWEIGHED = "outweighed by other offers (weight, then the space's limit)"
EARLIER = "proposed in an earlier space of the call"
FILTERED = "filtered by the request"
FALLBACK_WON = "the fallback: an offer won instead"
FALLBACK_HELD = "the fallback: held back by the space's own rules"
ABSENT = "not in this space in this version"
_BY_KIND = {"valid": NOT_ELIGIBLE, "eligible": NOT_ELIGIBLE, "cap": LIMITED, "suppress": LIMITED, "weight": NO_WEIGHT}


@dataclass
class Comparison:
    """Counts over a run; `versions` are the two simulate._Version (this one, the other)."""

    report: object  # the other version's own Report
    spaces: list[str]
    changed: dict[str, int] = field(default_factory=dict)  # space → contacts whose offers differ
    reordered: dict[str, int] = field(default_factory=dict)  # space → same offers, ranked otherwise
    offers: dict[str, dict[str, dict]] = field(default_factory=dict)  # space → offer → {gained, lost, why}
    rules: dict = field(default_factory=dict)  # (version index, RuleRef) → (at, owner, text): one rule in both
    shown: dict = field(default_factory=dict)  # (at, owner, text) → its rule_json

    def __post_init__(self):
        for s in self.spaces:
            self.changed[s], self.reordered[s], self.offers[s] = 0, 0, {}

    def add(self, versions, results, outcomes) -> None:
        """One contact: per version its arbitration `results` (per space (won, state,
        rules, lost)) and its rules' `outcomes` (per space (eligible, fails, admitted, ...))."""
        (mine, other), (a, b), (out_a, out_b) = versions, results, outcomes
        for i, name in enumerate(self.spaces):
            old, new = a[i][0], b[i][0]
            if old == new:
                continue
            self.changed[name] += 1
            if set(old) == set(new):
                self.reordered[name] += 1
                continue
            for offer in set(new) - set(old):  # this version does not propose it: why
                self._count(name, offer, "gained", 0, self._why(mine, i, offer, a[i], out_a[i]))
            for offer in set(old) - set(new):
                self._count(name, offer, "lost", 1, self._why(other, i, offer, b[i], out_b[i]))

    def _count(self, space: str, offer: str, change: str, column: int, why: tuple) -> None:
        entry = self.offers[space].setdefault(offer, {"gained": 0, "lost": 0, "why": {}})
        entry[change] += 1
        entry["why"].setdefault(why, [0, 0])[column] += 1

    def _why(self, version, i: int, offer: str, result, outcome) -> tuple[str, tuple | None]:
        """Why `version` does not propose `offer` in its i-th space to this contact: a reason,
        and the rule if a rule is the reason (where and as written: the same in both versions
        if written the same at the same place)."""
        space = version.compiled[i]
        fails, admitted = outcome[1], outcome[2]
        lost = result[3]
        fallback = space.fallback
        pos = version.positions[i].get(offer)
        if pos is None:
            if fallback is not None and fallback.name == offer:
                return (FALLBACK_WON if admitted else FALLBACK_HELD), None
            return ABSENT, None
        for p, rule in fails:
            if p == pos:
                return _BY_KIND.get(space.rules[rule].kind, NOT_ELIGIBLE), self._rule(version, space.rules[rule])
        for p, _, why, cap in lost:
            if p != pos:
                continue
            if why == "already proposed":
                return EARLIER, None
            if why == "filtered":
                return FILTERED, None
            if why == "cap in decision" and cap is not None:
                scope = (TOTAL_CAP if cap.check.scope == "total" else CONTACT_CAP) if isinstance(cap, Cap) \
                    else DECISION_CAP
                return scope, self._rule(version, cap.rule)
            break
        return OUTWEIGHED, None

    def _rule(self, version, rule) -> tuple:
        key = self.rules.get((version.index, rule))
        if key is None:
            shown = rule_json(version.catalog, rule)
            key = self.rules[(version.index, rule)] = (shown["at"], shown["owner"], shown["text"])
            self.shown[key] = shown
        return key

    def to_json(self, contacts: int) -> dict:
        spaces = {}
        for name in self.spaces:
            n = self.changed[name]
            offers = {}
            for offer, e in sorted(self.offers[name].items(), key=lambda kv: (-kv[1]["gained"] - kv[1]["lost"], kv[0])):
                why = []
                for (reason, rule), (this, other) in sorted(e["why"].items(), key=lambda kv: (
                        -sum(kv[1]), kv[0][0], kv[0][1] or ())):
                    why.append({"reason": reason, "rule": self.shown[rule] if rule else None,
                                "this": this, "other": other})
                offers[offer] = {"gained": e["gained"], "lost": e["lost"], "why_not": why}
            spaces[name] = {"contacts_changed": n, "share": n / contacts if contacts else 0.0,
                            "only_reordered": self.reordered[name], "offers": offers}
        return {"catalog": self.report.inputs.hash, "label": self.report.inputs.label, "spaces": spaces,
                "report": self.report.to_json()}
