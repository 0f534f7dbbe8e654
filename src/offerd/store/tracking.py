"""Which (ref, status) pairs keep counters at every grain (second, minute, hour, day), and
making a pair tracked: its grains rebuilt from the event index, in one transaction.

Only a windowed `total` (a total cap with a window, propensity's pairs) reads the grains, so
only the pairs a live catalog reads that way keep them: the writer puts every event's key
and every pair's lifetime counter, and the grains of tracked pairs only. A pair is tracked
once for good (a rollback finds its pairs tracked). Its events since the last prune are all
in the event index, so grains rebuilt from it count what grains kept all along would count
for every window that starts after the prune cutoff, the only windows counted exactly."""
from __future__ import annotations

from .keys import LEVELS, U64

PREFIX, VERSION = b"track:", b"tracked"  # meta keys: one per tracked pair; a count of changes


class Tracked:
    """The tracked heads as this process last read them. A head once tracked stays tracked,
    so a head seen tracked in a transaction is tracked in every transaction that sees that
    one's commits: `has` trusts what it saw only in transactions no older than where it saw
    it, and reads the mark again otherwise. Only committed marks are ever read into it."""

    def __init__(self, meta_db):
        self.meta_db = meta_db
        self.seen: dict[bytes, int] = {}  # head → the id of a transaction that saw it tracked
        self.heads: set[bytes] = set()  # the writer's: every tracked head at `version`
        self.version = None  # the VERSION value `heads` was read at

    def has(self, txn, h: bytes) -> bool:
        """Whether `h` is tracked in `txn`'s view."""
        at = self.seen.get(h)
        if at is not None and txn.id() >= at:
            return True
        if txn.get(PREFIX + h, db=self.meta_db) is None:
            return False
        self.seen[h] = txn.id() if at is None else min(at, txn.id())
        return True

    def current(self, txn) -> set[bytes]:
        """Every tracked head in the writer's transaction `txn`: read again only when a
        tracking transaction changed them (never inside one: see Pending.flush)."""
        version = txn.get(VERSION, db=self.meta_db)
        if version != self.version:
            cursor = txn.cursor(db=self.meta_db)
            if cursor.set_range(PREFIX):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(PREFIX):
                        break
                    self.heads.add(key[len(PREFIX):])
            self.version = version
        return self.heads


class Track:
    """The writer's operation that makes `heads` tracked. It runs in a transaction of its
    own (the writer sees to it): in a batch, the operations before it would have their
    events both in the index it rebuilds from and in the batch's pending increments."""

    def __init__(self, db: dict, heads):
        self.db, self.heads = db, heads

    def __call__(self, txn) -> int:
        return track(txn, self.db, self.heads)


def track(txn, db: dict, heads) -> int:
    """Make `heads` tracked in this write transaction: any grains left from before (a store
    written by an older offerd, which kept them for every pair) are deleted, the grains are
    rebuilt from the event index, and the heads marked. Returns how many were new."""
    meta, counters, events = db["meta"], db["counters"], db["events"]
    new = [h for h in sorted(set(heads)) if txn.get(PREFIX + h, db=meta) is None]
    for h in new:
        cursor = txn.cursor(db=counters)
        for grain, _ in LEVELS:
            start = h + grain
            while cursor.set_range(start) and cursor.key().startswith(start):
                cursor.delete()
        totals: dict[bytes, int] = {}
        seconds: dict[int, int] = {}
        walk = txn.cursor(db=events)
        if walk.set_range(h):
            at = len(h)
            for key in walk.iternext(keys=True, values=False):
                if not key.startswith(h):
                    break
                second = U64.unpack_from(key, at)[0] // 1_000_000
                seconds[second] = seconds.get(second, 0) + 1
        for second, n in seconds.items():
            t = second * 1_000_000
            for grain, size in LEVELS:
                key = h + grain + U64.pack(t // size)
                totals[key] = totals.get(key, 0) + n
        for key in sorted(totals):
            cursor.put(key, U64.pack(totals[key]))
        txn.put(PREFIX + h, b"", db=meta)
    if new:
        old = txn.get(VERSION, db=meta)
        txn.put(VERSION, U64.pack((U64.unpack(old)[0] if old else 0) + 1), db=meta)
    return len(new)
