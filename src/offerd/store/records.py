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
        names = [self.offer.encode(), self.space.encode()] + [c.encode() for c in self.categories]
        if any(len(x) > 255 for x in names) or len(self.categories) > 255:
            raise ValueError("offer, space and category names are at most 255 bytes")
        mask = sum(1 << i for i, s in enumerate(_STATUSES) if s in self.events)
        out = [_HEAD.pack(VERSION, self.time_us, len(names[0]), len(names[1]), len(self.categories)),
               names[0], names[1]]
        for c in names[2:]:
            out += [bytes((len(c),)), c]
        out.append(bytes((mask,)))
        out += [U64.pack(self.events[s]) for s in _STATUSES if s in self.events]
        out += [bytes((len(self.contact),)), self.contact, self.id]
        return b"".join(out)

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
