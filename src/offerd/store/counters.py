"""Exact counts of events in any window: the counter grains, the batch's pending increments,
and the arithmetic that adds whole buckets of each grain and the event index's ends."""
from __future__ import annotations

from .errors import Corrupt
from .keys import GRAIN_SIZE, LEVELS, MINUTE, SECOND, STATUS_BYTE, U64, event_key, us
from .tracking import Tracked
FOREVER = 9.0e12  # seconds: later than any event, and its µs still fit in 64 bits


class Pending:
    """Counter increments of the batch being written, kept per second in memory and
    written once at the batch's end, so a hot counter costs one read and one write per
    commit instead of one of each per event and grain. Reads inside the batch add them
    in; an operation that fails takes its own back (it fails before writing anything to
    the transaction, see Writer._commit)."""

    def __init__(self):
        self.seconds: dict[tuple[bytes, str], dict[int, int]] = {}
        self.undo: list[tuple[bytes, str, int]] = []
        self.added: dict[tuple[bytes, str], int] = {}  # events per (ref, status) in this batch
        self.life: dict[tuple[bytes, str], int] = {}  # committed lifetime counts read this batch
        self.unwritten: list[tuple[bytes, str, int]] = []  # the running operation's events, until written

    def add(self, ref: bytes, status: str, time_us: int) -> None:
        second = time_us // SECOND
        buckets = self.seconds.get((ref, status))
        if buckets is None:
            buckets = self.seconds[(ref, status)] = {}
        buckets[second] = buckets.get(second, 0) + 1
        self.added[(ref, status)] = self.added.get((ref, status), 0) + 1
        self.undo.append((ref, status, second))

    def add_all(self, refs: list[bytes], status: str, time_us: int) -> None:
        """`add` for a proposition's refs, its events not in the event index yet."""
        second, seconds, added = time_us // SECOND, self.seconds, self.added
        for ref in refs:
            key = (ref, status)
            buckets = seconds.get(key)
            if buckets is None:
                buckets = seconds[key] = {}
            buckets[second] = buckets.get(second, 0) + 1
            added[key] = added.get(key, 0) + 1
            self.undo.append((ref, status, second))
            self.unwritten.append((ref, status, time_us))

    def revert(self) -> None:
        for ref, status, second in self.undo:
            self.seconds[(ref, status)][second] -= 1
            self.added[(ref, status)] -= 1
        self.undo.clear()
        self.unwritten.clear()

    def events(self, ref: bytes, status: str, lo: int, hi: int) -> int:
        """The operation's own events not in the event index yet, with lo <= t < hi."""
        return sum(1 for r, s, t in self.unwritten if r == ref and s == status and lo <= t < hi)

    def sum(self, ref: bytes, status: str, grain: bytes, k0: int, k1: int | None) -> int:
        """Pending events in buckets k0 <= k < k1 of the grain (k1 None: no end)."""
        buckets = self.seconds.get((ref, status))
        if not buckets:
            return 0
        if grain == b"L":
            return sum(buckets.values())
        per = GRAIN_SIZE[grain] // SECOND
        return sum(n for sec, n in buckets.items() if k0 <= sec // per and (k1 is None or sec // per < k1))

    def flush(self, txn, db, tracked: Tracked) -> None:
        """Add the batch's increments to the counters: the lifetime count, and for a tracked
        head (tracking.py) every grain's bucket of each second; read and written in two
        calls, in key order."""
        if not self.seconds:  # a tracking transaction's own marks are never read here, before they commit
            return
        fine_heads = tracked.current(txn)
        totals: dict[bytes, int] = {}
        for (ref, status), buckets in self.seconds.items():
            head = ref + STATUS_BYTE[status]
            life, fine = 0, head in fine_heads
            for second, n in buckets.items():
                if n:
                    if fine:
                        at = second * SECOND
                        for grain, size in LEVELS:
                            key = head + grain + U64.pack(at // size)
                            totals[key] = totals.get(key, 0) + n
                    life += n
            if life:
                key = head + b"L" + _ZERO
                totals[key] = totals.get(key, 0) + life
        if not totals:
            return
        keys = sorted(totals)
        cursor = txn.cursor(db=db)
        old = dict(cursor.getmulti(keys))
        cursor.putmulti([(k, U64.pack(U64.unpack(old[k])[0] + totals[k] if k in old else totals[k])) for k in keys])


_ZERO = U64.pack(0)


class Counts:
    """Counts of a (ref, status)'s events in a window, read in the caller's transaction; in
    the writer, `pending` adds the batch's increments not written yet."""

    def __init__(self, db: dict):
        self.counters_db, self.events_db, self.meta_db = db["counters"], db["events"], db["meta"]
        self.tracked = Tracked(db["meta"])  # the heads whose grains are kept
        # (ref, status, window) → (lo, events from lo on, lifetime count then): the last count read here
        self._memo: dict[tuple[bytes, str, int | None], tuple[int, int, int]] = {}

    def total(self, txn, ref: bytes, status: str, since: float | None, until: float,
              pending: Pending | None = None) -> int:
        """Exact count of events in (since, until]."""
        if since is None:
            lifetime = self.bucket_sum(txn, pending, ref, status, b"L", 0, 1)
            if until >= FOREVER:
                return lifetime
            return lifetime - self._after(txn, pending, ref, status, us(until) + 1)
        lo = us(since) + 1
        if pending is None:
            return self._recount(txn, ref, status, lo, until)
        if until >= FOREVER:
            return self._from(txn, pending, ref, status, lo)
        # Everything from `since` on, less everything after `until`. Counting up to `until`
        # directly would walk the event index through the second `until` falls in, which
        # for a decision made now is the busiest second there is; after `until` there is
        # next to nothing.
        hi = us(until) + 1
        if lo >= hi:
            return 0
        return self._from(txn, pending, ref, status, lo) - self._after(txn, pending, ref, status, hi)

    def _recount(self, txn, ref: bytes, status: str, lo: int, until: float) -> int:
        """`total` outside the writer. The lifetime counter moves with every event of the
        (ref, status), in any process; while it has not moved since the last count of the
        same window from an earlier `lo`, no event came or went at or after that `lo`
        (pruning takes only events before its cutoff, and a count is kept only from the
        cutoff on), so the count from `lo` is that one less the events between the two, read
        off the event index: one seek where a count walks every grain. Only for starts less
        than a minute apart: the walk grows with the events between them."""
        hi = None if until >= FOREVER else us(until) + 1
        if hi is not None and lo >= hi:
            return 0
        head = ref + STATUS_BYTE[status]
        raw = txn.get(head + b"L" + _ZERO, db=self.counters_db)
        if raw is not None and len(raw) != 8:
            raise Corrupt(f"counter {head + b'L'!r} holds {len(raw)} bytes, not 8")
        life = U64.unpack(raw)[0] if raw is not None else 0
        floor = txn.get(b"pruned", db=self.meta_db)
        floor = 0 if floor is None else U64.unpack(floor)[0]
        key = (ref, status, None if hi is None else hi - lo)  # the window: one entry each
        last = self._memo.get(key)
        if last is not None and last[2] == life and last[0] <= lo < last[0] + MINUTE and last[0] >= floor:
            count = last[1] - self._events(txn, ref, status, last[0], lo)
        else:
            count = self._from(txn, None, ref, status, lo)
        if lo >= floor:  # counts reaching before the cutoff are not exact: not kept
            if len(self._memo) >= 4096:  # a catalog's windows: few
                self._memo.clear()
            self._memo[key] = (lo, count, life)
        return count if hi is None else count - self._after(txn, None, ref, status, hi)

    def _after(self, txn, pending, ref, status, t: int) -> int:
        """Events at or after `t`. For a decision made now there are none, which one seek in
        the event index shows (it holds every event pruning has not taken, and pruning takes
        only old ones) instead of a walk down every grain."""
        # not in the writer (`pending`: its running operation's events are not indexed yet), nor
        # before the last prune's cutoff (the index lacks what pruning took)
        floor = txn.get(b"pruned", db=self.meta_db)
        if pending is None and (floor is None or t >= U64.unpack(floor)[0]):
            cursor = txn.cursor(db=self.events_db)
            if not cursor.set_range(event_key(ref, status, t, b"")) or not cursor.key().startswith(ref + STATUS_BYTE[status]):
                return 0
        return self._from(txn, pending, ref, status, t)

    def _from(self, txn, pending, ref, status, lo: int) -> int:
        """Events at or after `lo`: the whole buckets of the coarsest grain from `lo` on, then
        of each finer grain the whole ones between `lo` and what is counted already, and the
        events of `lo`'s own second from the event index. A count reads a few keys per grain,
        through one cursor. A head that is not tracked has no grains: its events are counted
        in the event index (exact, and slower: a live catalog's heads are all tracked)."""
        head = ref + STATUS_BYTE[status]
        if not self.tracked.has(txn, head):
            n = self._events(txn, ref, status, lo, 2**64 - 1)
            return n + (pending.events(ref, status, lo, 2**64 - 1) if pending else 0)
        cursor = txn.cursor(db=self.counters_db)
        count, hi = 0, None  # [hi, ...) is counted (None: nothing yet)
        for grain, size in LEVELS:
            a = -(-lo // size)  # the first whole bucket
            b = None if hi is None else hi // size  # the end of the whole buckets not counted yet
            if b is None or a < b:
                count += self._sum(cursor, pending, ref, status, head + grain, grain, a, b)
                hi = a * size
        end = 2**64 - 1 if hi is None else hi
        return count + self._events(txn, ref, status, lo, end) + (pending.events(ref, status, lo, end) if pending else 0)

    def bucket_sum(self, txn, pending, ref, status, grain: bytes, k0: int, k1: int | None) -> int:
        head = ref + STATUS_BYTE[status] + grain
        return self._sum(txn.cursor(db=self.counters_db), pending, ref, status, head, grain, k0, k1)

    @staticmethod
    def _sum(cursor, pending, ref, status, head: bytes, grain: bytes, k0: int, k1: int | None) -> int:
        """The counters of buckets k0 <= k < k1 (k1 None: no end) under `head` (ref, status, grain)."""
        if k1 is not None and k0 >= k1:
            return 0
        end = head + U64.pack(k1) if k1 is not None else head + b"\xff" * 9
        total = pending.sum(ref, status, grain, k0, k1) if pending else 0
        if cursor.set_range(head + U64.pack(k0)):
            for key, value in cursor:
                if key >= end:
                    break
                if len(value) != 8:
                    raise Corrupt(f"counter {key!r} holds {len(value)} bytes, not 8")
                total += U64.unpack(value)[0]
        return total

    def _events(self, txn, ref, status, lo: int, hi: int) -> int:
        if lo >= hi:
            return 0
        start, end = event_key(ref, status, lo, b""), event_key(ref, status, min(hi, 2**64 - 1), b"")
        cursor = txn.cursor(db=self.events_db)
        n = 0
        if cursor.set_range(start):
            for key in cursor.iternext(keys=True, values=False):
                if key >= end:
                    break
                n += 1
        return n
