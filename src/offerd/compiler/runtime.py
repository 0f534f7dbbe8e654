"""The only names generated code can see. Its globals are exactly `namespace()`, with
empty `__builtins__`: no import, no open, no getattr, no way out."""
from __future__ import annotations

import datetime
import hashlib
from itertools import chain
from operator import itemgetter

from ..domain import INT_MAX
from ..periods import since

_WEIGHT = itemgetter(1)


def bucket(x, n):
    """Stable hash of x into 0..n-1: the same in every process and release (BLAKE2b of the
    value's text, not Python's salted hash). Null if x is null or n < 1."""
    if x is None or n is None or n < 1:
        return None
    data = (x if isinstance(x, str) else str(int(x))).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % n


def counter(history, until: float):
    """The contact's count as compiled code calls it, `(key, status) → n` in one tuple and
    the window's start, up to `until`: the history's own `counter` where it has one (the
    store's converts `until` once per decision), else its `count`."""
    make = getattr(history, "counter", None)
    if make is not None:
        return make(until)
    count = history.count
    return lambda key, since: count((key[0], key[1]), key[2], since, until)


def text(v) -> str:
    """A value as content text: null is empty, bools are true/false, dates ISO."""
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def in_list(x, items):
    """`x in [a, b]` with nullable items, as SQL: true if found, else null if any null."""
    if x is None or items is None:
        return None
    saw_null = False
    for item in items:
        if item is None:
            saw_null = True
        elif item == x:
            return True
    return None if saw_null else False


def best(weights, eligible: list, start: int, k: int) -> list:
    """The k highest weights among `weights` (the best so far) and the eligible
    (position, weight) pairs from `start` on, highest first."""
    return sorted(chain(weights, map(_WEIGHT, eligible[start:])), reverse=True)[:k]  # a C sort beats nlargest here


def namespace() -> dict:
    return {
        "__builtins__": {},
        "_rt_bucket": bucket,
        "_rt_counter": counter,
        "_rt_text": text,
        "_rt_in_list": in_list,
        "_rt_len": len,
        "_rt_float": float,
        "_rt_join": "".join,
        "_rt_int_limit": INT_MAX,
        "_rt_best": best,
        "_rt_since": since,
    }
