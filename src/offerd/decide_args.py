"""The CLI's NAME=VALUE inputs (`offerd decide`'s --attr and --context, `simulate` and `batch`'s
--context) typed by the catalog's schema (the live one through DecisionService.Schema, or the
catalog folder given), so that a value means what its attribute's type says, not what it
looks like (`zip=01234` stays a string, `products=current` is a one-item set)."""
from __future__ import annotations

import datetime
import math
import re
from typing import NamedTuple

from .lang.diagnostics import did_you_mean

INT64 = (-(1 << 63), (1 << 63) - 1)
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_COLLECTION = re.compile(r"(set|list)<(\w+)>\Z")
WANTED = {"int": "a whole number such as 42", "float": "a number such as 80.5", "bool": "true or false",
          "date": "a date as YYYY-MM-DD"}


class ArgError(ValueError):
    """A NAME=VALUE that cannot be sent: one line saying which, and why."""


def pair(text: str, option: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not name or not eq:
        raise ArgError(f"{option} {text!r}: expected NAME=VALUE")
    return name, value


def scalar(kind: str, text: str):
    """`text` as an attribute of type `kind`; ValueError if it is not one, strictly (no
    spaces, no `1_000`, no `nan`: what was typed is what is meant)."""
    if kind == "string":
        return text
    if kind == "int" and _INT.match(text):
        value = int(text)
        if INT64[0] <= value <= INT64[1]:
            return value
        raise ValueError("outside the 64-bit integer range")
    if kind == "float" and _FLOAT.match(text) and math.isfinite(value := float(text)):
        return value
    if kind == "bool" and text in ("true", "false"):
        return text == "true"
    if kind == "date" and _DATE.match(text):
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            raise ValueError("not a day of the calendar") from None
    if kind not in WANTED:  # a type this client does not know: the server judges the text
        return text
    raise ValueError(f"not {WANTED[kind]}")


def typed(texts: list[str], root: str, attributes, option: str) -> dict:
    """Each NAME=VALUE of `option` (--attr: root contact; --context: context) converted by
    its attribute's type in `attributes` (SchemaResponse.contact or .context). A set or list
    is VALUE split at commas, each item stripped (empty: an empty one). ArgError for a name
    the schema lacks (with did-you-mean) or a value its type refuses. A closed set or range
    is left to the server, whose message lists the values allowed."""
    types = {a.name: a.type for a in attributes}
    out = {}
    for text in texts:
        name, value = pair(text, option)
        name = name.removeprefix(f"{root}.")
        kind = types.get(name)
        if kind is None:
            hint = did_you_mean(name, types)
            known = (f"; {hint}" if hint else f"; it has {', '.join(types)}" if 0 < len(types) <= 12
                     else "; it has none" if not types else "")
            raise ArgError(f"{option} {text}: schema {root} has no attribute {name}{known}")
        collection = _COLLECTION.match(kind)
        if collection and collection[2] != "string":
            raise ArgError(f"{option} {text}: {root}.{name} is a {kind}, and a request carries lists of strings "
                           "only")
        try:
            out[name] = ([item.strip() for item in value.split(",")] if value.strip() else []) if collection \
                else scalar(kind, value)
        except ValueError as e:
            raise ArgError(f'{option} {text}: {root}.{name} is {_a(kind)}, and "{value}" is {e}') from None
    return out


def by_schema(texts: list[str], root: str, schema: dict, option: str) -> dict:
    """`typed` against a checked catalog's schema (name → Type), for the commands that load
    the catalog folder themselves."""
    return typed(texts, root, [_Attribute(name, str(t)) for name, t in schema.items()], option)


class _Attribute(NamedTuple):
    name: str
    type: str  # as ODL writes it


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def inputs(client, attrs: list[str], context: list[str], by_shape) -> tuple[dict, dict]:
    """--attr and --context typed by the live schema, asked once (not at all without them);
    from a server that has no Schema call, each typed by `by_shape(text)`, as before."""
    import grpc

    if not (attrs or context):
        return {}, {}
    for text in attrs + context:  # argv bytes that are not UTF-8 arrive as lone surrogates
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ArgError(f"{text.encode('utf-8', 'surrogateescape')!r} is not UTF-8 text") from None
    try:
        schema = client.schema()
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        return dict(map(by_shape, attrs)), dict(map(by_shape, context))
    return typed(attrs, "contact", schema.contact, "--attr"), typed(context, "context", schema.context, "--context")
