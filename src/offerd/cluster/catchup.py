"""A shard that missed a change of the live version catches up: each shard compares its
live version with the others' every few seconds, and the one made live last (through the
API; a catalog given at start is older than any) is made live on those that differ. A
push carries when it was made live, which the receiver takes as its own, and applies only
over an older one: a push that arrives late never undoes a newer change."""
from __future__ import annotations

import asyncio
import logging

from ..v1 import offerd_pb2 as pb
from .forward import Peers, Relayed

log = logging.getLogger("offerd.cluster")
EVERY = 2.0  # seconds between two comparisons


async def catch_up(peers: Peers, store, metadata=()) -> list[int]:
    """The shards whose live version differs from this shard's, and was made live before
    it, made to agree with it. Returns them."""
    mine, since = await asyncio.to_thread(store.live_state)
    if mine is None:
        return []
    behind = []
    for shard, _ in peers.topology.peers():
        try:
            got = await peers.call(shard, 2, "ListVersions", pb.ListVersionsRequest(), metadata=metadata,
                                   timeout=5)
        except Relayed:
            continue  # down: it catches up when it is back
        theirs = next((v.hash for v in got.versions if v.live), None)
        if theirs != mine and got.live_since_us < since:
            behind.append(shard)
    for shard in behind:
        files = await asyncio.to_thread(store.version, mine)
        label = next((v["label"] for v in await asyncio.to_thread(store.versions) if v["hash"] == mine), "")
        why = await peers.make_live_on(shard, mine, since, files, label, metadata)
        if why:
            log.warning("shard %d missed version %s and cannot be given it yet: %s", shard, mine[:12], why)
        else:
            log.info("shard %d had an older version live: version %s is live there now", shard, mine[:12])
    return behind


async def catch_up_forever(peers: Peers, store, metadata=(), every: float = EVERY) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await catch_up(peers, store, metadata)
        except Exception:  # a store error, a peer answering nonsense: tried again next time
            log.exception("cannot compare live versions with the other shards")
