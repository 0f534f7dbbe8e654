"""Positions: offerd's 1-based spans (columns in characters) to LSP's 0-based ranges in the
client's units (UTF-16 code units unless the client chose UTF-8 or UTF-32), and back."""
from __future__ import annotations

import bisect

from lsprotocol import types as t

from ...lang.diagnostics import Span


class Lines(list):
    """A text's lines as the parser counts them (it splits on \\n alone; a \\r before it is kept
    off). LSP also ends a line at a \\r alone (a comment or string may hold one): then `lsp`
    holds the LSP line each of them starts at, and positions below it are moved by as many."""

    lsp: list[int] | None = None


def lines_of(text: str) -> Lines:
    parts = text.split("\n")
    lines = Lines([line.removesuffix("\r") for line in parts[:-1]] + parts[-1:])
    if "\r" in text and any("\r" in line for line in lines):
        lines.lsp, at = [], 0
        for line in lines:
            lines.lsp.append(at)
            at += 1 + line.count("\r")
    return lines


def units(text: str, encoding: str) -> int:
    """How many of the client's units `text` takes."""
    if encoding == t.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == t.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def to_client(lines: list[str], line: int, col: int, encoding: str) -> t.Position:
    """0-based line and character column → an LSP position (past the end: clamped)."""
    if not lines:
        return t.Position(0, 0)
    if line >= len(lines):
        line, col = len(lines) - 1, len(lines[-1])
    line = max(line, 0)
    text = lines[line]
    col = max(0, min(col, len(text)))
    starts = getattr(lines, "lsp", None)
    if starts is None:
        return t.Position(line, units(text[:col], encoding))
    cut = text.rfind("\r", 0, col) + 1
    return t.Position(starts[line] + text.count("\r", 0, col), units(text[cut:col], encoding))


def from_client(lines: list[str], position: t.Position, encoding: str) -> tuple[int, int]:
    """An LSP position → 0-based (line, character column)."""
    line, start, starts = position.line, 0, getattr(lines, "lsp", None)
    if starts is not None and lines:  # the ODL line the LSP line is part of, and where it starts in it
        line = bisect.bisect_right(starts, position.line) - 1
        for _ in range(position.line - starts[line]):
            start = lines[line].find("\r", start) + 1
            if start == 0:  # past the text's last line
                return len(lines), 0
    if line >= len(lines):
        return len(lines), 0
    text, count = lines[line], 0
    end = text.find("\r", start) if starts is not None else -1
    end = len(text) if end < 0 else end
    for i in range(start, end):
        if count >= position.character:
            return line, i
        count += units(text[i], encoding)
    return line, end


def span_range(lines: list[str], span: Span, encoding: str) -> t.Range:
    """A span as an LSP range; no position (line 0) is the file's start. An empty span
    covers one character, so that an editor shows it."""
    if span.line <= 0:
        return t.Range(t.Position(0, 0), t.Position(0, 0))
    start_line, start_col = span.line - 1, max(span.col - 1, 0)
    end_line, end_col = max(span.end_line - 1, start_line), max(span.end_col - 1, 0)
    if (end_line, end_col) <= (start_line, start_col):
        end_line, end_col = start_line, start_col + 1
    return t.Range(to_client(lines, start_line, start_col, encoding), to_client(lines, end_line, end_col, encoding))


def contains(span: Span, line: int, col: int) -> bool:
    """Whether 1-based (line, col) falls in the span, its end included (a cursor just past a
    name is on it)."""
    if span.line <= 0 or not span.line <= line <= span.end_line:
        return False
    if line == span.line and col < span.col:
        return False
    return not (line == span.end_line and col > span.end_col)
