"""The writes of decisions and of their status reports: proposition ids, the records and
event keys a decision puts, and its cap checks re-run inside the write transaction."""
from __future__ import annotations

import itertools
import os
import time
from bisect import bisect_right, insort

from ..domain import REPORTED, CapCheck, NewProposition, Replay
from .counters import FOREVER, Counts
from .errors import Corrupt, ImpossibleMove, NotFound
from .history import StoredHistory, history_values, horizon
from .keys import STATUS_BYTE, U64, Contact, event_key, history_key, ref_key, us
from .recent import Recent, Seen
from .records import CorruptRecord, Indexer, Record, encode_new, names
from .writer import Writer


def _encoded(p: NewProposition) -> tuple[bytes, list[bytes], list[bytes]]:
    """The proposition's names block, the counters it adds to, and its event keys' heads
    (ref and status), encoded once per object (the engine reuses one per offer and space)."""
    got = p.memo.get("store")
    if got is None:
        refs = [ref_key(kind, name) for kind, name in p.counted]
        got = p.memo["store"] = (names(p.offer, p.space, tuple(p.categories), tuple(p.groups)), refs,
                                 [ref + STATUS_BYTE["proposed"] for ref in refs])
    return got


def _cap_ref(check: CapCheck) -> bytes:
    got = check.memo.get("ref")
    if got is None:
        got = check.memo["ref"] = ref_key(check.ref_kind, check.ref)
    return got


def _advanced(recent: Recent, prefix: bytes, known: Seen, chosen: list, time_us: int, index: dict | None):
    """After the commit: the contact's remembered index, current until this write, with the
    written propositions added, under the new stamp (the next decision reads two keys).
    `index`: that index already, built by the per-contact re-checks from the remembered one."""
    if index is None:
        index, keys = dict(known.index), known.indexer.keys
        for item in chosen:
            for key in keys(_encoded(item[0])[0])["proposed"]:
                times = list(index.get(key, ()))  # a copy: readers may hold the old one
                insort(times, time_us)
                index[key] = times
    seen = Seen(known.raw, known.attrs, chosen[-1][1], known.since, known.indexer, index, known.size + len(chosen))
    return lambda: recent.put(prefix, seen)


def _ref_keys(rec: Record, status: str) -> list[bytes]:
    """The counters an event of `rec` in `status` adds to."""
    refs = [ref_key("offer", rec.offer), ref_key("space", rec.space)]
    if status != "proposed":  # the (offer, space) pair feeds propensity: presented, accepted
        refs.append(ref_key("pair", f"{rec.offer}/{rec.space}"))
    return refs + [ref_key("category", c) for c in rec.categories] + [ref_key("group", g) for g in rec.groups]


