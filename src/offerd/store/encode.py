"""The profile encoder: a typed attribute dict to the bytes of the layout in codec.py."""
from __future__ import annotations

import datetime
import math

from ..domain import INT_MAX, INT_MIN
from .codec import (FORMAT_VERSION, G_DATE, G_FALSE, G_FLOAT, G_INT, G_SET, G_STR, G_TRUE, G_TUPLE,
                    HEADERS, INT_CHARS, INT_LIMITS, K_DATE, K_FLOAT, K_INT, K_STR, LEN_CHARS, MAX_KEY_BYTES, vec)

_date = datetime.date
_datetime = datetime.datetime
_isfinite = math.isfinite


def _width(limits, lo: int, hi: int) -> int:
    for code, (a, b) in enumerate(limits):
        if a <= lo and hi <= b:
            return code
    raise AssertionError("unreachable")


def _check_int(key: str, v: int) -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise ValueError(f"attribute {key!r}: int {v} is out of the 64-bit range")
    return int(v)


def _check_float(key: str, v: float) -> float:
    v = float(v)
    if not _isfinite(v):
        raise ValueError(f"attribute {key!r}: float {v} is not finite")
    return v


def _is_date(v) -> bool:
    return isinstance(v, _date) and not isinstance(v, _datetime)


def encode_attrs(attrs: dict[str, object]) -> bytes:
    """The bytes for a profile. None values are skipped. Raises ValueError for a key longer
    than 255 UTF-8 bytes, an int outside 64 bits, a non-finite float or a string that is not
    encodable in UTF-8, and TypeError for a value of another type."""
    groups: list[list[str]] = [[], [], [], [], [], [], [], []]
    ints: list[int] = []
    floats: list[float] = []
    dates: list[int] = []
    strs: list[str] = []
    sets: list[list[str]] = []
    tuples: list[tuple] = []
    for key, v in attrs.items():
        if v is None:
            continue
        if type(key) is not str:
            raise TypeError(f"attribute names must be str, got {type(key).__name__}")
        if len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"attribute name {key[:40]!r}... is longer than "
                             f"{MAX_KEY_BYTES} UTF-8 bytes")
        t = type(v)
        if t is str:
            groups[G_STR].append(key)
            strs.append(v)
        elif t is bool:
            groups[G_TRUE if v else G_FALSE].append(key)
        elif t is int:
            groups[G_INT].append(key)
            ints.append(_check_int(key, v))
        elif t is float:
            groups[G_FLOAT].append(key)
            floats.append(_check_float(key, v))
        elif t is _date:
            groups[G_DATE].append(key)
            dates.append(v.toordinal())
        elif isinstance(v, frozenset):
            for x in v:
                if not isinstance(x, str):
                    raise TypeError(f"attribute {key!r}: set elements must be str, "
                                    f"got {type(x).__name__}")
            groups[G_SET].append(key)
            sets.append(sorted(str(x) for x in v))
        elif isinstance(v, tuple):
            groups[G_TUPLE].append(key)
            tuples.append(v)
        elif isinstance(v, int):
            groups[G_INT].append(key)
            ints.append(_check_int(key, v))
        elif isinstance(v, float):
            groups[G_FLOAT].append(key)
            floats.append(_check_float(key, v))
        elif isinstance(v, str):
            groups[G_STR].append(key)
            strs.append(str(v))
        elif _is_date(v):
            groups[G_DATE].append(key)
            dates.append(v.toordinal())
        else:
            raise TypeError(f"attribute {key!r}: cannot encode a {t.__name__}")

    # Tuple elements go to the shared sections after the attributes' own values.
    kinds = bytearray()
    tuple_strs: list[str] = []
    for key, tup in zip(groups[G_TUPLE], tuples):
        for x in tup:
            if isinstance(x, str):
                kinds.append(K_STR)
                tuple_strs.append(str(x))
            elif isinstance(x, bool):
                raise TypeError(f"attribute {key!r}: tuple elements cannot be bool")
            elif isinstance(x, int):
                kinds.append(K_INT)
                ints.append(_check_int(key, x))
            elif isinstance(x, float):
                kinds.append(K_FLOAT)
                floats.append(_check_float(key, x))
            elif _is_date(x):
                kinds.append(K_DATE)
                dates.append(x.toordinal())
            else:
                raise TypeError(f"attribute {key!r}: cannot encode a tuple element of "
                                f"type {type(x).__name__}")

    keys_text = _join_text([k for g in groups for k in g]).encode("utf-8")
    pieces = strs
    for s in sets:
        pieces += s
    pieces += tuple_strs
    text = _join_text(pieces)
    sizes = [len(s) for s in sets] + [len(t) for t in tuples]

    counts = [len(g) for g in groups]
    if max(counts) > 0xFFFF:
        raise ValueError("more than 65535 attributes of one type")
    smax = max(sizes, default=0)
    if smax > 0xFFFFFFFF:
        raise ValueError("a set or tuple is too long to encode")
    lw = 0 if smax <= 0xFF else 1 if smax <= 0xFFFF else 2
    iw = _width(INT_LIMITS, min(ints), max(ints)) if ints else 0
    hw = (max(counts) > 0xFF) | (len(keys_text) > 0xFFFF) << 1
    flags = lw | (iw << 2) | (hw << 4)
    return b"".join((
        bytes((FORMAT_VERSION, flags)),
        HEADERS[hw].pack(*counts, len(keys_text)),
        vec(LEN_CHARS[lw], len(sizes)).pack(*sizes),
        bytes(kinds),
        vec(INT_CHARS[iw], len(ints)).pack(*ints),
        vec("d", len(floats)).pack(*floats),
        vec("I", len(dates)).pack(*dates),
        keys_text,
        text.encode("utf-8"),  # UnicodeEncodeError (a ValueError) for lone surrogates
    ))


def _join_text(pieces: list[str]) -> str:
    """The pieces, each preceded by a separator, then a final separator: the first code point
    that occurs in none of them (nearly always NUL). The final one makes a truncation show."""
    if not pieces:
        return ""
    joined = "".join(pieces)
    if "\0" not in joined:
        return "\0" + "\0".join(pieces) + "\0"
    used = set(joined)
    for cp in range(1, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if c not in used:
            return c + c.join(pieces) + c
    raise ValueError("the strings use every Unicode code point: no separator is left")


def encode_value(value: object) -> bytes:
    """One value, encoded as a one-attribute profile under the empty name."""
    if value is None:
        raise TypeError("None is absence and has no encoding")
    return encode_attrs({"": value})
