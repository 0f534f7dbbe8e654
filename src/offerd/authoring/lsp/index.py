"""The symbol index of one parsed file: every declaration and every use of a name (lets,
offers, spaces, categories and their dotted prefixes, groups, schema fields, functions),
each with its span, read from the syntax tree alone so that it works while the catalog has
semantic errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ...lang import nodes as n
from ...lang.diagnostics import Span
from ...lang.functions import HISTORY_FUNCTIONS
from .positions import contains, lines_of

# kinds: let offer space category group field function, and "target": the first argument of
# a history function (an offer, a category or a group: resolved against the declarations)
CLOCKS = ("now", "today", "propensity")
ROOTS = ("contact", "context")


class Occurrence(NamedTuple):
    kind: str
    name: str
    span: Span
    is_def: bool


@dataclass
class FileIndex:
    file: str
    text: str
    module: n.Module
    occurrences: list[Occurrence] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    by_decl: dict[int, tuple] = field(default_factory=dict)  # id(declaration) → (it, its occurrences)

    def at(self, line: int, col: int) -> Occurrence | None:
        """The innermost name at 1-based (line, col)."""
        best = None
        for o in self.occurrences:
            if contains(o.span, line, col) and (best is None or _size(o.span) < _size(best.span)):
                best = o
        return best

    def snippet(self, span: Span, limit: int = 400) -> str:
        """The source text a span covers."""
        if span.line <= 0 or span.line > len(self.lines):
            return ""
        if span.line == span.end_line:
            text = self.lines[span.line - 1][span.col - 1: span.end_col - 1]
        else:
            part = self.lines[span.line - 1: span.end_line]
            part[-1] = part[-1][: span.end_col - 1]
            part[0] = part[0][span.col - 1:]
            text = "\n".join(part)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(span: Span) -> tuple[int, int]:
    return span.end_line - span.line, span.end_col - span.col


def build(module: n.Module, text: str, previous: FileIndex | None = None) -> FileIndex:
    """The file's index; a declaration that is the very node of `previous` (its chunk was not
    parsed again: same text, same lines) keeps its occurrences."""
    index = FileIndex(module.file, text, module, lines=lines_of(text))
    kept = previous.by_decl if previous is not None else {}
    for d in module.decls:
        hit = kept.get(id(d))
        if hit is None or hit[0] is not d:
            hit = d, _decl(d, index)
        index.by_decl[id(d)] = hit
        index.occurrences.extend(hit[1])
    return index


def _decl(d, index: FileIndex) -> list[Occurrence]:
    out: list[Occurrence] = []
    if isinstance(d, n.Schema):
        for f in d.fields:
            out.append(Occurrence("field", f"{d.name}.{f.name}", f.span, True))
    elif isinstance(d, n.Let):
        out.append(Occurrence("let", d.name, d.span, True))
        _expr(d.expr, index, out)
    elif isinstance(d, n.Category):
        _dotted(d.name, d.span, index, out, is_def=True)
        _items(d.items, index, out)
    elif isinstance(d, (n.Space, n.Group, n.Offer)):
        kind = {n.Space: "space", n.Group: "group", n.Offer: "offer"}[type(d)]
        out.append(Occurrence(kind, d.name, d.span, True))
        _items(d.items, index, out)
    return out


_CLAUSE_KINDS = {"groups": "group", "spaces": "space", "fallback": "offer"}


def _items(items, index: FileIndex, out: list[Occurrence]) -> None:
    for item in items:
        if isinstance(item, n.Clause):
            if item.kind == "category":
                _dotted(item.value, item.value_spans[0], index, out, is_def=False)
            elif item.kind in _CLAUSE_KINDS:
                names = item.value if isinstance(item.value, tuple) else (item.value,)
                for name, span in zip(names, item.value_spans):
                    out.append(Occurrence(_CLAUSE_KINDS[item.kind], name, span, False))
        elif isinstance(item, n.Rule):
            if item.space is not None:
                out.append(Occurrence("space", item.space, item.space_span, False))
            _expr(item.expr, index, out)
        elif isinstance(item, n.Content):
            out.append(Occurrence("space", item.space, item.space_span, False))
            for f in item.fields:
                for part in f.value.parts:
                    if isinstance(part, n.Expr):
                        _expr(part, index, out)


def _dotted(name: str, span: Span, index: FileIndex, out: list[Occurrence], is_def: bool) -> None:
    """A category name, and each of its parents as a use where the name is written plainly."""
    out.append(Occurrence("category", name, span, is_def))
    parts = name.split(".")
    if len(parts) > 1 and index.snippet(span) == name:
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            out.append(Occurrence("category", prefix, Span(span.file, span.line, span.col, span.line,
                                                           span.col + len(prefix)), False))


def _expr(e: n.Expr, index: FileIndex, out: list[Occurrence]) -> None:
    stack = [e]
    while stack:
        e = stack.pop()
        if isinstance(e, n.Name):
            if e.name not in CLOCKS:
                out.append(Occurrence("let", e.name, e.span, False))
        elif isinstance(e, n.Path):
            if e.parts[0] in ROOTS and len(e.parts) == 2:
                out.append(Occurrence("field", ".".join(e.parts), _attribute_span(e, index), False))
        elif isinstance(e, n.Call):
            s = e.span
            out.append(Occurrence("function", e.fn, Span(s.file, s.line, s.col, s.line, s.col + len(e.fn)), False))
            args = list(e.args)
            if e.fn in HISTORY_FUNCTIONS and args:
                ref = args.pop(0)
                if isinstance(ref, n.Name):
                    out.append(Occurrence("target", ref.name, ref.span, False))
                elif isinstance(ref, n.Path):
                    _dotted(".".join(ref.parts), ref.span, index, out, is_def=False)
            stack.extend(args)
        else:
            stack.extend(n.children(e))


def _attribute_span(e: n.Path, index: FileIndex) -> Span:
    """`contact.age`: the span of `age` where the path is written without spaces, else the path's."""
    s, root = e.span, e.parts[0]
    if index.snippet(s) == ".".join(e.parts):
        return Span(s.file, s.line, s.col + len(root) + 1, s.end_line, s.end_col)
    return s
