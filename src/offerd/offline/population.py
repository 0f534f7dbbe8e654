"""Populations for simulations and outbound batches: contacts read from JSON Lines or CSV,
typed by the catalog's contact schema, each bad row reported with its line number and
skipped. The seeded generator is offline/generate.py."""
from __future__ import annotations

import csv
import datetime
import json
from dataclasses import dataclass
from typing import Iterator

from ..lang.catalog import Catalog
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


def generate(catalog: Catalog, count: int, seed: int) -> Iterator[dict]:
    """A seeded population for the catalog (offline/generate.py)."""
    from .generate import generate as rows  # that module imports this one

    return rows(catalog, count, seed)
