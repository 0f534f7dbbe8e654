"""Catalog versions: the saved catalogs by content hash, and the stack of activated ones
(newest last) that says which is live."""
from __future__ import annotations

import json
import struct
import time

from ..domain import catalog_hash
from .errors import NoEarlierVersion, NotFound


def save_version(store, files: dict[str, str], label: str) -> str:
    digest = catalog_hash(files)
    value = json.dumps({"files": files, "label": label, "created": time.time()}).encode()
    db = store.db["versions"]
    store.submit(lambda txn: txn.put(digest.encode(), value, db=db, overwrite=False)).result()
    return digest


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


def _made_live(txn, meta, when: float | None) -> None:
    """When the live version changed (wall µs; 0: the catalog a server started with, older
    than any change made through the API)."""
    txn.put(b"live_since", _SINCE.pack(0 if when == 0 else round((when or time.time()) * 1e6)), db=meta)


def live_since(store) -> int:
    store.check_process()
    with store.env.begin() as txn:
        raw = txn.get(b"live_since", db=store.db["meta"])
    return _SINCE.unpack(raw)[0] if raw else 0


def live_stack(txn, meta) -> list[str]:
    raw = txn.get(b"live", db=meta)
    return json.loads(raw) if raw else []


def activate(store, digest: str, when: float | None = None) -> None:
    db = store.db

    def op(txn):
        if txn.get(digest.encode(), db=db["versions"]) is None:
            raise NotFound(f"no catalog version {digest}")
        stack = live_stack(txn, db["meta"])
        if not stack or stack[-1] != digest:
            stack.append(digest)
        txn.put(b"live", json.dumps(stack[-100:]).encode(), db=db["meta"])
        _made_live(txn, db["meta"], when)
    store.submit(op).result()


def rollback(store) -> str:
    meta = store.db["meta"]

    def op(txn):
        stack = live_stack(txn, meta)
        if len(stack) < 2:
            raise NoEarlierVersion("nothing to roll back to: no version was live before this one")
        stack.pop()
        txn.put(b"live", json.dumps(stack).encode(), db=meta)
        _made_live(txn, meta, None)
        return stack[-1]
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
