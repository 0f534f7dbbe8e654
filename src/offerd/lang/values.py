"""Runtime attribute values against the schemas. Compiled code trusts its inputs' types,
so every value from outside (requests, profiles, population files) passes here first."""
from __future__ import annotations

import datetime
import math

from ..domain import INT_MAX, INT_MIN
from .catalog import show
from .diagnostics import did_you_mean
from .types import Type



class InputError(ValueError):
    """Attributes that do not fit the schema; `.problems` lists each one."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:10]  # ten thousand unknown names make a message nobody reads (or receives)
        more = f"; and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__("; ".join(shown) + more)


def _convert(t: Type, v):
    """The value as compiled code expects it, or raise TypeError/ValueError."""
    name = t.name
    if name == "string" and isinstance(v, str):
        return v
    if name == "int" and isinstance(v, int) and not isinstance(v, bool):
        if not INT_MIN <= v <= INT_MAX:
            raise ValueError("out of the 64-bit integer range")
        return v
    if name == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError("not a finite number")
        return f
    if name == "bool" and isinstance(v, bool):
        return v
    if name == "date" and isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
        return v
    if name in ("set", "list") and isinstance(v, (list, tuple, set, frozenset)):
        items = [_convert(t.elem, x) for x in v]
        return frozenset(items) if name == "set" else tuple(items)
    raise TypeError(f"expected {t}, got {type(v).__name__}")


def check_attributes(schema: dict[str, Type], values: dict, root: str, domains: dict | None = None) -> dict:
    """A copy of `values` converted to the schema's types (ints widen to float, lists of a
    set become frozensets). None means absent. `domains` (a catalog's: (root, name) →
    Domain) refuses values outside an attribute's closed set or range, and each item of a
    set or list outside it. Raises InputError listing every problem."""
    out, problems = {}, []
    for key, v in values.items():
        t = schema.get(key)
        if t is None:
            hint = did_you_mean(key, schema, f"{root}.")
            problems.append(f"{root}.{key} is not in schema {root}" + (f" ({hint})" if hint else ""))
            continue
        if v is None:
            continue
        try:
            out[key] = _convert(t, v)
        except (TypeError, ValueError) as e:
            problems.append(f"{root}.{key}: {e}")
    if domains:  # only catalogs that declare closed sets or ranges pay for this
        _outside(out, root, domains, problems)
    if problems:
        raise InputError(problems)
    return out


def _outside(out: dict, root: str, domains: dict, problems: list[str]) -> None:
    for key, v in out.items():
        d = domains.get((root, key))
        if d is None:
            continue
        for x in (v if isinstance(v, (frozenset, tuple)) else (v,)):
            if not d.admits(x):
                how = "is not one of" if d.values is not None else "is outside"
                problems.append(f"{root}.{key}: {show(x)} {how} {d.describe()}")
                break
