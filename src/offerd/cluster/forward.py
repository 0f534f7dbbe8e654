"""Calls a shard passes to the shard that owns them: a stream's or a batch's messages for
other contacts, a call the balancer sent astray (its owner down), and admin calls, which
reach every shard."""
from __future__ import annotations

import asyncio
import collections

import grpc

from ..v1 import offerd_pb2 as pb
from ..v1 import offerd_pb2_grpc as rpc
from .routing import FORWARDED, HEADER, ID_LENGTH
from .topology import Topology

TIMEOUT = 10.0  # seconds a forwarded call may take
SINCE = "x-offerd-live-since"  # on a change of the live version passed on: when it was made live (µs)
# a shard that comes back is reached again within a second (gRPC's default backoff grows to
# two minutes, which would keep its contacts refused long after it is up)
RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
             ("grpc.max_reconnect_backoff_ms", 1000)]
ADMIN_TIMEOUT = 120.0  # a deploy compiles the catalog on every shard


class Relayed(Exception):
    """The owner's refusal, or the owner unreachable: its gRPC status, passed on."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _Relay:
    """One long-lived DecideStream to another shard, carrying the messages of every stream
    and batch here that it owns: a message passed on costs a stream message, not a call.
    Answers come back in the order sent. Each stream has its own queue and waiting list, so
    nothing of a broken stream reaches the next: when one breaks, what waits on it fails
    with UNAVAILABLE and the next message opens a new one."""

    def __init__(self, peers: "Peers", shard: int):
        self.peers, self.shard = peers, shard
        self.queue: asyncio.Queue | None = None
        self.waiting: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None

    async def decide(self, request) -> pb.StreamReply:
        if self.task is None or self.task.done():
            self.queue, self.waiting = asyncio.Queue(), collections.deque()
            self.task = asyncio.ensure_future(self._run(self.queue, self.waiting))
        answer = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)  # with the put, in one step: answers match messages in order
        self.queue.put_nowait(request)
        try:
            return await asyncio.wait_for(answer, TIMEOUT)  # its late answer is skipped: the order holds
        except TimeoutError:
            raise Relayed(grpc.StatusCode.DEADLINE_EXCEEDED, f"shard {self.shard} did not answer within "
                                                             f"{TIMEOUT:g} s") from None

    async def _run(self, queue: asyncio.Queue, waiting: collections.deque) -> None:
        async def messages():
            while True:
                yield await queue.get()
        stub = self.peers._stub(self.shard)[0]
        call = stub.DecideStream(messages(), metadata=((FORWARDED, self.peers.topology.token),))
        broken = Relayed(grpc.StatusCode.UNAVAILABLE, "the stream to it ended")
        try:
            async for reply in call:
                if not waiting:  # more answers than messages: nothing can be matched any more
                    broken = Relayed(grpc.StatusCode.INTERNAL, "it answered a message it was not sent")
                    break
                answer = waiting.popleft()
                if not answer.done():  # its caller may have gone
                    answer.set_result(reply)
        except grpc.aio.AioRpcError as e:
            broken = Relayed(e.code(), e.details() or e.code().name)
        except asyncio.CancelledError:
            broken = Relayed(grpc.StatusCode.UNAVAILABLE, "this shard is stopping")
        finally:
            call.cancel()  # also ends the task that feeds it from `queue`
        address = self.peers.topology.shards[self.shard]
        if broken.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            broken = Relayed(grpc.StatusCode.UNAVAILABLE, f"shard {self.shard} ({address}) is unreachable: {broken}")
        while waiting:
            answer = waiting.popleft()
            if not answer.done():
                answer.set_exception(broken)


class Peers:
    """Channels to the other shards, opened on first use (in each worker process)."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self._stubs: dict[int, tuple] = {}
        self._channels: list = []
        self._relays: dict[int, _Relay] = {}

    async def relayed(self, shard: int, request) -> pb.StreamReply:
        """A stream's or a batch's message decided by the shard that owns it: its answer, or
        its refusal in its place (Relayed if the owner cannot be reached)."""
        relay = self._relays.get(shard)
        if relay is None:
            relay = self._relays[shard] = _Relay(self, shard)
        return await relay.decide(request)

    def passed(self, context) -> bool:
        """Whether a call came from another shard (answered here, never passed on again): it
        carries the cluster's token, which gateways do not know."""
        return any(k == FORWARDED and v == self.topology.token for k, v in context.invocation_metadata() or ())

    def since(self, context) -> float | None:
        """On a change of the live version another shard passed on, when it was made live
        there (s), which it takes too; None on any other call."""
        if not self.passed(context):
            return None
        sent = next((v for k, v in context.invocation_metadata() if k == SINCE), None)
        return int(sent) / 1e6 if sent is not None and sent.isdigit() else None

    def owner(self, key: str) -> int | None:
        """The shard that owns a routing key, or None when it is this one."""
        shard = self.topology.owner(key)
        return None if shard == self.topology.me else shard

    def record_owner(self, proposition: str) -> int | None:
        """A proposition id routes like its contact; an id without its routing digits is
        this shard's to answer (NOT_FOUND, most likely)."""
        return self.owner(proposition) if len(proposition) == ID_LENGTH else None

    def _stub(self, shard: int):
        got = self._stubs.get(shard)
        if got is None:
            channel = grpc.aio.insecure_channel(self.topology.shards[shard], options=RECONNECT)
            self._channels.append(channel)
            got = self._stubs[shard] = (rpc.DecisionServiceStub(channel), rpc.ProfileServiceStub(channel),
                                        rpc.AdminServiceStub(channel))
        return got

    async def call(self, shard: int, service: int, method: str, request, key: str = "", metadata=(),
                   timeout: float = TIMEOUT):
        """`method` of the owner's decisions (0), profiles (1) or admin (2) service."""
        md = ((FORWARDED, self.topology.token),) + ((HEADER, key),) * bool(key) + tuple(metadata)
        try:
            return await getattr(self._stub(shard)[service], method)(request, metadata=md, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            address = self.topology.shards[shard]
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Relayed(e.code(), f"shard {shard} ({address}) is unreachable: {e.details()}") from None
            raise Relayed(e.code(), e.details() or e.code().name) from None

    async def make_live(self, digest: str, since: int, files: dict[str, str], label: str, metadata) -> list[str]:
        """Every other shard's live version made `digest`, made live here at `since` (µs);
        what failed, one line per shard (a shard down catches up when it is back: catchup.py)."""
        failed = []
        for shard, _ in self.topology.peers():
            why = await self.make_live_on(shard, digest, since, files, label, metadata)
            if why:
                failed.append(why)
        return failed

    async def make_live_on(self, shard: int, digest: str, since: int, files: dict[str, str], label: str,
                           metadata) -> str | None:
        """`shard`'s live version made `digest` (deployed there first if it lacks it), unless
        what is live there was made live after `since`; None, or why not."""
        metadata = ((SINCE, str(since)),) + tuple(metadata)
        try:
            try:
                await self.call(shard, 2, "Activate", pb.ActivateRequest(hash=digest), metadata=metadata,
                                timeout=ADMIN_TIMEOUT)
            except Relayed as e:
                if e.code != grpc.StatusCode.NOT_FOUND:
                    raise
                await self.call(shard, 2, "Deploy", pb.CatalogFiles(files=files, label=label),
                                metadata=metadata, timeout=ADMIN_TIMEOUT)
        except Relayed as e:
            return str(e) if str(e).startswith(f"shard {shard} ") else f"shard {shard}: {e}"
        return None

    async def close(self) -> None:
        tasks = [r.task for r in self._relays.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._relays.clear()
        for channel in self._channels:
            await channel.close()
        self._stubs.clear()
        self._channels.clear()


