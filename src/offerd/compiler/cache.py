"""Compiled spaces cached by (catalog content hash, space name)."""
from __future__ import annotations

import threading
from collections import OrderedDict

from ..lang.catalog import Catalog
from .space import CompiledSpace


class SpaceCache:
    def __init__(self, max_entries: int = 256):
        self._entries: OrderedDict[tuple[str, str], CompiledSpace] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self.max_entries = max_entries
        self.compiled = 0  # how many spaces this cache has compiled (tests read it)

    def get(self, catalog: Catalog, space: str) -> CompiledSpace:
        key = (catalog.hash, space)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one compilation per key, even when many threads ask at once
            with self._lock:
                hit = self._entries.get(key)
            if hit is not None:
                return hit
            compiled = CompiledSpace(catalog, space)
            with self._lock:
                self.compiled += 1
                self._entries[key] = compiled
                self._building.pop(key, None)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return compiled


default_cache = SpaceCache()
