"""Byte layouts of LMDB keys. Big-endian integers, so byte order is time order."""
from __future__ import annotations

import struct
from dataclasses import dataclass

U64 = struct.Struct(">Q")
NEWEST = 2**64 - 1
SECOND, MINUTE, HOUR, DAY = 1_000_000, 60_000_000, 3_600_000_000, 86_400_000_000  # in µs
# Counter grains, coarsest first; below the finest, the event index. "L" is lifetime.
LEVELS = ((b"d", DAY), (b"h", HOUR), (b"m", MINUTE), (b"s", SECOND))
GRAIN_SIZE = dict(LEVELS)


@dataclass(frozen=True)
class Contact:
    """`identified` contacts have a profile; `anonymous` ones (a cookie, a device) only a
    history. The two never share keys, whatever their ids."""

    id: str
    anonymous: bool = False

    def key(self) -> bytes:
        raw = self.id.encode("utf-8")
        if not raw or b"\0" in raw or len(raw) > 256:
            raise ValueError("a contact id is 1 to 256 UTF-8 bytes, without NUL")
        return (b"v" if self.anonymous else b"i") + raw + b"\0"


def us(seconds: float) -> int:
    """Microseconds since 1970, as keys hold them: never negative (a window reaching back
    before 1970 starts there; nothing is older)."""
    return int(round(seconds * 1_000_000)) if seconds > 0 else 0


def history_key(contact: bytes, time_us: int, prop_id: bytes) -> bytes:
    """contact, then time inverted: one cursor walk from the contact's prefix reads its
    propositions newest first."""
    return contact + U64.pack(NEWEST - time_us) + prop_id


def is_stamp(key: bytes) -> bool:
    """A history key that is a contact's prefix alone holds its stamp: a value rewritten
    whenever the contact's history changes (see history.history_values)."""
    return key.index(b"\0") == len(key) - 1


def ref_key(kind: str, name: str) -> bytes:
    """An offer, category, space, group, or (offer, space) pair for propensity."""
    return kind[0].encode() + name.encode("utf-8") + b"\0"


STATUS_BYTE = {"proposed": b"P", "presented": b"S", "accepted": b"A", "rejected": b"R"}


def event_key(ref: bytes, status: str, time_us: int, prop_id: bytes) -> bytes:
    """One key per event, for the exact count of the partial minutes at a window's edges."""
    return ref + STATUS_BYTE[status] + U64.pack(time_us) + prop_id
