"""What a decision reads of a contact: its profile and its stored propositions (one cursor
walk, newest first, with the contact's stamp), and the StoredHistory view compiled spaces
count in."""
from __future__ import annotations

from bisect import bisect_right

from ..domain import PROPENSITY_WINDOW, NewProposition, propensity
from .errors import Corrupt
from .keys import NEWEST, U64, us
from .recent import Seen
from .records import ALL, CorruptRecord, Indexer


def horizon(propositions: list[NewProposition], at: float) -> float | None:
    """How far back the per-contact re-checks must read the contact's history (None: all).
    A `proposed` count only needs propositions since its window's start; a status event can
    come long after its proposition, so a status count reads everything."""
    earliest = None
    for p in propositions:
        for c in p.checks:
            if c.scope == "contact":
                start = (None if c.window is None else at - c.window) if c.calendar is None else c.since(at)
                if c.status != "proposed" or start is None:
                    return None
                earliest = start if earliest is None else min(earliest, start)
    return earliest


def history_values(txn, db, prefix: bytes, since: float | None) -> tuple[list[bytes], bytes | None]:
    """The stored propositions under `prefix` made after `since`, newest first, and the
    contact's stamp (None: never written), which changes whenever its history does.
    The stamp's key is the prefix itself, so it sorts first and the same walk reads it;
    the first key past the window or past this contact ends the walk."""
    stop = prefix[:-1] + b"\x01" if since is None else prefix + U64.pack(NEWEST - us(since))
    out, stamp = [], None
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if key >= stop:
                break
            if key == prefix:
                stamp = value
            else:
                out.append(value)
    return out, stamp


class StoredHistory:
    """The HistoryView compiled spaces read (see offerd.history): the contact's stored
    propositions, read once and indexed on first use, so each count is two bisections; totals
    and propensity from the store's counters. `seen`: the read's entry in the store's memory
    of recent contacts, holding the index already (a hit) or to be given it once built."""

    def __init__(self, store, values: list[bytes] | None, indexer: Indexer = ALL,
                 read: tuple[bytes, bytes | None, float | None] | None = None, seen=None):
        self._store, self._values, self._indexer = store, values, indexer
        self._read = read  # (contact key, its stamp, read since) if read from the store
        self._seen = seen
        self._index = None if seen is None else seen.index

    @property
    def size(self) -> int:
        """How many propositions the view holds: as read, or as remembered (then with those
        recorded since, and older ones a fresh read would leave out)."""
        return len(self._values) if self._values is not None else self._seen.size

    def _indexed(self) -> dict:
        if self._index is None:
            try:
                self._index = self._indexer.index(self._values)
            except CorruptRecord as e:
                raise Corrupt(f"a history record cannot be decoded: {e}") from None
            if self._seen is not None:  # remembered for the contact's next decision
                s = self._seen
                self._store.recent.put(self._read[0], Seen(s.raw, s.attrs, s.stamp, s.since, s.indexer,
                                                           self._index, s.size))
        return self._index

    def read_as(self, prefix: bytes, propositions: list[NewProposition], at: float):
        """(stamp, index) if this read covers what the propositions' per-contact caps count,
        for the writer to reuse while the contact's stamp is unchanged."""
        if self._read is None or self._read[0] != prefix:
            return None
        since, back = self._read[2], horizon(propositions, at)
        if since is not None and (back is None or since > back):
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

    def latest(self, key, status, n: int, until: float) -> float | None:
        """The time of the n-th most recent event up to `until` (explain: when a cap frees);
        None if there are fewer."""
        times = self._indexed().get((key[0], key[1], status))
        hi = bisect_right(times, us(until)) if times else 0
        return times[hi - n] / 1_000_000 if n >= 1 and hi >= n else None

    def counter(self, until: float):
        """`count` as compiled code calls it (see compiler.runtime.counter): the window's end
        converted once, each start once per decision, the index built on the first count."""
        hi, starts, index = us(until), {}, self._index

        def count(key, since) -> int:
            nonlocal index
            if index is None:  # on the first count, as `count` does
                index = self._indexed()
            times = index.get(key)
            if not times:
                return 0
            if since is None:
                return bisect_right(times, hi)
            lo = starts.get(since)
            if lo is None:
                lo = starts[since] = us(since)
            return bisect_right(times, hi) - bisect_right(times, lo)
        return count

    def total(self, key, status, since, until) -> int:
        return self._store.total(key[0], key[1], status, since, until)

    def propensity(self, offer, space, until) -> float:
        since = until - PROPENSITY_WINDOW
        accepted = self._store.total("pair", f"{offer}/{space}", "accepted", since, until)
        presented = self._store.total("pair", f"{offer}/{space}", "presented", since, until)
        return propensity(accepted, presented)
