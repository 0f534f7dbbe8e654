"""The profile decoder: the bytes of the layout in codec.py back to the typed attribute dict,
through a plan per header for the common records and a fully checked path for the rest."""
from __future__ import annotations

import datetime
import math
import struct

from .codec import (F64_VECS, FORMAT_VERSION, HEADERS, INT_CHARS, INT_SIZES, INT_VECS, K_DATE, K_FLOAT,
                    K_INT, K_STR, LEN_CHARS, LEN_SIZES, LEN_VECS, MAX_KEY_BYTES, MAX_ORDINAL, ORD_VECS,
                    VEC_MAX, CodecError, vec)

_fromordinal = datetime.date.fromordinal
_isfinite = math.isfinite


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
    st = struct.Struct(f"<H{nset}{LEN_CHARS[lw]}{ni}{INT_CHARS[iw]}{nfl}d{nd}I")
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
    lc = LEN_CHARS[lw]
    ls = LEN_SIZES[lw]
    iw = (flags >> 2) & 3
    hdr = HEADERS[flags >> 4]
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
    sizes = ((LEN_VECS[lw][ncoll] if ncoll <= VEC_MAX else vec(lc, ncoll))
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
    need = n_ints * INT_SIZES[iw]
    if n - pos < need:
        raise _truncated("int values", pos, need, n - pos)
    ints = ((INT_VECS[iw][n_ints] if n_ints <= VEC_MAX else vec(INT_CHARS[iw], n_ints))
                .unpack_from(data, pos)) if n_ints else ()
    pos += need

    n_floats = nfl + t_float
    need = n_floats * 8
    if n - pos < need:
        raise _truncated("float values", pos, need, n - pos)
    if n_floats:
        floats = (F64_VECS[n_floats] if n_floats <= VEC_MAX
                      else vec("d", n_floats)).unpack_from(data, pos)
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
        ords = (ORD_VECS[n_dates] if n_dates <= VEC_MAX
                    else vec("I", n_dates)).unpack_from(data, pos)
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


def decode_value(data: bytes) -> object:
    """The value `encode_value` encoded. Raises CodecError if `data` is not exactly that."""
    d = decode_attrs(data)
    if len(d) != 1 or "" not in d:
        raise CodecError("expected exactly one value under the empty name")
    return d[""]
