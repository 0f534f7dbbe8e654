"""A stream of decisions split over a cluster's shards, one stream each, for
`AsyncClient.decide_stream(requests, shards=N)`: no shard passes messages on to another."""
from __future__ import annotations

import asyncio

from .routing import HEADER, shard_of


def _shard_key(shard: int, shards: int) -> str:
    """A routing key of `shard`'s (ASCII): a stream's own key, whichever contacts it carries."""
    return next(k for k in (f"shard-{shard}-{i}" for i in range(10_000)) if shard_of(k, shards) == shard)


async def split_stream(decisions, requests, shards: int):
    """One DecideStream per shard; each request goes to its contact's (requests without a
    contact id to the first), and the answers come back in the order of the requests. A
    failure of any stream, or of the requests' iterator, ends it with that error."""
    outs = [asyncio.Queue(256) for _ in range(shards)]  # requests to each shard's stream; None ends it
    order: asyncio.Queue = asyncio.Queue()  # the shard answering each request, in order; None: no more
    replies = [asyncio.Queue() for _ in range(shards)]
    counts = [0] * shards  # requests sent to each shard's stream
    failed = asyncio.get_running_loop().create_future()  # the first failure of any part

    def fail(e: BaseException) -> None:
        if not failed.done():
            failed.set_exception(e)

    async def sent(k):
        while (r := await outs[k].get()) is not None:
            yield r

    async def receive(k):
        try:
            answered = 0
            async for reply in decisions.DecideStream(sent(k), metadata=((HEADER, _shard_key(k, shards)),)):
                replies[k].put_nowait(reply)
                answered += 1
            if answered < counts[k]:  # it ends only once every request was sent: `counts` is final
                fail(RuntimeError(f"the stream to shard {k} ended before answering every request"))
        except Exception as e:
            fail(e)

    async def feed():
        try:
            if hasattr(requests, "__aiter__"):
                async for r in requests:
                    await put(r)
            else:
                for r in requests:
                    await put(r)
        except Exception as e:  # the caller's iterator: not a quiet end
            fail(e)
        finally:
            for q in outs:
                await q.put(None)
            order.put_nowait(None)

    async def put(r):
        k = shard_of(r.contact.id, shards) if r.contact.id else 0
        order.put_nowait(k)
        counts[k] += 1
        await outs[k].put(r)

    async def first(queue: asyncio.Queue):
        """The next item of `queue`, or the failure if it comes first."""
        if not queue.empty():
            return queue.get_nowait()
        tasks = [asyncio.ensure_future(queue.get())]
        done, pending = await asyncio.wait(tasks + [failed], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t not in done:
                t.cancel()
        if failed in done and not any(t in done for t in tasks):
            failed.result()  # raises
        return next(t for t in tasks if t in done).result()

    tasks = [asyncio.ensure_future(receive(k)) for k in range(shards)] + [asyncio.ensure_future(feed())]
    try:
        while (k := await first(order)) is not None:
            yield await first(replies[k])
        if failed.done():  # the iterator failed after its last request was answered
            failed.result()
    finally:
        for t in tasks:
            t.cancel()
        if not failed.done():
            failed.cancel()
