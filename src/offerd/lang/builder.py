"""Lark's reductions → AST nodes: the transformer that builds each node as the LALR parser
reduces a rule, with its span and nesting depth, and the values of literal tokens (numbers,
dates, durations, strings with their escapes, content templates)."""
from __future__ import annotations

import datetime
import math

from lark import Token, Transformer

from . import nodes as n
from ..domain import DURATION_UNITS, INT_MAX
from .diagnostics import NO_SPAN, Reporter, Span
from .types import BOOL, DATE, DURATION, FLOAT, INT, STRING

MAX_DEPTH = 48  # expression nesting; generated Python nests about twice as deep
MAX_CHAIN = 4096  # conditions in one `and` or `or` chain (built balanced: see Builder._chain)
MAX_STRING = 64 * 1024


class LimitExceeded(Exception):
    """An expression nested too deep or a chain too long: the parse stops with this one error."""

    def __init__(self, span: Span, message: str):
        self.span, self.message = span, message


try:  # lark_cython's tokens, when the parser uses it (see parser.py)
    from lark_cython.lark_cython import Token as _CToken

    _TOKENS = (Token, _CToken)
except ImportError:  # pragma: no cover
    _TOKENS = (Token,)


def _names(c) -> list[Token]:
    return [t for t in c if isinstance(t, _TOKENS) and t.type == "NAME"]


