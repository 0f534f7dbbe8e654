"""The LMDB store: profiles, proposition history, propositions by id, counters for
`total` caps, catalog versions. One environment, named databases; every write goes
through one writer thread per process that commits many operations per transaction
(group commit), each acknowledged only after its commit."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import resource
import threading
import time
from concurrent.futures import Future
import itertools
from bisect import bisect_right, insort

import lmdb

from ..domain import PROPENSITY_WINDOW, REPORTED, CapCheck, NewProposition, propensity
from .codec import CodecError, decode_attrs, encode_attrs
from .keys import (DAY, HOUR, MINUTE, NEWEST, SECOND, STATUS_BYTE, U64, Contact, counter_key,
                   event_key, history_key, is_stamp, ref_key, us)
from .records import ALL, CorruptRecord, Indexer, Record, encode_new, names

DATABASES = ("profiles", "history", "props", "counters", "events", "versions", "meta")
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file grows only as data does
MAX_BATCH = 512
DISK_FULL_BYTES = 16 << 20  # a failed write with less room than this was for want of room
FORMAT = b"1"  # the layout of keys and values (docs/storage.md), stamped in `meta` at creation
LINGER_STEP, LINGER_WAITS = 0.0001, 10  # group commit: how long the writer waits for stragglers
_FOREVER = 9.0e12  # seconds: later than any event, and its µs still fit in 64 bits


_FORKS = [0]  # how many forks this process descends from: a store is used where it was opened
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


class StoreError(Exception):
    """A store failure with a message a person can act on."""


class StoreFull(StoreError):
    pass


class Corrupt(StoreError):
    pass


class NotFound(StoreError):
    pass


class ImpossibleMove(StoreError):
    pass


class NoEarlierVersion(StoreError):
    """A rollback with no version live before the current one."""


def _names(p: NewProposition) -> bytes:
    """The proposition's names block, encoded once per object (the engine reuses them)."""
    got = p.memo.get("names")
    if got is None:
        got = p.memo["names"] = names(p.offer, p.space, tuple(p.categories))
    return got


def _refs(p: NewProposition) -> list[bytes]:
    """The counters a proposition of it adds to, encoded once per object."""
    got = p.memo.get("refs")
    if got is None:
        got = p.memo["refs"] = [ref_key(kind, name) for kind, name in p.counted]
    return got


def _cap_ref(check: CapCheck) -> bytes:
    got = check.memo.get("ref")
    if got is None:
        got = check.memo["ref"] = ref_key(check.ref_kind, check.ref)
    return got


def _ref_keys(rec: Record, status: str) -> list[bytes]:
    """The counters an event of `rec` in `status` adds to."""
    refs = [ref_key("offer", rec.offer), ref_key("space", rec.space)]
    if status != "proposed":  # the (offer, space) pair feeds propensity: presented, accepted
        refs.append(ref_key("pair", f"{rec.offer}/{rec.space}"))
    return refs + [ref_key("category", c) for c in rec.categories]




# Counter grains, coarsest first; below the finest, the event index. "L" is lifetime.
LEVELS = ((b"d", DAY), (b"h", HOUR), (b"m", MINUTE), (b"s", SECOND))
GRAIN_SIZE = dict(LEVELS)


