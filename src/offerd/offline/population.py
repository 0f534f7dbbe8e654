"""Populations for simulations and outbound batches: contacts read from JSON Lines or CSV,
typed by the catalog's contact schema, each bad row reported with its line number and
skipped; and a seeded generator whose values exercise the catalog's own rules."""
from __future__ import annotations

import csv
import datetime
import json
import random
from dataclasses import dataclass
from typing import Iterator

from ..lang import nodes as n
from ..lang.catalog import Catalog, Domain
from ..lang.types import Type
from ..lang.values import InputError, check_attributes

ID_FIELD = "id"  # a row's contact id; every other field is a contact attribute


@dataclass(frozen=True)
class Row:
    line: int
    contact_id: str
    attributes: dict  # typed by the schema


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def read(path: str, catalog: Catalog) -> Iterator[Row | BadRow]:
    """The rows of a .jsonl/.json or .csv file, in order; a row that cannot be read or does
    not fit the schema comes as a BadRow, and reading goes on."""
    if path.endswith(".csv"):
        yield from _read_csv(path, catalog.contact, catalog.domains)
    else:
        yield from _read_jsonl(path, catalog.contact, catalog.domains)


def _read_jsonl(path: str, schema: dict[str, Type], domains: dict) -> Iterator[Row | BadRow]:
    for line_no, text in jsonl_lines(path):
        row = text if isinstance(text, BadRow) else parse_json_line(line_no, text, schema, domains)
        if row is not None:
            yield row


