"""The offerd.v1 servicers: each call mapped onto the engine or the store, every refusal
onto a gRPC status with a message a person can act on."""
from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time

import grpc
from google.protobuf.message import DecodeError

from .. import lang
from ..cluster.forward import Peers, Relayed
from ..engine import BadRequest, Engine, NotFound
from ..lang.diagnostics import CatalogError
from ..lang.values import InputError, check_attributes
from ..store import Contact, Store
from ..v1 import offerd_pb2 as pb
from ..v1 import offerd_pb2_grpc as rpc
from ..wire import to_value
from . import convert
from .guard import NotAMessage, refuse
from .metrics import DECISIONS, ERRORS, LATENCY, PROPOSED, REPORTS
from .simulation import simulate_rpc
from .status import code_of, fit, version_hash

log = logging.getLogger("offerd.server")
STREAM_DEPTH = 64  # requests of one stream decided at once; answers stay in order
MAX_BATCH = 1000  # requests in one DecideBatchRequest

def mapped(fn):
    """Turn the engine's and store's exceptions into gRPC statuses; anything else is a bug:
    logged with its traceback, answered INTERNAL, and the server goes on."""
    @functools.wraps(fn)
    async def call(self, request, context):
        if request.__class__ is NotAMessage:  # guard.py: here, not in a wrapper of its own (a frame less)
            await refuse(context, request)
        try:
            return await fn(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except CatalogError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(str(e)))
        except Exception as e:
            code = code_of(e)
            ERRORS.labels(fn.__name__, code.name).inc()
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", fn.__name__)
                await context.abort(code, fit(f"internal error: {e!r}"))
            await context.abort(code, fit(str(e)))
    call.refuses_not_a_message = True  # guard.py: no wrapper needed
    return call


DRY_RUNS, RECORDED, REPLAYED = DECISIONS.labels("dry_run"), DECISIONS.labels("recorded"), DECISIONS.labels("replayed")
_proposed: dict[str, object] = {}  # PROPOSED's child per space: labels() costs a lock and a lookup


async def _decide(engine: Engine, request) -> pb.DecideResponse:
    t = time.perf_counter()
    req = convert.request(request)
    d = await engine.decide_async(req)
    LATENCY.observe(time.perf_counter() - t)
    counted(req, d)
    return convert.response(d, request.request_id)


def counted(req, d) -> None:
    """A decision answered, counted (tracing.py's decide counts the same way)."""
    if d.replayed:  # a retry's first answer, given again: counted once, when it was decided
        REPLAYED.inc()
        return
    (DRY_RUNS if req.dry_run else RECORDED).inc()
    for r in d.spaces:
        if r.proposals:
            counter = _proposed.get(r.space)
            if counter is None:
                counter = _proposed[r.space] = PROPOSED.labels(r.space)
            counter.inc(len(r.proposals))


def _contact(contact_id: str) -> Contact:
    contact = Contact(contact_id)
    try:
        contact.key()
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return contact


