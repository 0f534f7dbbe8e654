"""A small typed client for gateways: `Client` (blocking) and `AsyncClient` (asyncio).

    with Client("127.0.0.1:50051") as c:
        d = c.decide(["web_home"], "alice", attributes={"age": 30}, context={"page": "home"})
        c.record(d.spaces[0].propositions[0].id, "accepted")

Attribute values are Python values: str, int, float, bool, datetime.date, or a list/set of
strings. Errors are grpc.RpcError with the server's status code and message. Every call
carries its routing key (`x-offerd-route`: the contact id, or the proposition id for
`record`), so the same client talks to one server or to a cluster's balancer.

`retry_for=SECONDS` retries a call answered UNAVAILABLE (a server stopping or restarting, a
cluster's shard down), CANCELLED (a balancer passing on the reset of a call that a stopping
server refused) or a stream a balancer ended without its status, for that long, where it is safe: a dry run, a status report or a
profile (idempotent), a recorded decision of a known contact (given a request_id if it has
none, so that it counts once)."""
from __future__ import annotations

import asyncio
import datetime
import time as _time
import uuid

import grpc

from .cluster.routing import HEADER, proposition_id, shard_of
from .v1 import offerd_pb2 as pb
from .v1 import offerd_pb2_grpc as rpc
from .wire import to_value


def _values(attrs: dict | None) -> dict[str, pb.Value]:
    return {k: to_value(v) for k, v in (attrs or {}).items()}


def route(key: str | None) -> tuple:
    """The metadata that sends a call to the shard owning `key` (docs/cluster.md). Metadata
    is ASCII: a key with other characters is sent as 44 ASCII characters with its CRC-32."""
    if not key:
        return ()
    return ((HEADER, key if key.isascii() else proposition_id(bytes(16), key)),)


def _us(when: datetime.datetime | None) -> int:
    if when is None:
        return 0
    if when.tzinfo is None:
        raise ValueError("a time must carry a timezone")
    return int(round(when.timestamp() * 1e6))


def decide_request(spaces, contact_id=None, *, anonymous=False, attributes=None, context=None, max_offers=0,
                   categories=(), themes=(), dry_run=False, explain=False, time=None,
                   request_id="", explain_all=False) -> pb.DecideRequest:
    return pb.DecideRequest(spaces=list(spaces), contact=pb.Contact(id=contact_id or "", anonymous=anonymous),
                            attributes=_values(attributes), context=_values(context), max_offers=max_offers,
                            categories=list(categories), themes=list(themes), dry_run=dry_run,
                            explain=explain or explain_all, explain_all=explain_all, time_us=_us(time),
                            request_id=request_id)


RETRY_FIRST, RETRY_MOST = 0.05, 1.0  # seconds between retries: doubling from the first, up to the most
# a caller cancels a blocking call only by its deadline, an async one with CancelledError: a
# CANCELLED status came from the other side
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def _retryable(e: grpc.RpcError) -> bool:
    """UNAVAILABLE or CANCELLED, or a stream a balancer ended without its status (gRPC's
    UNKNOWN "Stream removed": the call may have been answered, so it is retried only where
    a retry is safe, as every retry here is)."""
    code = e.code()
    return code in RETRIED or code == grpc.StatusCode.UNKNOWN and (e.details() or "").startswith("Stream removed")


class _Base:
    def __init__(self, target: str, admin_token: str | None, timeout: float, retry_for: float = 0.0):
        self.target, self.timeout, self.retry_for = target, timeout, retry_for
        self._admin = (("authorization", f"Bearer {admin_token}"),) if admin_token else ()

    def _decide_call(self, spaces, contact_id, options) -> tuple[pb.DecideRequest, bool]:
        """The request, and whether it may be retried: a dry run, or a known contact's
        decision with a request id (one is made for it when retries are on)."""
        request = decide_request(spaces, contact_id, **options)
        if not self.retry_for:
            return request, False
        if request.dry_run:
            return request, True
        if not contact_id:
            return request, False  # nothing to key a retry by: it could count twice
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        return request, True

    def _waits(self):
        """Pauses between retries while `retry_for` lasts."""
        deadline, pause = _time.monotonic() + self.retry_for, RETRY_FIRST
        while _time.monotonic() + pause <= deadline:
            yield pause
            pause = min(pause * 2, RETRY_MOST)

    def _retried(self, call, safe: bool = True):
        """`call()` again after each pause while it is answered UNAVAILABLE or CANCELLED."""
        if not (safe and self.retry_for):
            return call()
        for pause in self._waits():
            try:
                return call()
            except grpc.RpcError as e:
                if not _retryable(e):
                    raise
            _time.sleep(pause)
        return call()

    async def _retried_async(self, call, safe: bool = True):
        if not (safe and self.retry_for):
            return await call()
        for pause in self._waits():
            try:
                return await call()
            except grpc.RpcError as e:
                if not _retryable(e):
                    raise
            await asyncio.sleep(pause)
        return await call()

    def _stubs(self, channel):
        self.channel = channel
        self.decisions = rpc.DecisionServiceStub(channel)
        self.profiles = rpc.ProfileServiceStub(channel)
        self.admin = rpc.AdminServiceStub(channel)


