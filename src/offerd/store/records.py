"""A proposition as stored in the history database: compact, fast to decode."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .keys import U64

_HEAD = struct.Struct(">BQBBB")  # version, time µs, len(offer), len(space), n categories
_STATUSES = ("presented", "accepted", "rejected")
VERSION = 1


class CorruptRecord(ValueError):
    pass


def names(offer: str, space: str, categories: tuple[str, ...]) -> tuple[int, int, int, bytes]:
    """The record's name fields, encoded once per offer (the store caches them on each
    NewProposition): the lengths for the header, then the bytes."""
    raw = [offer.encode(), space.encode()] + [c.encode() for c in categories]
    if any(len(x) > 255 for x in raw) or len(categories) > 255:
        raise ValueError("offer, space and category names are at most 255 bytes")
    blob = raw[0] + raw[1] + b"".join(bytes((len(c),)) + c for c in raw[2:])
    return len(raw[0]), len(raw[1]), len(categories), blob


def encode_new(time_us: int, names: tuple[int, int, int, bytes], contact: bytes, prop_id: bytes,
               events: bytes = b"\0") -> bytes:
    lo, ls, nc, blob = names
    return b"".join((_HEAD.pack(VERSION, time_us, lo, ls, nc), blob, events,
                     bytes((len(contact),)), contact, prop_id))


@dataclass
class Record:
    id: bytes
    contact: bytes
    offer: str
    space: str
    categories: tuple[str, ...]
    time_us: int
    events: dict[str, int] = field(default_factory=dict)  # status → time µs

    def encode(self) -> bytes:
        mask = sum(1 << i for i, s in enumerate(_STATUSES) if s in self.events)
        times = b"".join(U64.pack(self.events[s]) for s in _STATUSES if s in self.events)
        return encode_new(self.time_us, names(self.offer, self.space, self.categories), self.contact,
                          self.id, bytes((mask,)) + times)

    @classmethod
    def decode(cls, data: bytes) -> Record:
        try:
            version, time_us, lo, ls, nc = _HEAD.unpack_from(data, 0)
            if version != VERSION:
                raise CorruptRecord(f"unknown record version {version}")
            i = _HEAD.size
            offer = data[i:i + lo].decode()
            i += lo
            space = data[i:i + ls].decode()
            i += ls
            cats = []
            for _ in range(nc):
                n = data[i]
                cats.append(data[i + 1:i + 1 + n].decode())
                i += 1 + n
            mask = data[i]
            i += 1
            events = {}
            for bit, s in enumerate(_STATUSES):
                if mask & (1 << bit):
                    events[s] = U64.unpack_from(data, i)[0]
                    i += 8
            n = data[i]
            contact = data[i + 1:i + 1 + n]
            prop_id = data[i + 1 + n:]
            if len(contact) != n or len(prop_id) != 16:
                raise CorruptRecord("truncated record")
            return cls(prop_id, contact, offer, space, tuple(cats), time_us, events)
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"undecodable proposition record: {e}") from None