class DecisionService(rpc.DecisionServiceServicer):
    """In a cluster (`peers`), a request for a contact another shard owns is passed on to it,
    unless another shard passed it here: a balancer sends whole streams to one shard, and
    a call for a shard that is down to another."""

    def __init__(self, engine: Engine, peers: Peers | None = None):
        self.engine, self.peers = engine, peers
        self.decide_one = _decide  # tracing.stages puts its own here
        self._relays_in: set = set()  # readers of the streams other shards pass messages on over

    def end_relays(self) -> None:
        """At a stop: the streams of other shards stop being read; what was read is answered
        and the streams end, so the stop does not wait out its grace for them."""
        for reader in self._relays_in:
            reader.cancel()

    def _owner(self, request, passed: bool) -> int | None:
        """In a cluster, the shard owning a request, if it is another one."""
        if self.peers is None or passed or not request.contact.id:
            return None
        return self.peers.owner(request.contact.id)

    @mapped
    async def Decide(self, request, context):
        owner = self.peers and self._owner(request, self.peers.passed(context))
        if owner is not None:
            return await self.peers.call(owner, 0, "Decide", request, request.contact.id)
        return await self.decide_one(self.engine, request)

    async def DecideStream(self, request_iterator, context):
        """Requests are decided concurrently (up to STREAM_DEPTH at a time, so their writes
        share group commits) and answered in the order they came; a refused one gets a
        StreamError in its place and the stream goes on. A message that is not a DecideRequest
        at all ends the stream, after the answers to those before it."""
        pending: asyncio.Queue = asyncio.Queue(STREAM_DEPTH)
        read_, broken = [0], []
        passed = self.peers is not None and self.peers.passed(context)

        gone = [False]  # the stream ended first (a client that left): nothing reads `pending` any more

        async def read():
            try:
                async for request in request_iterator:
                    read_[0] += 1
                    await pending.put((request, asyncio.ensure_future(self._one(request, "DecideStream", passed))))
            except DecodeError as e:  # not ending quietly: the client would miss the answers it is owed
                broken.append(e)
            finally:
                # The end, unless nothing reads it (a put into a full queue would never return).
                # Cancelled by end_relays at a stop, the reader still ends the stream: answered.
                if not gone[0]:
                    await pending.put(None)

        reader = asyncio.ensure_future(read())
        if passed:
            self._relays_in.add(reader)
        try:
            while (item := await pending.get()) is not None:
                yield await item[1]
        finally:
            gone[0] = True
            reader.cancel()
            self._relays_in.discard(reader)
        if broken:
            ERRORS.labels("DecideStream", "INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(
                f"offerd.v1.DecisionService/DecideStream: message #{read_[0] + 1} of the stream is not a valid "
                f"DecideRequest message ({broken[0]}); the stream ends there"))

    async def _batch(self, batch: pb.DecideBatchRequest, method: str, passed: bool) -> pb.DecideBatchResponse:
        if len(batch.requests) > MAX_BATCH:
            raise BadRequest(f"a batch holds at most {MAX_BATCH} requests, not {len(batch.requests)}: split it")
        # dry runs write nothing, so nothing is gained by running them as tasks (whose cost
        # was a tenth of a batch's); recorded ones run at once so that their writes share commits
        replies: list = [None] * len(batch.requests)
        recorded = []
        for i, r in enumerate(batch.requests):
            if r.dry_run and (self.peers is None or passed):
                replies[i] = await self._one(r, method, passed)
            else:
                recorded.append(i)
        if recorded:
            done = await asyncio.gather(*(self._one(batch.requests[i], method, passed) for i in recorded))
            for i, reply in zip(recorded, done):
                replies[i] = reply
        return pb.DecideBatchResponse(replies=replies)

    @mapped
    async def DecideBatch(self, request, context):
        """Every request decided at once (their writes share commits), answered in order."""
        return await self._batch(request, "DecideBatch", self.peers is not None and self.peers.passed(context))

    async def DecideBatchStream(self, request_iterator, context):
        """Batches decided one after the other, each as DecideBatch; an oversized batch ends
        the stream with INVALID_ARGUMENT, as does a message that is not a DecideBatchRequest."""
        n = 0
        passed = self.peers is not None and self.peers.passed(context)
        try:
            async for batch in request_iterator:
                n += 1
                try:
                    yield await self._batch(batch, "DecideBatchStream", passed)
                except BadRequest as e:
                    ERRORS.labels("DecideBatchStream", "INVALID_ARGUMENT").inc()
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(str(e)))
        except DecodeError as e:
            ERRORS.labels("DecideBatchStream", "INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(
                f"offerd.v1.DecisionService/DecideBatchStream: message #{n + 1} of the stream is not a valid "
                f"DecideBatchRequest message ({e}); the stream ends there"))

    async def _one(self, request, method: str, passed: bool = False) -> pb.StreamReply:
        """One request of a stream or a batch: its decision, or its error in its place
        (counted and logged under `method`, the call it came in)."""
        try:
            owner = self.peers and self._owner(request, passed)
            if owner is not None:
                return await self.peers.relayed(owner, request)
            return pb.StreamReply(decision=await self.decide_one(self.engine, request))
        except Exception as e:
            code = code_of(e)
            ERRORS.labels(method, code.name).inc()
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            return pb.StreamReply(error=pb.StreamError(request_id=request.request_id, code=code.name, message=str(e)))

    @mapped
    async def Record(self, request, context):
        if self.peers is not None and not self.peers.passed(context):
            owner = self.peers.record_owner(request.proposition)
            if owner is not None:
                return await self.peers.call(owner, 0, "Record", request, request.proposition)
        changed = await self.engine.record_async(request.proposition, request.status,
                                                 convert.time_of(request.time_us))
        if changed:
            REPORTS.labels(request.status).inc()
        return pb.RecordResponse(changed=changed)

    @mapped
    async def Schema(self, request, context):
        # answered by whichever shard the call reaches: a deploy makes a version live on all
        return convert.schema(self.engine.catalog)  # NoCatalog: FAILED_PRECONDITION


