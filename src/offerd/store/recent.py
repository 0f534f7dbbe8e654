"""The process's memory of contacts decided recently: each one's decoded profile and history
index, reused while the stored profile's bytes and the contact's history stamp are unchanged,
so deciding for a contact again reads two keys instead of walking and decoding its history."""
from __future__ import annotations

DEFAULT_SIZE = 10_000  # contacts; about 5.5 KiB each with 50 propositions, profile included


class Seen:
    """What a read of one contact left: its profile (the stored bytes and their decoding) and
    its history index, valid for reads from `since` on (None: all of it) while the contact's
    stamp is `stamp`. Never changed in place: a newer state replaces the whole entry."""

    __slots__ = ("raw", "attrs", "stamp", "since", "indexer", "index", "size")

    def __init__(self, raw, attrs, stamp, since, indexer, index, size):
        self.raw, self.attrs, self.stamp, self.since = raw, attrs, stamp, since
        self.indexer, self.index, self.size = indexer, index, size  # size: propositions read

    def covers(self, stamp: bytes | None, since: float | None, indexer) -> bool:
        """Whether the index answers a read from `since` on, the stamp now being `stamp`. A
        read from further back holds more propositions; only `proposed` counts ignore the
        extra ones (their windows start at or after `since`): a status event of an older
        proposition may fall inside a window. (Status counts read all history anyway.)"""
        if stamp is None or stamp != self.stamp or indexer is not self.indexer or self.index is None:
            return False
        return self.since is None or (since is not None and self.since <= since and indexer.proposed_only)


class Recent:
    """Contact key → Seen, at most `size` of them, the least recently read forgotten first.
    Shared by the threads of one process (the writer refreshes it after a commit); each
    operation is one dict call, atomic under the GIL."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self.hits = 0  # history reads answered from memory (tests)
        self._seen: dict[bytes, Seen] = {}

    def get(self, key: bytes) -> Seen | None:
        return self._seen.get(key)

    def put(self, key: bytes, seen: Seen) -> None:
        if self.size <= 0:
            return
        entries = self._seen
        entries.pop(key, None)  # to the end: the most recent
        entries[key] = seen
        while len(entries) > self.size:
            try:
                entries.pop(next(iter(entries)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                break

    def clear(self) -> None:
        self._seen.clear()
