"""The store's errors: each says what failed in words a person can act on."""


class StoreError(Exception):
    """A store failure with a message a person can act on."""


class StoreFull(StoreError):
    pass


class Corrupt(StoreError):
    pass


class NotFound(StoreError):
    pass


class Ambiguous(StoreError):
    """A hash prefix that more than one saved version starts with."""


class ImpossibleMove(StoreError):
    pass


class NoEarlierVersion(StoreError):
    """A rollback with no version live before the current one."""