class ProfileService(rpc.ProfileServiceServicer):
    def __init__(self, engine: Engine, store: Store, peers: Peers | None = None):
        self.engine, self.store, self.peers = engine, store, peers

    def _owner(self, contact_id: str, context) -> int | None:
        """In a cluster, the shard owning a profile, if it is another one."""
        if self.peers is None or not contact_id or self.peers.passed(context):
            return None
        return self.peers.owner(contact_id)

    def _checked(self, profile: pb.Profile) -> tuple[Contact, dict]:
        if not profile.contact_id:
            raise BadRequest("a profile needs its contact_id")
        contact = _contact(profile.contact_id)
        values = convert.attributes("contact", profile.attributes)
        catalog = self.engine.catalog
        return contact, check_attributes(catalog.contact, values, "contact", catalog.domains)

    @mapped
    async def Upsert(self, request, context):
        owner = self._owner(request.contact_id, context)
        if owner is not None:
            return await self.peers.call(owner, 1, "Upsert", request, request.contact_id)
        await self.store.put_profiles_async([self._checked(request)])
        return pb.UpsertResponse()

    @mapped
    async def Get(self, request, context):
        owner = self._owner(request.contact_id, context)
        if owner is not None:
            return await self.peers.call(owner, 1, "Get", request, request.contact_id)
        attrs = self.store.get_profile(_contact(request.contact_id))
        if attrs is None:
            raise NotFound(f"no profile for contact {request.contact_id!r}")
        return pb.Profile(contact_id=request.contact_id, attributes={k: to_value(v) for k, v in attrs.items()})

    @mapped
    async def BulkLoad(self, request_iterator, context):
        """Profiles in batches of up to 1,000 per group commit; every profile is checked first,
        and the first bad one ends the load with its position (those before it are stored)."""
        loaded, batch, theirs = 0, [], []  # theirs: (owner, profile) of other shards, in a cluster

        async def flush():
            nonlocal loaded, batch, theirs
            items, batch = batch, []
            if items:
                await self.store.put_profiles_async(items)
                loaded += len(items)
            passing, theirs = theirs, []
            if passing:
                await asyncio.gather(*(self.peers.call(o, 1, "Upsert", p, p.contact_id) for o, p in passing))
                loaded += len(passing)

        try:
            async for profile in request_iterator:
                try:
                    contact, attrs = self._checked(profile)
                except (BadRequest, InputError) as e:
                    await flush()
                    raise BadRequest(f"profile #{loaded + len(batch) + len(theirs) + 1} ({profile.contact_id!r}): "
                                     f"{e}; {loaded} loaded before it") from None
                owner = self._owner(profile.contact_id, context)
                if owner is None:
                    batch.append((contact, attrs))
                else:
                    theirs.append((owner, profile))
                if len(batch) + len(theirs) >= 1000:
                    await flush()
        except DecodeError as e:  # bytes that are not a Profile: a bad profile too
            await flush()
            raise BadRequest(f"offerd.v1.ProfileService/BulkLoad: profile #{loaded + 1} is not a valid Profile "
                             f"message ({e}); {loaded} loaded before it") from None
        await flush()
        return pb.BulkLoadResponse(loaded=loaded)


