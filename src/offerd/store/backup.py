"""Backups: a consistent, compacted copy of a store taken while servers go on writing."""
from __future__ import annotations

import contextlib
import os

import lmdb

from .environment import DATABASES, DEFAULT_MAP_SIZE
from .errors import StoreError


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
