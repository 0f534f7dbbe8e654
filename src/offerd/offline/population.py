"""Populations for simulations and outbound batches: contacts read from JSON Lines or CSV,
typed by the catalog's contact schema, each with its own context values if it has any
(`context.NAME` columns or keys, or a `context` object), each bad row reported with its
line number and skipped. The seeded generator is offline/generate.py."""
from __future__ import annotations

import csv
import datetime
import json
from dataclasses import dataclass
from typing import Iterator

from ..lang.catalog import Catalog
from ..lang.types import Type
from ..lang.diagnostics import did_you_mean
from ..lang.values import InputError, check_attributes

ID_FIELD = "id"  # a row's contact id; every other field is a contact attribute or a context value
CONTEXT = "context"  # `context.NAME` fields, or a JSON object under this key: the row's own context


@dataclass(frozen=True)
class Row:
    line: int
    contact_id: str
    attributes: dict  # typed by the schema
    context: dict | None = None  # the row's own context values, typed; they win over the run's context


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
        yield from _read_csv(path, catalog)
    else:
        yield from _read_jsonl(path, catalog)


def _read_jsonl(path: str, catalog: Catalog) -> Iterator[Row | BadRow]:
    for line_no, text in jsonl_lines(path):
        row = text if isinstance(text, BadRow) else parse_json_line(line_no, text, catalog.contact, catalog.domains,
                                                                   catalog.context)
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


def parse_json_line(line_no: int, line: str, schema: dict[str, Type], domains: dict | None = None,
                    context: dict[str, Type] | None = None) -> Row | BadRow | None:
    """One JSON Lines row typed by the contact schema (and in the catalog's `domains`), its
    context values by the `context` schema; None for a blank line."""
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
    return _row(line_no, value, schema, False, domains, context)


def check_columns(path: str, catalog: Catalog) -> None:
    """A CSV file's header: each column is the id, a contact attribute or `context.NAME`,
    else ValueError naming the column (a bad column would make every row bad)."""
    if not path.endswith(".csv"):
        return
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:  # -sig: Excel's BOM
        check_header(f, path, catalog)


def check_header(f, path: str, catalog: Catalog) -> None:
    """check_columns, of an open CSV text stream (a file behind a URL)."""
    header = next(csv.reader(f), [])
    if header and ID_FIELD not in header:
        raise ValueError(f"{path}: no {ID_FIELD!r} column; every row needs its contact's id")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ValueError(f"{path}: column {twice[0]!r} is there twice")
    for column in header:
        if column == ID_FIELD or column in catalog.contact:
            continue
        root, dot, name = column.partition(".")
        if dot and root == CONTEXT and name in catalog.context:
            continue
        if dot and root == CONTEXT:
            hint = did_you_mean(name, catalog.context, "context.")
            problem = "is not in schema context" + (f" ({hint})" if hint else "")
        else:
            hint = did_you_mean(column, [ID_FIELD, *catalog.contact, *(f"context.{k}" for k in catalog.context)])
            problem = (f"is neither {ID_FIELD!r}, a contact attribute nor context.NAME"
                       + (f" ({hint})" if hint else ""))
        raise ValueError(f"{path}: column {column!r} {problem}")


def _read_csv(path: str, catalog: Catalog) -> Iterator[Row | BadRow]:
    check_columns(path, catalog)
    # surrogateescape: a field that is not UTF-8 comes through marked, and only its row is bad
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        yield from read_csv_stream(f, catalog)


def read_csv_stream(f, catalog: Catalog, lines: list[int] | None = None) -> Iterator[Row | BadRow]:
    """The rows of an open CSV text stream (its header checked already); `lines[0]` is
    then the number of lines read."""
    schema, domains = catalog.contact, catalog.domains
    reader = csv.DictReader(f)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
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
        yield _row(line_no, values, schema, True, domains, catalog.context)
    if lines is not None:
        lines[0] = reader.line_num


def _escaped(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _row(line_no: int, values: dict, schema: dict[str, Type], from_text: bool,
         domains: dict | None, context_schema: dict[str, Type] | None = None) -> Row | BadRow:
    contact_id = values.pop(ID_FIELD, None)
    if not isinstance(contact_id, str) or not contact_id:
        return BadRow(line_no, f'every row needs a non-empty string "{ID_FIELD}"')
    problems: list[str] = []
    # most rows have no context of their own: one C-level scan of the keys tells
    own = context_schema is not None and (CONTEXT in values or "." in "".join(values))
    context = _own_context(values, schema, problems) if own else {}
    attributes = _typed(values, schema, "contact", from_text, domains, problems)
    if context:
        context = _typed(context, context_schema, CONTEXT, from_text, domains, problems)
    if problems:
        return BadRow(line_no, "; ".join(problems))
    return Row(line_no, contact_id, attributes, context or None)


def _own_context(values: dict, schema: dict[str, Type], problems: list[str]) -> dict:
    """The row's context values, taken out of `values`: `context.NAME` keys, and a JSON
    object under `context` (unless the contact schema has an attribute of that name)."""
    context = {}
    if CONTEXT in values and CONTEXT not in schema:
        nested = values.pop(CONTEXT)
        if isinstance(nested, dict):
            context.update(nested)
        else:
            problems.append(f"context: a JSON object of context values, not {type(nested).__name__}")
    for key in [k for k in values if k.startswith("context.")]:
        name = key[len("context."):]
        if name in context:
            problems.append(f"context.{name} is given twice")
        context[name] = values.pop(key)
    return context


def _typed(values: dict, schema: dict[str, Type], root: str, from_text: bool, domains: dict | None,
           problems: list[str]) -> dict:
    """`values` typed by the schema, as a request's are checked; problems are added."""
    for key, t in schema.items():
        if key in values:
            try:
                values[key] = _parse(t, values[key], from_text)
            except ValueError as e:
                problems.append(f"{root}.{key}: {e}")
                values.pop(key)
    try:
        return check_attributes(schema, values, root, domains)
    except InputError as e:
        problems.extend(e.problems)
        return {}


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
