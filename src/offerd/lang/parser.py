"""Source text → AST. Lark LALR with an inline transformer, so trees are built while
parsing, without recursion; lark's errors become our diagnostics here and go no further."""
from __future__ import annotations

import datetime
import math
import re
import threading
from importlib import resources

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from . import nodes as n
from .diagnostics import Reporter, Span
from .types import BOOL, DATE, DURATION, FLOAT, INT, STRING

MAX_DEPTH = 48  # expression nesting; generated Python nests about twice as deep
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_INT = 2**63 - 1
MAX_STRING = 64 * 1024
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class _Limit(Exception):
    def __init__(self, span: Span, message: str):
        self.span, self.message = span, message


class _Build(Transformer_NonRecursive):
    """Lark tree → AST, iteratively (a 10,000-deep input must not recurse). `origin` maps
    a column inside a template string back to the source line."""

    def __init__(self, file: str, report: Reporter, origin=None):
        super().__init__()
        self.file, self.report, self.origin = file, report, origin

    def _span(self, meta_or_tok) -> Span:
        m = meta_or_tok
        if getattr(m, "empty", False):
            return Span(self.file, 0, 0, 0, 0)
        line, col, eline, ecol = m.line, m.column, m.end_line, m.end_column
        if self.origin is not None:
            base_line, col_of = self.origin
            col, ecol = col_of(col - 1), col_of(ecol - 1)
            line = eline = base_line
        return Span(self.file, line, col, eline, ecol)

    def _expr(self, cls, meta, *args, **kw):
        kids = [a for a in args if isinstance(a, n.Expr)]
        for a in args:
            if isinstance(a, tuple):
                kids.extend(x for x in a if isinstance(x, n.Expr))
        depth = 1 + max((k.depth for k in kids), default=0)
        span = self._span(meta)
        if depth > MAX_DEPTH:
            raise _Limit(span, f"expression nested more than {MAX_DEPTH} levels deep")
        return cls(*args, span=span, depth=depth, **kw)

    # --- declarations
    @v_args(meta=True)
    def start(self, meta, decls):
        return tuple(decls)

    @v_args(meta=True)
    def timezone(self, meta, c):
        return n.Timezone(self._string(c[0]), span=self._span(meta))

    @v_args(meta=True)
    def schema(self, meta, c):
        return n.Schema(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    @v_args(meta=True)
    def field(self, meta, c):
        return n.SchemaField(str(c[0]), c[1], span=self._span(c[0]))

    @v_args(meta=True)
    def type(self, meta, c):
        return n.TypeRef(str(c[0]), c[1] if len(c) > 1 else None, span=self._span(meta))

    @v_args(meta=True)
    def let(self, meta, c):
        return n.Let(str(c[0]), c[1], span=self._span(c[0]))

    @v_args(meta=True)
    def space(self, meta, c):
        return n.Space(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    @v_args(meta=True)
    def category(self, meta, c):
        name, span = c[0]
        return n.Category(name, tuple(c[1:]), span=span)

    @v_args(meta=True)
    def offer(self, meta, c):
        return n.Offer(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    def _clause(self, kind, meta, value, spans):
        return n.Clause(kind, value, span=self._span(meta), value_spans=tuple(spans))

    @v_args(meta=True)
    def channel(self, meta, c):
        return self._clause("channel", meta, str(c[0]), [self._span(c[0])])

    @v_args(meta=True)
    def limit(self, meta, c):
        return self._clause("limit", meta, self._int(c[0]), [self._span(c[0])])

    @v_args(meta=True)
    def fallback(self, meta, c):
        return self._clause("fallback", meta, str(c[0]), [self._span(c[0])])

    @v_args(meta=True)
    def offer_category(self, meta, c):
        name, span = c[0]
        return self._clause("category", meta, name, [span])

    @v_args(meta=True)
    def themes(self, meta, c):
        return self._clause("themes", meta, tuple(map(str, c)), map(self._span, c))

    @v_args(meta=True)
    def spaces(self, meta, c):
        return self._clause("spaces", meta, tuple(map(str, c)), map(self._span, c))

    @v_args(meta=True)
    def valid(self, meta, c):
        return self._clause("valid", meta, (self._date(c[0]), self._date(c[1])), map(self._span, c))

    @v_args(meta=True)
    def fields(self, meta, c):
        return n.Fields(tuple(c), span=self._span(meta))

    @v_args(meta=True)
    def field_spec(self, meta, c):
        return n.FieldSpec(str(c[0]), len(c) > 1, span=self._span(meta))

    @v_args(meta=True)
    def eligible(self, meta, c):
        return n.Rule("eligible", None, c[0], span=self._span(meta))

    @v_args(meta=True)
    def eligible_in(self, meta, c):
        return n.Rule("eligible", str(c[0]), c[1], span=self._span(meta), space_span=self._span(c[0]))

    @v_args(meta=True)
    def weight(self, meta, c):
        return n.Rule("weight", None, c[0], span=self._span(meta))

    @v_args(meta=True)
    def weight_in(self, meta, c):
        return n.Rule("weight", str(c[0]), c[1], span=self._span(meta), space_span=self._span(c[0]))

    @v_args(meta=True)
    def content(self, meta, c):
        return n.Content(str(c[0]), tuple(c[1:]), span=self._span(meta), space_span=self._span(c[0]))

    @v_args(meta=True)
    def content_field(self, meta, c):
        return n.ContentField(str(c[0]), self._template(c[1]), span=self._span(c[0]))

    @v_args(meta=True)
    def cap(self, meta, c):
        limit = self._int(c[0])
        status, status_span = None, self._span(c[0])
        if isinstance(c[1], Token):
            status, status_span = str(c[1]), self._span(c[1])
        scope, window = c[-1]
        return n.Cap(limit, status, scope, window, span=self._span(meta), status_span=status_span)

    def per_contact(self, c):
        return ("contact", c[0] if c else None)

    def total(self, c):
        return ("total", c[0] if c else None)

    @v_args(meta=True)
    def suppress(self, meta, c):
        return n.Suppress(c[0], str(c[1]), span=self._span(meta), status_span=self._span(c[1]))

    @v_args(meta=True)
    def dotted(self, meta, c):
        return ".".join(map(str, c)), self._span(meta)

    @v_args(meta=True)
    def duration(self, meta, c):
        seconds = sum(int(t[:-1]) * _UNITS[t[-1]] for t in c)
        if seconds == 0 or seconds > 100 * 365 * 86400:
            self.report.error(self._span(meta), "a duration must be more than 0 and at most 100 years")
        return seconds

    # --- expressions
    @v_args(meta=True)
    def cond(self, meta, c):
        return self._expr(n.Cond, meta, c[0], c[1], c[2])

    @v_args(meta=True)
    def or_(self, meta, c):
        return self._expr(n.Binary, meta, "or", c[0], c[1])

    @v_args(meta=True)
    def and_(self, meta, c):
        return self._expr(n.Binary, meta, "and", c[0], c[1])

    @v_args(meta=True)
    def not_(self, meta, c):
        return self._expr(n.Unary, meta, "not", c[0])

    @v_args(meta=True)
    def comparison(self, meta, c):
        return self._expr(n.Binary, meta, str(c[1]), c[0], c[2])

    @v_args(meta=True)
    def in_(self, meta, c):
        return self._expr(n.Binary, meta, "in", c[0], c[1])

    @v_args(meta=True)
    def not_in(self, meta, c):
        return self._expr(n.Binary, meta, "not in", c[0], c[1])

    @v_args(meta=True)
    def coalesce(self, meta, c):
        return self._expr(n.Binary, meta, "??", c[0], c[1])

    @v_args(meta=True)
    def arith(self, meta, c):
        return self._expr(n.Binary, meta, str(c[1]), c[0], c[2])

    @v_args(meta=True)
    def neg(self, meta, c):
        return self._expr(n.Unary, meta, "-", c[0])

    def _lit(self, meta, value, t):
        return self._expr(n.Literal, meta, value, t)

    @v_args(meta=True)
    def int_lit(self, meta, c):
        return self._lit(meta, self._int(c[0]), INT)

    @v_args(meta=True)
    def float_lit(self, meta, c):
        value = float(c[0])
        if not math.isfinite(value) or len(c[0]) > 40:
            self.report.error(self._span(c[0]), "number literal too large")
            value = 0.0
        return self._lit(meta, value, FLOAT)

    @v_args(meta=True)
    def string_lit(self, meta, c):
        return self._lit(meta, self._string(c[0]), STRING)

    @v_args(meta=True)
    def date_lit(self, meta, c):
        return self._lit(meta, self._date(c[0]), DATE)

    @v_args(meta=True)
    def duration_lit(self, meta, c):
        return self._lit(meta, c[0], DURATION)

    @v_args(meta=True)
    def true_lit(self, meta, c):
        return self._lit(meta, True, BOOL)

    @v_args(meta=True)
    def false_lit(self, meta, c):
        return self._lit(meta, False, BOOL)

    @v_args(meta=True)
    def list_lit(self, meta, c):
        return self._expr(n.ListLiteral, meta, tuple(x for x in c if x is not None))

    @v_args(meta=True)
    def path(self, meta, c):
        return self._expr(n.Path, meta, tuple(map(str, c)))

    @v_args(meta=True)
    def name(self, meta, c):
        return self._expr(n.Name, meta, str(c[0]))

    @v_args(meta=True)
    def call(self, meta, c):
        return self._expr(n.Call, meta, str(c[0]), tuple(x for x in c[1:] if x is not None))

    # --- token values
    def _int(self, tok) -> int:
        if len(tok) > 19 or int(tok) > MAX_INT:
            self.report.error(self._span(tok), f"integer literal out of range (at most {MAX_INT})")
            return 0
        return int(tok)

    def _date(self, tok) -> datetime.date:
        try:
            return datetime.date.fromisoformat(str(tok))
        except ValueError:
            self.report.error(self._span(tok), f"invalid date {tok}", "dates are YYYY-MM-DD")
            return datetime.date(1970, 1, 1)

    def _string(self, tok) -> str:
        return _unescape(tok, self._span(tok), self.report)[0]

    def _template(self, tok) -> n.Template:
        text, raw_index = _unescape(tok, self._span(tok), self.report)
        return _parse_template(text, raw_index, self._span(tok), self.report)


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _unescape(tok: str, span: Span, report: Reporter) -> tuple[str, list[int]]:
    """The string's value, and for each of its characters the column offset in the token."""
    out: list[str] = []
    where: list[int] = []
    i, body = 1, str(tok)
    while i < len(body) - 1:
        ch = body[i]
        if ch == "\\":
            esc = body[i + 1]
            if esc not in _ESCAPES:
                col = span.col + i
                report.error(Span(span.file, span.line, col, span.line, col + 2),
                             f"unknown escape \\{esc} in string", 'escapes are \\" \\\\ \\n \\t')
            out.append(_ESCAPES.get(esc, esc))
            where.append(i)
            i += 2
        else:
            out.append(ch)
            where.append(i)
            i += 1
    where.append(len(body) - 1)
    if len(out) > MAX_STRING:
        report.error(span, f"string longer than {MAX_STRING} characters")
    return "".join(out), where


def _parse_template(text: str, where: list[int], span: Span, report: Reporter) -> n.Template:
    """Split `Hi {contact.first_name ?? "there"}` into text and expressions.
    `{{` and `}}` stand for literal braces."""
    parts: list[str | n.Expr] = []
    buf: list[str] = []
    i = 0

    def col_of(k: int) -> int:
        return span.col + where[min(k, len(where) - 1)]

    while i < len(text):
        ch = text[i]
        if ch in "{}" and text[i + 1 : i + 2] == ch:
            buf.append(ch)
            i += 2
            continue
        if ch == "}":
            c = col_of(i)
            report.error(Span(span.file, span.line, c, span.line, c + 1),
                         "unmatched } in content", "write }} for a literal brace")
            i += 1
            continue
        if ch != "{":
            buf.append(ch)
            i += 1
            continue
        end = _closing_brace(text, i + 1)
        if end < 0:
            c = col_of(i)
            report.error(Span(span.file, span.line, c, span.line, c + 1),
                         "unclosed { in content", "write {{ for a literal brace")
            break
        if buf:
            parts.append("".join(buf))
            buf = []
        start = i + 1
        expr = _parse_expr(text[start:end], span.file, report,
                           (span.line, lambda k, s=start: col_of(s + k)))
        if expr is not None:
            parts.append(expr)
        i = end + 1
    if buf:
        parts.append("".join(buf))
    return n.Template(tuple(parts), span=span)


def _closing_brace(text: str, i: int) -> int:
    in_string = False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "}":
            return i
        i += 1
    return -1


# --- the parser --------------------------------------------------------------------------

_lark: Lark | None = None
_lark_lock = threading.Lock()


def _parser() -> Lark:
    global _lark
    with _lark_lock:
        if _lark is None:
            grammar = resources.files("offerd.lang").joinpath("grammar.lark").read_text()
            _lark = Lark(grammar, parser="lalr", strict=True, propagate_positions=True,
                         start=["start", "expr"], maybe_placeholders=True, cache=True)
    return _lark


def parse(text: str, file: str, report: Reporter) -> n.Module:
    """Parse one file. Errors go to `report`; a file with a syntax error yields no decls."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        report.error(Span(file, 1, 1, 1, 1),
                     f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes",
                     "split the catalog into several files")
        return n.Module(file, ())
    decls = _run(text, file, report, "start", None)
    return n.Module(file, decls if decls is not None else ())


def parse_expr(text: str, file: str, report: Reporter) -> n.Expr | None:
    """Parse a lone expression (tests, tools)."""
    return _run(text, file, report, "expr", None)


def _parse_expr(text, file, report, origin):
    return _run(text, file, report, "expr", origin)


def _run(text, file, report, start, origin):
    parser = _parser()
    try:
        tree = parser.parse(text, start=start)
        return _Build(file, report, origin).transform(tree)
    except VisitError as e:
        if not isinstance(e.orig_exc, _Limit):
            raise e.orig_exc from None
        report.error(e.orig_exc.span, e.orig_exc.message,
                     "name a part with `let`, or simplify the expression")
    except UnexpectedInput as e:
        report.error(*_syntax_error(e, text, file, origin, parser))
    return None


_NAMES = {
    "NAME": "a name", "STRING": "a string", "INT": "an integer", "FLOAT": "a number",
    "DATE": "a date", "DURATION": "a duration", "COMPARE": "a comparison",
    "ADD_OP": "+ or -", "MUL_OP": "* / or %", "OPTIONAL": "?", "$END": "end of input",
}
_EXPR_START = {"NAME", "STRING", "INT", "FLOAT", "DATE", "DURATION", "LPAR", "LSQB",
               "MINUS", "NOT", "IF", "TRUE", "FALSE"}
_CLAUSES = {"timezone", "schema", "let", "space", "category", "offer", "channel", "limit",
            "fallback", "fields", "themes", "spaces", "valid", "eligible", "weight", "cap",
            "suppress", "content"}
_HINTS = [
    (re.compile(r"^=[^=]"), "use == to compare, = only in `let`"),
    (re.compile(r"^&&|^\|\|"), "write `and` / `or`"),
    (re.compile(r"^'"), 'strings use double quotes: "text"'),
    (re.compile(r"^!(?!=)"), "write `not`"),
    (re.compile(r"^[A-Z]"), "names are lower case: [a-z_][a-z0-9_]*"),
]


def _describe(name: str, parser: Lark) -> str:
    if name in _NAMES:
        return _NAMES[name]
    try:
        pattern = parser.get_terminal(name).pattern
        return f"'{pattern.value}'" if pattern.type == "str" else name.lower()
    except KeyError:
        return name.lower()


def _syntax_error(e: UnexpectedInput, text: str, file: str, origin, parser: Lark):
    line, col = getattr(e, "line", 1), getattr(e, "column", 1)
    if isinstance(e, UnexpectedEOF) or line in (None, -1):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
    expected = set(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    wanted = []
    if len(expected & _EXPR_START) >= 4:
        wanted.append("an expression")
        expected -= _EXPR_START
    wanted += sorted({_describe(t, parser) for t in expected})
    if isinstance(e, UnexpectedCharacters):
        found = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        what, width = f"character {found!r}", 1
    elif isinstance(e, UnexpectedToken) and e.token.type != "$END":
        what, width = f"'{e.token}'", max(len(str(e.token)), 1)
    else:
        what, width = "end of input", 1
    message = f"unexpected {what}"
    if what == "end of input" and "'}'" in wanted:
        message += "; a '{' is not closed"
    elif 0 < len(wanted) <= 6:
        message += "; expected " + (wanted[0] if len(wanted) == 1 else "one of " + ", ".join(wanted))
    previous = (getattr(e, "token_history", None) or [None])[-1]
    if isinstance(e, UnexpectedToken) and previous is not None and str(previous) in _CLAUSES \
            and previous.type == "NAME":
        # `eligible contact.age >=` then `content ...`: the keyword was read as a name
        line, col, width = previous.line, previous.column, len(previous)
        message = f"`{previous}` starts a new clause, but the expression before it is incomplete"
    rest = ""
    if isinstance(e, (UnexpectedCharacters, UnexpectedToken)) and e.pos_in_stream is not None:
        rest = text[e.pos_in_stream : e.pos_in_stream + 3]
    hint = next((h for pattern, h in _HINTS if pattern.search(rest)), None)
    if origin is not None:
        base_line, col_of = origin
        line, col = base_line, col_of(col - 1)
    return Span(file, line, col, line, col + width), message, hint
