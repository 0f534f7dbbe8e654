"""The store stage: the only code in offerd that touches LMDB. What the rest of offerd uses
of it is named here; its modules are its own."""
from .backup import copy_store
from .environment import DEFAULT_MAP_SIZE
from .errors import Ambiguous, Corrupt, ImpossibleMove, NoEarlierVersion, NotFound, StoreError, StoreFull
from .history import StoredHistory
from .keys import Contact
from .records import Indexer
from .store import Store

__all__ = ["DEFAULT_MAP_SIZE", "Ambiguous", "Contact", "Corrupt", "ImpossibleMove", "Indexer", "NoEarlierVersion",
           "NotFound", "Store", "StoreError", "StoreFull", "StoredHistory", "copy_store"]
