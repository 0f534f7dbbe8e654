"""Compact binary encoding of contact profiles (typed attribute dicts) for the LMDB store.

The values are exactly what `offerd.lang.values.check_attributes` produces: str, int (64-bit
signed; bool is not int), finite float, bool, datetime.date, frozenset of str, and tuple of
str | int | float | date. None values are absent and are not stored.

The layout is columnar so that decoding does a fixed number of C-level calls whatever the
number of attributes: one struct unpack per section, one UTF-8 decode and one str.split for
the strings, and one dict build. Only sets and tuples cost Python work per value. All
multi-byte numbers are little-endian.

    offset  size            field
    0       1               version, 1
    1       1               flags: bits 0-1 L, the width of set/tuple sizes (0: u8, 1: u16,
                            2: u32); bits 2-3 N, the width of ints (0: i8, 1: i16, 2: i32,
                            3: i64); bit 4, the group counts are u16 (else u8); bit 5, the
                            keys' length is u32 (else u16); bits 6-7 zero
    2       8 x (1|2)       group counts, in group order: false, true, int, float, date,
                            str, set, tuple (attributes per group)
    ..      2|4             K, the byte length of the keys' text
    ..      (S+U) x L       element count of each set, then of each tuple
    ..      E x 1           kind of each tuple element, tuple by tuple (1 str, 2 int, 3 float,
                            4 date); E is the sum of the tuple counts
    ..      I x N           int values: int attributes, then int tuple elements
    ..      F x 8           float values (IEEE 754 binary64): attributes, then tuple elements
    ..      D x 4           date values as proleptic Gregorian ordinals (1 = 0001-01-01)
    ..      K               the keys (in group order), UTF-8, each preceded by a separator,
                            then a final separator
    ..      to the end      str values, set elements, str tuple elements, likewise

A separator is the first code point that occurs in none of its section's strings (nearly
always NUL); the section starts with it, and its final copy makes any truncation visible.
Booleans take no value bytes: their group is the value.

Keys appear in group order (all false bools, then true bools, ints, ...), so a decoded dict
equals the encoded one but its key order is grouped by type. Set elements are sorted, so equal
profiles encode to equal bytes whatever the sets' iteration order.

`decode_attrs` raises `CodecError` (a ValueError) for any malformed input, naming what is
wrong and the byte offset; every length is checked against the bytes that remain before it
is used, so a corrupt record cannot make it allocate more than a small multiple of its size.
"""
from __future__ import annotations

import datetime
import math
import struct

from ..domain import INT_MAX, INT_MIN

__all__ = ["CodecError", "FORMAT_VERSION", "encode_attrs", "decode_attrs",
           "encode_value", "decode_value"]

FORMAT_VERSION = 1
MAX_KEY_BYTES = 255
MAX_ORDINAL = datetime.date.max.toordinal()  # 3652059

# Group indices, in the order the header counts them and the keys are stored.
G_FALSE, G_TRUE, G_INT, G_FLOAT, G_DATE, G_STR, G_SET, G_TUPLE = range(8)
# Tuple element kinds.
K_STR, K_INT, K_FLOAT, K_DATE = 1, 2, 3, 4

# group counts (u8 or u16) and the byte length of the keys' text (u16 or u32), by flag bits 4-5
_HEADERS = tuple(struct.Struct(f) for f in ("<8BH", "<8HH", "<8BI", "<8HI"))
_LEN_CHARS = "BHI"
_LEN_SIZES = (1, 2, 4)
_LEN_LIMITS = (0xFF, 0xFFFF, 0xFFFFFFFF)
_INT_CHARS = "bhiq"
_INT_SIZES = (1, 2, 4, 8)
_INT_LIMITS = ((-(2**7), 2**7 - 1), (-(2**15), 2**15 - 1), (-(2**31), 2**31 - 1), (INT_MIN, INT_MAX))

_fromordinal = datetime.date.fromordinal
_date = datetime.date
_datetime = datetime.datetime
_isfinite = math.isfinite


class CodecError(ValueError):
    """Malformed profile bytes: what is wrong and at which byte offset."""


# --- precompiled vector Structs --------------------------------------------------------------

_VEC_MAX = 64  # Structs for 0.._VEC_MAX values of each format are built on import


def _vecs(char: str) -> list[struct.Struct]:
    return [struct.Struct(f"<{k}{char}") for k in range(_VEC_MAX + 1)]


