"""What a syntax error means to a rule author: parser.py's generic "unexpected X; expected Y"
made specific where the text shows the mistake: a misspelled keyword."""
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
    for find in (_glued, _keyword):
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
