"""Catalog versions: the saved catalogs by content hash, and the stack of activated ones
(newest last) that says which is live."""
from __future__ import annotations

import json
import struct
import time

from ..domain import catalog_hash
from .errors import Ambiguous, NoEarlierVersion, NotFound


def save_version(store, files: dict[str, str], label: str) -> str:
    digest = catalog_hash(files)
    value = json.dumps({"files": files, "label": label, "created": time.time()}).encode()
    db = store.db["versions"]
    store.submit(lambda txn: txn.put(digest.encode(), value, db=db, overwrite=False)).result()
    return digest


def resolve(store, prefix: str) -> str:
    """The full hash of the one saved version whose hash starts with `prefix` (lowercase hex);
    NotFound if none does, Ambiguous (naming a few) if several do."""
    store.check_process()
    key, found = prefix.encode(), []
    with store.env.begin() as txn:
        cursor = txn.cursor(db=store.db["versions"])
        if cursor.set_range(key):
            for k in cursor.iternext(values=False):
                if not k.startswith(key) or len(found) == 6:
                    break
                found.append(k.decode())
    if not found:
        raise NotFound(f"no catalog version {prefix}")
    if len(found) > 1:
        shown = ", ".join(h[:max(12, len(prefix) + 4)] for h in found[:5]) + (", ..." if len(found) > 5 else "")
        raise Ambiguous(f"catalog version {prefix} is ambiguous: it starts {shown}; give more digits")
    return found[0]


def versions(store) -> list[dict]:
    store.check_process()
    with store.env.begin() as txn:
        live = live_stack(txn, store.db["meta"])
        out = []
        for key, value in txn.cursor(db=store.db["versions"]):
            meta = json.loads(value)
            out.append({"hash": key.decode(), "label": meta["label"], "created": meta["created"],
                        "files": sorted(meta["files"]), "live": bool(live) and live[-1] == key.decode()})
    return sorted(out, key=lambda v: v["created"])


_SINCE = struct.Struct(">Q")


def _stamp(when: float | None) -> int:
    """When a version is made live, in wall µs: now, or `when` (0: the catalog a server
    started with, older than any change made through the API)."""
    return 0 if when == 0 else round((time.time() if when is None else when) * 1e6)


def _since(txn, meta) -> int:
    raw = txn.get(b"live_since", db=meta)
    return _SINCE.unpack(raw)[0] if raw else 0


def live_since(store) -> int:
    return live_state(store)[1]


def live_state(store) -> tuple[str | None, int]:
    """The live version's hash and when it was made live (µs), read together."""
    store.check_process()
    with store.env.begin() as txn:
        stack = live_stack(txn, store.db["meta"])
        return (stack[-1] if stack else None), _since(txn, store.db["meta"])


def live_stack(txn, meta) -> list[str]:
    raw = txn.get(b"live", db=meta)
    return json.loads(raw) if raw else []


def activate(store, digest: str, when: float | None = None, if_newer: bool = False) -> int | None:
    """`if_newer`: only if the live version was made live before `when` (a change another
    shard made, passed on). Returns when it was made live (µs), or None if it was not."""
    db, stamp = store.db, _stamp(when)

    def op(txn):
        if txn.get(digest.encode(), db=db["versions"]) is None:
            raise NotFound(f"no catalog version {digest}")
        if if_newer and _since(txn, db["meta"]) >= stamp:
            return None
        stack = live_stack(txn, db["meta"])
        if not stack or stack[-1] != digest:
            stack.append(digest)
        txn.put(b"live", json.dumps(stack[-100:]).encode(), db=db["meta"])
        txn.put(b"live_since", _SINCE.pack(stamp), db=db["meta"])
        return stamp
    return store.submit(op).result()


def rollback(store) -> tuple[str, int]:
    """The version live before the current one made live again: its hash, and when (µs)."""
    meta, stamp = store.db["meta"], _stamp(None)

    def op(txn):
        stack = live_stack(txn, meta)
        if len(stack) < 2:
            raise NoEarlierVersion("nothing to roll back to: no version was live before this one")
        stack.pop()
        txn.put(b"live", json.dumps(stack).encode(), db=meta)
        txn.put(b"live_since", _SINCE.pack(stamp), db=meta)
        return stack[-1], stamp
    return store.submit(op).result()


def live_hash(store) -> str | None:
    store.check_process()
    with store.env.begin() as txn:
        stack = live_stack(txn, store.db["meta"])
    return stack[-1] if stack else None


def version(store, digest: str) -> dict[str, str]:
    store.check_process()
    with store.env.begin() as txn:
        raw = txn.get(digest.encode(), db=store.db["versions"])
    if raw is None:
        raise NotFound(f"no catalog version {digest}")
    return json.loads(raw)["files"]


def live(store) -> tuple[str, dict[str, str]] | None:
    store.check_process()
    with store.env.begin() as txn:
        stack = live_stack(txn, store.db["meta"])
        if not stack:
            return None
        return stack[-1], json.loads(txn.get(stack[-1].encode(), db=store.db["versions"]))["files"]
