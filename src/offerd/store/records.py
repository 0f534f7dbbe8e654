"""A proposition as stored in the history database: compact, fast to decode."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..domain import REPORTED as _STATUSES, STATUSES as _INDEX_STATUSES
from .keys import U64

_HEAD = struct.Struct(">BQH")  # version, time µs, length of the names block
VERSION = 2
_U64_AT = U64.unpack_from


class CorruptRecord(ValueError):
    pass


GROUP = "+"  # marks a group in the names block: no category name starts with it


def names(offer: str, space: str, categories: tuple[str, ...], groups: tuple[str, ...] = ()) -> bytes:
    """The record's names block: offer, space, categories, then groups marked `+`, each
    preceded by its length. (Records written before groups existed have none: they read
    the same.) The same for every proposition of an offer in a space, so it is encoded once
    (the store keeps it with each NewProposition) and decoded through a cache."""
    raw = [offer.encode(), space.encode()] + [c.encode() for c in categories] + [(GROUP + g).encode() for g in groups]
    if any(len(x) > 255 for x in raw) or len(raw) > 257:
        raise ValueError("offer, space, category and group names are at most 255 bytes")
    return b"".join(bytes((len(x),)) + x for x in raw)


def encode_new(time_us: int, names: bytes, contact: bytes, prop_id: bytes, events: bytes = b"\0") -> bytes:
    return b"".join((_HEAD.pack(VERSION, time_us, len(names)), names, events,
                     bytes((len(contact),)), contact, prop_id))


_blocks: dict[bytes, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {}
_block_keys: dict[bytes, dict[str, list[tuple[str, str, str]]]] = {}


def _decode_names(block: bytes) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(offer, space, categories, groups)."""
    out, i = [], 0
    while i < len(block):
        n = block[i]
        part = block[i + 1:i + 1 + n]
        if len(part) != n:
            raise CorruptRecord("truncated names")
        out.append(part.decode())
        i += 1 + n
    if len(out) < 2:
        raise CorruptRecord("a record names an offer and a space")
    if len(_blocks) >= 4096:  # names come from the catalog: few; a flood of odd ones stays bounded
        _blocks.clear()
    rest = out[2:]
    got = _blocks[block] = (out[0], out[1], tuple(x for x in rest if not x.startswith(GROUP)),
                            tuple(x[1:] for x in rest if x.startswith(GROUP)))
    return got


@dataclass(slots=True)
class Record:
    id: bytes
    contact: bytes
    offer: str
    space: str
    categories: tuple[str, ...]
    time_us: int
    events: dict[str, int] = field(default_factory=dict)  # status → time µs
    groups: tuple[str, ...] = ()

    def encode(self) -> bytes:
        mask = sum(1 << i for i, s in enumerate(_STATUSES) if s in self.events)
        times = b"".join(U64.pack(self.events[s]) for s in _STATUSES if s in self.events)
        return encode_new(self.time_us, names(self.offer, self.space, self.categories, self.groups), self.contact,
                          self.id, bytes((mask,)) + times)

    @classmethod
    def decode(cls, data: bytes) -> Record:
        try:
            version, time_us, ln = _HEAD.unpack_from(data, 0)
            if version != VERSION:
                raise CorruptRecord(f"unknown record version {version}")
            i = 11 + ln
            block = data[11:i]
            got = _blocks.get(block) or _decode_names(block)
            mask = data[i]
            i += 1
            events = {}
            if mask:
                for bit, s in enumerate(_STATUSES):
                    if mask & (1 << bit):
                        events[s] = _U64_AT(data, i)[0]
                        i += 8
            n = data[i]
            contact = data[i + 1:i + 1 + n]
            prop_id = data[i + 1 + n:]
            if len(contact) != n or len(prop_id) != 16 or len(block) != ln:
                raise CorruptRecord("truncated record")
            return cls(prop_id, contact, got[0], got[1], got[2], time_us, events, got[3])
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"undecodable proposition record: {e}") from None


class Indexer:
    """Builds a contact's history index: (kind, name, status) → event times in µs,
    ascending, straight from stored records (no Record objects). `wanted` limits it to the
    counts some rule reads (None: all of them); statuses nobody counts are not even parsed.
    Times are grouped by names block first, so a record costs a few operations whatever
    its categories."""

    def __init__(self, wanted: frozenset[tuple[str, str, str]] | None = None):
        self.wanted = wanted
        statuses = _INDEX_STATUSES if wanted is None else {s for _, _, s in wanted}
        self.events = tuple((bit, s) for bit, s in enumerate(_STATUSES) if s in statuses)
        self.proposed = "proposed" in statuses
        self.proposed_only = set(statuses) <= {"proposed"}  # the index ignores propositions older than the counts' windows
        self._keys: dict[bytes, dict[str, list[tuple[str, str, str]]]] = {}

    def keys(self, block: bytes) -> dict[str, list[tuple[str, str, str]]]:
        keys = self._keys.get(block)
        if keys is None:
            offer, space, cats, groups = _blocks.get(block) or _decode_names(block)
            refs = ([("offer", offer), ("space", space)] + [("category", c) for c in cats]
                    + [("group", g) for g in groups])
            keys = {s: [(k, n, s) for k, n in refs if self.wanted is None or (k, n, s) in self.wanted]
                    for s in _INDEX_STATUSES}
            if len(self._keys) >= 4096:  # names come from the catalog: few; odd ones stay bounded
                self._keys.clear()
            self._keys[block] = keys
        return keys

    def index(self, values: list[bytes]) -> dict[tuple[str, str, str], list[int]]:
        groups: dict[tuple[bytes, str], list[int]] = {}
        proposed, events = self.proposed, self.events
        try:
            for data in values:
                version, time_us, ln = _HEAD.unpack_from(data, 0)
                if version != VERSION:
                    raise CorruptRecord(f"unknown record version {version}")
                i = 11 + ln
                block = data[11:i]
                if proposed:
                    lst = groups.get((block, "proposed"))
                    if lst is None:
                        groups[(block, "proposed")] = [time_us]
                    else:
                        lst.append(time_us)
                mask = data[i]
                if mask and events:
                    for bit, status in events:
                        if mask & (1 << bit):
                            at = i + 1 + 8 * bin(mask & ((1 << bit) - 1)).count("1")
                            groups.setdefault((block, status), []).append(_U64_AT(data, at)[0])
            out: dict[tuple[str, str, str], list[int]] = {}
            for (block, status), times in groups.items():
                for k in self.keys(block)[status]:
                    lst = out.get(k)
                    if lst is None:
                        out[k] = times.copy()
                    else:
                        lst.extend(times)
        except (struct.error, IndexError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"undecodable proposition record: {e}") from None
        for lst in out.values():
            lst.sort()
        return out


ALL = Indexer()
