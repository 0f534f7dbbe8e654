"""The formatter's comments: read beside the tokens (the grammar ignores them), each tied to
a token, trailing it on its line or leading it on lines of its own, then moved to where the
canonical layout can keep it in place."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class Comments:
    """Comments by token (`id` of the token): its trailing comment, and the own-line comments
    before it as (text, line), in source order. `end` holds the file's last comments."""

    trailing: dict[int, str] = field(default_factory=dict)
    leading: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    end: list[tuple[str, int]] = field(default_factory=list)


def attach(tokens: list, comments: list, operators: set[int], dropped: set[int]) -> Comments:
    """Tie each comment to a token. `tokens` in source order; `operators`: ids of the tokens a
    broken expression starts a line with (`and`, `+`, `then`...), so comments go before
    them, not after; `dropped`: ids of the tokens the layout leaves out (optional commas),
    whose comments go to their neighbours."""
    out = Comments()
    starts = [t.start_pos for t in tokens]
    for c in comments:
        text = c.value.rstrip()
        i = bisect.bisect_left(starts, c.start_pos)  # tokens[i] is the first after the comment
        before = tokens[i - 1] if i > 0 else None
        if before is not None and before.end_line == c.line:
            out.trailing[id(before)] = text
        elif i < len(tokens):
            out.leading.setdefault(id(tokens[i]), []).append((text, c.line))
        else:
            out.end.append((text, c.line))
    while _settle(out, tokens, operators, dropped):  # to a fixed point, so a second formatting moves none
        pass
    return out


def _settle(out: Comments, tokens: list, operators: set[int], dropped: set[int]) -> bool:
    """Move comments off tokens that cannot end a line (an operator: its comment trails the
    operand before it) or start one (the operand after an operator: its comments lead the
    operator; a comma: they lead what follows it), and off dropped tokens. A comment moves
    only past tokens, never past another comment, so their order stays. Whether any moved."""
    n, moved = len(tokens), False
    trailing, leading = out.trailing, out.leading
    for i, t in enumerate(tokens):
        key = id(t)
        text = trailing.get(key)
        if text is None:
            continue
        after = tokens[i + 1] if i + 1 < n else None
        if (key in operators or key in dropped) and i > 0 and id(tokens[i - 1]) not in trailing \
                and key not in leading:
            trailing[id(tokens[i - 1])] = trailing.pop(key)
            moved = True
        elif after is not None and after.value == "," and id(after) not in dropped \
                and id(after) not in trailing and id(after) not in leading:
            trailing[id(after)] = trailing.pop(key)
            moved = True
        elif key in dropped:  # the token before has a comment of its own: lead the next one
            target = leading.setdefault(id(after), []) if after is not None else out.end
            target.insert(0, (trailing.pop(key), t.line))
            moved = True
    for i in range(n - 1, -1, -1):  # backwards, so a comment moved forward moves on again
        t = tokens[i]
        lead = leading.get(id(t))
        if not lead:
            continue
        if (t.value == "," or id(t) in dropped) and i + 1 < n and id(t) not in trailing:
            leading[id(tokens[i + 1])] = leading.pop(id(t)) + leading.get(id(tokens[i + 1]), [])
            moved = True
        elif i > 0 and id(tokens[i - 1]) in operators and id(tokens[i - 1]) not in trailing:
            leading.setdefault(id(tokens[i - 1]), []).extend(leading.pop(id(t)))
            moved = True
    return moved


def blank_between(previous_line: int, next_line: int) -> bool:
    """Whether the source had a blank line between two lines (nothing else lies between
    them: comments are lines of their own)."""
    return next_line - previous_line >= 2