class AdminService(rpc.AdminServiceServicer):
    """In a cluster (`peers`), a change of the live version reaches every shard."""

    def __init__(self, store: Store, live, token: str | None, peers: Peers | None = None):
        self.store, self.live, self.token, self.peers = store, live, token, peers

    async def _activate(self, digest: str, context) -> int | None:
        """Make `digest` live here. A change another shard passed on carries when it was made
        live there, and applies only over a version made live before it: a late push of an
        older change never undoes a newer one."""
        when = self.peers and self.peers.since(context)
        since = await asyncio.to_thread(self.store.activate, digest, when, when is not None)
        await asyncio.to_thread(self.live.refresh)
        return since

    async def _everywhere(self, digest: str, since: int | None, label: str, context) -> None:
        """The other shards made to agree with this one's live version; UNAVAILABLE if some
        could not be reached (live here and on the others, caught up when they are back)."""
        if self.peers is None or self.peers.passed(context) or since is None:
            return
        token = tuple((k, v) for k, v in context.invocation_metadata() if k == "authorization")
        files = await asyncio.to_thread(self.store.version, digest)
        failed = await self.peers.make_live(digest, since, files, label, token)
        if failed:
            raise Relayed(grpc.StatusCode.UNAVAILABLE, f"version {digest} is live on this shard and the others "
                          f"reached, not yet on: {'; '.join(failed)}; a shard catches up when it is back")

    async def _authorize(self, context) -> None:
        if self.token is None:
            return
        sent = dict(context.invocation_metadata()).get("authorization", "")
        if isinstance(sent, bytes) or not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
            # compare_digest: the time taken tells nothing of how much of the token was right
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "AdminService needs the admin token: metadata `authorization: Bearer <token>`")

    def _check(self, files: dict[str, str]):
        if not files:
            raise BadRequest("a catalog needs at least one file")
        return lang.check(files)

    @mapped
    async def Validate(self, request, context):
        await self._authorize(context)
        files = dict(request.files)
        try:
            catalog = await asyncio.to_thread(self._check, files)
        except CatalogError as e:
            return pb.ValidateResponse(ok=False, diagnostics=[convert.diagnostic(d, files) for d in e.diagnostics])
        return pb.ValidateResponse(ok=True, hash=catalog.hash,
                                   diagnostics=[convert.diagnostic(d, files) for d in catalog.diagnostics])

    @mapped
    async def Deploy(self, request, context):
        await self._authorize(context)
        files = dict(request.files)
        catalog = await asyncio.to_thread(self._check, files)  # CatalogError → INVALID_ARGUMENT, all errors
        digest = await asyncio.to_thread(self.store.save_version, files, request.label)
        await self._everywhere(digest, await self._activate(digest, context), request.label, context)
        return pb.DeployResponse(hash=digest, diagnostics=[convert.diagnostic(d, files) for d in catalog.diagnostics])

    @mapped
    async def ListVersions(self, request, context):
        await self._authorize(context)
        return pb.ListVersionsResponse(versions=[
            pb.Version(hash=v["hash"], label=v["label"], created_us=int(v["created"] * 1e6), files=v["files"],
                       live=v["live"]) for v in self.store.versions()], live_since_us=self.store.live_since())

    @mapped
    async def Activate(self, request, context):
        await self._authorize(context)
        digest = await asyncio.to_thread(self.store.resolve, version_hash(request.hash))  # a prefix: the whole hash
        await self._everywhere(digest, await self._activate(digest, context), "", context)
        return pb.LiveResponse(hash=digest)

    @mapped
    async def Rollback(self, request, context):
        await self._authorize(context)
        digest, since = await asyncio.to_thread(self.store.rollback, True)
        await asyncio.to_thread(self.live.refresh)
        await self._everywhere(digest, since, "", context)  # the others made live what is live here
        return pb.LiveResponse(hash=digest)

    async def Simulate(self, request, context):
        await self._authorize(context)
        async for reply in simulate_rpc(self.store, request, context):
            yield reply
