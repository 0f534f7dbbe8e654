"""The group-commit writer: one thread per store that takes every queued write operation,
runs them in one transaction, commits once, and only then resolves each caller's future."""
from __future__ import annotations

import asyncio
import os
import queue
import resource
import threading
import time

import lmdb

from .counters import Pending
from .errors import StoreError, StoreFull
from .tracking import Track

MAX_BATCH = 512
DISK_FULL_BYTES = 16 << 20  # a failed write with less room than this was for want of room
LINGER_STEP, LINGER_WAITS = 0.0001, 10  # group commit: how long the writer waits for stragglers


class Writer:
    """The writer thread and its batch state: `pending`, the running batch's counter
    increments (None between batches), and `counted`, the cap counts remembered across
    batches (see decisions.Decisions._total_below), cleared in place (never replaced: the
    decision writes hold it) whenever a write fails."""

    def __init__(self, env: lmdb.Environment, path: str, counters_db, tracked):
        self.env, self.path, self._counters_db, self._tracked = env, path, counters_db, tracked
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self.commits = 0  # transactions committed by this process's writer (tests, metrics)
        self.pending: Pending | None = None
        self.after: list = []  # the running batch's calls to make once it is committed (none if it fails)
        self.counted: dict[tuple, tuple[int, int, int]] = {}  # cap counts: (lo, count, lifetime then)
        self._thread = threading.Thread(target=self._loop, name="offerd-store-writer", daemon=True)
        self._thread.start()

    def put(self, op, future) -> None:
        """Queue `op(txn)`; `future` (concurrent or asyncio) resolves after its commit."""
        self._queue.put((op, future))
        if self.closed and not self._thread.is_alive():  # too late: fail it rather than wait forever
            self._fail_queued()

    def close(self) -> None:
        """Commit what is queued, stop the thread; what comes later fails."""
        self.closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._fail_queued()

    def _loop(self) -> None:
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
            for part in _parts(batch):
                self._commit(part)

    def _drain(self, batch: list) -> bool:
        """Add what is queued to `batch`, up to MAX_BATCH; False once close() was asked."""
        while len(batch) < MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return True
            if nxt is None:
                for part in _parts(batch):
                    self._commit(part)
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
        outcomes, committed = [], False
        self.pending = pending = Pending()
        try:
            with self.env.begin(write=True) as txn:
                for op, future in batch:
                    pending.undo.clear()
                    mark = len(self.after)
                    try:
                        result = op(txn)
                    except (StoreError, ValueError) as e:
                        pending.revert()
                        del self.after[mark:]
                        self.counted.clear()  # counts taken during the failed operation included its events
                        outcomes.append((future, None, e))
                    else:
                        outcomes.append((future, result, None))
                pending.flush(txn, self._counters_db, self._tracked)
            self.commits += 1
            committed = True
        except lmdb.MapFullError:
            self.counted.clear()  # its counts included the batch that was not written
            error = StoreFull(f"the LMDB map is full at {self.path} ({self.env.info()['map_size']} bytes): "
                              "make room (prune, move to a larger disk) or reopen with a larger map size")
            outcomes = [(f, None, error) for _, f in batch]
        except lmdb.Error as e:
            self.counted.clear()
            full = self.why_full(e)
            error = StoreFull(f"{full}; the write failed ({e}): make room, and writes resume") if full \
                else StoreError(f"LMDB write failed: {e}")
            outcomes = [(f, None, error) for _, f in batch]
        except BaseException as e:  # a bug in an op: fail its batch, keep the writer alive
            self.counted.clear()
            outcomes = [(f, None, StoreError(f"store write failed: {e!r}")) for _, f in batch]
        finally:
            self.pending = None
            after, self.after = self.after, []
        if committed:  # before the callers hear of it: their next read finds it done
            for call in after:
                try:
                    call()
                except Exception:  # a memory left unrefreshed only costs a read; callers must hear
                    pass
        _deliver(outcomes)

    def _fail_queued(self) -> None:
        """After the thread stopped: what is still queued fails instead of waiting forever."""
        error = StoreError("the store is closed (the server is stopping)")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _deliver([(item[1], None, error)])

    def why_full(self, error: lmdb.Error) -> str | None:
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


def _parts(batch: list) -> list[list]:
    """The batch in order, each `Track` operation in a transaction of its own."""
    if not any(type(op) is Track for op, _ in batch):
        return [batch]
    parts, run = [], []
    for item in batch:
        if type(item[0]) is Track:
            if run:
                parts.append(run)
            parts.append([item])
            run = []
        else:
            run.append(item)
    return parts + ([run] if run else [])


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
