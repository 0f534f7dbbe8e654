"""Safe retries: a recorded decision sent again (the same request, with the same request id,
for the same contact) within the retry window gets its first answer back and counts once.
The first answer is stored with the decision, in its transaction; the write looks for it
again, so copies that arrive together still write once (the store's `once`).

Keys carry the start of the window they were written in (wall seconds, rounded down to a
multiple of the window), so a note is found in the keys of the current window, the previous
one or the next one (a copy that began a little later), and pruning deletes old windows in
key order without reading what it keeps, whatever window they were written with."""
from __future__ import annotations

import datetime
import hashlib
import json
import struct

from ..store import Contact
from .model import Decision, Proposal, Replayed, Request, SpaceResult

DEFAULT_WINDOW = 600.0  # seconds a first answer is kept for retries (serve --retry-window 10m)
PREFIX = b"retry:"  # meta keys: PREFIX, the window's start (u64 s), 16 bytes of hash
_U64 = struct.Struct(">Q")  # a stored answer starts with the wall-clock µs it was written at
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_US = datetime.timedelta(microseconds=1)


def _canon(v):
    if isinstance(v, (set, frozenset)):
        return sorted(map(_canon, v), key=repr)
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def fingerprint(r: Request) -> bytes:
    """What makes two requests the same request: a request id reused for another one (other
    spaces, attributes, filters) is decided on its own."""
    body = [list(r.spaces), r.anonymous, sorted((k, _canon(v)) for k, v in r.attributes.items()),
            sorted((k, _canon(v)) for k, v in r.context.items()), r.max_offers, list(r.categories),
            list(r.themes), r.explain and ("all" if r.explain_all else True),
            None if r.time is None else (r.time - EPOCH) // _US]
    return json.dumps(body, separators=(",", ":"), default=repr).encode()


def keys(contact: Contact, request: Request, wall: float, window: float) -> tuple[bytes, ...]:
    """The keys of this request's note: in this window (where it is written), the previous
    one (a note younger than the window is there or here) and the next one (a copy of the
    request that began after this one, in the next window, and wrote first). Fixed size,
    whatever the ids'."""
    digest = hashlib.sha256(contact.key() + request.request_id.encode("utf-8", "surrogatepass") + b"\0"
                            + fingerprint(request)).digest()[:16]
    start = int(wall // window * window)
    step = max(int(window), 1)
    return tuple(PREFIX + _U64.pack(max(s, 0)) + digest for s in (start, start - step, start + step))


def expired_below(wall: float, window: float) -> bytes:
    """Keys below this one were written in windows that ended more than a window ago (none
    is looked at); with no window (0), every key."""
    if window <= 0:
        return PREFIX + b"\xff" * 8
    return PREFIX + _U64.pack(max(int(wall // window * window - max(int(window), 1)), 0))


BATCH = b"batch:"  # meta keys of batch rows: BATCH, the job, ":", the line (u64), the contact's hash


def batch_key(job: bytes, line: int, contact: str) -> bytes:
    """Where a batch row's first answer is kept: no window, it stays with the batch. The
    contact is in it: another contact's row under the same job and line is its own."""
    digest = hashlib.blake2b(contact.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return BATCH + job + b":" + _U64.pack(line) + digest


def written_at(value: bytes) -> float | None:
    """When the note was written (wall clock, s), or None if it is not one."""
    return _U64.unpack_from(value)[0] / 1e6 if len(value) >= _U64.size else None


def encode(wall: float, when: datetime.datetime, catalog: str, spaces, picks, ids) -> bytes:
    """The answer as the decision gives it, `ids` as the gateway sees them: picks whose
    write was refused (a cap taken at commit, id None) are left out, as `Engine._commit`
    leaves them out of the answer."""
    kept = [[p.space, p.offer.name, p.weight, p.content, pid, p.fallback]
            for p, pid in zip(picks, ids) if pid is not None]
    body = {"t": (when - EPOCH) // _US, "c": catalog, "s": list(spaces), "p": kept}
    return _U64.pack(round(wall * 1e6)) + json.dumps(body, separators=(",", ":")).encode()


def decode(value: bytes) -> Decision:
    """The stored answer; ValueError if the note is not one (corrupt)."""
    try:
        body = json.loads(value[_U64.size:])
        results = []
        for name in body["s"]:
            picks = [p for p in body["p"] if p[0] == name]
            results.append(SpaceResult(name, tuple(Proposal(p[1], rank, p[2], p[3], p[4], p[5])
                                                   for rank, p in enumerate(picks, 1)), None))
        return Replayed(EPOCH + body["t"] * _US, body["c"], tuple(results))
    except (ValueError, KeyError, TypeError, IndexError, OverflowError) as e:
        raise ValueError(f"a stored answer for retries cannot be read: {e!r}") from None