class _Pending:
    """Counter increments of the batch being written, kept per second in memory and
    written once at the batch's end, so a hot counter costs one read and one write per
    commit instead of one of each per event and grain. Reads inside the batch add them
    in; an operation that fails takes its own back (it fails before writing anything to
    the transaction, see Store._commit)."""

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

    def flush(self, txn, db) -> None:
        totals: dict[bytes, int] = {}
        for (ref, status), buckets in self.seconds.items():
            for second, n in buckets.items():
                if n:
                    for grain, size in LEVELS:
                        key = counter_key(ref, status, grain, second * SECOND // size)
                        totals[key] = totals.get(key, 0) + n
                    key = counter_key(ref, status, b"L", 0)
                    totals[key] = totals.get(key, 0) + n
        for key, n in totals.items():
            old = txn.get(key, db=db)
            txn.put(key, U64.pack((U64.unpack(old)[0] if old else 0) + n), db=db)


def _horizon(propositions: list[NewProposition], at: float) -> float | None:
    """How far back the per-contact re-checks must read the contact's history (None: all).
    A `proposed` count only needs propositions since its window's start; a status event can
    come long after its proposition, so a status count reads everything."""
    horizon = None
    for p in propositions:
        for c in p.checks:
            if c.scope == "contact":
                if c.status != "proposed" or c.window is None:
                    return None
                horizon = at - c.window if horizon is None else min(horizon, at - c.window)
    return horizon


def _resolve(outcomes) -> None:
    for future, result, error in outcomes:
        if future.done():  # an asyncio caller that was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _deliver(outcomes) -> None:
    """Resolve futures: asyncio ones in their own loop's thread."""
    by_loop: dict = {}
    for outcome in outcomes:
        if isinstance(outcome[0], asyncio.Future):
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        else:
            _resolve([outcome])
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def copy_store(path: str, dest: str) -> int:
    """A consistent copy of the store at `path` into the folder `dest` (new or empty), taken in
    one read transaction while servers go on writing; free pages are left out. Written under
    a temporary name, synced, then renamed: a copy that is there is whole. Returns its size in
    bytes. To restore: stop the servers, put the copy's data.mdb in place."""
    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise StoreError(f"no LMDB store at {path}")
    try:
        if os.path.exists(dest) and os.listdir(dest):
            raise StoreError(f"{dest} is not empty: give a new folder for the copy")
        os.makedirs(dest, exist_ok=True)
        tmp = os.path.join(dest, "data.mdb.partial")
        for attempt in (1, 2):
            # the map as large as the servers': a store growing meanwhile stays inside it
            env = lmdb.open(path, max_dbs=len(DATABASES), subdir=True, readonly=True, create=False,
                            map_size=DEFAULT_MAP_SIZE)
            try:
                with open(tmp, "wb") as f:
                    env.copyfd(f.fileno(), compact=True)
                    os.fsync(f.fileno())
                break
            except lmdb.MapResizedError:
                if attempt == 2:
                    raise
            finally:
                env.close()
        os.rename(tmp, os.path.join(dest, "data.mdb"))
        folder = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except (lmdb.Error, OSError) as e:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(dest, "data.mdb.partial"))
        raise StoreError(f"cannot copy the store at {path} to {dest}: {e}") from None
    return os.path.getsize(os.path.join(dest, "data.mdb"))


