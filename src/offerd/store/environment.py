"""The LMDB environment: its named databases, its map size, and the format stamp that keeps
one offerd from misreading another's store."""
from __future__ import annotations

import os

import lmdb

from .errors import StoreError

DATABASES = ("profiles", "history", "props", "counters", "events", "versions", "meta")
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file grows only as data does
FORMAT = b"2"  # the layout of keys and values (docs/storage.md), stamped in `meta` at creation
# Formats this offerd reads and stamps with its own at open. 2 keeps fine counters only for
# tracked pairs: an offerd reading format 1 would count the others' windows from counters
# that no longer move, so a store once opened here is refused by it.
UPGRADES = (b"1",)


def open_env(path: str, durability: str, map_size: int) -> tuple[lmdb.Environment, dict]:
    """The environment at `path` (made if new) and its databases by name, its format checked."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the LMDB store's folder {path}: {e.strerror or e}") from None
    try:
        env = lmdb.open(path, map_size=map_size, max_dbs=len(DATABASES), subdir=True,
                        sync=durability == "sync", metasync=durability == "sync",
                        readahead=False, max_readers=1024)
        env.reader_check()  # readers left by processes that died
        db = {name: env.open_db(name.encode()) for name in DATABASES}
        _check_format(env, db["meta"], path)
    except lmdb.Error as e:
        raise StoreError(f"cannot open the LMDB store at {path}: {e}") from None
    return env, db


def _check_format(env, meta, path: str) -> None:
    """Refuse a store laid out by another version of offerd (its keys would be misread and
    its writes would corrupt it); stamp a new one (or one from before stamps, or of a format
    in UPGRADES, which this one reads as its own)."""
    with env.begin() as txn:
        got = txn.get(b"format", db=meta)
    if got is None or got in UPGRADES:
        with env.begin(write=True) as txn:
            now = txn.get(b"format", db=meta)
            if now is None or now in UPGRADES:
                txn.put(b"format", FORMAT, db=meta)
    elif got != FORMAT:
        env.close()
        newer = got.isdigit() and int(got) > int(FORMAT)
        raise StoreError(f"the store at {path} is in format {got.decode(errors='replace')!r}, "
                         f"and this offerd reads format {FORMAT.decode()}: " + (
                             "it was written by a newer offerd; run that one, or restore a backup taken "
                             "before the upgrade" if newer else "it is not a store this offerd can read"))
