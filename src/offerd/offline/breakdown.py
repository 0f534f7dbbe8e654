"""`--by ATTRIBUTE`: a simulation's figures per value of one contact attribute or context
value — contacts, offers proposed, the fallback, nothing, and the rules that eliminated the
most — one row per group of values:

- strings and booleans by value; of strings, the 20 with the most contacts are shown and
  the rest summed as "other values";
- numbers by value while they have at most 12 distinct values, else in ranges of equal
  width (1, 5, 10, 50, 100, … or 0.1, 0.5, …), the narrowest that makes at most 12
  ranges; dates likewise by day, else month, year or decade;
- a set or list: a row per item, a contact counted under each of its items (so the rows
  add up to more than the contacts), and an "empty" row;
- a contact without the attribute: its own row, "absent".

Widening keeps counts exact: each wider range is a union of narrower ones, so their figures
are added together."""
from __future__ import annotations

import datetime
import math
from collections import Counter
from dataclasses import dataclass, field

from ..lang.catalog import Catalog
from ..lang.diagnostics import did_you_mean
from ..lang.types import Type

MAX_ROWS = 12  # numbers and dates: by value up to this many, else at most this many ranges
MAX_STRINGS = 2000  # distinct strings counted apart during a run; further ones are "other values"
SHOWN = 20  # strings shown, the most contacts first; the others are summed
TOP_RULES = 5  # rules per row in the JSON, the most contacts first


class _Special(str):
    """A row that is no value: absent, empty, other values. Sorts after the values."""


ABSENT, EMPTY, OTHER = _Special("absent"), _Special("empty"), _Special("other values")
HUGE = _Special("beyond ±1e15")  # a float too large to group in ranges (1.5e308, infinity)
_LARGEST = 1e15


def resolve(catalog: Catalog, name: str) -> tuple[str, str, Type]:
    """(root, name, type) of a --by attribute: `contact.NAME`, `context.NAME`, or NAME alone
    (a contact attribute, else a context value). ValueError naming the choices otherwise."""
    root, dot, rest = name.partition(".")
    schemas = {"contact": catalog.contact, "context": catalog.context}
    if dot and root in schemas and rest in schemas[root]:
        return root, rest, schemas[root][rest]
    if not dot:
        for root in ("contact", "context"):
            if name in schemas[root]:
                return root, name, schemas[root][name]
    known = [*catalog.contact, *(f"context.{k}" for k in catalog.context)]
    hint = did_you_mean(name, known)
    raise ValueError(f"--by {name}: no such contact attribute or context value"
                     + (f" ({hint})" if hint else "") + f"; choose from {', '.join(known) or 'none'}")


@dataclass
class _Row:
    """One group of values: its contacts, and per space what they got and lost."""

    spaces: int
    contacts: int = 0
    proposed: list[int] = field(default_factory=list)
    fallback_only: list[int] = field(default_factory=list)
    nothing: list[int] = field(default_factory=list)
    offers: list[Counter] = field(default_factory=list)
    rules: list[Counter] = field(default_factory=list)  # distinct rule id → contacts

    def __post_init__(self):
        k = self.spaces
        self.proposed, self.fallback_only, self.nothing = [0] * k, [0] * k, [0] * k
        self.offers, self.rules = [Counter() for _ in range(k)], [Counter() for _ in range(k)]

    def add(self, result) -> None:
        """One contact's result: per space (offers chosen or the fallback, 1 if the fallback,
        distinct rule ids, passed over)."""
        self.contacts += 1
        for i, (won, state, rules, _) in enumerate(result):
            if state:
                self.fallback_only[i] += 1
            elif won:
                self.proposed[i] += len(won)
                self.offers[i].update(won)
            else:
                self.nothing[i] += 1
            self.rules[i].update(rules)

    def merge(self, other: "_Row") -> None:
        self.contacts += other.contacts
        for i in range(self.spaces):
            self.proposed[i] += other.proposed[i]
            self.fallback_only[i] += other.fallback_only[i]
            self.nothing[i] += other.nothing[i]
            self.offers[i].update(other.offers[i])
            self.rules[i].update(other.rules[i])


