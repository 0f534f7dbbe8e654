"""The store's face: `Store` opens the environment, owns its lifecycle (the writer thread,
the fork guard, closing) and hands each call to the module that owns its concern."""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import Future

from ..domain import NewProposition
from . import prune as pruning, versions as catalog
from .codec import CodecError
from .counters import Counts
from .decisions import Decisions
from .decode import decode_attrs
from .encode import encode_attrs
from .environment import DEFAULT_MAP_SIZE, open_env
from .errors import Corrupt, StoreError
from .history import StoredHistory, history_values
from .keys import STATUS_BYTE, U64, Contact, ref_key, us
from .recent import DEFAULT_SIZE as RECENT_SIZE, Recent, Seen
from .records import ALL, CorruptRecord, Indexer, Record
from .tracking import Track
from .writer import Writer

_FORKS = [0]  # how many forks this process descends from: a store is used where it was opened
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


class Store:
    """Profiles, proposition history, propositions by id, counters for `total` caps, catalog
    versions, in one LMDB environment. Every write goes through one writer thread per
    process that commits many operations per transaction (group commit), each acknowledged
    only after its commit."""

    def __init__(self, path: str, durability: str = "sync", map_size: int = DEFAULT_MAP_SIZE,
                 recent: int = RECENT_SIZE):
        if durability not in ("sync", "fast"):
            raise StoreError(f"unknown durability {durability!r}: sync or fast")
        self.path, self.durability = path, durability
        self._forks = _FORKS[0]
        self.env, self.db = open_env(path, durability, map_size)
        counts = Counts(self.db)
        self._tracked = counts.tracked
        self._writer = Writer(self.env, path, self.db["counters"], counts.tracked)
        self.recent = Recent(recent)  # contacts decided lately: their decoded profile and history index
        decisions = Decisions(self.db, self._writer, counts, self.recent)
        # bound once: a per-decision call costs no more lookups than a method of Store's own
        self._put, self._total = self._writer.put, counts.total
        self._decision_op, self._report_op = decisions.op, decisions.report_op
        self.new_id = decisions.new_id  # a proposition id made before its write (a cluster's shared counts)

    @property
    def commits(self) -> int:
        """Transactions committed by this process's writer (tests, metrics)."""
        return self._writer.commits

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._writer.close()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check_process(self) -> None:
        """Refuse use in another process than the one that opened the store (after fork)."""
        if _FORKS[0] != self._forks:  # cheaper than os.getpid(), a system call, on every read
            raise StoreError("this store was opened in another process; open it after fork, in each process")

    # --- group commit ------------------------------------------------------------------

    def submit(self, op) -> Future:
        """Run `op(txn)` in the writer's next transaction; the future resolves after commit."""
        self.check_process()
        future: Future = Future()
        self._put(op, future)
        return future

    async def run(self, op):
        """`submit` for asyncio callers (the gRPC server): awaits the commit without
        blocking the event loop; the writer wakes each loop once per batch."""
        self.check_process()
        future = asyncio.get_running_loop().create_future()
        self._put(op, future)
        return await future

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
        self.check_process()
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
        self.check_process()
        with self.env.begin() as txn:
            values, _ = history_values(txn, self.db["history"], contact.key(), since)
        out = []
        for value in values:
            try:
                out.append(Record.decode(value))
            except CorruptRecord as e:
                raise Corrupt(f"a history record of {contact.id!r} cannot be decoded: {e}") from None
        return out

    def history(self, contact: Contact | None, since: float | None = None) -> StoredHistory:
        """A HistoryView for the compiled spaces: this contact's propositions made after
        `since`, read once; totals and propensity from the counters."""
        return self.decision_inputs(contact, since, profile=False)[1]

    def decision_inputs(self, contact: Contact | None, since: float | None, profile: bool = True,
                        indexer: Indexer = ALL) -> tuple[dict | None, StoredHistory]:
        """What a decision reads, in one read transaction: the profile (if asked) and the
        history view (counting what `indexer` wants). A contact read before, whose profile
        bytes and history stamp are unchanged, costs two gets: its decoded profile and
        history index are remembered (`recent`)."""
        self.check_process()
        if contact is None:
            return None, StoredHistory(self, [], indexer)
        key, recent, history = contact.key(), self.recent, self.db["history"]
        known = recent.get(key)
        with self.env.begin() as txn:
            data = txn.get(key, db=self.db["profiles"]) if profile else None
            if known is not None and known.covers(txn.get(key, db=history), since, indexer):
                recent.hits += 1
                values, stamp = None, known.stamp
            else:
                values, stamp = history_values(txn, history, key, since)
        if known is not None and data is not None and data == known.raw:
            attrs = known.attrs  # the engine never changes it in place
        elif data is not None:
            try:
                attrs = decode_attrs(data)
            except CodecError as e:
                raise Corrupt(f"profile of {contact.id!r} cannot be decoded: {e}") from None
        else:
            attrs = None
        if values is None:
            seen = known if attrs is known.attrs else Seen(data, attrs, stamp, known.since, indexer, known.index,
                                                           known.size)
        else:
            seen = Seen(data, attrs, stamp, since, indexer, None, len(values))
        if data is None and stamp is None:  # a contact never seen: nothing worth remembering
            return None, StoredHistory(self, values, indexer, (key, None, since))
        recent.put(key, seen)  # to the end, changed or not: the least recently read goes first
        return attrs, StoredHistory(self, values, indexer, (key, stamp, seen.since), seen)

    def track(self, pairs) -> int:
        """Keep counters at every grain for these (kind, name, status) pairs, from now on and
        rebuilt for the past from the event index: what a windowed `total` reads (see
        tracking.py). Pairs tracked already cost a read; returns how many were new."""
        self.check_process()
        heads = {ref_key(kind, name) + STATUS_BYTE[status] for kind, name, status in pairs}
        with self.env.begin() as txn:
            heads = {h for h in heads if not self._tracked.has(txn, h)}
        if not heads:
            return 0
        return self.submit(Track(self.db, heads)).result()

    def total(self, kind: str, name: str, status: str, since: float | None, until: float, txn=None) -> int:
        """Exact count of (kind, name)'s events in `status` in (since, until]."""
        if txn is None:
            self.check_process()
            with self.env.begin() as txn:
                return self._total(txn, ref_key(kind, name), status, since, until)
        return self._total(txn, ref_key(kind, name), status, since, until)

    def events(self, kind: str, name: str, status: str, since: float) -> list[tuple[int, bytes]]:
        """(time µs, proposition id) of (kind, name)'s events in `status` after `since`, oldest
        first (a cluster's shared counts are rebuilt from them)."""
        self.check_process()
        head = ref_key(kind, name) + STATUS_BYTE[status]
        out = []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.db["events"])
            if cursor.set_range(head + U64.pack(us(since) + 1)):
                for key in cursor.iternext(values=False):
                    if not key.startswith(head):
                        break
                    out.append((U64.unpack_from(key, len(head))[0], key[len(head) + 8:]))
        return out

    # --- decisions and status reports --------------------------------------------------

    def record_decision(self, contact: Contact | None, at: float, propositions: list[NewProposition],
                        seen: StoredHistory | None = None, note=None, once=None):
        """Record a decision's propositions atomically, each with its cap checks re-run
        against everything committed and the propositions before it. Returns each one's id,
        or None when a cap was reached meanwhile (that proposition is not recorded).
        `seen`: the history the decision read (decision_inputs), reused by the per-contact
        re-checks when no proposition was added to the contact since."""
        return self.submit(self._decision_op(contact, at, propositions, seen, note, once)).result()

    async def record_decision_async(self, contact: Contact | None, at: float, propositions: list[NewProposition],
                                    seen: StoredHistory | None = None, note=None, once=None, ids=None):
        """`note(ids)` → (key, value), if given, is stored in the same transaction as the
        decision (the batch command's record that this contact was decided, a retry's first
        answer). `once`: see Decisions.op (a Replay instead of ids). `ids`: the propositions'
        ids, made by `new_id` (made here if None)."""
        return await self.run(self._decision_op(contact, at, propositions, seen, note, once, ids))

    def note(self, key: bytes) -> bytes | None:
        """One note in `meta` (a retried request's first answer), or None."""
        self.check_process()
        with self.env.begin() as txn:
            return txn.get(key, db=self.db["meta"])

    def prune_notes(self, start: bytes, below: bytes) -> int:
        """Delete the notes with keys from `start` up to `below` (their order is their age:
        answers kept for retries), in transactions of at most 1,000; returns how many went."""
        removed = 0

        def step(txn) -> int:
            cursor, n = txn.cursor(db=self.db["meta"]), 0
            if cursor.set_range(start):
                while n < 1000 and start <= cursor.key() < below:
                    cursor.delete()  # and on to the next key (b"" past the end)
                    n += 1
            return n

        while (n := self.submit(step).result()) > 0:
            removed += n
        return removed

    def report(self, prop_id: bytes, status: str, at: float | None = None) -> bool:
        """Record that a proposition was presented, accepted or rejected. Idempotent: True
        if this changed anything. Accepted and rejected imply presented."""
        return self.submit(self._report_op(prop_id, status, at)).result()

    async def report_async(self, prop_id: bytes, status: str, at: float | None = None) -> bool:
        return await self.run(self._report_op(prop_id, status, at))

    def put_note(self, key: bytes, value: bytes, keep=None) -> bytes | None:
        """A note alone (a batch's decision that proposed nothing). `keep(value)`, if given:
        a note already under `key` that it accepts (a copy's answer, written meanwhile) stays
        and is returned instead; one it refuses (corrupt) is written over."""
        return self.submit(self._note_op(key, value, keep)).result()

    async def put_note_async(self, key: bytes, value: bytes, keep=None) -> bytes | None:
        return await self.run(self._note_op(key, value, keep))

    def _note_op(self, key: bytes, value: bytes, keep):
        db = self.db["meta"]

        def op(txn):
            if keep is not None:
                there = txn.get(key, db=db)
                if there is not None and keep(bytes(there)):
                    return bytes(there)
            txn.put(key, value, db=db)
            return None
        return op

    def notes(self, prefix: bytes, values: bool = True):
        """The notes whose keys start with `prefix`, in key order: (key, value) pairs, or
        keys alone; read as they are walked, from one snapshot."""
        self.check_process()
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.db["meta"])
            if cursor.set_range(prefix):
                for item in cursor.iternext(keys=True, values=values):
                    if not (item[0] if values else item).startswith(prefix):
                        break
                    yield item

    # --- catalog versions (versions.py) and pruning (prune.py) --------------------------

    def save_version(self, files: dict[str, str], label: str = "") -> str:
        return catalog.save_version(self, files, label)

    def versions(self) -> list[dict]:
        return catalog.versions(self)

    def activate(self, digest: str, when: float | None = None, if_newer: bool = False) -> int | None:
        """Make a saved version live: one atomic switch. `when` it was made live (default
        now; 0: the catalog a server starts with, older than any change through the API);
        `if_newer`: only if the live one was made live before that. Returns when it was made
        live (µs), or None if it was not."""
        return catalog.activate(self, digest, when, if_newer)

    def rollback(self, stamped: bool = False):
        """Make the version live before the current one live again; returns its hash (and,
        `stamped`, when it was made live, in µs)."""
        digest, stamp = catalog.rollback(self)
        return (digest, stamp) if stamped else digest

    def live_since(self) -> int:
        """When (wall µs) the live version was made live; 0 if at a server's start."""
        return catalog.live_since(self)

    def live_state(self) -> tuple[str | None, int]:
        """The live version's hash (None: nothing live) and `live_since`, read together."""
        return catalog.live_state(self)

    def live_hash(self) -> str | None:
        """The live version's hash alone: one small read (workers poll it)."""
        return catalog.live_hash(self)

    def resolve(self, prefix: str) -> str:
        """The full hash of the one saved version `prefix` (lowercase hex) starts."""
        return catalog.resolve(self, prefix)

    def version(self, digest: str) -> dict[str, str]:
        """A saved version's files."""
        return catalog.version(self, digest)

    def live(self) -> tuple[str, dict[str, str]] | None:
        return catalog.live(self)

    def prune(self, before: float, chunk: int = 1_000) -> int:
        """Delete what is older than `before` (see prune.prune); returns how many entries went."""
        return pruning.prune(self, before, chunk)
