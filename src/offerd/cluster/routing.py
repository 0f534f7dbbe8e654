"""Which shard owns a call: the routing key's hash, and proposition ids that route like
their contact's id.

A balancer hashes one metadata key, `x-offerd-route`. Its value is a value the gateway
already has: the contact id (or visitor id) for decisions and profiles, the proposition id
for Record. A proposition id is 32 hex digits (what the store knows it by) and 12 digits
from 0 to 7 chosen so that the whole id has the CRC-32 of its contact's id: every balancer
that hashes with CRC-32 (HAProxy's `crc32`, nginx's `hash`, consistent or not) sends the
id where it sends the contact."""
from __future__ import annotations

import zlib

HEADER = "x-offerd-route"  # gRPC metadata: lower case
FORWARDED = "x-offerd-forwarded"  # set by a shard that passes a call on to its owner
TAIL = 12  # digits 0-7 after the 32 hex digits: 36 free bits for the 32 of a CRC
ID_LENGTH = 32 + TAIL


def shard_of(key: str, shards: int) -> int:
    """The owner of a routing key among `shards`: nginx's `hash` over equal peers (the
    CRC-32's bits 16-30, modulo), written for HAProxy as `crc32,div(65536),and(32767),mod(N)`."""
    return ((zlib.crc32(key.encode("utf-8")) >> 16) & 0x7FFF) % shards


def _solver():
    """For each byte position of a CRC difference and each byte value, the tail bits that
    make it. CRC-32 is affine over GF(2): for strings of one length, flipping a set of bits
    changes the CRC by the XOR of what each bit alone changes."""
    base = b"0" * ID_LENGTH
    crc0 = zlib.crc32(base)
    columns = []  # (tail bit, CRC change)
    for j in range(TAIL):
        for b in range(3):
            s = bytearray(base)
            s[32 + j] ^= 1 << b
            columns.append((1 << (3 * j + b), zlib.crc32(bytes(s)) ^ crc0))
    # Gaussian elimination: a basis of the CRC space, each vector with the bits making it
    basis: dict[int, tuple[int, int]] = {}  # leading bit → (vector, tail bits)
    for bits, vec in columns:
        while vec:
            top = vec.bit_length() - 1
            if top not in basis:
                basis[top] = (vec, bits)
                break
            vec, bits = vec ^ basis[top][0], bits ^ basis[top][1]
    if len(basis) != 32:
        raise AssertionError("the tail does not span CRC-32")

    def solve(vec: int) -> int:
        bits = 0
        while vec:
            top = vec.bit_length() - 1
            vec, bits = vec ^ basis[top][0], bits ^ basis[top][1]
        return bits
    return [[solve(v << (8 * k)) for v in range(256)] for k in range(4)]


_TABLES = _solver()
_DIGITS = "01234567"


def proposition_id(raw: bytes, route: str) -> str:
    """The id a gateway sees for the store's 16-byte id `raw` of a contact routed by `route`."""
    head = raw.hex()
    delta = zlib.crc32((head + "0" * TAIL).encode()) ^ zlib.crc32(route.encode("utf-8"))
    t = _TABLES
    bits = t[0][delta & 255] ^ t[1][(delta >> 8) & 255] ^ t[2][(delta >> 16) & 255] ^ t[3][delta >> 24]
    return head + "".join(_DIGITS[(bits >> (3 * j)) & 7] for j in range(TAIL))


def raw_id(proposition: str) -> bytes | None:
    """The store's 16 bytes of a proposition id, with or without its routing tail; None if
    it is not one."""
    if len(proposition) == ID_LENGTH:
        if not all(c in _DIGITS for c in proposition[32:]):
            return None
        proposition = proposition[:32]
    if len(proposition) != 32:
        return None
    try:
        return bytes.fromhex(proposition)
    except ValueError:
        return None
