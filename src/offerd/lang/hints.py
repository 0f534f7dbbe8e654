"""What a syntax error means to a rule author: parser.py's generic "unexpected X; expected Y"
made specific where the text shows the mistake: a misspelled keyword, a block left open."""
from __future__ import annotations

import re
from typing import NamedTuple

from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from .diagnostics import did_you_mean


class Found(NamedTuple):
    line: int
    col: int
    width: int
    message: str | None  # None: keep the generic message, add the hint
    hint: str | None


def explain(e, text: str, expected: set[str], keywords: set[str], previous, in_template: bool) -> Found | None:
    """A clearer diagnostic for lark's error `e`, or None. `expected`: the terminals the parser
    wanted; `keywords`: the keywords among them; `previous`: the token before the error."""
    for find in (_unclosed_block, _glued, _keyword):
        found = find(e, text, expected, keywords, previous, in_template)
        if found is not None:
            return found
    return None


# --- misspelled keywords


def _keyword(e, text, expected, keywords, previous, in_template):
    """A word where a keyword is expected: the closest keyword, if one is close."""
    if isinstance(e, UnexpectedToken):
        word = str(e.token)
    elif isinstance(e, UnexpectedCharacters):  # `Eligible`: capitals stop the lexer
        word = re.match(r"[A-Za-z_][A-Za-z0-9_]*|", text[e.pos_in_stream:]).group()
        if word.lower() in keywords:
            return Found(e.line, e.column, len(word), None, f"keywords are lower case: {word.lower()}")
        return None
    else:
        return None
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", word) or not keywords:
        return None
    hint = did_you_mean(word, keywords)
    return None if hint is None else Found(e.token.line, e.token.column, len(word), None, hint)


def _glued(e, text, expected, keywords, previous, in_template):
    """`lett x`, `offers o {`: where no name may follow, the lexer reads a keyword's letters and
    then the rest as a name, so the misspelled word arrives in two tokens."""
    if not isinstance(e, UnexpectedToken):
        return None
    stack = getattr(getattr(e, "state", None), "value_stack", None) or ()
    if previous is None and stack:  # lark keeps no history at the end of input
        previous = stack[-1]
    pairs = [(previous, e.token)]  # `limitt 3`: the rest is the unexpected token
    if len(stack) >= 2 and stack[-1] is previous:  # `lett x`: the rest was taken as a name
        pairs.append((stack[-2], previous))
    for keyword, rest in pairs:
        if (getattr(rest, "type", None) == "NAME" and getattr(keyword, "type", None) not in (None, "NAME")
                and str(keyword).isalpha() and keyword.end_pos is not None and keyword.end_pos == rest.start_pos):
            word = f"{keyword}{rest}"
            return Found(keyword.line, keyword.column, len(word), f"unexpected '{word}'",
                         did_you_mean(word, [str(keyword)]) or f"write a space after `{keyword}`")
    return None


# --- blocks left open

DECLARATIONS = ("timezone", "schema", "let", "space", "category", "group", "offer")
_BLOCK_FORM = re.compile(r"\s+[a-z_][a-z0-9_.]*\s*\{")
_DECLARATION_FORMS = {"let": re.compile(r"\s+[a-z_][a-z0-9_]*\s*="), "timezone": re.compile(r"\s*\"")}


def _unclosed_block(e, text, expected, keywords, previous, in_template):
    """A declaration, or the end of the file, met inside a block: a `}` is missing. The
    parser's stack still holds each open block's `keyword name {`."""
    if not isinstance(e, UnexpectedToken):
        return None
    token = e.token
    blocks = _open_blocks(getattr(getattr(e, "state", None), "value_stack", None) or ())
    if not blocks:
        return None
    if token.type == "$END" and "RBRACE" in expected:
        before = None
    elif token.type.lower() in DECLARATIONS and "RBRACE" in expected and _declares(text, token):
        before = token
    elif (blocks[-1][0].type in ("SCHEMA", "CONTENT") and getattr(previous, "type", None) == "NAME"
          and str(previous) in DECLARATIONS and previous.column == 1 and _declares(text, previous)):
        before = previous  # where items start with a name, `offer` at a line's start was read as one
    else:
        return None
    (keyword, header, lbrace), outer = blocks[-1], blocks[:-1]
    width = lbrace.end_column - keyword.column if lbrace.line == keyword.line else len(str(keyword))
    where = "at the end of the file" if before is None else f"before `{before}` on line {before.line}"
    also = "".join(f", and one for `{h}` (line {k.line})" for k, h, _ in reversed(outer))
    hint = f"add `}}` at its end{also}"
    if before is not None:  # a `let` inside an offer meant there reads the same: say why
        hint += f", before line {before.line}; a declaration cannot go inside a block"
    return Found(keyword.line, keyword.column, width, f"block `{header}` is not closed {where}", hint)


def _declares(text: str, keyword) -> bool:
    """Does a declaration start at this keyword (`offer x {`, `let x =`), not a clause such as
    `space web` meant as `spaces web`?"""
    form = _DECLARATION_FORMS.get(str(keyword), _BLOCK_FORM)
    return keyword.end_pos is not None and form.match(text, keyword.end_pos) is not None


def _open_blocks(stack) -> list:
    """(keyword token, `keyword name {` as written, the `{` token) of each block open, outermost first."""
    out: list = []
    for i, item in enumerate(stack):
        kind = getattr(item, "type", None)
        if kind == "RBRACE" and out:  # a block closed, not yet reduced: the parser stopped first
            out.pop()
        elif kind == "LBRACE":
            keyword, name = (stack[i - 2], stack[i - 1]) if i >= 2 else (None, None)
            name = name[0] if isinstance(name, tuple) else str(name)  # a category's dotted name
            out.append((keyword, f"{keyword} {name} {{", item) if hasattr(keyword, "line") else None)
    return [b for b in out if b is not None]