class Store:
    def __init__(self, path: str, durability: str = "sync", map_size: int = DEFAULT_MAP_SIZE):
        if durability not in ("sync", "fast"):
            raise StoreError(f"unknown durability {durability!r}: sync or fast")
        self.path, self.durability = path, durability
        self._forks = _FORKS[0]
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the LMDB store's folder {path}: {e.strerror or e}") from None
        try:
            self.env = lmdb.open(path, map_size=map_size, max_dbs=len(DATABASES), subdir=True,
                                 sync=durability == "sync", metasync=durability == "sync",
                                 readahead=False, max_readers=1024)
            self.env.reader_check()  # readers left by processes that died
            self.db = {name: self.env.open_db(name.encode()) for name in DATABASES}
            self._check_format()
        except lmdb.Error as e:
            raise StoreError(f"cannot open the LMDB store at {path}: {e}") from None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="offerd-store-writer", daemon=True)
        self._writer.start()
        self.commits = 0  # transactions committed by this process's writer (tests, metrics)
        self._pending: _Pending | None = None  # the writer's batch, while it runs
        self._indexers: dict[frozenset, Indexer] = {}  # the writer's, by what the caps count
        self._counted: dict[tuple, tuple[int, int, int]] = {}  # the writer's cap counts: (lo, count, lifetime then)
        self._id_prefix, self._id_counter = os.urandom(8), itertools.count()

    def _check_format(self) -> None:
        """Refuse a store laid out by another version of offerd (its keys would be misread and
        its writes would corrupt it); stamp a new one (or one from before stamps: format 1)."""
        meta = self.db["meta"]
        with self.env.begin() as txn:
            got = txn.get(b"format", db=meta)
        if got is None:
            with self.env.begin(write=True) as txn:
                if txn.get(b"format", db=meta) is None:
                    txn.put(b"format", FORMAT, db=meta)
        elif got != FORMAT:
            self.env.close()
            newer = got.isdigit() and int(got) > int(FORMAT)
            raise StoreError(f"the store at {self.path} is in format {got.decode(errors='replace')!r}, "
                             f"and this offerd reads format {FORMAT.decode()}: " + (
                                 "it was written by a newer offerd; run that one, or restore a backup taken "
                                 "before the upgrade" if newer else "it is not a store this offerd can read"))

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        self._fail_queued()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _why_full(self, error: lmdb.Error) -> str | None:
        """After a failed write: whether the disk or the file size limit was the cause. LMDB
        names ENOSPC and EDQUOT, but reports a short write as an I/O error, so the cause is
        also read off the file system."""
        text = str(error)
        if isinstance(error, lmdb.DiskError) or "No space left" in text or "quota" in text:
            return f"the disk holding {self.path} is full or over its quota"
        try:
            fs = os.statvfs(self.path)
            free = fs.f_bavail * fs.f_frsize
            size = os.path.getsize(os.path.join(self.path, "data.mdb"))
        except OSError:
            return None
        if free < DISK_FULL_BYTES:
            return f"the disk holding {self.path} is full ({free} bytes free)"
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and size + DISK_FULL_BYTES > limit:
            return f"{self.path}/data.mdb reached the file size limit ({limit} bytes, `ulimit -f`)"
        return None

    def _check_process(self) -> None:
        if _FORKS[0] != self._forks:  # cheaper than os.getpid(), a system call, on every read
            raise StoreError("this store was opened in another process; open it after fork, in each process")

    # --- group commit ------------------------------------------------------------------

    def submit(self, op) -> Future:
        """Run `op(txn)` in the writer's next transaction; the future resolves after commit."""
        self._check_process()
        future: Future = Future()
        self._enqueue(op, future)
        return future

    async def run(self, op):
        """`submit` for asyncio callers (the gRPC server): awaits the commit without
        blocking the event loop; the writer wakes each loop once per batch."""
        self._check_process()
        future = asyncio.get_running_loop().create_future()
        self._enqueue(op, future)
        return await future

    def _enqueue(self, op, future) -> None:
        self._queue.put((op, future))
        if self._closed and not self._writer.is_alive():  # too late: fail it rather than wait forever
            self._fail_queued()

    def _write_loop(self) -> None:
        last = 1  # the size of the batch before: how many callers are usually waiting
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            if not self._drain(batch):
                return
            # Callers resubmit right after their commit is acknowledged; starting the next
            # transaction before they have would split them over two commits (two fsyncs).
            # So, while fewer are here than last time, wait a little for them, as long as
            # each wait brings some: one caller alone never waits.
            waits = 0
            while len(batch) < last and waits < LINGER_WAITS:
                n = len(batch)
                time.sleep(LINGER_STEP)  # releases the GIL: the callers' threads run
                waits += 1
                if not self._drain(batch):
                    return
                if len(batch) == n:
                    break
            last = len(batch)
            self._commit(batch)

    def _drain(self, batch: list) -> bool:
        """Add what is queued to `batch`, up to MAX_BATCH; False once close() was asked."""
        while len(batch) < MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return True
            if nxt is None:
                self._commit(batch)
                return False
            batch.append(nxt)
        return True

    def _commit(self, batch) -> None:
        """One transaction for the whole batch. An operation is all or nothing because it
        checks and computes first and writes last: it raises StoreError or ValueError only
        before its first write, so a failed one leaves nothing behind but the pending
        counters it takes back. (A nested transaction per operation did the same at 40 µs
        each: LMDB allocates a child's dirty list.) Any other failure, an LMDB error
        included, fails the whole batch and commits nothing."""
        outcomes = []
        self._pending = pending = _Pending()
        try:
            with self.env.begin(write=True) as txn:
                for op, future in batch:
                    pending.undo.clear()
                    try:
                        result = op(txn)
                    except (StoreError, ValueError) as e:
                        pending.revert()
                        self._counted.clear()  # counts taken during the failed operation included its events
                        outcomes.append((future, None, e))
                    else:
                        outcomes.append((future, result, None))
                pending.flush(txn, self.db["counters"])
            self.commits += 1
        except lmdb.MapFullError:
            self._counted.clear()  # its counts included the batch that was not written
            error = StoreFull(f"the LMDB map is full at {self.path} ({self.env.info()['map_size']} bytes): "
                              "make room (prune, move to a larger disk) or reopen with a larger map size")
            outcomes = [(f, None, error) for _, f in batch]
        except lmdb.Error as e:
            self._counted.clear()
            full = self._why_full(e)
            error = StoreFull(f"{full}; the write failed ({e}): make room, and writes resume") if full \
                else StoreError(f"LMDB write failed: {e}")
            outcomes = [(f, None, error) for _, f in batch]
        except BaseException as e:  # a bug in an op: fail its batch, keep the writer alive
            self._counted.clear()
            outcomes = [(f, None, StoreError(f"store write failed: {e!r}")) for _, f in batch]
        finally:
            self._pending = None
        _deliver(outcomes)

    def _fail_queued(self) -> None:
        """After the writer stopped: what is still queued fails instead of waiting forever."""
        error = StoreError("the store is closed (the server is stopping)")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _deliver([(item[1], None, error)])

    # --- profiles ----------------------------------------------------------------------

    def put_profile(self, contact: Contact, attrs: dict) -> None:
        self.put_profiles([(contact, attrs)])

    def put_profiles(self, items: list[tuple[Contact, dict]]) -> None:
        """Store (replace) profiles, all in one operation of the next group commit."""
        self.submit(self._profiles_op(items)).result()

    async def put_profiles_async(self, items: list[tuple[Contact, dict]]) -> None:
        await self.run(self._profiles_op(items))

    def _profiles_op(self, items):
        encoded = [(c.key(), encode_attrs(a)) for c, a in items]  # refuses bad values before writing
        db = self.db["profiles"]
        return lambda txn: [txn.put(k, v, db=db) for k, v in encoded]

    def get_profile(self, contact: Contact) -> dict | None:
        self._check_process()
        with self.env.begin() as txn:
            data = txn.get(contact.key(), db=self.db["profiles"])
        if data is None:
            return None
        try:
            return decode_attrs(data)
        except CodecError as e:
            raise Corrupt(f"profile of {contact.id!r} cannot be decoded: {e}") from None

    # --- history -----------------------------------------------------------------------

    def read_history(self, contact: Contact, since: float | None = None) -> list[Record]:
        """The contact's propositions made after `since` (all if None), newest first: one
        cursor range read."""
        self._check_process()
        with self.env.begin() as txn:
            values, _ = self._history_values(txn, contact.key(), since)
        out = []
        for value in values:
            try:
                out.append(Record.decode(value))
            except CorruptRecord as e:
                raise Corrupt(f"a history record of {contact.id!r} cannot be decoded: {e}") from None
        return out

    def _history_values(self, txn, prefix: bytes, since: float | None) -> tuple[list[bytes], bytes | None]:
        """The stored propositions under `prefix` made after `since`, newest first, and the
        contact's stamp (None: never written), which changes whenever its history does.
        The stamp's key is the prefix itself, so it sorts first and the same walk reads it;
        the first key past the window or past this contact ends the walk."""
        stop = prefix[:-1] + b"\x01" if since is None else prefix + U64.pack(NEWEST - us(since))
        out, stamp = [], None
        cursor = txn.cursor(db=self.db["history"])
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key >= stop:
                    break
                if key == prefix:
                    stamp = value
                else:
                    out.append(value)
        return out, stamp

    def history(self, contact: Contact | None, since: float | None = None) -> StoredHistory:
        """A HistoryView for the compiled spaces: this contact's propositions made after
        `since`, read once; totals and propensity from the counters."""
        return self.decision_inputs(contact, since, profile=False)[1]

    def decision_inputs(self, contact: Contact | None, since: float | None, profile: bool = True,
                        indexer: Indexer = ALL) -> tuple[dict | None, StoredHistory]:
        """What a decision reads, in one read transaction: the profile (if asked) and the
        history view (counting what `indexer` wants)."""
        self._check_process()
        if contact is None:
            return None, StoredHistory(self, [], indexer)
        key = contact.key()
        with self.env.begin() as txn:
            data = txn.get(key, db=self.db["profiles"]) if profile else None
            values, stamp = self._history_values(txn, key, since)
        attrs = None
        if data is not None:
            try:
                attrs = decode_attrs(data)
            except CodecError as e:
                raise Corrupt(f"profile of {contact.id!r} cannot be decoded: {e}") from None
        return attrs, StoredHistory(self, values, indexer, (key, stamp, since))

    # --- totals ------------------------------------------------------------------------

    def total(self, kind: str, name: str, status: str, since: float | None, until: float, txn=None) -> int:
        if txn is None:
            self._check_process()
            with self.env.begin() as txn:
                return self._total(txn, ref_key(kind, name), status, since, until)
        return self._total(txn, ref_key(kind, name), status, since, until)

    def _total(self, txn, ref: bytes, status: str, since: float | None, until: float,
               pending: _Pending | None = None) -> int:
        """Exact count of events in (since, until]."""
        if since is None:
            lifetime = self._bucket_sum(txn, pending, ref, status, b"L", 0, 1)
            if until >= _FOREVER:
                return lifetime
            return lifetime - self._after(txn, pending, ref, status, us(until) + 1)
        lo = us(since) + 1
        if until >= _FOREVER:
            return self._count(txn, pending, ref, status, lo, None, 0)
        # Everything from `since` on, less everything after `until`. Counting up to `until`
        # directly would walk the event index through the second `until` falls in, which
        # for a decision made now is the busiest second there is; after `until` there is
        # next to nothing.
        hi = us(until) + 1
        if lo >= hi:
            return 0
        return self._count(txn, pending, ref, status, lo, None, 0) - self._after(txn, pending, ref, status, hi)

    def _after(self, txn, pending, ref, status, t: int) -> int:
        """Events at or after `t`. For a decision made now there are none, which one seek in
        the event index shows (it holds every event pruning has not taken, and pruning takes
        only old ones) instead of a walk down every grain."""
        # not in the writer (`pending`: its running operation's events are not indexed yet), nor
        # before the last prune's cutoff (the index lacks what pruning took)
        floor = txn.get(b"pruned", db=self.db["meta"])
        if pending is None and (floor is None or t >= U64.unpack(floor)[0]):
            cursor = txn.cursor(db=self.db["events"])
            if not cursor.set_range(event_key(ref, status, t, b"")) or not cursor.key().startswith(ref + STATUS_BYTE[status]):
                return 0
        return self._count(txn, pending, ref, status, t, None, 0)

    def _count(self, txn, pending, ref, status, lo: int, hi: int | None, level: int) -> int:
        """Events with lo <= t < hi (hi None: no end): the whole buckets of the coarsest
        grain that fit from the counters, the rest at each end from finer grains, and
        under a second from the event index. A count reads a few keys per grain."""
        if hi is not None and lo >= hi:
            return 0
        if level == len(LEVELS):
            hi = 2**64 - 1 if hi is None else hi
            return self._events(txn, ref, status, lo, hi) + (pending.events(ref, status, lo, hi) if pending else 0)
        grain, size = LEVELS[level]
        a = -(-lo // size)  # first whole bucket
        b = None if hi is None else hi // size  # end of the whole buckets
        if b is not None and a >= b:
            return self._count(txn, pending, ref, status, lo, hi, level + 1)
        count = self._bucket_sum(txn, pending, ref, status, grain, a, b)
        count += self._count(txn, pending, ref, status, lo, a * size, level + 1)
        if b is not None:
            count += self._count(txn, pending, ref, status, b * size, hi, level + 1)
        return count

    def _bucket_sum(self, txn, pending, ref, status, grain: bytes, k0: int, k1: int | None) -> int:
        if k1 is not None and k0 >= k1:
            return 0
        start = counter_key(ref, status, grain, k0)
        end = counter_key(ref, status, grain, k1) if k1 is not None else ref + STATUS_BYTE[status] + grain + b"\xff" * 9
        cursor = txn.cursor(db=self.db["counters"])
        total = pending.sum(ref, status, grain, k0, k1) if pending else 0
        if cursor.set_range(start):
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
        cursor = txn.cursor(db=self.db["events"])
        n = 0
        if cursor.set_range(start):
            for key in cursor.iternext(keys=True, values=False):
                if key >= end:
                    break
                n += 1
        return n

    def _bump(self, txn, refs: list[bytes], status: str, time_us: int, prop_id: bytes) -> None:
        events, pending = self.db["events"], self._pending
        for ref in refs:
            txn.put(event_key(ref, status, time_us, prop_id), b"", db=events)
            pending.add(ref, status, time_us)

    # --- decisions and status reports --------------------------------------------------

    def record_decision(self, contact: Contact | None, at: float, propositions: list[NewProposition],
                        seen: StoredHistory | None = None) -> list[bytes | None]:
        """Record a decision's propositions atomically, each with its cap checks re-run
        against everything committed and the propositions before it. Returns each one's id,
        or None when a cap was reached meanwhile (that proposition is not recorded).
        `seen`: the history the decision read (decision_inputs), reused by the per-contact
        re-checks when no proposition was added to the contact since."""
        return self.submit(self._decision_op(contact, at, propositions, seen)).result()

    async def record_decision_async(self, contact: Contact | None, at: float, propositions: list[NewProposition],
                                    seen: StoredHistory | None = None, note=None) -> list[bytes | None]:
        """`note(ids)` → (key, value), if given, is stored in the same transaction as the
        decision (the batch command's record that this contact was decided)."""
        return await self.run(self._decision_op(contact, at, propositions, seen, note))

    def _decide(self, txn, contact, at, propositions):
        return self._decision_op(contact, at, propositions)(txn)

    def _decision_op(self, contact: Contact | None, at: float, propositions: list[NewProposition],
                     seen: StoredHistory | None = None, note=None):
        """The write of one decision. Ids, keys and records are made here, in the caller's
        thread, while the writer is busy committing the batch before; the writer itself only
        checks and puts. Nothing is written unless every check ran."""
        prefix = contact.key() if contact is not None else b"u\0"  # unknown contacts: counters only
        time_us = us(at)
        made = []  # (proposition, id, history key, record); bad names are refused here
        for p in propositions:
            prop_id = self._new_id()
            hkey = history_key(prefix, time_us, prop_id)
            made.append((p, prop_id, hkey, encode_new(time_us, _names(p), prefix, prop_id)))
        per_contact = any(p.per_contact for p in propositions)
        db = self.db
        read = seen.read_as(prefix, propositions, at) if per_contact and seen is not None else None

        def op(txn):
            pending = self._pending
            mine = None  # the contact's history index, built once, if a per-contact cap asks
            if per_contact:
                if contact is None:
                    mine = {}
                elif read is not None and txn.get(prefix, db=db["history"]) == read[0]:
                    mine = dict(read[1])  # nothing added since the decision read it
                else:
                    mine = self._contact_index(txn, contact, prefix, propositions, at)
            ids, chosen = [], []
            for item in made:
                p = item[0]
                if p.checks and not all(self._passes(txn, mine, check, at) for check in p.checks):
                    ids.append(None)
                    continue
                pending.add_all(_refs(p), "proposed", time_us)
                if mine is not None:  # the next proposition's checks see this one
                    for kind, name in p.counted:
                        times = list(mine.get((kind, name, "proposed"), ()))  # a copy: `read` is the caller's
                        insort(times, time_us)
                        mine[(kind, name, "proposed")] = times
                ids.append(item[1])
                chosen.append(item)
            pending.unwritten.clear()
            history, props, events = db["history"], db["props"], db["events"]
            put = txn.put
            for p, prop_id, hkey, record in chosen:
                if contact is not None:
                    put(hkey, record, db=history)
                    put(prop_id, hkey, db=props)
                for ref in _refs(p):
                    put(event_key(ref, "proposed", time_us, prop_id), b"", db=events)
            if chosen and contact is not None:
                put(prefix, chosen[-1][1], db=history)  # the stamp: a new unique value
            if note is not None:  # written with the decision, or not at all (outbound batches)
                key, value = note(ids)
                put(key, value, db=db["meta"])
            return ids
        return op

    async def put_note_async(self, key: bytes, value: bytes) -> None:
        """A note alone (a batch's decision that proposed nothing)."""
        db = self.db["meta"]
        await self.run(lambda txn: txn.put(key, value, db=db))

    def notes(self, prefix: bytes, values: bool = True):
        """The notes whose keys start with `prefix`, in key order: (key, value) pairs, or
        keys alone; read as they are walked, from one snapshot."""
        self._check_process()
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.db["meta"])
            if cursor.set_range(prefix):
                for item in cursor.iternext(keys=True, values=values):
                    if not (item[0] if values else item).startswith(prefix):
                        break
                    yield item

    def _new_id(self) -> bytes:
        """16 bytes: this store's random 8, then a counter: unique across processes."""
        return self._id_prefix + U64.pack(next(self._id_counter))

    def _contact_index(self, txn, contact, prefix, propositions, at) -> dict:
        """The contact's history index of what the per-contact caps count, nothing else."""
        wanted = frozenset().union(*(p.contact_keys for p in propositions))
        indexer = self._indexers.get(wanted)
        if indexer is None:
            if len(self._indexers) >= 1024:  # combinations of a catalog's caps: few
                self._indexers.clear()
            indexer = self._indexers[wanted] = Indexer(wanted)
        values, _ = self._history_values(txn, prefix, _horizon(propositions, at))
        try:
            return indexer.index(values)
        except CorruptRecord as e:
            raise Corrupt(f"a history record of {contact.id!r} cannot be decoded: {e}") from None

    def _passes(self, txn, mine: dict | None, check: CapCheck, at: float) -> bool:
        """A cap is a capacity: the re-check counts every committed event from the window's
        start on, also those dated after this decision (concurrent callers' clocks differ,
        replays go back in time), so no interleaving can take it past its limit."""
        since = None if check.window is None else at - check.window
        if check.scope == "total":
            return self._total_below(txn, _cap_ref(check), check.status, since, check.limit)
        times = mine.get((check.ref_kind, check.ref, check.status), ())
        count = len(times) - (0 if since is None else bisect_right(times, us(since)))
        return count < check.limit

    def _total_below(self, txn, ref: bytes, status: str, since: float | None, limit: int) -> bool:
        """Whether the events from `since` on are fewer than `limit`. A cap's first check
        counts them; a later one, in this batch or a later one, with a window starting no
        earlier, bounds them by that count plus the events added since, by any process, read
        off the lifetime counter (a later start only lets events out), and counts again only
        when the bound reaches the limit. Hot caps cost one read per batch, not a count."""
        key, lo = (ref, status), -1 if since is None else us(since)
        pending = self._pending
        life = pending.life.get(key)
        if life is None:
            life = pending.life[key] = self._bucket_sum(txn, None, ref, status, b"L", 0, 1)
        life += pending.added.get(key, 0)
        counted = self._counted.get((ref, status, lo >= 0))
        if counted is not None and lo >= counted[0] and counted[1] + life - counted[2] < limit:
            return True
        count = self._total(txn, ref, status, since, _FOREVER, pending)
        if len(self._counted) >= 65536:
            self._counted.clear()
        self._counted[(ref, status, lo >= 0)] = (lo, count, life)
        return count < limit

    def report(self, prop_id: bytes, status: str, at: float | None = None) -> bool:
        """Record that a proposition was presented, accepted or rejected. Idempotent: True
        if this changed anything. Accepted and rejected imply presented."""
        return self.submit(self._report_op(prop_id, status, at)).result()

    async def report_async(self, prop_id: bytes, status: str, at: float | None = None) -> bool:
        return await self.run(self._report_op(prop_id, status, at))

    def _report_op(self, prop_id: bytes, status: str, at: float | None):
        if status not in REPORTED:
            raise ValueError(f"unknown status {status!r}: presented, accepted or rejected")
        when = time.time() if at is None else at
        return lambda txn: self._report(txn, prop_id, status, when)

    def _report(self, txn, prop_id: bytes, status: str, at: float) -> bool:
        hkey = txn.get(prop_id, db=self.db["props"])
        if hkey is None:
            raise NotFound(f"no proposition {prop_id.hex()}: unknown, or pruned with history older than "
                           "the server keeps (--retain)")
        data = txn.get(hkey, db=self.db["history"])
        if data is None:
            raise NotFound(f"proposition {prop_id.hex()} has been pruned")
        try:
            rec = Record.decode(data)
        except CorruptRecord as e:
            raise Corrupt(f"proposition {prop_id.hex()} cannot be decoded: {e}") from None
        other = {"accepted": "rejected", "rejected": "accepted"}.get(status)
        if other and other in rec.events:
            raise ImpossibleMove(f"proposition {prop_id.hex()} was already {other}; it cannot be {status}")
        if status in rec.events:
            return False
        time_us = max(us(at), rec.time_us)  # a report never predates its proposition
        new = [status] + (["presented"] if status != "presented" and "presented" not in rec.events else [])
        for s in new:
            rec.events[s] = time_us
        data = rec.encode()  # may refuse the record: before anything is written
        for s in new:
            self._bump(txn, _ref_keys(rec, s), s, time_us, rec.id)
        txn.put(hkey, data, db=self.db["history"])
        txn.put(rec.contact, self._new_id(), db=self.db["history"])  # the contact's stamp
        return True

    # --- catalog versions --------------------------------------------------------------

    def save_version(self, files: dict[str, str], label: str = "") -> str:
        from ..lang.checker import catalog_hash

        digest = catalog_hash(files)
        value = json.dumps({"files": files, "label": label, "created": time.time()}).encode()
        self.submit(lambda txn: txn.put(digest.encode(), value, db=self.db["versions"], overwrite=False)).result()
        return digest

    def versions(self) -> list[dict]:
        self._check_process()
        with self.env.begin() as txn:
            live = self._live_stack(txn)
            out = []
            for key, value in txn.cursor(db=self.db["versions"]):
                meta = json.loads(value)
                out.append({"hash": key.decode(), "label": meta["label"], "created": meta["created"],
                            "files": sorted(meta["files"]), "live": bool(live) and live[-1] == key.decode()})
        return sorted(out, key=lambda v: v["created"])

    def _live_stack(self, txn) -> list[str]:
        raw = txn.get(b"live", db=self.db["meta"])
        return json.loads(raw) if raw else []

    def activate(self, digest: str) -> None:
        """Make a saved version live: one atomic switch."""
        def op(txn):
            if txn.get(digest.encode(), db=self.db["versions"]) is None:
                raise NotFound(f"no catalog version {digest}")
            stack = self._live_stack(txn)
            if not stack or stack[-1] != digest:
                stack.append(digest)
            txn.put(b"live", json.dumps(stack[-100:]).encode(), db=self.db["meta"])
        self.submit(op).result()

    def rollback(self) -> str:
        """Make the version live before the current one live again; returns its hash."""
        def op(txn):
            stack = self._live_stack(txn)
            if len(stack) < 2:
                raise NoEarlierVersion("nothing to roll back to: no version was live before this one")
            stack.pop()
            txn.put(b"live", json.dumps(stack).encode(), db=self.db["meta"])
            return stack[-1]
        return self.submit(op).result()

    def live_hash(self) -> str | None:
        """The live version's hash alone: one small read (workers poll it)."""
        self._check_process()
        with self.env.begin() as txn:
            stack = self._live_stack(txn)
        return stack[-1] if stack else None

    def version(self, digest: str) -> dict[str, str]:
        """A saved version's files."""
        self._check_process()
        with self.env.begin() as txn:
            raw = txn.get(digest.encode(), db=self.db["versions"])
        if raw is None:
            raise NotFound(f"no catalog version {digest}")
        return json.loads(raw)["files"]

    def live(self) -> tuple[str, dict[str, str]] | None:
        self._check_process()
        with self.env.begin() as txn:
            stack = self._live_stack(txn)
            if not stack:
                return None
            return stack[-1], json.loads(txn.get(stack[-1].encode(), db=self.db["versions"]))["files"]

    # --- pruning -----------------------------------------------------------------------

    def prune(self, before: float, chunk: int = 1_000) -> int:
        """Delete propositions made before `before` (older than the longest window any rule
        uses), their ids, and the event-index keys and second/minute/hour/day counters older
        than that; returns how many entries went. Each transaction deletes at most `chunk`
        entries and looks at most at 10x that many, resuming where the last one stopped, so
        writers are never held long and nothing is scanned twice. (Decisions sharing a commit
        with a step wait for it: 1,000 keeps a step near 6 ms; 10,000 took 33 ms.)"""
        cutoff, removed = us(before), 0
        if cutoff == 0:  # before 1970 (a window of a century, say): nothing is that old
            return 0
        self.env.reader_check()  # a reader left by a killed process (a backup) pins old pages
        self.submit(lambda txn: self._raise_floor(txn, cutoff)).result()  # before anything goes
        for name in ("history", "events", "counters"):
            start: bytes | None = b""
            while start is not None:
                n, start = self.submit(lambda txn, s=start, name=name: self._prune_db(txn, name, cutoff, chunk, s)).result()
                removed += n
        return removed

    def _raise_floor(self, txn, cutoff: int) -> None:
        """Record in `meta` that events before `cutoff` may be gone from the event index (so
        `_after` does not trust its absence there)."""
        old = txn.get(b"pruned", db=self.db["meta"])
        if old is None or U64.unpack(old)[0] < cutoff:
            txn.put(b"pruned", U64.pack(cutoff), db=self.db["meta"])

    def _prune_db(self, txn, name: str, cutoff: int, chunk: int, start: bytes) -> tuple[int, bytes | None]:
        db, doomed, seen = self.db[name], [], 0
        stamp, kept = None, True  # history: the stamp of the contact walked, whether a record of it stays
        cursor = txn.cursor(db=db)
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
        for k in doomed:
            txn.delete(k, db=db)
            if name == "history" and not is_stamp(k):
                txn.delete(k[-16:], db=self.db["props"])  # the proposition id ends the key
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