def jsonl_lines(path: str) -> Iterator[tuple[int, str | BadRow]]:
    """(line number, text) of a JSON Lines file, unparsed: parsing can then happen in other
    processes (parse_json_line). Lines are decoded one by one, so a line that is not UTF-8
    is a BadRow and the lines around it are read as usual."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line_no, BadRow(line_no, f"not UTF-8: {e.reason} at byte {e.start + 1}")


def parse_json_line(line_no: int, line: str, schema: dict[str, Type],
                    domains: dict | None = None) -> Row | BadRow | None:
    """One JSON Lines row typed by the schema (and in the catalog's `domains`); None for a
    blank line."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        return BadRow(line_no, f"not JSON: {e.msg} at column {e.colno}")
    except (ValueError, RecursionError) as e:  # a number of thousands of digits, arrays nested too deep
        return BadRow(line_no, f"not readable JSON: {e}")
    if not isinstance(value, dict):
        return BadRow(line_no, f"a row is a JSON object, not {type(value).__name__}")
    return _row(line_no, value, schema, False, domains)


def _read_csv(path: str, schema: dict[str, Type], domains: dict) -> Iterator[Row | BadRow]:
    # surrogateescape: a field that is not UTF-8 comes through marked, and only its row is bad
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # this record only: the reader goes on with the next line
                yield BadRow(reader.line_num, f"unreadable CSV: {e}")
                continue
            line_no = reader.line_num
            if None in record:
                yield BadRow(line_no, f"{len(record[None])} more fields than the header has")
                continue
            if any(_escaped(v) for v in record.values() if v) or any(_escaped(k) for k in record if k):
                yield BadRow(line_no, "not UTF-8")
                continue
            values = {k: v for k, v in record.items() if v not in (None, "")}
            yield _row(line_no, values, schema, True, domains)


def _escaped(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _row(line_no: int, values: dict, schema: dict[str, Type], from_text: bool,
         domains: dict | None) -> Row | BadRow:
    contact_id = values.pop(ID_FIELD, None)
    if not isinstance(contact_id, str) or not contact_id:
        return BadRow(line_no, f'every row needs a non-empty string "{ID_FIELD}"')
    problems = []
    for key, t in schema.items():
        if key in values:
            try:
                values[key] = _parse(t, values[key], from_text)
            except ValueError as e:
                problems.append(f"contact.{key}: {e}")
    if problems:
        return BadRow(line_no, "; ".join(problems))
    try:
        return Row(line_no, contact_id, check_attributes(schema, values, "contact", domains))
    except InputError as e:
        return BadRow(line_no, "; ".join(e.problems))


def _parse(t: Type, v, from_text: bool):
    """Values JSON and CSV cannot type: dates from ISO text; from CSV, numbers, booleans and
    sets (items separated by `|`) from text."""
    if t.name in ("set", "list"):
        if from_text and isinstance(v, str):
            v = [x for x in v.split("|") if x]
        return [_parse(t.elem, x, from_text) for x in v] if isinstance(v, list) else v
    if not isinstance(v, str):
        return v
    try:
        if t.name == "date":
            return datetime.date.fromisoformat(v)
        if from_text and t.name == "int":
            return int(v)
        if from_text and t.name == "float":
            return float(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a {t.name}") from None
    if from_text and t.name == "bool":
        if v.lower() in ("true", "1"):
            return True
        if v.lower() in ("false", "0"):
            return False
        raise ValueError(f"{v!r} is not a bool (true or false)")
    return v


# --- generation ---------------------------------------------------------------------------

def generate(catalog: Catalog, count: int, seed: int) -> Iterator[dict]:
    """`count` JSON-ready rows for the catalog's contact schema, the same for the same seed.
    Values come mostly from the literals the rules compare each attribute with, so the
    population meets the rules on both sides; about 1 in 10 attributes is left out. An
    attribute with a closed set or range is drawn from it."""
    rnd = random.Random(seed)
    seen = _literals(catalog)
    fields = sorted(catalog.contact.items())
    for i in range(count):
        row = {ID_FIELD: f"p{i}"}
        for name, t in fields:
            if rnd.random() < 0.1:
                continue
            row[name] = _value(rnd, t, seen.get(name, []), catalog.domains.get(("contact", name)))
        yield row


def _value(rnd: random.Random, t: Type, known: list, domain: Domain | None = None):
    if t.name in ("set", "list"):
        return sorted({_value(rnd, t.elem, known, domain) for _ in range(rnd.randint(0, 3))}, key=str)
    if domain is not None:
        return _within(rnd, t, known, domain)
    if known and rnd.random() < 0.7:
        v = rnd.choice(known)
        if t.name in ("int", "float") and not isinstance(v, bool):
            v = v + rnd.choice((-1, 0, 1)) * (1 if t.name == "int" else rnd.random())
        return v.isoformat() if isinstance(v, datetime.date) else v
    if t.name == "int":
        return rnd.randint(0, 100)
    if t.name == "float":
        return round(rnd.uniform(0, 500), 2)
    if t.name == "bool":
        return rnd.random() < 0.5
    if t.name == "date":
        return (datetime.date(1950, 1, 1) + datetime.timedelta(days=rnd.randrange(365 * 70))).isoformat()
    return f"v{rnd.randrange(20)}"


def _within(rnd: random.Random, t: Type, known: list, d: Domain):
    """A value in the closed set (the rules' literals half the time, else any member) or
    in the range (near a rule's literal 7 times in 10, else uniform), JSON-ready."""
    if d.values is not None:
        members = [v for v in known if v in d.values]
        return rnd.choice(members if members and rnd.random() < 0.5 else d.listed)
    low, high = d.low, d.high
    if t.name == "date":
        near = [v for v in known if isinstance(v, datetime.date)]
        if near and rnd.random() < 0.7:
            v = rnd.choice(near)
        else:
            v = low + datetime.timedelta(days=rnd.randrange((high - low).days + 1))
        return min(max(v, low), high).isoformat()
    near = [v for v in known if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if near and rnd.random() < 0.7:
        v = rnd.choice(near) + rnd.choice((-1, 0, 1)) * (1 if t.name == "int" else rnd.random())
    else:
        v = rnd.randint(low, high) if t.name == "int" else rnd.uniform(low, high)
    if t.name == "int":
        v = int(v)
    else:
        v = round(v, 2)
    return min(max(v, low), high)


def _literals(catalog: Catalog) -> dict[str, list]:
    """For each contact attribute, the literal values rules compare it with."""
    out: dict[str, list] = {}
    stack = [e for o in catalog.offers for c in o.eligible + o.limits for e in (c.expr,)]
    stack += [c.expr for cat in catalog.categories.values() for c in cat.eligible]
    stack += [c.expr for space in catalog.spaces.values() for c in space.eligible]
    stack += [c.expr for g in catalog.groups.values() for c in g.eligible]
    stack += [c.expr for owner in [*catalog.categories.values(), *catalog.groups.values()]
              for checks in owner.eligible_in.values() for c in checks]
    stack += list(catalog.lets.values())
    while stack:
        e = stack.pop()
        if isinstance(e, n.Binary):
            for a, b in ((e.left, e.right), (e.right, e.left)):
                if isinstance(a, n.Attr) and a.root == "contact":
                    items = b.items if isinstance(b, n.ListLiteral) else (b,)
                    vals = [x.value for x in items if isinstance(x, n.Literal)]
                    out.setdefault(a.name, []).extend(v for v in vals if v not in out[a.name])
        stack.extend(n.children(e))
    return out
