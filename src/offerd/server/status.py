"""Refusals as gRPC statuses: which status each error is, and a message cut to fit the
header it travels in."""
from __future__ import annotations

import grpc

from ..cluster.forward import Relayed
from ..engine import BadRequest, ImpossibleMove, NoCatalog, NotFound, UnknownSpace
from ..lang.values import InputError
from ..store import Ambiguous, Corrupt, NoEarlierVersion, StoreError, StoreFull

MESSAGE_BYTES = 4000  # a status message's size on the wire, at most

CODES = [  # most specific first
    ((BadRequest, InputError, ValueError, Ambiguous), grpc.StatusCode.INVALID_ARGUMENT),
    ((UnknownSpace, NotFound), grpc.StatusCode.NOT_FOUND),
    ((ImpossibleMove, NoCatalog, NoEarlierVersion), grpc.StatusCode.FAILED_PRECONDITION),
    ((StoreFull,), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ((Corrupt,), grpc.StatusCode.DATA_LOSS),
    ((StoreError,), grpc.StatusCode.UNAVAILABLE),
]


def code_of(e: Exception) -> grpc.StatusCode:
    if isinstance(e, Relayed):  # the owning shard's own answer
        return e.code
    for kinds, code in CODES:
        if isinstance(e, kinds):
            return code
    return grpc.StatusCode.INTERNAL


def fit(message: str) -> str:
    """A status message travels percent-encoded in a header, and clients refuse headers
    past 8-16 KiB: one that echoes a huge input (a 1 MiB id, ten thousand names) is cut."""
    size = 0
    for i, ch in enumerate(message):
        size += 1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8", "surrogatepass"))
        if size > MESSAGE_BYTES:
            return f"{message[:i]}... ({len(message) - i} more characters)"
    return message


MIN_PREFIX = 4  # hex digits: fewer would name most versions of a busy store ambiguously


def version_hash(digest: str) -> str:
    """A version's hash, or a prefix of it, as the store wants it (lowercase; the store's
    `resolve` finds the whole hash); anything else names no version (and an empty key would
    be an LMDB error, not a NOT_FOUND)."""
    text = digest.lower()
    if not MIN_PREFIX <= len(text) <= 64 or not all(c in "0123456789abcdef" for c in text):
        raise NotFound(f"no catalog version {digest!r}: a version is named by its 64 hex digits, or a prefix "
                       f"of at least {MIN_PREFIX} of them")
    return text
