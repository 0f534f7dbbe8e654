"""Pruning: deleting propositions, event-index keys and fine counters older than the longest
window any rule uses, in small transactions that resume where the last one stopped."""
from __future__ import annotations

import os

from .keys import GRAIN_SIZE, NEWEST, U64, is_stamp, us


def prune(store, before: float, chunk: int = 1_000) -> int:
    """Delete propositions made before `before` (older than the longest window any rule
    uses), their ids, and the event-index keys and second/minute/hour/day counters older
    than that; returns how many entries went. Each transaction deletes at most `chunk`
    entries and looks at most at 10x that many, resuming where the last one stopped, so
    writers are never held long and nothing is scanned twice. (Decisions sharing a commit
    with a step wait for it: 1,000 keeps a step near 6 ms; 10,000 took 33 ms.)"""
    cutoff, removed = us(before), 0
    if cutoff == 0:  # before 1970 (a window of a century, say): nothing is that old
        return 0
    store.env.reader_check()  # a reader left by a killed process (a backup) pins old pages
    db = store.db
    store.submit(lambda txn: _raise_floor(txn, db["meta"], cutoff)).result()  # before anything goes
    for name in ("history", "events", "counters"):
        start: bytes | None = b""
        while start is not None:
            n, start = store.submit(lambda txn, s=start, name=name: prune_step(txn, db, name, cutoff, chunk, s)).result()
            removed += n
    return removed


def _raise_floor(txn, meta, cutoff: int) -> None:
    """Record in `meta` that events before `cutoff` may be gone from the event index (so
    a count of events after a time before it does not trust its absence there)."""
    old = txn.get(b"pruned", db=meta)
    if old is None or U64.unpack(old)[0] < cutoff:
        txn.put(b"pruned", U64.pack(cutoff), db=meta)


def prune_step(txn, db: dict, name: str, cutoff: int, chunk: int, start: bytes) -> tuple[int, bytes | None]:
    """One transaction's work on database `name`: at most `chunk` deletions, from `start` on;
    returns how many, and where the next step starts (None: the database is done)."""
    walked, doomed, seen = db[name], [], 0
    stamp, kept = None, True  # history: the stamp of the contact walked, whether a record of it stays
    cursor = txn.cursor(db=walked)
    if not cursor.set_range(start):
        return 0, None
    for key in cursor.iternext(keys=True, values=False):
        if len(doomed) >= chunk or seen >= 10 * chunk:
            if stamp is not None and not kept:
                key = stamp  # walk this contact again: its stamp goes if nothing of it stays
            break
        seen += 1
        if name == "history" and (is_stamp(key) or stamp is not None and not key.startswith(stamp)):
            if stamp is not None and not kept:
                doomed.append(stamp)  # a contact whose history is all gone loses its stamp
            stamp, kept = (key, False) if is_stamp(key) else (None, True)
            if stamp is not None:
                continue
        if _old(name, key, cutoff):
            doomed.append(key)
        else:
            kept = True
    else:
        key = None  # the end: this database is done
        if stamp is not None and not kept:
            doomed.append(stamp)
    touched = set()  # history: the contacts this step took propositions of
    for k in doomed:
        txn.delete(k, db=walked)
        if name == "history" and not is_stamp(k):
            txn.delete(k[-16:], db=db["props"])  # the proposition id ends the key
            touched.add(k[:k.index(b"\0") + 1])  # the contact's key: its stamp's
    # Their histories changed: new stamps, so no process trusts what it remembers of them,
    # whichever step (this one or a later) takes the rest or the stamp itself.
    for contact in touched.difference(doomed):
        txn.put(contact, os.urandom(16), db=walked)
    return len(doomed), key


def _old(name: str, key: bytes, cutoff: int) -> bool:
    """Whether a key of `name` is about events before `cutoff` (µs), read from the key alone:
    a corrupt value never stops pruning. Lifetime counters are never old."""
    if name == "history":  # contact, inverted time, 16-byte id; or the contact's stamp, kept
        return not is_stamp(key) and NEWEST - U64.unpack_from(key, len(key) - 24)[0] < cutoff
    at = key.index(b"\0") + 2  # after the ref and the status byte
    if name == "events":
        return U64.unpack_from(key, at)[0] < cutoff
    size = GRAIN_SIZE.get(key[at:at + 1])
    return size is not None and (U64.unpack_from(key, at + 1)[0] + 1) * size <= cutoff