_VECS = {c: _vecs(c) for c in "BHIbhiqd"}
_LEN_VECS = tuple(_VECS[c] for c in _LEN_CHARS)
_INT_VECS = tuple(_VECS[c] for c in _INT_CHARS)
_F64_VECS = _VECS["d"]
_ORD_VECS = _VECS["I"]


def _vec(char: str, count: int) -> struct.Struct:
    """The Struct for `count` little-endian values of format `char`."""
    if count <= _VEC_MAX:
        return _VECS[char][count]
    return struct.Struct(f"<{count}{char}")


# --- encode ----------------------------------------------------------------------------------


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
    iw = _width(_INT_LIMITS, min(ints), max(ints)) if ints else 0
    hw = (max(counts) > 0xFF) | (len(keys_text) > 0xFFFF) << 1
    flags = lw | (iw << 2) | (hw << 4)
    return b"".join((
        bytes((FORMAT_VERSION, flags)),
        _HEADERS[hw].pack(*counts, len(keys_text)),
        _vec(_LEN_CHARS[lw], len(sizes)).pack(*sizes),
        bytes(kinds),
        _vec(_INT_CHARS[iw], len(ints)).pack(*ints),
        _vec("d", len(floats)).pack(*floats),
        _vec("I", len(dates)).pack(*dates),
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


# --- decode ----------------------------------------------------------------------------------


def _truncated(what: str, pos: int, need: int, have: int) -> CodecError:
    return CodecError(f"truncated {what} at byte {pos}: needs {need} bytes, {have} remain")


def decode_attrs(data: bytes) -> dict[str, object]:
    """The profile encoded in `data`. Raises CodecError, and nothing else, if it is malformed."""
    try:
        if type(data) is bytes:
            plan = _plans.get(data[1:10])
            if plan is not None and data[0] == FORMAT_VERSION:
                out = _decode_planned(data, plan)
                if out is not None:
                    return out
        return _decode_checked(data)
    except CodecError:
        raise
    except Exception as e:  # a safety net: the checks should leave nothing to catch
        raise CodecError(f"malformed profile: {type(e).__name__}: {e}") from e


# The fast path. Most records have no tuple and a narrow header (flags bits 4-5 zero); for
# those, the flags and the group counts (bytes 1-9) fix the layout of everything up to the
# keys' text, so one Struct read it all. A plan is made by the checked path the first time
# it decodes a header; the fast path returns None at the first thing that is not as
# expected, and the checked path then finds and reports it.
_PLANS_MAX = 1024
_NO_PIECES = [""]
_plans: dict[bytes, tuple] = {}


def _make_plan(header: bytes, counts, lw: int, iw: int) -> None:
    nf, nt, ni, nfl, nd, ns, nset, ntup = counts
    st = struct.Struct(f"<H{nset}{_LEN_CHARS[lw]}{ni}{_INT_CHARS[iw]}{nfl}d{nd}I")
    if len(_plans) >= _PLANS_MAX:
        _plans.clear()
    _plans[header] = (st, 10 + st.size, sum(counts), (False,) * nf + (True,) * nt,
                      1 + nset, 1 + nset + ni, 1 + nset + ni + nfl, ns, nset, nfl, nd)


def _decode_planned(data: bytes, plan: tuple):
    st, pos, nattrs, bools, a, b, c, ns, nset, nfl, nd = plan
    n = len(data)
    if n < pos:
        return None
    vals = st.unpack_from(data, 10)
    kend = pos + vals[0]
    keys = _keys_cache.get(data[pos:kend])
    if keys is None or len(keys) != nattrs:
        return None
    if nfl:
        total = sum(vals[b:c])
        if total - total != 0.0:
            return None
    if nd:
        try:
            dates = list(map(_fromordinal, vals[c:]))
        except (ValueError, OverflowError):
            return None
    n_text = ns + sum(vals[1:a]) if nset else ns
    if n_text:
        if n - kend < n_text:
            return None
        try:
            text = data[kend:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        pieces = text.split(text[0])
        if len(pieces) != n_text + 2 or pieces[-1]:
            return None
    elif n != kend:
        return None
    else:
        pieces = _NO_PIECES
    values = list(bools)
    values += vals[a:c]
    if nd:
        values += dates
    if ns:
        values += pieces[1:ns + 1]
    if nset:
        p = ns + 1
        for k in vals[1:a]:
            values.append(frozenset(pieces[p:p + k]))
            p += k
    return dict(zip(keys, values))


def _decode_checked(data) -> dict[str, object]:
    """Decodes anything, checking every step; makes a plan for the fast path."""
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"expected a bytes-like object, got {type(data).__name__}")
        data = bytes(data)
    n = len(data)
    if n < 2:
        raise _truncated("header", 0, 2, n)
    if data[0] != FORMAT_VERSION:
        raise CodecError(f"unknown format version {data[0]} at byte 0 "
                         f"(this build reads version {FORMAT_VERSION})")
    flags = data[1]
    lw = flags & 3
    if lw == 3 or flags & 0xC0:
        raise CodecError(f"invalid flags 0x{flags:02x} at byte 1")
    lc = _LEN_CHARS[lw]
    ls = _LEN_SIZES[lw]
    iw = (flags >> 2) & 3
    hdr = _HEADERS[flags >> 4]
    pos = 2
    if n - pos < hdr.size:
        raise _truncated("header", pos, hdr.size, n - pos)
    nf, nt, ni, nfl, nd, ns, nset, ntup, klen = hdr.unpack_from(data, pos)
    nattrs = nf + nt + ni + nfl + nd + ns + nset + ntup
    pos += hdr.size

    # set and tuple sizes
    ncoll = nset + ntup
    need = ncoll * ls
    if n - pos < need:
        raise _truncated("collection sizes", pos, need, n - pos)
    sizes = ((_LEN_VECS[lw][ncoll] if ncoll <= _VEC_MAX else _vec(lc, ncoll))
                 .unpack_from(data, pos)) if ncoll else ()
    pos += need
    if ntup:
        set_elems = sum(sizes[:nset])
        tup_elems = sum(sizes[nset:])
    else:
        set_elems = sum(sizes) if nset else 0
        tup_elems = 0

    # tuple element kinds
    if n - pos < tup_elems:
        raise _truncated("tuple element kinds", pos, tup_elems, n - pos)
    if tup_elems:
        kinds = data[pos:pos + tup_elems]
        t_str = kinds.count(K_STR)
        t_int = kinds.count(K_INT)
        t_float = kinds.count(K_FLOAT)
        t_date = kinds.count(K_DATE)
        if t_str + t_int + t_float + t_date != tup_elems:
            for i, k in enumerate(kinds):
                if not K_STR <= k <= K_DATE:
                    raise CodecError(f"invalid tuple element kind {k} at byte {pos + i}")
        pos += tup_elems
    else:
        kinds = b""
        t_str = t_int = t_float = t_date = 0

    # ints, floats, dates
    n_ints = ni + t_int
    need = n_ints * _INT_SIZES[iw]
    if n - pos < need:
        raise _truncated("int values", pos, need, n - pos)
    ints = ((_INT_VECS[iw][n_ints] if n_ints <= _VEC_MAX else _vec(_INT_CHARS[iw], n_ints))
                .unpack_from(data, pos)) if n_ints else ()
    pos += need

    n_floats = nfl + t_float
    need = n_floats * 8
    if n - pos < need:
        raise _truncated("float values", pos, need, n - pos)
    if n_floats:
        floats = (_F64_VECS[n_floats] if n_floats <= _VEC_MAX
                      else _vec("d", n_floats)).unpack_from(data, pos)
        total = sum(floats)  # inf or nan if any is (or if the sum overflows)
        if total - total != 0.0:
            for i, f in enumerate(floats):
                if not _isfinite(f):
                    raise CodecError(f"non-finite float {f} at byte {pos + 8 * i}")
    else:
        floats = ()
    pos += need

    n_dates = nd + t_date
    need = n_dates * 4
    if n - pos < need:
        raise _truncated("date values", pos, need, n - pos)
    if n_dates:
        ords = (_ORD_VECS[n_dates] if n_dates <= _VEC_MAX
                    else _vec("I", n_dates)).unpack_from(data, pos)
        try:
            dates = list(map(_fromordinal, ords))
        except (ValueError, OverflowError):
            i = next(i for i, o in enumerate(ords) if not 1 <= o <= MAX_ORDINAL)
            raise CodecError(f"date ordinal {ords[i]} out of range 1..{MAX_ORDINAL} "
                             f"at byte {pos + 4 * i}") from None
    else:
        dates = []
    pos += need

    # keys: a separator, then the names joined by it; parsed once per distinct key set
    if n - pos < klen:
        raise _truncated("attribute names", pos, klen, n - pos)
    kb = data[pos:pos + klen]
    keys = _keys_cache.get(kb)
    if keys is None:
        keys = _parse_keys(kb, pos)
    if len(keys) != nattrs:
        raise CodecError(f"the attribute names at byte {pos} are {len(keys)}, "
                         f"the header counts {nattrs}")
    pos += klen

    # string values: a separator, then the strings joined by it
    n_text = ns + set_elems + t_str
    if n_text > n - pos:  # every piece takes at least one byte (its separator)
        raise _truncated("strings", pos, n_text, n - pos)
    if n_text:
        try:
            text = data[pos:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"invalid UTF-8 at byte {pos + e.start}: {e.reason}") from None
        pieces = text.split(text[0])  # "" before the first separator and after the last
        if len(pieces) != n_text + 2 or pieces[-1]:
            raise CodecError(f"the text at byte {pos} holds {len(pieces) - 2} strings and "
                             f"{'ends' if not pieces[-1] else 'does not end'} with its "
                             f"separator; the header and sizes call for {n_text}")
    elif n != pos:
        raise CodecError(f"{n - pos} trailing bytes at byte {pos}")
    else:
        pieces = _NO_PIECES

    # build the dict: keys in group order, then values group by group
    values = [False] * nf
    values += [True] * nt
    values += ints[:ni]
    values += floats[:nfl]
    values += dates[:nd]
    if ns:
        values += pieces[1:ns + 1]
    p = ns + 1
    if nset:
        for k in sizes[:nset]:
            values.append(frozenset(pieces[p:p + k]))
            p += k
    if ntup:
        it_s = iter(pieces[p:])
        it_i = iter(ints[ni:])
        it_f = iter(floats[nfl:])
        it_d = iter(dates[nd:])
        by_kind = (None, it_s, it_i, it_f, it_d)
        q = 0
        for k in sizes[nset:]:
            values.append(tuple([next(by_kind[kind]) for kind in kinds[q:q + k]]))
            q += k
    if not ntup and not flags & 0x30:
        _make_plan(data[1:10], (nf, nt, ni, nfl, nd, ns, nset, ntup), lw, iw)
    return dict(zip(keys, values))


_KEYS_CACHE_MAX = 4096  # distinct key sets remembered (cleared when full)
_KEYS_CACHED_BYTES = 4096  # longer key texts are parsed every time
_keys_cache: dict[bytes, tuple[str, ...]] = {}


def _parse_keys(kb: bytes, pos: int) -> tuple[str, ...]:
    """The attribute names in the keys' text `kb` (at byte `pos`), checked and cached."""
    if not kb:
        return ()
    try:
        text = kb.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodecError(f"invalid UTF-8 at byte {pos + e.start}: {e.reason}") from None
    split = text.split(text[0])
    if split[-1] or len(split) < 2:
        raise CodecError(f"the attribute names at byte {pos} do not end with their separator")
    keys = tuple(split[1:-1])
    if len(set(keys)) != len(keys):
        raise CodecError(f"duplicate attribute name in the names at byte {pos}")
    for k in keys:
        if len(k) > MAX_KEY_BYTES // 4 and len(k.encode("utf-8")) > MAX_KEY_BYTES:
            raise CodecError(f"attribute name longer than {MAX_KEY_BYTES} bytes "
                             f"in the names at byte {pos}")
    if len(kb) <= _KEYS_CACHED_BYTES:
        if len(_keys_cache) >= _KEYS_CACHE_MAX:
            _keys_cache.clear()
        _keys_cache[kb] = keys
    return keys


# --- single values ---------------------------------------------------------------------------


def encode_value(value: object) -> bytes:
    """One value, encoded as a one-attribute profile under the empty name."""
    if value is None:
        raise TypeError("None is absence and has no encoding")
    return encode_attrs({"": value})


def decode_value(data: bytes) -> object:
    """The value `encode_value` encoded. Raises CodecError if `data` is not exactly that."""
    d = decode_attrs(data)
    if len(d) != 1 or "" not in d:
        raise CodecError("expected exactly one value under the empty name")
    return d[""]
