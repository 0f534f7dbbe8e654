"""The only names generated code can see. Its globals are exactly `namespace()`, with
empty `__builtins__`: no import, no open, no getattr, no way out."""
from __future__ import annotations

import datetime
import hashlib
from decimal import ROUND_HALF_UP, Context, Decimal
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


def hour(t, moment_local):
    return t.astimezone(moment_local.tzinfo).hour


def weekday(x, moment_local):
    """1 = Monday .. 7 = Sunday; a time is taken in the catalog's timezone."""
    if isinstance(x, datetime.datetime):
        x = x.astimezone(moment_local.tzinfo)
    return x.isoweekday()


def month(x, moment_local):
    if isinstance(x, datetime.datetime):
        x = x.astimezone(moment_local.tzinfo)
    return x.month


def _rounded(x, n: int) -> Decimal | None:
    """x (finite) rounded to n decimals, half away from zero, as an exact Decimal; the
    decimal x is the shortest text that reads back as the float (what Python prints)."""
    d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    if d.is_zero() or d.adjusted() < -n - 1:  # below half a unit of the last decimal kept
        return Decimal(0)
    if d.as_tuple().exponent >= -n:  # already within n decimals
        return d
    return d.quantize(Decimal((0, (1,), -n)), context=Context(prec=d.adjusted() + n + 2, rounding=ROUND_HALF_UP))


def round_half_away(x, n):
    """round(x, n): half away from zero (2.5 → 3, -2.5 → -3, 2.675 → 2.68 as written);
    n < 0 rounds to tens, hundreds ... An int stays an int (null outside 64 bits); a float's
    infinities and NaN stay as they are; -0.0 becomes 0.0."""
    if x is None or n is None:
        return None
    if isinstance(x, float):
        if x - x != 0:  # inf or NaN
            return x
        return float(_rounded(x, n)) + 0.0
    if n >= 0:
        return x
    if n < -19:
        return 0
    r = int(_rounded(x, n))
    return r if -INT_MAX <= r <= INT_MAX else None


def format_number(x, n):
    """x with `,` between groups of three digits and n decimals (0..20; outside, the
    nearest), rounded half away from zero; infinities and NaN as content text has them."""
    if isinstance(x, float) and x - x != 0:
        return str(x)
    n = 0 if n < 0 else 20 if n > 20 else n
    r = _rounded(x, n)
    return format(r.copy_abs() if r.is_zero() else r, f",.{n}f")  # not "-0.00"


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")

# format_date's directives, written out (not strftime: its output varies with the platform
# and the locale); the checker allows only these (lang.functions.DATE_DIRECTIVES)
DIRECTIVES = {
    "Y": lambda t: f"{t.year:04d}",
    "y": lambda t: f"{t.year % 100:02d}",
    "m": lambda t: f"{t.month:02d}",
    "d": lambda t: f"{t.day:02d}",
    "j": lambda t: f"{t.timetuple().tm_yday:03d}",
    "A": lambda t: _DAYS[t.weekday()],
    "a": lambda t: _DAYS[t.weekday()][:3],
    "B": lambda t: _MONTHS[t.month - 1],
    "b": lambda t: _MONTHS[t.month - 1][:3],
    "u": lambda t: str(t.isoweekday()),
    "U": lambda t: f"{(t.timetuple().tm_yday + 6 - t.isoweekday() % 7) // 7:02d}",
    "W": lambda t: f"{(t.timetuple().tm_yday + 6 - t.weekday()) // 7:02d}",
    "H": lambda t: f"{t.hour:02d}",
    "I": lambda t: f"{(t.hour + 11) % 12 + 1:02d}",
    "p": lambda t: "AM" if t.hour < 12 else "PM",
    "M": lambda t: f"{t.minute:02d}",
    "S": lambda t: f"{t.second:02d}",
    "%": lambda t: "%",
}


def format_date(x, pattern: str, moment_local):
    """A date or a time (in the catalog's timezone) by a checked pattern of DIRECTIVES."""
    if isinstance(x, datetime.datetime):
        x = x.astimezone(moment_local.tzinfo)
    out, i, end = [], 0, len(pattern)
    while i < end:
        j = pattern.find("%", i)
        if j < 0:
            out.append(pattern[i:])
            break
        out.append(pattern[i:j])
        out.append(DIRECTIVES[pattern[j + 1]](x))  # the checker saw a directive after every %
        i = j + 2
    return "".join(out)


def join(items, sep: str) -> str:
    """The items as content text, null items left out, joined by sep; a set in sorted order."""
    if isinstance(items, frozenset):
        items = sorted(items)
    return sep.join([text(i) for i in items if i is not None])


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
        "_rt_hour": hour,
        "_rt_weekday": weekday,
        "_rt_month": month,
        "_rt_round": round_half_away,
        "_rt_format_number": format_number,
        "_rt_format_date": format_date,
        "_rt_join_items": join,
    }