class Builder(Transformer):
    """Builds AST nodes while the LALR parser reduces (lark's inline transformer): no
    intermediate tree, no recursion, so a 10,000-deep input costs one error. Spans come
    from the children's tokens; `!` rules in the grammar keep their keywords for this.
    `file`, `report` and `origin` are set per parse, under the parser's lock; `origin` maps a
    column inside a template string back to its source line. `parse_expr(text, file, report,
    origin)` parses the expressions inside template strings."""

    file = "<input>"
    report: Reporter
    origin = None
    chains: dict = {}  # id of an `and`/`or` node → (node, its chain's subtrees); per parse

    def __init__(self, parse_expr):
        super().__init__()
        self.parse_expr = parse_expr

    def _span(self, first, last=None) -> Span:
        if last is None:
            last = first
        first_span, last_span = getattr(first, "span", None), getattr(last, "span", None)
        if self.origin is None:
            start = (first.line, first.column) if first_span is None else first_span[1:3]
            end = (last.end_line, last.end_column) if last_span is None else last_span[3:5]
            return Span(self.file, *start, *end)
        base_line, col_of = self.origin  # inside a template: map columns back to the source
        col = first_span.col if first_span is not None else col_of(first.column - 1)
        end_col = last_span.end_col if last_span is not None else col_of(last.end_column - 1)
        return Span(self.file, base_line, col, base_line, end_col)

    def _expr(self, cls, first, last, *args):
        depth = 1
        for a in args:
            if isinstance(a, n.Expr):
                depth = max(depth, a.depth + 1)
            elif isinstance(a, tuple):
                depth = max([depth] + [x.depth + 1 for x in a if isinstance(x, n.Expr)])
        span = self._span(first, last)
        if depth > MAX_DEPTH:
            raise LimitExceeded(span, f"expression nested more than {MAX_DEPTH} levels deep")
        return cls(*args, span=span, depth=depth)

    # --- declarations
    def start(self, c):
        return tuple(c)

    def timezone(self, c):
        return n.Timezone(self._string(c[1]), span=self._span(c[0], c[1]))

    def schema(self, c):
        return n.Schema(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    def field(self, c):
        domain = c[2] if len(c) > 2 else None
        return n.SchemaField(str(c[0]), c[1], span=self._span(c[0]), domain=domain)

    def closed_set(self, c):
        members = tuple(self._member(x) for x in c[2:-1] if x is not None and str(x) != ",")
        return n.DomainSpec("set", members, span=self._span(c[0], c[-1]))

    def _member(self, x):
        if isinstance(x, tuple):  # a bound, or true/false
            return x
        return self._string(x), self._span(x)

    def range(self, c):
        end = c[3][1]
        span = Span(self.file, c[0].line, c[0].column, end.end_line, end.end_col)
        return n.DomainSpec("range", (c[1], c[3]), span=span)

    def bound(self, c):
        tok = c[-1]
        span = self._span(c[0], tok)
        if tok.type == "DATE":
            return self._date(tok), span
        if tok.type == "INT":
            value = self._int(tok)
        else:
            value = float(tok.value)
            if not math.isfinite(value) or len(tok.value) > 40:
                self.report.error(span, "number literal too large")
                value = 0.0
        return (-value if len(c) > 1 else value), span

    def true_member(self, c):
        return True, self._span(c[0])

    def false_member(self, c):
        return False, self._span(c[0])

    def type(self, c):
        return n.TypeRef(str(c[0]), c[2] if len(c) > 1 else None, span=self._span(c[0], c[-1]))

    def let(self, c):
        return n.Let(str(c[0]), c[1], span=self._span(c[0]))

    def space(self, c):
        return n.Space(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    def category(self, c):
        name, span = c[0]
        return n.Category(name, tuple(c[1:]), span=span)

    def group(self, c):
        return n.Group(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    def offer(self, c):
        return n.Offer(str(c[0]), tuple(c[1:]), span=self._span(c[0]))

    def _clause(self, kind, c, value, spans):
        return n.Clause(kind, value, span=self._span(c[0], c[-1]), value_spans=tuple(spans))

    def channel(self, c):
        return self._clause("channel", c, str(c[1]), [self._span(c[1])])

    def limit(self, c):
        return self._clause("limit", c, self._int(c[1]), [self._span(c[1])])

    def fallback(self, c):
        return self._clause("fallback", c, str(c[1]), [self._span(c[1])])

    def offer_category(self, c):
        name, span = c[1]
        return n.Clause("category", name, span=Span(self.file, c[0].line, c[0].column, span.end_line,
                                                    span.end_col), value_spans=(span,))

    def offer_groups(self, c):
        names = _names(c[1:])
        return self._clause("groups", c, tuple(map(str, names)), map(self._span, names))

    def themes(self, c):
        names = _names(c[1:])
        return self._clause("themes", c, tuple(map(str, names)), map(self._span, names))

    def spaces(self, c):
        names = _names(c[1:])
        return self._clause("spaces", c, tuple(map(str, names)), map(self._span, names))

    def valid(self, c):
        # (start, end, the range as written): each end a date or a wall-clock datetime
        bounds = tuple(self._datetime(t) if t.type == "DATETIME" else self._date(t) for t in (c[1], c[3]))
        return self._clause("valid", c, (*bounds, f"{c[1]} to {c[3]}"), (self._span(c[1]), self._span(c[3])))

    def fields(self, c):
        specs = tuple(x for x in c if isinstance(x, n.FieldSpec))
        return n.Fields(specs, span=self._span(c[0], c[-1]))

    def field_spec(self, c):
        return n.FieldSpec(str(c[0]), len(c) > 1, span=self._span(c[0], c[-1]))

    def _rule(self, kind, c):
        space = _names(c[1:-1])
        return n.Rule(kind, str(space[0]) if space else None, c[-1], span=self._span(c[0], c[-1]),
                      space_span=self._span(space[0]) if space else NO_SPAN)

    def eligible(self, c):
        return self._rule("eligible", c)

    eligible_in = eligible

    def weight(self, c):
        return self._rule("weight", c)

    weight_in = weight

    def content(self, c):
        fields = tuple(x for x in c if isinstance(x, n.ContentField))
        return n.Content(str(c[1]), fields, span=self._span(c[0], c[-1]), space_span=self._span(c[1]))

    def content_field(self, c):
        return n.ContentField(str(c[0]), self._template(c[1]), span=self._span(c[0]))

    def cap(self, c):
        limit = self._int(c[1])
        status, status_span = None, self._span(c[1])
        if isinstance(c[2], _TOKENS):
            status, status_span = str(c[2]), self._span(c[2])
        scope, (window, _, last, *calendar) = c[-1]
        kind, kind_span = calendar or (None, NO_SPAN)
        return n.Cap(limit, status, scope, window, span=self._span(c[0], last or c[-2]),
                     status_span=status_span, calendar=kind, calendar_span=kind_span)

    # the scope's own words are kept so a cap's span (what explain and reports quote) ends at
    # its last word: `cap 3 total`, not `cap 3`
    def per_contact(self, c):
        return "contact", c[-1] if isinstance(c[-1], tuple) else (None, None, c[-1])

    def total(self, c):
        return "total", c[-1] if isinstance(c[-1], tuple) else (None, None, c[-1])

    def calendar(self, c):  # like a duration's (seconds, first, last), with the period and its span
        return None, c[0], c[1], str(c[1]), self._span(c[1])

    def per_decision(self, c):
        return "decision", (None, c[0], c[-1])

    def suppress(self, c):
        return n.Suppress(c[1][0], str(c[3]), span=self._span(c[0], c[3]), status_span=self._span(c[3]))

    def dotted(self, c):
        return ".".join(map(str, c)), self._span(c[0], c[-1])

    def duration(self, c):
        # more than 18 digits is past 100 years anyway, and int() raises past 4300 digits
        too_long = any(len(t.value[:-1].lstrip("0")) > 18 for t in c)
        seconds = 0 if too_long else sum(int(t.value[:-1]) * DURATION_UNITS[t.value[-1]] for t in c)
        if seconds == 0 or seconds > 100 * 365 * 86400:
            self.report.error(self._span(c[0], c[-1]), "a duration must be more than 0 and at most 100 years")
        return seconds, c[0], c[-1]

    # --- expressions
    def cond(self, c):
        return self._expr(n.Cond, c[0], c[5], c[1], c[3], c[5])

    def or_(self, c):
        return self._chain("or", c[0], c[1])

    def and_(self, c):
        return self._chain("and", c[0], c[1])

    def _chain(self, op, left, right):
        """`a or b or c ...` (likewise `and`) as a balanced tree, so that a chain of N
        conditions nests about 2 log2 N deep, not N: 2,000 conditions pass the nesting limit.
        Kleene `and` and `or` are associative and still evaluate left to right, so the shape
        changes nothing else. The chain so far is kept as perfect subtrees of decreasing size
        (a binary counter: a new operand merges equal sizes), each with the fold of the chain
        up to it, so an operand costs a few nodes, not log N."""
        got = self.chains.pop(id(left), None) if isinstance(left, n.Binary) and left.op == op else None
        stack = got[1] if got is not None and got[0] is left else [(1, left, left)]
        if sum(x[0] for x in stack) >= MAX_CHAIN:
            raise LimitExceeded(self._span(left, right), f"more than {MAX_CHAIN} conditions joined by `{op}`")
        size, node = 1, right
        while stack and stack[-1][0] == size:
            _, a, _ = stack.pop()
            node, size = self._expr(n.Binary, a, node, op, a, node), 2 * size
        fold = node if not stack else self._expr(n.Binary, stack[-1][2], node, op, stack[-1][2], node)
        stack.append((size, node, fold))
        self.chains[id(fold)] = (fold, stack)  # the node too: its id stays its own
        return fold

    def not_(self, c):
        return self._expr(n.Unary, c[0], c[1], "not", c[1])

    def comparison(self, c):
        return self._expr(n.Binary, c[0], c[2], str(c[1]), c[0], c[2])

    def in_(self, c):
        return self._expr(n.Binary, c[0], c[-1], "in", c[0], c[-1])

    def not_in(self, c):
        return self._expr(n.Binary, c[0], c[-1], "not in", c[0], c[-1])

    def coalesce(self, c):
        return self._expr(n.Binary, c[0], c[1], "??", c[0], c[1])

    def arith(self, c):
        return self._expr(n.Binary, c[0], c[2], str(c[1]), c[0], c[2])

    def neg(self, c):
        return self._expr(n.Unary, c[0], c[1], "-", c[1])

    def atom(self, c):  # ( expr ): a chain in brackets is one operand of what is outside
        self.chains.pop(id(c[1]), None)
        c[1].__dict__["parens"] = True  # frozen; like nodes' cached hash, set once, in place
        # its span takes the brackets in: what is outside spans them, and quotes stay balanced
        c[1].__dict__["span"] = self._span(c[0], c[2])
        return c[1]

    def _lit(self, tok, value, t):
        return self._expr(n.Literal, tok, tok, value, t)

    def int_lit(self, c):
        return self._lit(c[0], self._int(c[0]), INT)

    def float_lit(self, c):
        value = float(c[0].value)
        if not math.isfinite(value) or len(c[0].value) > 40:
            self.report.error(self._span(c[0]), "number literal too large")
            value = 0.0
        return self._lit(c[0], value, FLOAT)

    def string_lit(self, c):
        return self._lit(c[0], self._string(c[0]), STRING)

    def date_lit(self, c):
        return self._lit(c[0], self._date(c[0]), DATE)

    def duration_lit(self, c):
        seconds, first, last = c[0]
        return self._expr(n.Literal, first, last, seconds, DURATION)

    def true_lit(self, c):
        return self._lit(c[0], True, BOOL)

    def false_lit(self, c):
        return self._lit(c[0], False, BOOL)

    def list_lit(self, c):
        items = tuple(x for x in c if isinstance(x, n.Expr))
        return self._expr(n.ListLiteral, c[0], c[-1], items)

    def path(self, c):
        names = _names(c)
        return self._expr(n.Path, names[0], names[-1], tuple(map(str, names)))

    def name(self, c):
        return self._expr(n.Name, c[0], c[0], str(c[0]))

    def call(self, c):
        args = tuple(x for x in c[1:] if isinstance(x, n.Expr))
        return self._expr(n.Call, c[0], c[-1], str(c[0]), args)

    # --- token values
    def _int(self, tok) -> int:
        if len(tok.value) > 19 or int(tok.value) > INT_MAX:
            self.report.error(self._span(tok), f"integer literal out of range (at most {INT_MAX})")
            return 0
        return int(tok.value)

    def _date(self, tok) -> datetime.date:
        try:
            return datetime.date.fromisoformat(str(tok))
        except ValueError:
            self.report.error(self._span(tok), f"invalid date {tok}", "dates are YYYY-MM-DD")
            return datetime.date(1970, 1, 1)

    def _datetime(self, tok) -> datetime.datetime:
        try:
            return datetime.datetime.fromisoformat(str(tok))
        except ValueError:
            self.report.error(self._span(tok), f"invalid date-time {tok}", "date-times are YYYY-MM-DDTHH:MM[:SS]")
            return datetime.datetime(1970, 1, 1)

    def _string(self, tok) -> str:
        return _unescape(tok, self._span(tok), self.report)[0]

    def _template(self, tok) -> n.Template:
        text, raw_index = _unescape(tok, self._span(tok), self.report)
        if "{" not in text and "}" not in text:
            return n.Template((text,) if text else (), span=self._span(tok))
        return _parse_template(text, raw_index, self._span(tok), self.report, self.parse_expr)


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


def _parse_template(text: str, where: list[int], span: Span, report: Reporter, parse_expr) -> n.Template:
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
        expr = parse_expr(text[start:end], span.file, report, (span.line, lambda k, s=start: col_of(s + k)))
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