class StoredHistory:
    """The HistoryView compiled spaces read (see offerd.history): the contact's stored
    propositions, read once and indexed on first use, so each count is two bisections; totals
    and propensity from the store's counters."""

    def __init__(self, store: Store, values: list[bytes], indexer: Indexer = ALL,
                 read: tuple[bytes, bytes | None, float | None] | None = None):
        self._store, self._values, self._indexer, self._index = store, values, indexer, None
        self._read = read  # (contact key, its stamp, read since) if read from the store

    @property
    def size(self) -> int:
        return len(self._values)

    def _indexed(self) -> dict:
        if self._index is None:
            try:
                self._index = self._indexer.index(self._values)
            except CorruptRecord as e:
                raise Corrupt(f"a history record cannot be decoded: {e}") from None
        return self._index

    def read_as(self, prefix: bytes, propositions: list[NewProposition], at: float):
        """(stamp, index) if this read covers what the propositions' per-contact caps count,
        for the writer to reuse while the contact's stamp is unchanged."""
        if self._read is None or self._read[0] != prefix:
            return None
        since, horizon = self._read[2], _horizon(propositions, at)
        if since is not None and (horizon is None or since > horizon):
            return None  # it read less far back than the caps count
        wanted = self._indexer.wanted
        if wanted is not None and not all(p.contact_keys <= wanted for p in propositions):
            return None
        return self._read[1], self._indexed()

    def count(self, key, status, since, until) -> int:
        times = self._indexed().get((key[0], key[1], status))
        if not times:
            return 0
        lo = 0 if since is None else bisect_right(times, us(since))
        return bisect_right(times, us(until)) - lo

    def total(self, key, status, since, until) -> int:
        return self._store.total(key[0], key[1], status, since, until)

    def propensity(self, offer, space, until) -> float:
        since = until - PROPENSITY_WINDOW
        accepted = self._store.total("pair", f"{offer}/{space}", "accepted", since, until)
        presented = self._store.total("pair", f"{offer}/{space}", "presented", since, until)
        return propensity(accepted, presented)
