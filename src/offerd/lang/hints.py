"""What a syntax error means to a rule author: parser.py's generic "unexpected X; expected Y"
made specific where the text shows the mistake: a misspelled keyword, a block left open, a
duration with a unit ODL lacks, a string left open, text written without quotes."""
from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from ..domain import DURATION_UNITS, fmt_duration
from ..periods import KINDS as PERIODS
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
    for find in (_unclosed_string, _unclosed_block, _duration, _unquoted_text, _glued, _keyword):
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
    end = e.token.end_pos
    if word in _EXPRESSION_WORDS or (end is not None and text[end:end + 1] in (".", "(")):
        # an expression's start where the last one ended: `contact.a > 1 contact.b > 2`
        if {"and", "or"} & keywords:
            return Found(e.token.line, e.token.column, len(word), None, f"is an `and` or `or` missing before `{word}`?")
        return None
    # a keyword of about the word's length, the nearest lengths first: `them` is `then`, not
    # `themes`; `after` is no `category`
    hint = None
    for spread in (0, 1, 2):
        hint = hint or did_you_mean(word, [k for k in keywords if abs(len(k) - len(word)) <= spread])
    return None if hint is None else Found(e.token.line, e.token.column, len(word), None, hint)


# words that start an expression, never a misspelled keyword
_EXPRESSION_WORDS = frozenset(("contact", "context", "now", "today", "propensity", "true", "false", "not", "if"))


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


# --- durations

_UNIT_NAMES = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_UNITS = [f"{u} ({_UNIT_NAMES.get(u, u)})" for u in DURATION_UNITS]
UNITS = ", ".join(_UNITS[:-1]) + " and " + _UNITS[-1]
EXAMPLES = "such as 7d, 12h or 1d 12h"
DURATION_HINT = f"a duration is a number and a unit, {UNITS.replace(' and ', ' or ')}: {EXAMPLES}"
# Words authors write for a unit, in seconds. Months and years have no unit: 30d and 365d.
_WORDS = {
    **{w: DURATION_UNITS["d"] for w in ("d", "day", "days")},
    **{w: DURATION_UNITS["h"] for w in ("h", "hr", "hrs", "hour", "hours")},
    **{w: DURATION_UNITS["m"] for w in ("m", "min", "mins", "minute", "minutes")},
    **{w: DURATION_UNITS["s"] for w in ("s", "sec", "secs", "second", "seconds")},
    **{w: 7 * DURATION_UNITS["d"] for w in ("w", "wk", "wks", "week", "weeks")},
    **{w: 30 * DURATION_UNITS["d"] for w in ("mo", "month", "months")},
    **{w: 365 * DURATION_UNITS["d"] for w in ("y", "yr", "yrs", "year", "years")},
}
MAX_SECONDS = 100 * 365 * 86400  # past this the builder refuses a duration anyway
_NUMBER_WORD = re.compile(r"([0-9]+(?:\.[0-9]+)?)([ \t]*)([A-Za-z]*)")


def _duration(e, text, expected, keywords, previous, in_template):
    """`7days`, `2w`, `1.5h`, `7` where a duration is wanted: the units, and the fix."""
    start = None
    if isinstance(e, UnexpectedToken) and "DURATION" in expected:
        if e.token.type in ("INT", "FLOAT"):
            start = e.token.start_pos
        elif e.token.type == "NAME" and str(e.token).lower() in _WORDS:  # `per week`
            fix = fmt_duration(_WORDS[str(e.token).lower()])
            word = str(e.token).lower().rstrip("s")
            hint = _with_calendar(fix, word) if "CALENDAR" in expected and word in PERIODS else f"write {fix}"
            return Found(e.token.line, e.token.column, len(str(e.token)), None, hint)
        elif e.token.type != "$END" and getattr(previous, "type", None) != "DURATION" \
                and "NAME" not in expected:  # `30d afer`, `f(a,)` (any expression may go there): not this
            return Found(e.token.line, e.token.column, len(str(e.token)), None, DURATION_HINT)
    elif previous is not None and getattr(previous, "type", None) in ("INT", "FLOAT"):
        # in an expression: a number, then a unit word right after it (`proposed(o, 7days)`)
        at = e.pos_in_stream if isinstance(e, UnexpectedCharacters) else e.token.start_pos
        if at is None or previous.end_pos is None or getattr(e, "token", None) and e.token.type == "$END":
            return None
        word = re.match(r"[A-Za-z]*", text[at:]).group()
        adjacent = previous.end_pos == at
        same_line = "\n" not in text[previous.end_pos:at]
        if word and same_line and word.lower() in _WORDS and (adjacent or isinstance(e, UnexpectedToken)):
            start = previous.start_pos
    if start is None:
        return None
    written, seconds = _read_duration(text, start)
    written = written.rstrip()  # `per 7 }`: the space before the brace is not the mistake
    line, col = _line_col(text, start)
    shown = _shown(written)
    if not re.search(r"[A-Za-z]", written):
        return Found(line, col, len(written), f"`{shown}` is not a duration: a number needs a unit, "
                     f"{UNITS.replace(' and ', ' or ')}", f"write a number and a unit, {EXAMPLES}")
    message = f"`{shown}` is not a duration: the units are {UNITS}"
    if re.search(r"\d[.,]\d", written):  # `1.5h`: the unit is right, the fraction is not
        message += ", with whole numbers"
    if not seconds or seconds > MAX_SECONDS:
        return Found(line, col, len(written), message, f"write a number and a unit, {EXAMPLES}")
    hint = f"write {fmt_duration(seconds)}"
    period = re.fullmatch(r"1[ \t]*([A-Za-z]+)", written)
    word = period and period.group(1).lower().rstrip("s")
    if "CALENDAR" in expected and word in PERIODS:
        hint = _with_calendar(fmt_duration(seconds), word)
    return Found(line, col, len(written), message, hint)


