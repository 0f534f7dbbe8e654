"""The binary layout of stored contact profiles (typed attribute dicts), and what its encoder
(encode.py) and decoder (decode.py) share: format constants, widths, precompiled Structs and
CodecError.

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
import struct

from ..domain import INT_MAX, INT_MIN

FORMAT_VERSION = 1
MAX_KEY_BYTES = 255
MAX_ORDINAL = datetime.date.max.toordinal()  # 3652059

# Group indices, in the order the header counts them and the keys are stored.
G_FALSE, G_TRUE, G_INT, G_FLOAT, G_DATE, G_STR, G_SET, G_TUPLE = range(8)
# Tuple element kinds.
K_STR, K_INT, K_FLOAT, K_DATE = 1, 2, 3, 4

# group counts (u8 or u16) and the byte length of the keys' text (u16 or u32), by flag bits 4-5
HEADERS = tuple(struct.Struct(f) for f in ("<8BH", "<8HH", "<8BI", "<8HI"))
LEN_CHARS = "BHI"
LEN_SIZES = (1, 2, 4)
INT_CHARS = "bhiq"
INT_SIZES = (1, 2, 4, 8)
INT_LIMITS = ((-(2**7), 2**7 - 1), (-(2**15), 2**15 - 1), (-(2**31), 2**31 - 1), (INT_MIN, INT_MAX))


class CodecError(ValueError):
    """Malformed profile bytes: what is wrong and at which byte offset."""


# --- precompiled vector Structs --------------------------------------------------------------

VEC_MAX = 64  # Structs for 0..VEC_MAX values of each format are built on import


def _vecs(char: str) -> list[struct.Struct]:
    return [struct.Struct(f"<{k}{char}") for k in range(VEC_MAX + 1)]


VECS = {c: _vecs(c) for c in "BHIbhiqd"}
LEN_VECS = tuple(VECS[c] for c in LEN_CHARS)
INT_VECS = tuple(VECS[c] for c in INT_CHARS)
F64_VECS = VECS["d"]
ORD_VECS = VECS["I"]


def vec(char: str, count: int) -> struct.Struct:
    """The Struct for `count` little-endian values of format `char`."""
    if count <= VEC_MAX:
        return VECS[char][count]
    return struct.Struct(f"<{count}{char}")
