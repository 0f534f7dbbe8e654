"""The store stage: the only code in offerd that touches LMDB. What the rest of offerd uses
of it is named here; its modules are its own."""
from .keys import Contact
from .lmdb_store import (DEFAULT_MAP_SIZE, Corrupt, ImpossibleMove, NoEarlierVersion, NotFound, Store,
                         StoredHistory, StoreError, StoreFull, copy_store)
from .records import Indexer

__all__ = ["DEFAULT_MAP_SIZE", "Contact", "Corrupt", "ImpossibleMove", "Indexer", "NoEarlierVersion",
           "NotFound", "Store", "StoreError", "StoreFull", "StoredHistory", "copy_store"]
