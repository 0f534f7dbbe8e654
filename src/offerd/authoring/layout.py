"""The formatter's layout engine: a document of text, breakable lines, groups and comments,
printed to a width (Wadler's pretty printer as Prettier runs it; iterative, so the deepest
input a catalog may hold cannot exhaust the stack)."""
from __future__ import annotations

WIDTH = 100  # a group longer than this breaks at its lines
INDENT = 2


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


SPACE = _Mark("SPACE")  # one space (none at the start of a line)
LINE = _Mark("LINE")  # a space, or a new line when its group breaks
SOFT = _Mark("SOFT")  # nothing, or a new line when its group breaks
HARD = _Mark("HARD")  # always a new line


class Comment:
    """A trailing comment: `  # text` after what precedes it; the line ends there."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class Lead:
    """Own-line comments before what follows ("" is a blank line); it starts a new line."""

    __slots__ = ("texts",)

    def __init__(self, texts):
        self.texts = tuple(texts)


class Indent:
    __slots__ = ("docs",)

    def __init__(self, *docs):
        self.docs = docs


class Group:
    """Printed on one line if it fits and nothing in it needs a new line; otherwise each of
    its own LINEs and SOFTs is a new line. A comment inside forces a break when text of the
    group follows it (a trailing one) or precedes it (an own-line one); at the group's very
    end or start, it is the enclosing group's matter."""

    __slots__ = ("docs", "hard", "has_text", "lead_open", "trail_open")

    def __init__(self, *docs):
        self.docs = docs
        self.hard, self.has_text, self.lead_open, self.trail_open = _summary(docs)


def _summary(docs):
    hard = seen = lead_open = pending = False
    stack = [iter(docs)]
    while stack:
        for d in stack[-1]:
            if isinstance(d, str):
                if d:
                    hard = hard or pending
                    seen, pending = True, False
            elif isinstance(d, Group):
                hard = hard or d.hard or (d.lead_open and seen) or (pending and d.has_text)
                lead_open = lead_open or (d.lead_open and not seen)
                if d.has_text:
                    seen, pending = True, d.trail_open
            elif isinstance(d, list | tuple):
                stack.append(iter(d))
                break
            elif isinstance(d, Indent):
                stack.append(iter(d.docs))
                break
            elif d is HARD:
                hard = True
            elif isinstance(d, Comment):
                pending = True
            elif isinstance(d, Lead):
                hard = hard or seen
                lead_open = lead_open or not seen
        else:
            stack.pop()
    return hard, seen, lead_open, pending


_FLAT, _BREAK = 0, 1


def render(doc, width: int = WIDTH) -> str:
    """The document as text; each line's trailing spaces removed."""
    out: list[str] = []
    col, at_start, pending = 0, True, False
    cmds = [(0, _BREAK, doc)]
    while cmds:
        ind, mode, d = cmds.pop()
        if isinstance(d, str):
            if d:
                if pending:
                    out.append("\n" + " " * ind)
                    col, pending = ind, False
                out.append(d)
                col += len(d)
                at_start = False
        elif isinstance(d, list | tuple):
            cmds.extend((ind, mode, x) for x in reversed(d))
        elif isinstance(d, Group):
            flat = mode == _FLAT or (not d.hard and _fits(d.docs, cmds, width - col, width - ind))
            cmds.append((ind, _FLAT if flat else _BREAK, d.docs))
        elif isinstance(d, Indent):
            cmds.append((ind + INDENT, mode, d.docs))
        elif d is SPACE:
            if not (pending or at_start):
                out.append(" ")
                col += 1
        elif d is HARD or ((d is LINE or d is SOFT) and (mode == _BREAK or pending)):
            out.append("\n" + " " * ind)
            col, at_start, pending = ind, True, False
        elif d is LINE:
            if not at_start:
                out.append(" ")
                col += 1
        elif isinstance(d, Comment):
            out.append("  " + d.text)
            pending = True
        elif isinstance(d, Lead):
            if not at_start:
                out.append("\n" + " " * ind)
            out.append(("\n" + " " * ind).join(d.texts))
            col, at_start, pending = ind, True, True
    return "\n".join(line.rstrip() for line in "".join(out).split("\n"))


def _fits(docs, rest, remaining: int, full: int) -> bool:
    """Whether `docs`, flat, and what follows up to the next possible new line, fit."""
    stack = [(_FLAT, docs)]
    i = len(rest)
    while remaining >= 0:
        if not stack:
            if i == 0:
                return True
            i -= 1
            stack.append(rest[i][1:])
        mode, d = stack.pop()
        if isinstance(d, str):
            remaining -= len(d)
        elif isinstance(d, list | tuple):
            stack.extend((mode, x) for x in reversed(d))
        elif isinstance(d, Group):
            stack.append((_BREAK if d.hard else mode, d.docs))
        elif isinstance(d, Indent):
            stack.append((mode, d.docs))
        elif d is SPACE:
            remaining -= 1
        elif d is LINE or d is SOFT:
            if mode == _BREAK:
                return True
            remaining -= d is LINE
        elif d is HARD or isinstance(d, Comment):
            return True
        elif isinstance(d, Lead):
            remaining = full
    return False
