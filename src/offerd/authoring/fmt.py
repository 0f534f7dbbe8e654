"""`offerd fmt`'s formatter: one ODL file's text in its canonical layout, comments kept.

The file is parsed twice: by offerd's parser, whose diagnostics refuse a file that does not
parse, then by a Lark parser of the same grammar that keeps every token (a concrete tree)
and hands over the comments the grammar ignores. The layout is rebuilt from that tree:
every token is printed as written, in order, so literals and brackets stay exactly as the
author wrote them and the parse, hence the meaning, cannot change; only the space between
tokens does (and the optional commas between content fields, which are left out)."""
from __future__ import annotations

import threading

from lark import Lark, Tree

from ..lang.diagnostics import CatalogError, Reporter
from ..lang.parser import new_lark, parse
from .comments import Comments, attach, blank_between
from .layout import HARD, LINE, SOFT, SPACE, Comment, Group, Indent, Lead, render

_lock = threading.Lock()
_lark: Lark | None = None
_found: list = []  # the comments of the parse under way (under _lock)

BLOCKS = {"schema", "space", "category", "group", "offer"}
CHAINS = {"or_", "and_", "arith", "coalesce"}  # operators a chain of operands is flattened by
BINARY = CHAINS | {"comparison", "in_", "not_in"}


def format_source(text: str, name: str = "<stdin>") -> str:
    """The canonical layout of one ODL file. Raises CatalogError with the parser's
    diagnostics (spans in `name`) when it does not parse."""
    report = Reporter()
    parse(text, name, report)
    if report.has_errors:
        raise CatalogError(report.diagnostics, {name: text})
    tree, comments = _concrete(text)
    tokens, operators, dropped = _tokens(tree)
    printer = _Printer(attach(tokens, comments, operators, dropped))
    out = render(printer.file(tree))
    return out.strip("\n") + "\n" if out.strip() else ""


def _concrete(text: str):
    global _lark
    with _lock:
        if _lark is None:  # lark-cython calls lexer callbacks too
            _lark = new_lark(start="start", keep_all_tokens=True, maybe_placeholders=False,
                             lexer_callbacks={"COMMENT": _found.append})
        _found.clear()
        try:
            return _lark.parse(text), list(_found)
        finally:
            _found.clear()


def _tokens(tree):
    """Every token in order; the ids of operator tokens (see comments.attach) and of the
    commas between content fields (left out)."""
    tokens, operators, dropped = [], set(), set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, Tree):
            tokens.append(node)
            continue
        kind, kids = node.data, node.children
        if kind in BINARY:
            operators.update(id(k) for k in kids[1:-1])
        elif kind == "cond":
            operators.update((id(kids[2]), id(kids[4])))
        elif kind == "content":
            dropped.update(id(k) for k in kids[3:-1] if not isinstance(k, Tree))
        stack.extend(reversed(kids))
    return tokens, operators, dropped


def _first(node):
    while isinstance(node, Tree):
        node = node.children[0]
    return node


def _last(node):
    while isinstance(node, Tree):
        node = node.children[-1]
    return node