class Decisions:
    """Makes the write operations of decisions and reports (`op`, `report_op`) for the
    writer to run. Owns the proposition ids and the writer's history indexers."""

    def __init__(self, db: dict, writer: Writer, counts: Counts, recent: Recent):
        self._db, self._writer, self._recent = db, writer, recent
        self._counted = writer.counted  # the writer clears it in place when a write fails
        self._bucket_sum, self._total = counts.bucket_sum, counts.total
        self._indexers: dict[frozenset, Indexer] = {}  # the writer's, by what the caps count
        self._id_prefix, self._id_counter = os.urandom(8), itertools.count()

    def new_id(self) -> bytes:
        """16 bytes: this store's random 8, then a counter: unique across processes."""
        return self._id_prefix + U64.pack(next(self._id_counter))

    def op(self, contact: Contact | None, at: float, propositions: list[NewProposition],
           seen: StoredHistory | None = None, note=None, once=None, ids=None):
        """The write of one decision. Ids, keys and records are made here, in the caller's
        thread, while the writer is busy committing the batch before; the writer itself only
        checks and puts. Nothing is written unless every check ran. `once`: (keys, fresh),
        where a retried request's first answer may be in `meta`: if one holds a value
        `fresh(value)` accepts, nothing is written and the op returns Replay(value) (the
        decision's `note` writes that answer)."""
        prefix = contact.key() if contact is not None else b"u\0"  # unknown contacts: counters only
        time_us = us(at)
        at_us = U64.pack(time_us)  # event keys: ref, status, time, id (keys.event_key)
        made = []  # (proposition, id, history key, record, counter refs, event key heads); bad names are refused here
        for i, p in enumerate(propositions):
            prop_id = self.new_id() if ids is None else ids[i]
            hkey = history_key(prefix, time_us, prop_id)
            block, refs, heads = _encoded(p)
            made.append((p, prop_id, hkey, encode_new(time_us, block, prefix, prop_id), refs, heads))
        per_contact = any(p.per_contact for p in propositions)
        db, writer, passes = self._db, self._writer, self._passes
        read = seen.read_as(prefix, propositions, at) if per_contact and seen is not None else None

        def op(txn):
            if once is not None:  # checked here, in the write: copies arriving together write once
                for key in once[0]:
                    first = txn.get(key, db=db["meta"])
                    if first is not None and once[1](first):
                        return Replay(first)
            pending = writer.pending
            mine = None  # the contact's history index, built once, if a per-contact cap asks
            reused = False  # `mine` is the decision's index, with this write's propositions added
            if per_contact:
                if contact is None:
                    mine = {}
                elif read is not None and txn.get(prefix, db=db["history"]) == read[0]:
                    mine, reused = dict(read[1]), True  # nothing added since the decision read it
                else:
                    mine = self._contact_index(txn, contact, prefix, propositions, at)
            ids, chosen = [], []
            for item in made:
                p = item[0]
                if p.checks and not all(passes(txn, pending, mine, check, at) for check in p.checks):
                    ids.append(None)
                    continue
                pending.add_all(item[4], "proposed", time_us)
                if mine is not None:  # the next proposition's checks see this one
                    for kind, name in p.counted:
                        times = list(mine.get((kind, name, "proposed"), ()))  # a copy: `read` is the caller's
                        insort(times, time_us)
                        mine[(kind, name, "proposed")] = times
                ids.append(item[1])
                chosen.append(item)
            pending.unwritten.clear()
            history, put = db["history"], txn.put
            events = []
            for _, prop_id, hkey, record, _, heads in chosen:
                if contact is not None:
                    put(hkey, record, db=history)
                    put(prop_id, hkey, db=db["props"])
                tail = at_us + prop_id
                events += [(head + tail, b"") for head in heads]
            if events:
                txn.cursor(db=db["events"]).putmulti(events)
            if chosen and contact is not None:
                known = self._recent.get(prefix)
                if known is not None and known.index is not None and txn.get(prefix, db=history) == known.stamp:
                    mine = mine if reused and read[1] is known.index else None
                    writer.after.append(_advanced(self._recent, prefix, known, chosen, time_us, mine))
                put(prefix, chosen[-1][1], db=history)  # the stamp: a new unique value
            if note is not None:  # written with the decision, or not at all (outbound batches)
                key, value = note(ids)
                put(key, value, db=db["meta"])
            return ids
        return op

    def _contact_index(self, txn, contact, prefix, propositions, at) -> dict:
        """The contact's history index of what the per-contact caps count, nothing else."""
        wanted = frozenset().union(*(p.contact_keys for p in propositions))
        indexer = self._indexers.get(wanted)
        if indexer is None:
            if len(self._indexers) >= 1024:  # combinations of a catalog's caps: few
                self._indexers.clear()
            indexer = self._indexers[wanted] = Indexer(wanted)
        values, _ = history_values(txn, self._db["history"], prefix, horizon(propositions, at))
        try:
            return indexer.index(values)
        except CorruptRecord as e:
            raise Corrupt(f"a history record of {contact.id!r} cannot be decoded: {e}") from None

    def _passes(self, txn, pending, mine: dict | None, check: CapCheck, at: float) -> bool:
        """A cap is a capacity: the re-check counts every committed event from the window's
        start on, also those dated after this decision (concurrent callers' clocks differ,
        replays go back in time), so no interleaving can take it past its limit."""
        since = (None if check.window is None else at - check.window) if check.calendar is None else check.since(at)
        if check.scope == "total":
            return self._total_below(txn, pending, _cap_ref(check), check.status, since, check.limit,
                                     check.calendar or check.window)
        times = mine.get((check.ref_kind, check.ref, check.status), ())
        count = len(times) - (0 if since is None else bisect_right(times, us(since)))
        return count < check.limit

    def _total_below(self, txn, pending, ref: bytes, status: str, since: float | None, limit: int,
                     shape=None) -> bool:
        """Whether the events from `since` on are fewer than `limit`. A cap's first check
        counts them; a later one, in this batch or a later one, with a window starting no
        earlier, bounds them by that count plus the events added since, by any process, read
        off the lifetime counter (a later start only lets events out), and counts again only
        when the bound reaches the limit. Hot caps cost one read per batch, not a count."""
        key, lo = (ref, status), -1 if since is None else us(since)
        life = pending.life.get(key)
        if life is None:
            life = pending.life[key] = self._bucket_sum(txn, None, ref, status, b"L", 0, 1)
        life += pending.added.get(key, 0)
        # one entry per window shape (1d, calendar month, lifetime): two caps on one ref, a day's
        # and a month's, would otherwise evict each other and count afresh at every check
        counted = self._counted.get((ref, status, shape))
        if counted is not None and lo >= counted[0] and counted[1] + life - counted[2] < limit:
            return True
        count = self._total(txn, ref, status, since, FOREVER, pending)
        if len(self._counted) >= 65536:
            self._counted.clear()
        self._counted[(ref, status, shape)] = (lo, count, life)
        return count < limit

    def report_op(self, prop_id: bytes, status: str, at: float | None):
        """The write of a status report (presented, accepted, rejected) at `at` (None: now)."""
        if status not in REPORTED:
            raise ValueError(f"unknown status {status!r}: presented, accepted or rejected")
        when = time.time() if at is None else at
        return lambda txn: self._report(txn, prop_id, status, when)

    def _report(self, txn, prop_id: bytes, status: str, at: float) -> bool:
        db = self._db
        hkey = txn.get(prop_id, db=db["props"])
        if hkey is None:
            raise NotFound(f"no proposition {prop_id.hex()}: unknown, or pruned with history older than "
                           "the server keeps (--retain)")
        data = txn.get(hkey, db=db["history"])
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
        events, pending = db["events"], self._writer.pending
        for s in new:
            for ref in _ref_keys(rec, s):
                txn.put(event_key(ref, s, time_us, rec.id), b"", db=events)
                pending.add(ref, s, time_us)
        txn.put(hkey, data, db=db["history"])
        txn.put(rec.contact, self.new_id(), db=db["history"])  # the contact's stamp
        return True
