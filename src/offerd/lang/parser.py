"""Source text → AST: the Lark LALR parser, run with builder.py's inline transformer (trees
are built while parsing, without recursion); lark's errors become our diagnostics here (made
specific by hints.py) and go no further."""
from __future__ import annotations

import re
import threading
from importlib import resources

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import hints
from . import nodes as n
from .builder import Builder, LimitExceeded
from ..periods import KINDS as PERIODS
from .diagnostics import Reporter, Span

MAX_FILE_BYTES = 4 * 1024 * 1024

try:  # the compiled LALR parser and lexer, 2-3x faster; the pure-Python lark otherwise
    import lark_cython

    _PLUGINS = {"_plugins": lark_cython.plugins}
except ImportError:  # pragma: no cover
    _PLUGINS = {}

_lock = threading.RLock()  # the builder holds per-parse state; templates re-enter
_lark: Lark | None = None


def new_lark(**options) -> Lark:
    """A Lark LALR parser of ODL's grammar (strict, compiled when lark-cython is there) with
    `options`: this module's parser, and the formatter's, which keeps every token."""
    grammar = resources.files("offerd.lang").joinpath("grammar.lark").read_text()
    lark = Lark(grammar, parser="lalr", strict=True, **options, **_PLUGINS)
    # Rule names are lark Tokens (a str subclass with __eq__ in Python); after each
    # reduction the parse table, keyed by plain str, is searched by that name. Plain
    # str names keep the lookup in C: a 10,000-offer catalog parses ~20% faster.
    for rule in lark.rules:
        rule.origin.name = str(rule.origin.name)
    return lark


def keywords() -> list[str]:
    """The grammar's keywords (`offer`, `cap`, `and` ...), in name order."""
    return sorted({t.pattern.value for t in _parser().terminals if t.pattern.type == "str" and t.pattern.value.isalpha()})


def _parser() -> Lark:
    global _lark
    with _lock:
        if _lark is None:
            _lark = new_lark(transformer=_builder, start=["start", "expr"], maybe_placeholders=True)
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


def _run(text, file, report, start, origin):
    parser = _parser()
    with _lock:
        saved = (_builder.file, _builder.report if hasattr(_builder, "report") else None, _builder.origin,
                 _builder.chains)
        _builder.file, _builder.report, _builder.origin, _builder.chains = file, report, origin, {}
        try:
            return parser.parse(text, start=start)
        except LimitExceeded as e:
            report.error(e.span, e.message, "name a part with `let`, or simplify the expression")
        except UnexpectedInput as e:
            report.error(*_syntax_error(e, text, file, origin, parser))
        finally:
            _builder.file, _builder.report, _builder.origin, _builder.chains = saved
    return None


def _template_expr(text, file, report, origin):
    """An expression inside a content template: the builder meets it mid-parse and re-enters."""
    return _run(text, file, report, "expr", origin)


_builder = Builder(_template_expr)


_NAMES = {
    "NAME": "a name", "STRING": "a string", "INT": "an integer", "FLOAT": "a number",
    "DATE": "a date", "DATETIME": "a date-time", "DURATION": "a duration", "COMPARE": "a comparison",
    "ADD_OP": "+ or -", "MUL_OP": "* / or %", "OPTIONAL": "?", "$END": "end of input",
}
_EXPR_START = {"NAME", "STRING", "INT", "FLOAT", "DATE", "DURATION", "LPAR", "LSQB",
               "MINUS", "NOT", "IF", "TRUE", "FALSE"}
_CLAUSES = {"timezone", "schema", "let", "space", "category", "group", "groups", "offer", "channel", "limit",
            "fallback", "fields", "themes", "spaces", "valid", "eligible", "weight", "cap",
            "suppress", "content"}
_HINTS = [
    (re.compile(r"^=[^=]"), "use == to compare, = only in `let`"),
    (re.compile(r"^&&|^\|\|"), "write `and` / `or`"),
    (re.compile(r"^'"), 'strings use double quotes: "text"'),
    (re.compile(r"^!(?!=)"), "write `not`"),
    (re.compile(r"^T[0-9]|^[0-9]{4}-[0-9]{2}-[0-9]{2}T"),
     "date-times (2027-11-26T08:00) are written only in `valid`; rules read hour(now) and today"),
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
    allowed = frozenset(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    expected = set(allowed)
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
    read_as_name = isinstance(e, UnexpectedToken) and previous is not None and str(previous) in _CLAUSES \
        and previous.type == "NAME"
    if read_as_name:
        # `eligible contact.age >=` then `content ...`: the keyword was read as a name
        line, col, width = previous.line, previous.column, len(str(previous))
        message = f"`{previous}` starts a new clause, but the expression before it is incomplete"
    if isinstance(e, UnexpectedToken) and (str(e.token) == "calendar" or (
            previous is not None and str(previous) == "calendar" and str(e.token) in PERIODS)):
        # `suppress calendar week ...`, `proposed(x, calendar week)`: periods are for caps
        at = e.token if str(e.token) == "calendar" else previous
        return (Span(file, at.line, at.column, at.line, at.column + 8),
                "calendar periods are for caps only (`cap 1 per contact per calendar week`)",
                "write a duration here, such as 7d")
    if isinstance(e, UnexpectedToken) and previous is not None and str(previous) == "in" \
            and previous.type != "NAME" and str(e.token) == ":":
        # `a: string  in: int`: after a type, `in` starts a closed set or range
        line, col, width = previous.line, previous.column, 2
        message = "`in` after an attribute's type starts a closed set or range, so no attribute can be named `in`"
        return Span(file, line, col, line, col + width), message, "rename the attribute"
    rest = ""
    if isinstance(e, (UnexpectedCharacters, UnexpectedToken)) and e.pos_in_stream is not None:
        rest = text[e.pos_in_stream : e.pos_in_stream + 3]
    hint = next((h for pattern, h in _HINTS if pattern.search(rest)), None)
    # the mistakes hints.py recognises get their own message or hint; the rest keep the above
    keywords = {k.strip("'") for k in (_describe(t, parser) for t in allowed) if k.strip("'").isalpha()}
    found = hints.explain(e, text, allowed, keywords, previous, origin is not None)
    if found is not None and (found.message is not None or not read_as_name):
        line, col, width = found.line, found.col, found.width
        message, hint = found.message or message, found.hint
    if origin is not None:
        base_line, col_of = origin
        line, col = base_line, col_of(col - 1)
    return Span(file, line, col, line, col + width), message, hint
