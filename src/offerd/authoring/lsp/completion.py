"""Completion and document symbols: what may be typed at the cursor (attributes after
`contact.`, names where a clause takes them, keywords, functions), and a file's declarations
with their clauses as an outline."""
from __future__ import annotations

import re
from typing import NamedTuple

from ...lang import nodes as n
from ...lang.diagnostics import Span
from ...lang.functions import FUNCTIONS, HISTORY_FUNCTIONS
from ...lang.parser import keywords
from .folder import Result
from .index import CLOCKS, ROOTS, FileIndex
from .navigation import _type, signature


_NAME_LIST = r"(?:[a-z0-9_]+\s*,\s*)*[a-z0-9_]*"
_CONTEXTS = [  # (pattern on the line before the cursor, what names go there)
    (re.compile(r"\b(contact|context)\.([a-z0-9_]*)$"), "field"),
    (re.compile(r"\b(?:proposed|presented|accepted|rejected)\(\s*[a-z0-9_.]*$"), "target"),
    (re.compile(r"(?:^|\s)spaces\s+" + _NAME_LIST + "$"), "space"),
    (re.compile(r"(?:^|\s)(?:(?:eligible|weight)\s+in|content)\s+[a-z0-9_]*$"), "space"),
    (re.compile(r"(?:^|\s)groups\s+" + _NAME_LIST + "$"), "group"),
    (re.compile(r"(?:^|\s)fallback\s+[a-z0-9_]*$"), "offer"),
    (re.compile(r"^\s+category\s+[a-z0-9_.]*$"), "category"),  # in an offer: not a declaration
    (re.compile(r"(?:^|[^a-z0-9_.])\s*[a-z_]*$"), "word"),
]


class Item(NamedTuple):
    label: str
    kind: str  # field let offer space category group keyword function value
    detail: str | None = None


def complete(result: Result, line_text: str) -> list[Item]:
    """The completions for a cursor after `line_text` (its line up to the cursor)."""
    for pattern, what in _CONTEXTS:
        m = pattern.search(line_text)
        if m is None:
            continue
        if what == "field":
            return [Item(name, "field", detail) for name, detail in _fields(result, m.group(1))]
        if what == "target":
            return _names(result, ("offer", "category", "group"))
        if what == "word":
            return _words(result)
        return _names(result, (what,))
    return []


def _fields(result: Result, root: str):
    for ix in result.indices.values():
        for d in ix.module.decls:
            if isinstance(d, n.Schema) and d.name == root:
                for f in d.fields:
                    yield f.name, _type(f.type)
    if root == "contact":
        yield "id", "string: the request's contact id"


def _names(result: Result, kinds) -> list[Item]:
    seen, out = set(), []
    for ix in result.indices.values():
        for o in ix.occurrences:
            if o.is_def and o.kind in kinds and (o.kind, o.name) not in seen:
                seen.add((o.kind, o.name))
                out.append(Item(o.name, o.kind, f"{o.kind}, {o.span}"))
    return out


def _words(result: Result) -> list[Item]:
    out = [Item(k, "keyword") for k in keywords() if k not in ROOTS]  # `contact`: an attribute root below
    out += [Item(name, "function", signature(name)) for name in (*FUNCTIONS, *HISTORY_FUNCTIONS)]
    out += [Item(root, "value", "attributes: " + root + ".name") for root in ROOTS]
    out += [Item(c, "value", {"now": "time", "today": "date", "propensity": "float"}[c]) for c in CLOCKS]
    for item in _names(result, ("let",)):
        out.append(Item(item.label, "let", result.let_types.get(item.label) or item.detail))
    return out


class Symbol(NamedTuple):
    name: str
    kind: str  # schema field let space category group offer clause timezone
    span: Span  # the whole declaration or clause
    name_span: Span
    children: tuple


def symbols(index: FileIndex) -> list[Symbol]:
    """The file's declarations, each with its clauses."""
    out = []
    for d in index.module.decls:
        if isinstance(d, n.Timezone):
            out.append(Symbol(f"timezone {d.name}", "timezone", d.span, d.span, ()))
        elif isinstance(d, n.Let):
            whole = Span(d.span.file, d.span.line, _line_start(index, d.span), d.expr.span.end_line,
                         d.expr.span.end_col)
            out.append(Symbol(d.name, "let", whole, d.span, ()))
        elif isinstance(d, n.Schema):
            fields = tuple(Symbol(f.name, "field", f.span, f.span, ()) for f in d.fields)
            out.append(Symbol(d.name, "schema", _block(index, d.span), d.span, fields))
        elif isinstance(d, (n.Space, n.Category, n.Group, n.Offer)):
            kind = type(d).__name__.lower()
            clauses = tuple(Symbol(_clause_name(index, item), "clause", item.span, item.span, ())
                            for item in d.items if getattr(item, "span", None) is not None and item.span.line > 0)
            out.append(Symbol(d.name, kind, _block(index, d.span), d.span, clauses))
    return out


def _clause_name(index: FileIndex, item) -> str:
    text = " ".join(index.snippet(item.span, 80).split())
    return text if len(text) <= 60 else text[:59] + "…"


def _line_start(index: FileIndex, span: Span) -> int:
    line = index.lines[span.line - 1] if 0 < span.line <= len(index.lines) else ""
    return len(line) - len(line.lstrip()) + 1


def _block(index: FileIndex, name: Span) -> Span:
    """From the keyword before a declaration's name to its closing brace (strings and comments
    skipped); to the name's end where there is none."""
    lines, depth, in_string = index.lines, 0, False
    start = Span(name.file, name.line, _line_start(index, name), name.end_line, name.end_col)
    line_no, col = name.end_line - 1, name.end_col - 1
    while line_no < len(lines):
        text = lines[line_no]
        while col < len(text):
            ch = text[col]
            if in_string:
                if ch == "\\":
                    col += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "#":
                break
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth <= 0:
                    return start._replace(end_line=line_no + 1, end_col=col + 2)
            col += 1
        line_no, col, in_string = line_no + 1, 0, False
    return start