def _with_calendar(fix: str, period: str) -> str:
    return f"write {fix} (the last {fix}) or calendar {period} (from the {period}'s start)"


def _read_duration(text: str, start: int) -> tuple[str, int | None]:
    """The duration-like text at `start` (`7days`, `1d12h`, `2 w`) and its length in seconds,
    or None when a part has no unit or one no author would mean."""
    pos, seconds, end = start, 0, start
    while True:
        m = _NUMBER_WORD.match(text, pos)
        if m is None:
            break
        number, gap, word = m.groups()
        size = _WORDS.get(word.lower()) if word else None
        if size is None and word and gap:  # `7 after`: the word is the next token, not a unit
            end, seconds = m.start(2), None
            break
        end = m.end()
        if size is None or seconds is None or len(number) > 18:
            seconds = None
        else:
            value = Fraction(number) * size
            seconds = seconds + int(value) if value.denominator == 1 else None
        gap = re.match(r"[ \t]*", text[end:]).group()
        if size is None or not text[end + len(gap) : end + len(gap) + 1].isdigit():
            break
        pos = end + len(gap)
    return text[start:end], seconds


# --- strings left open, text without quotes

_TEXT_CHAR = re.compile(r"[A-Za-z0-9_-]")


def _unclosed_string(e, text, expected, keywords, previous, in_template):
    # the lexer stops at a `"` only when no `"` closes it on the same line
    if not isinstance(e, UnexpectedCharacters) or text[e.pos_in_stream : e.pos_in_stream + 1] != '"':
        return None
    end = text.find("\n", e.pos_in_stream)
    width = (len(text) if end < 0 else end) - e.pos_in_stream
    return Found(e.line, e.column, width, "string is not closed",
                 'add the closing " on the same line: a string cannot span lines (write \\n for a line break)')


def _unquoted_text(e, text, expected, keywords, previous, in_template):
    """`contact.product == CRD-BT`: text where a value is expected, without its quotes."""
    if not isinstance(e, UnexpectedCharacters) or "STRING" not in expected:
        return None
    pos = e.pos_in_stream
    if not text[pos : pos + 1].isupper():
        return None
    start, end = pos, pos
    while start > 0 and _TEXT_CHAR.match(text[start - 1]):
        start -= 1
    while end < len(text) and _TEXT_CHAR.match(text[end]):
        end += 1
    if text[end : end + 1] in (".", "("):  # `Contact.age`, `Round(x)`: a name in capitals
        return None
    word = text[start:end]
    line, col = _line_col(text, start)
    if word.lower() in _EXPRESSION_WORDS or word.lower() in keywords or word.lower() in ("and", "or", "then", "else"):
        return Found(line, col, len(word), None, f"keywords are lower case: {word.lower()}")  # `True`, `Not`
    quoted = f'\\"{_shown(word)}\\"' if in_template else f'"{_shown(word)}"'
    return Found(line, col, len(word), f"unexpected '{_shown(word)}'; expected an expression",
                 f"text must be quoted: {quoted}")


# --- helpers


def _shown(written: str) -> str:
    """Text quoted in a message, cut: the caret shows all of it."""
    return written if len(written) <= 40 else written[:39] + "…"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1
