"""`offerd decide`'s table: a DecideResponse as plain text for a rule author — each space's
propositions, and with explain every offer's outcome and why (rule, clause, values read,
a cap's count and when it frees up)."""
from __future__ import annotations

import datetime
import shutil
import textwrap

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
OUTCOMES = {  # an Explanation's kind, as its line says it
    "valid": "outside its valid dates",
    "eligible": "not eligible",
    "cap": "capped",
    "suppress": "suppressed",
    "weight": "no weight (null)",
    "arbitration": "lost in arbitration",
    "cap in decision": "capped within this decision",
    "already proposed": "already proposed in an earlier space of this call",
    "filtered": "left out by the request's categories or themes",
    "cap at commit": "capped at commit: a concurrent decision took the cap first",
}
RESULTS = {"false": "is false", "true": "is true", "null": "is null — a value it needs is absent"}
CONTENT_MIN = 40  # characters of a content value shown however narrow the terminal
_KEEP = "\xa0"  # a space a wrapped line does not break at (a value read, a time), made a space again


def render(d, width: int | None = None) -> str:
    """The whole answer: a line for the decision, then each space."""
    width = width or shutil.get_terminal_size((120, 24)).columns  # 120: piped to a file or a pager
    lines = [f"decided at {when(d.time_us)} by catalog {d.catalog[:12]}"]
    for space in d.spaces:
        lines.append("")
        lines += _space(space, width)
    return "\n".join(lines) + "\n"


def when(us: int) -> str:
    return f"{EPOCH + datetime.timedelta(microseconds=us):%Y-%m-%d %H:%M:%S} UTC"


def number(x: float) -> str:
    """A weight as a person reads it: 15, 11.2, 4.3333."""
    return f"{x:.4f}".rstrip("0").rstrip(".") if x == x else "nan"


def _space(space, width: int) -> list[str]:
    props = space.propositions
    dry = bool(props) and not any(p.id for p in props)
    count = f"{len(props)} proposition{'s' if len(props) != 1 else ''}" if props else "no proposition"
    lines = [f"{space.space}: {count}{' (dry run)' if dry else ''}"]
    if props:
        lines += _propositions(props, width)
    if space.explain:
        fallbacks = {p.offer for p in props if p.fallback}
        lines.append("")
        lines += _explained(space.explain, fallbacks, width)
    return lines


def _propositions(props, width: int) -> list[str]:
    rows = [("rank", "offer", "weight", "proposition")]
    rows += [(str(p.rank), p.offer, number(p.weight) if p.has_weight else "fallback", p.id or "dry run")
             for p in props]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    left = 2 + sum(w + 2 for w in widths)  # where the content column starts
    room = max(width - left, CONTENT_MIN)
    lines = [_row(rows[0], widths) + "content"]
    for p, row in zip(props, rows[1:]):
        fields = sorted(p.content.items())
        name_w = max((len(k) for k, _ in fields), default=0)
        cells = [f"{k:<{name_w}}  {short(v, room - name_w - 2)}" for k, v in fields] or [""]
        lines.append(_row(row, widths) + cells[0])
        lines += [" " * left + cell for cell in cells[1:]]
    return [line.rstrip() for line in lines]


def _row(cells, widths) -> str:
    return "  " + "".join(f"{c:<{w}}  " for c, w in zip(cells, widths))


def short(text: str, room: int) -> str:
    """One line, at most `room` characters (at least CONTENT_MIN), cut with …."""
    text = " ".join(text.split())
    room = max(room, CONTENT_MIN)
    return text if len(text) <= room else text[:room - 1] + "…"


def _explained(explain, fallbacks: set, width: int) -> list[str]:
    """Every offer of the space with its outcome, in the catalog's order, then why."""
    w = min(max(len("offer"), *(len(x.offer) for x in explain)), 24)
    lines = [f"  {'offer':<{w}}  outcome"]
    for x in explain:
        head = f"  {x.offer:<{w}}  "
        lines.append(head + _outcome(x, x.offer in fallbacks))
        lines += _wrapped(_why(x), " " * (len(head) + 2), width)
        for other in x.also:
            lines.append(" " * len(head) + "also " + _outcome(other, False))
            lines += _wrapped(_why(other), " " * (len(head) + 4), width)
    return lines


def _wrapped(pairs, pad: str, width: int) -> list[str]:
    """`label  text` lines at `pad`, a long text wrapped under itself (never below 40 columns)."""
    lines = []
    for label, text in pairs:
        first, rest = f"{pad}{label:<6}  ", " " * (len(pad) + 8)
        lines += textwrap.wrap(text, max(width, len(rest) + 40), initial_indent=first, subsequent_indent=rest,
                               break_long_words=False, break_on_hyphens=False) or [first.rstrip()]
    return [line.replace(_KEEP, " ") for line in lines]


def _outcome(x, fallback: bool) -> str:
    if x.kind == "won":
        return f"won: rank {x.rank}, " + ("the space's fallback" if fallback else f"weight {number(x.weight)}")
    text = OUTCOMES.get(x.kind, x.kind)
    if x.kind == "arbitration":
        return f"{text}: weight {number(x.weight)}, others weighed more and filled the space's limit"
    if x.rule:
        location, owner, _ = _parts(x.rule)
        return f"{text}, by {owner} at {location}"
    return text


def _parts(rule: str) -> tuple[str, str, str]:
    """`file:line:col: owner: text` as (location, owner, text)."""
    location, _, rest = rule.partition(": ")
    owner, _, text = rest.partition(": ")
    return location, owner, text


def _why(x) -> list[tuple[str, str]]:
    """(label, text): the rule as written, its clause not true and what it read, an `or`'s
    operands, a cap's count; only the rule's short text when the answer carries no why."""
    if not x.HasField("why"):
        text = _parts(x.rule)[2] if x.rule else ""
        return [("rule", text)] if text else []
    why = x.why
    out = [("rule", why.rule_text)]
    if why.HasField("clause"):
        c = why.clause
        result = f"{_whole(RESULTS.get(c.result, c.result))} ({c.location})"
        if c.text == why.rule_text:  # a rule of one clause (`valid ...`): the rule line shows it already
            out.append(("result", result.removeprefix(_whole("is "))))
        else:
            out.append(("clause", f"{c.text} {result}"))
        if c.reads:
            out.append(("read", _reads(c.reads)))
        for i, o in enumerate(why.operands):
            said = f"{o.text} {_whole(RESULTS.get(o.result, o.result))}" + (f": {_reads(o.reads)}" if o.reads else "")
            out.append(("either" if i == 0 else "or", said))
    if why.HasField("limit"):
        out.append(("count", limit(why.limit, x.kind)))
    return out


def _reads(reads) -> str:
    return ", ".join(_whole(f"{r.name} absent" if r.absent else f"{r.name} = {r.value}") for r in reads)


def _whole(text: str) -> str:
    return text.replace(" ", _KEEP)


def limit(lim, kind: str) -> str:
    """`2 of 2 in 7d (proposed of offer loan, this contact); frees 2026-11-11 09:29:59 UTC`."""
    window = ("ever" if lim.window == "lifetime" else f"in this {lim.window}" if lim.window.startswith("calendar")
              else f"in {lim.window}")
    if kind == "suppress":
        held = f"{lim.count} {window} ({lim.counts}), none allowed"
    else:
        held = f"{lim.count} of {lim.limit} {window} ({lim.counts})"
    never = "never (cap 0: paused)" if lim.limit <= 0 else "never (lifetime)"
    return held + "; " + _whole("frees " + (when(lim.frees_at_us) if lim.frees_at_us else never))