class _Printer:
    """The concrete tree → a layout document."""

    def __init__(self, comments: Comments):
        self.c = comments

    def tok(self, t, lead: bool = True) -> list:
        out = []
        if lead and id(t) in self.c.leading:
            out.append(Lead(text for text, _ in self.c.leading[id(t)]))
        out.append(t.value)
        if id(t) in self.c.trailing:
            out.append(Comment(self.c.trailing[id(t)]))
        return out

    # --- the file and blocks -------------------------------------------------------------

    def file(self, tree) -> list:
        out, previous = [], None
        for decl in tree.children:
            if previous is not None:
                blank = decl.data != "let" or previous.data != "let" or \
                    blank_between(_last(previous).end_line, self._top_line(decl))
                out += [HARD, HARD] if blank else [HARD]
            out += self._leading(decl)
            out.append(self.item(decl))
            previous = decl
        if self.c.end:
            if previous is not None:
                out.append(HARD)
                if blank_between(_last(previous).end_line, self.c.end[0][1]):
                    out.append(HARD)
            out.append(Lead(self._texts(self.c.end)))
        return out

    def _top_line(self, node) -> int:
        lead = self.c.leading.get(id(_first(node)))
        return lead[0][1] if lead else _first(node).line

    def _texts(self, comments) -> list[str]:
        """Comment lines with the author's blank lines between them (one at most)."""
        texts = []
        for i, (text, line) in enumerate(comments):
            if i and blank_between(comments[i - 1][1], line):
                texts.append("")
            texts.append(text)
        return texts

    def _leading(self, node) -> list:
        """The own-line comments before an item, with a blank line after them if the author
        left one before the item."""
        first = _first(node)
        lead = self.c.leading.get(id(first))
        if not lead:
            return []
        texts = self._texts(lead)
        if blank_between(lead[-1][1], first.line):
            texts.append("")
        return [Lead(texts)]

    def block(self, opening, items, closing) -> list:
        """`{`, one item per line (a blank line kept where the author left one), `}`."""
        body, previous_end = [], None
        for item in items:
            body.append(HARD)
            if previous_end is not None and blank_between(previous_end, self._top_line(item)):
                body.append(HARD)
            body += self._leading(item)
            body.append(self.item(item))
            previous_end = _last(item).end_line
        lead = self.c.leading.get(id(closing))
        if lead:
            body.append(HARD)
            if previous_end is not None and blank_between(previous_end, lead[0][1]):
                body.append(HARD)
            body.append(Lead(self._texts(lead)))
        close = self.tok(closing, lead=False)
        if not body:
            return [self.tok(opening), close]
        return [self.tok(opening), Indent(body), HARD, close]

    def item(self, node):
        kind = node.data
        kids = node.children
        if kind in BLOCKS:
            opening = next(i for i, k in enumerate(kids) if not isinstance(k, Tree) and k.value == "{")
            head = self.words(kids[:opening], lead=False)
            return [head, SPACE, self.block(kids[opening], kids[opening + 1:-1], kids[-1])]
        if kind == "content":
            fields = [k for k in kids[3:-1] if isinstance(k, Tree)]
            return [self.words(kids[:2], lead=False), SPACE, self.block(kids[2], fields, kids[-1])]
        if kind == "field":
            return self.field(kids)
        if kind in ("let", "eligible", "eligible_in", "weight", "weight_in"):
            rule = self.expr(kids[-1])
            if id(_first(kids[-1])) in self.c.leading or id(kids[-2]) in self.c.trailing:
                # the rule starts on a line of its own, below a comment: indented
                rule = Indent(rule)
            return [self.words(kids[:-1], lead=False), SPACE, rule]
        if kind in ("offer_groups", "themes", "spaces", "fields"):
            return [self.tok(kids[0], lead=False), SPACE, self.commas(kids[1:])]
        return Group(self.words(kids, lead=False))

    # --- clauses ---------------------------------------------------------------------------

    def words(self, nodes, lead: bool = True) -> list:
        """Tokens one space apart, except around the dots of a dotted name and before `:`,
        the `?` of an optional field and in a type (`set<string>`) or a negative bound."""
        tokens = []
        stack = list(reversed(nodes))
        while stack:
            node = stack.pop()
            if isinstance(node, Tree):
                stack.extend(reversed(node.children))
            else:
                tokens.append(node)
        out, glue = [], True
        for i, t in enumerate(tokens):
            v = t.value
            if not glue and v not in (".", ":", "?", "<", ">"):
                out.append(SPACE)
            out += self.tok(t, lead or i > 0)
            glue = v in (".", "<", "-")
        return out

    def commas(self, nodes) -> Group:
        """`a, b, c`: on one line, or one per line."""
        out = []
        for k in nodes:
            if not isinstance(k, Tree) and k.value == ",":
                out += [self.tok(k), LINE]
            else:
                out.append(self.words([k]))
        return Group(Indent(out))

    def field(self, kids) -> Group:
        """`name: type`, then its closed set or range."""
        out = [self.tok(kids[0], lead=False), self.tok(kids[1]), SPACE, self.words([kids[2]])]
        if len(kids) > 3:
            domain = kids[3]
            if domain.data == "closed_set":
                out += [SPACE, self.tok(domain.children[0]), SPACE, self.brackets(domain.children[1:], lambda k: self.words([k]))]
            else:
                out += [SPACE, self.words([domain])]
        return Group(out)

    def brackets(self, kids, each) -> Group:
        """`(`/`[`, the items one per line if they do not fit on one, `)`/`]`."""
        opening, inner, closing = kids[0], kids[1:-1], kids[-1]
        if not inner:
            return Group(self.tok(opening), self.tok(closing))
        body = [SOFT]
        for k in inner:
            if not isinstance(k, Tree) and k.value == ",":
                body += [self.tok(k), LINE]
            else:
                body.append(each(k))
        return Group(self.tok(opening), Indent(body), SOFT, self.tok(closing))

    # --- expressions -----------------------------------------------------------------------

    def expr(self, node):
        kind = node.data
        kids = node.children
        if kind in CHAINS:
            return self.chain(node)
        if kind in BINARY:
            return Group(self.operand(kids[0]),
                         Indent(LINE, self.words(kids[1:-1]), SPACE, self.expr(kids[-1])))
        if kind == "cond":
            return Group(self.tok(kids[0]), SPACE, self.operand(kids[1]),
                         Indent(LINE, self.tok(kids[2]), SPACE, self.expr(kids[3]),
                                LINE, self.tok(kids[4]), SPACE, self.expr(kids[5])))
        if kind == "not_":
            return [self.tok(kids[0]), SPACE, self.expr(kids[1])]
        if kind == "neg":
            return [self.tok(kids[0]), self.expr(kids[1])]
        if kind == "call":
            return [self.tok(kids[0]), self.brackets(kids[1:], self.expr)]
        if kind == "list_lit":
            return self.brackets(kids, self.expr)
        if kind == "atom":  # brackets as written; a run of them, `((x))`, is laid out as one
            opening, closing = [], []
            while isinstance(node, Tree) and node.data == "atom":
                opening.append(self.tok(node.children[0]))
                closing.append(self.tok(node.children[2]))
                node = node.children[1]
            return Group(opening, Indent(SOFT, self.expr(node)), SOFT, closing[::-1])
        return self.words(kids)  # a literal, a name or a path

    def chain(self, node) -> Group:
        """`a and b and c`, `a + b - c`, `a ?? b ?? c`: the operands of one operator (of one
        precedence), on one line or each on its own, the operator first."""
        kind = node.data
        level = node.children[1].type if kind == "arith" else None
        operands, ops = [], []
        if kind == "coalesce":  # groups to the right
            while isinstance(node, Tree) and node.data == kind:
                operands.append(node.children[0])
                ops.append(node.children[1])
                node = node.children[2]
            operands.append(node)
        else:
            while isinstance(node, Tree) and node.data == kind and (level is None or node.children[1].type == level):
                operands.append(node.children[2])
                ops.append(node.children[1])
                node = node.children[0]
            operands.append(node)
            operands.reverse()
            ops.reverse()
        rest = []
        for op, operand in zip(ops, operands[1:]):
            rest += [LINE, self.tok(op), SPACE, self.expr(operand)]
        return Group(self.operand(operands[0]), Indent(rest))

    def operand(self, node):
        """A first operand: an operation's own broken lines go deeper than its operator's."""
        doc = self.expr(node)
        return Indent(doc) if node.data in BINARY or node.data == "cond" else doc
