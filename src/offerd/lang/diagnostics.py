"""Diagnostics: one shape for every error and warning offerd reports about a catalog.

Rendered as `file:line:col: error: message`, the source line, a caret under the span,
and an optional hint. The CLI and the admin API both use `Diagnostic.render`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import NamedTuple


class Span(NamedTuple):  # a tuple: a catalog makes hundreds of thousands of them
    file: str
    line: int  # 1-based
    col: int  # 1-based
    end_line: int
    end_col: int  # exclusive, 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    severity: str = "error"  # "error" or "warning"
    hint: str | None = None

    def render(self, sources: dict[str, str] | None = None) -> str:
        out = [f"{self.span}: {self.severity}: {self.message}"]
        text = (sources or {}).get(self.span.file)
        if text is not None and self.span.line > 0:
            lines = text.splitlines()
            if self.span.line <= len(lines):
                line, span = _window(lines[self.span.line - 1], self.span)
                out.append(line)
                out.append(_caret(line, span))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


WIDTH = 120


def _window(line: str, span: Span) -> tuple[str, Span]:
    """A long line cut to about WIDTH characters around the span, marked with …."""
    if len(line) <= WIDTH:
        return line, span
    start = max(0, min(span.col - 1 - WIDTH // 3, len(line) - WIDTH))
    end = start + WIDTH
    shown = ("…" if start else "") + line[start:end] + ("…" if end < len(line) else "")
    shift = start - (1 if start else 0)
    end_col = span.end_col - shift if span.end_line == span.line else len(shown) + 1
    return shown, Span(span.file, span.line, span.col - shift, span.line, min(end_col, len(shown) + 1))


def _caret(line: str, span: Span) -> str:
    start = max(span.col - 1, 0)
    # keep tabs so the caret lines up in a terminal whatever the tab width
    pad = "".join("\t" if c == "\t" else " " for c in line[:start])
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    width = max(1, min(end, len(line)) - start)
    return pad + "^" + "~" * (width - 1)


class CatalogError(Exception):
    """Raised once, with every error of a phase; `.diagnostics` also holds warnings."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self) -> str:
        return "\n".join(d.render(self.sources) for d in self.diagnostics)


@dataclass
class Reporter:
    """Collects the diagnostics of one phase."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(span, message, "error", hint))

    def warning(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(span, message, "warning", hint))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)


def did_you_mean(name: str, candidates, prefix: str = "") -> str | None:
    """A hint naming the closest candidate, or None when nothing is close."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {prefix}{match[0]}?" if match else None
