"""The `??` precedence warning: `a ?? 0 + b ?? 0` reads as `a ?? (0 + b) ?? 0`, because `??`
binds looser than arithmetic. Arithmetic written beside `??` without brackets is shown as it
was read and as it was likely meant; brackets the author wrote (Expr.parens) silence it."""
from __future__ import annotations

import datetime

from ..domain import fmt_duration
from . import nodes as n
from .diagnostics import Reporter
from .types import DURATION

ARITHMETIC = ("+", "-", "*", "/", "%")
MAX_SHOWN = 160  # characters of an expression quoted in the warning


def check_coalesce(e: n.Binary, report: Reporter, seen: set[int]) -> None:
    """Warn once per `a ?? b ?? ...` chain (`seen`: ids of the `??` nodes inside chains met
    already) when an operand is unbracketed arithmetic."""
    if id(e) in seen:
        return
    operands, x = [e.left], e.right
    while _is(x, ("??",)):  # `??` groups to the right: the chain runs down the right sides
        seen.add(id(x))
        operands.append(x.left)
        x = x.right
    operands.append(x)
    traps = [o for o in operands if _is(o, ARITHMETIC)]
    if not traps or not _matters(operands):
        return
    ops = " and ".join(dict.fromkeys(f"`{o.op}`" for o in traps))
    read = " ?? ".join(f"({source(o)})" if _is(o, ARITHMETIC) else source(o) for o in operands)
    meant = _meant(operands)
    report.warning(e.span, f"`??` binds looser than {ops}, so this reads as `{_cut(read)}`",
                   f"write `{_cut(meant)}` to apply each `??` first, "
                   "or the brackets shown above to keep this reading")


def _is(x, ops) -> bool:
    """An unbracketed binary node with one of `ops`."""
    return isinstance(x, n.Binary) and x.op in ops and not x.parens


def _meant(operands) -> str:
    """The same words with `??` binding tightest: `a ?? 0 + b ?? 0` → `(a ?? 0) + (b ?? 0)`."""
    groups: list[list[str]] = [[]]  # runs of terms joined by `??`, between arithmetic operators
    ops: list[str] = []
    for o in operands:
        words = _flatten(o)
        groups[-1].append(words[0])
        for op, term in zip(words[1::2], words[2::2]):
            ops.append(op)
            groups.append([term])
    parts = [g[0] if len(g) == 1 else "(" + " ?? ".join(g) + ")" for g in groups]
    return " ".join(p for pair in zip(parts, ops + [""]) for p in pair if p)


def _matters(operands) -> bool:
    """Whether the other reading means something: `x * 2 ?? 0` could only be `x * (2 ?? 0)`,
    and a literal is never null, so `??` after it does nothing; the reading is then plain.
    The other reading joins, by `??`, the last term of each operand with the first of the
    next: it matters if one such join starts with something that may be null."""
    for left, right in zip(operands, operands[1:]):
        last = _terms(left)[-1]
        if (_is(left, ARITHMETIC) or _is(right, ARITHMETIC)) and not isinstance(last, n.Literal):
            return True
    return False


def _terms(x) -> list:
    """Unbracketed arithmetic's terms, in source order."""
    return _terms(x.left) + _terms(x.right) if _is(x, ARITHMETIC) else [x]


def _flatten(x) -> list[str]:
    """Unbracketed arithmetic as term, operator, term, ... in source order."""
    if _is(x, ARITHMETIC):
        return _flatten(x.left) + [x.op] + _flatten(x.right)
    return [source(x)]


def source(e: n.Expr) -> str:
    """An expression as ODL text, with brackets where its author wrote them."""
    text = _source(e)
    return f"({text})" if e.parens else text


def _source(e) -> str:
    if isinstance(e, n.Literal):
        return _literal(e)
    if isinstance(e, n.Name):
        return e.name
    if isinstance(e, n.Path):
        return ".".join(e.parts)
    if isinstance(e, n.Binary):
        return f"{source(e.left)} {e.op} {source(e.right)}"
    if isinstance(e, n.Unary):
        return f"not {source(e.operand)}" if e.op == "not" else f"-{source(e.operand)}"
    if isinstance(e, n.Cond):
        return f"if {source(e.test)} then {source(e.then)} else {source(e.orelse)}"
    if isinstance(e, n.Call):
        return f"{e.fn}({', '.join(map(source, e.args))})"
    if isinstance(e, n.ListLiteral):
        return f"[{', '.join(map(source, e.items))}]"
    return "…"


def _literal(e: n.Literal) -> str:
    v = e.value
    if e.lit_type == DURATION:
        return fmt_duration(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, float) and "e" in repr(v):
        return f"{v:f}"
    return repr(v)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