class Client(_Base):
    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0, options=(),
                 retry_for: float = 0.0):
        super().__init__(target, admin_token, timeout, retry_for)
        channel = (grpc.secure_channel(target, credentials, options) if credentials
                   else grpc.insecure_channel(target, options))
        self._stubs(channel)

    def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        request, safe = self._decide_call(spaces, contact_id, options)
        return self._retried(lambda: self.decisions.Decide(request, timeout=self.timeout, metadata=route(contact_id)),
                             safe)

    def decide_batch(self, requests: list[pb.DecideRequest]) -> list[pb.StreamReply]:
        """Several decisions in one call (build each with `decide_request`); one reply each,
        in order: `.decision` or `.error`."""
        return list(self.decisions.DecideBatch(pb.DecideBatchRequest(requests=requests), timeout=self.timeout).replies)

    def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        request = pb.RecordRequest(proposition=proposition, status=status, time_us=_us(time))
        return self._retried(lambda: self.decisions.Record(request, timeout=self.timeout,
                                                           metadata=route(proposition))).changed

    def schema(self) -> pb.SchemaResponse:
        """The live catalog's hash, timezone, and contact and context attributes with their
        types (as ODL writes them) and closed sets or ranges."""
        return self._retried(lambda: self.decisions.Schema(pb.SchemaRequest(), timeout=self.timeout))

    def upsert_profile(self, contact_id: str, attributes: dict) -> None:
        request = pb.Profile(contact_id=contact_id, attributes=_values(attributes))
        self._retried(lambda: self.profiles.Upsert(request, timeout=self.timeout, metadata=route(contact_id)))

    def get_profile(self, contact_id: str) -> pb.Profile:
        request = pb.GetProfileRequest(contact_id=contact_id)
        return self._retried(lambda: self.profiles.Get(request, timeout=self.timeout, metadata=route(contact_id)))

    def validate(self, files: dict[str, str]) -> pb.ValidateResponse:
        return self.admin.Validate(pb.CatalogFiles(files=files), metadata=self._admin, timeout=self.timeout)

    def deploy(self, files: dict[str, str], label: str = "") -> pb.DeployResponse:
        return self.admin.Deploy(pb.CatalogFiles(files=files, label=label), metadata=self._admin,
                                 timeout=max(self.timeout, 60))

    def versions(self) -> list[pb.Version]:
        return list(self.admin.ListVersions(pb.ListVersionsRequest(), metadata=self._admin,
                                            timeout=self.timeout).versions)

    def activate(self, digest: str) -> str:
        return self.admin.Activate(pb.ActivateRequest(hash=digest), metadata=self._admin, timeout=60).hash

    def simulate(self, spaces: list[str], population: bytes, *, version: str = "", time_us: int = 0,
                 context_json: str = "", ignore_caps: bool = False):
        """AdminService.Simulate: an iterator of replies, progress first, the report last."""
        return self.admin.Simulate(pb.SimulateRequest(hash=version, spaces=spaces, population=population,
                                                      time_us=time_us, context_json=context_json,
                                                      ignore_caps=ignore_caps), metadata=self._admin)

    def rollback(self) -> str:
        return self.admin.Rollback(pb.RollbackRequest(), metadata=self._admin, timeout=60).hash

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _shard_key(shard: int, shards: int) -> str:
    """A routing key of `shard`'s: a stream's own key, whichever contacts it carries."""
    return next(k for k in (f"shard-{shard}-{i}" for i in range(10_000)) if shard_of(k, shards) == shard)


async def _split_stream(decisions, requests, shards: int):
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
            async for reply in decisions.DecideStream(sent(k), metadata=route(_shard_key(k, shards))):
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


class AsyncClient(_Base):
    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0,
                 retry_for: float = 0.0):
        super().__init__(target, admin_token, timeout, retry_for)
        channel = (grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target))
        self._stubs(channel)

    async def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        request, safe = self._decide_call(spaces, contact_id, options)
        return await self._retried_async(
            lambda: self.decisions.Decide(request, timeout=self.timeout, metadata=route(contact_id)), safe)

    async def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        request = pb.RecordRequest(proposition=proposition, status=status, time_us=_us(time))
        reply = await self._retried_async(
            lambda: self.decisions.Record(request, timeout=self.timeout, metadata=route(proposition)))
        return reply.changed

    async def schema(self) -> pb.SchemaResponse:
        return await self._retried_async(lambda: self.decisions.Schema(pb.SchemaRequest(), timeout=self.timeout))

    def decide_stream(self, requests, shards: int = 0):
        """An async iterator of StreamReply for an (async) iterable of DecideRequest, in order.
        `shards`: the number of shards of the cluster behind the address; the requests are then
        split into one stream per shard, each routed to its shard, so that no shard passes
        messages on to another (about 1.8x the messages/s: docs/cluster.md)."""
        if shards <= 1:
            return self.decisions.DecideStream(requests)
        return _split_stream(self.decisions, requests, shards)

    def decide_batch_stream(self, batches):
        """An async iterator of DecideBatchResponse for an (async) iterable of DecideBatchRequest."""
        return self.decisions.DecideBatchStream(batches)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
