"""Go to definition, find references and hover over a folder's last check: the name under
the cursor looked up in every file's symbol index."""
from __future__ import annotations

import datetime

from ...lang import nodes as n
from ...lang.functions import FUNCTIONS, HISTORY_FUNCTIONS
from .folder import Result
from .index import FileIndex, Occurrence


def signature(name: str) -> str | None:
    """`round(x, n): takes a number and an int (decimals)`, or None for no function."""
    if name in HISTORY_FUNCTIONS:
        return f"{name}(ref, duration): counts {name} propositions of an offer, category or group, like " \
               f"{name}(gold_upgrade, 30d)"
    fn = FUNCTIONS.get(name)
    if fn is None:
        return None
    return f"{name}({fn.params}): takes {fn.takes}"


def resolve(result: Result, o: Occurrence) -> tuple[str, str]:
    """(kind, name) of an occurrence; a history function's argument is an offer, else a
    category, else a group, as the checker reads it."""
    if o.kind != "target":
        return o.kind, o.name
    for kind in ("offer", "category", "group"):
        if definitions(result, kind, o.name):
            return kind, o.name
    return "offer", o.name


def definitions(result: Result, kind: str, name: str) -> list[tuple[str, Occurrence]]:
    if result.definitions is None:  # made once per check, at the first question
        found: dict[tuple[str, str], list] = {}
        for f, ix in result.indices.items():
            for o in ix.occurrences:
                if o.is_def:
                    found.setdefault((o.kind, o.name), []).append((f, o))
        result.definitions = found
    return result.definitions.get((kind, name), [])


def at(result: Result, file: str, line: int, col: int) -> Occurrence | None:
    index = result.indices.get(file)
    return index.at(line, col) if index is not None else None


def definition(result: Result, file: str, line: int, col: int) -> list[tuple[str, Occurrence]]:
    o = at(result, file, line, col)
    if o is None:
        return []
    return definitions(result, *resolve(result, o))


def references(result: Result, file: str, line: int, col: int, declaration: bool) -> list[tuple[str, Occurrence]]:
    o = at(result, file, line, col)
    if o is None or o.kind == "function":
        return []
    want = resolve(result, o)
    out = []
    for f, ix in result.indices.items():
        for x in ix.occurrences:
            if (x.is_def and not declaration) or x.name != want[1]:
                continue
            if x.kind == want[0] or (x.kind == "target" and resolve(result, x) == want):
                out.append((f, x))
    return out


def hover(result: Result, file: str, line: int, col: int) -> tuple[str, Occurrence] | None:
    """Markdown about the name at the cursor, and the name's occurrence (for its range)."""
    o = at(result, file, line, col)
    if o is None:
        return None
    kind, name = resolve(result, o)
    if kind == "function":
        sig = signature(name)
        return (_code(sig.split(": ", 1)[0]) + "\n\n" + sig.split(": ", 1)[1], o) if sig else None
    found = definitions(result, kind, name)
    if not found:
        return None
    f, d = found[0]
    index = result.indices[f]
    node = _decl(index, kind, name)
    if node is None:
        return None
    text = {"field": _field, "let": _let, "offer": _offer}.get(kind, _summary)(result, index, node, kind)
    return text, o


def _decl(index: FileIndex, kind: str, name: str):
    for d in index.module.decls:
        if kind == "field" and isinstance(d, n.Schema):
            for f in d.fields:
                if f"{d.name}.{f.name}" == name:
                    return f
        elif type(d).__name__.lower() == kind and d.name == name:
            return d
    return None


def _code(text: str) -> str:
    return f"```odl\n{text}\n```"


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def _type(t: n.TypeRef) -> str:
    return f"{t.name}<{_type(t.arg)}>" if t.arg is not None else t.name


def _field(result, index, f: n.SchemaField, kind) -> str:
    text = f"{_type(f.type)}"
    if f.domain is not None:
        values = [_value(v) for v, _ in f.domain.values]
        text += f" in [{', '.join(values)}]" if f.domain.kind == "set" else f" in {values[0]} to {values[1]}"
    root = _decl_root(index, f)
    return _code(f"{root}.{f.name}: {text}") + f"\n\nattribute, declared at {f.span}"


def _decl_root(index: FileIndex, f: n.SchemaField) -> str:
    for d in index.module.decls:
        if isinstance(d, n.Schema) and any(x is f for x in d.fields):
            return d.name
    return "contact"


def _let(result, index, d: n.Let, kind) -> str:
    text = f"let {d.name} = {index.snippet(d.expr.span)}"
    typed = result.let_types.get(d.name)
    return _code(text) + (f"\n\ntype: {typed}" if typed else "\n\ntype: not known until the catalog checks")


def _offer(result, index, d: n.Offer, kind) -> str:
    out = [f"offer {d.name}"]
    for item in d.items:
        if isinstance(item, n.Clause) and item.kind in ("category", "spaces", "groups"):
            value = ", ".join(item.value) if isinstance(item.value, tuple) else item.value
            out.append(f"  {item.kind} {value}")
        elif isinstance(item, n.Rule) and item.kind == "weight":
            where = f" in {item.space}:" if item.space else ""
            out.append(f"  weight{where} {index.snippet(item.expr.span, 200)}")
    return _code("\n".join(out)) + f"\n\ndeclared at {d.span}"


def _summary(result, index, d, kind) -> str:
    """A space, category or group: its clauses as written, and the offers that join it."""
    lines = [f"{kind} {d.name}"]
    for item in d.items[:12]:
        lines.append("  " + index.snippet(item.span, 120).split("\n")[0])
    members = _members(result, kind, d.name)
    count = f"{len(members)} offer{'s' if len(members) != 1 else ''}"
    shown = ", ".join(members[:8]) + (", …" if len(members) > 8 else "")
    return _code("\n".join(lines)) + f"\n\n{count}" + (f": {shown}" if members else "") + f"\n\ndeclared at {d.span}"


def _members(result: Result, kind: str, name: str) -> list[str]:
    """The offers in a space, a group or a category (its sub-categories included)."""
    clause = {"space": "spaces", "group": "groups", "category": "category"}[kind]
    out = []
    for ix in result.indices.values():
        for d in ix.module.decls:
            if not isinstance(d, n.Offer):
                continue
            for item in d.items:
                if isinstance(item, n.Clause) and item.kind == clause:
                    values = item.value if isinstance(item.value, tuple) else (item.value,)
                    if name in values or (kind == "category" and any(v.startswith(name + ".") for v in values)):
                        out.append(d.name)
                        break
    return out