class Breakdown:
    """The figures of one --by attribute over a run, its rows widened as values come."""

    def __init__(self, root: str, name: str, t: Type, spaces: list[str]):
        self.attribute = f"{root}.{name}"
        self.root, self.name, self.spaces = root, name, spaces
        self.many = t.name in ("set", "list")
        self.kind = (t.elem if self.many else t).name
        self.width: tuple[int, int] | None = None  # numbers: (1 or 5, exponent) once in ranges
        self.level = 0  # dates: 0 day, 1 month, 2 year, 3 decade
        self.rows: dict = {}
        self.rule_keys: list[list[str]] = []  # per space: distinct rule id → its key, set by the run

    def add(self, value, result) -> None:
        if value is None:
            keys = (ABSENT,)
        elif self.many:
            keys = {self._key(v) for v in value} or (EMPTY,)
        else:
            keys = (self._key(value),)
        grew = False
        for key in keys:
            row = self.rows.get(key)
            if row is None:
                if self.kind == "string" and len(self.rows) >= MAX_STRINGS:
                    key = OTHER
                    row = self.rows.get(key)
                if row is None:
                    row = self.rows[key] = _Row(len(self.spaces))
                    grew = True
            row.add(result)
        if grew and self.kind in ("int", "float", "date") and self._values() > MAX_ROWS:
            self._widen()

    def _values(self) -> int:
        return sum(not isinstance(k, _Special) for k in self.rows)

    def _key(self, v):
        if self.kind == "date":
            return _period(v, self.level)
        if self.kind == "float" and not -_LARGEST <= v <= _LARGEST:
            return HUGE
        if self.kind in ("int", "float") and self.width is not None:
            m, e = self.width
            return math.floor(round(v / (m * 10.0 ** e), 9))
        return v

    def _widen(self) -> None:
        """Coarser groups until at most MAX_ROWS: each new group is the union of old ones."""
        while self._values() > MAX_ROWS:
            if self.kind == "date":
                if self.level == 3:
                    return
                self.level += 1
                self._regroup(lambda k: _period(k, self.level))
                continue
            if self.width is None:
                values = [k for k in self.rows if not isinstance(k, _Special)]
                span = max(values) - min(values)
                e = math.floor(math.log10(span / MAX_ROWS)) if span > 0 else 0
                if self.kind == "int":
                    e = max(e, 0)
                self.width = (1, e)
                w = 10.0 ** e
                self._regroup(lambda k: math.floor(round(k / w, 9)))
                continue
            m, e = self.width
            self.width, ratio = ((5, e), 5) if m == 1 else ((1, e + 1), 2)
            self._regroup(lambda k: k // ratio)

    def _regroup(self, new_key) -> None:
        rows, self.rows = self.rows, {}
        for key, row in rows.items():
            key = key if isinstance(key, _Special) else new_key(key)
            if key in self.rows:
                self.rows[key].merge(row)
            else:
                self.rows[key] = row

    def grouping(self) -> str:
        if self.kind == "date":
            return ("by day", "by month", "by year", "by decade")[self.level]
        if self.kind in ("int", "float") and self.width is not None:
            return f"in ranges of {_num(self.width[0] * 10.0 ** self.width[1])}"
        return "by value"

    def label(self, key) -> str:
        if isinstance(key, _Special):
            return str(key)
        if self.kind == "date":
            return (key.isoformat(), key.isoformat()[:7], str(key.year), f"{key.year}s")[self.level]
        if self.kind in ("int", "float") and self.width is not None:
            w = self.width[0] * 10.0 ** self.width[1]
            low, high = key * w, (key + 1) * w
            if self.kind == "int":
                return f"{_num(low)} to {_num(high - 1)}"
            return f"{_num(low)} to under {_num(high)}"
        if isinstance(key, bool):
            return "true" if key else "false"
        return _num(key) if isinstance(key, (int, float)) else str(key)

    def to_json(self) -> dict:
        rows = list(self.rows.items())
        if self.kind == "string":  # the most contacts first; past SHOWN, summed
            values = sorted((kv for kv in rows if not isinstance(kv[0], _Special)), key=lambda kv: -kv[1].contacts)
            other = next((r for k, r in rows if k is OTHER), None)
            for _, row in values[SHOWN:]:
                if other is None:
                    other = _Row(len(self.spaces))
                other.merge(row)
            rows = values[:SHOWN] + ([(OTHER, other)] if other is not None else [])
        else:
            rows = sorted((kv for kv in rows if not isinstance(kv[0], _Special)), key=lambda kv: kv[0])
        rows += [(k, self.rows[k]) for k in (HUGE, EMPTY, ABSENT) if k in self.rows]
        return {"grouping": self.grouping(), "counted_per_item": self.many,
                "rows": [self._row_json(k, r) for k, r in rows]}

    def _row_json(self, key, row: _Row) -> dict:
        out = {"value": self.label(key), "contacts": row.contacts, "spaces": {}}
        for i, space in enumerate(self.spaces):
            names = self.rule_keys[i]
            out["spaces"][space] = {
                "proposed": row.proposed[i], "fallback_only": row.fallback_only[i], "nothing": row.nothing[i],
                "offers": dict(sorted(row.offers[i].items(), key=lambda kv: (-kv[1], kv[0]))),
                "eliminated": dict(sorted(((names[r], k) for r, k in row.rules[i].items()),
                                          key=lambda kv: (-kv[1], kv[0]))[:TOP_RULES])}
        return out


def _period(d: datetime.date, level: int) -> datetime.date:
    if level == 0:
        return d
    if level == 1:
        return d.replace(day=1)
    return datetime.date(d.year if level == 2 else d.year // 10 * 10, 1, 1)


def _num(x) -> str:
    if isinstance(x, float):
        x = round(x, 9)
        if x.is_integer():
            x = int(x)
    return f"{x}" if isinstance(x, int) else f"{x:g}"
