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
none, so that it counts once).

TLS: `tls_ca` (the CA certificate that signed the server's, PEM; or `tls=True` for the
system's CAs), `tls_cert` and `tls_key` (a client certificate, for mutual TLS) and
`tls_server_name` (the name the server's certificate carries, when it is not the address's
host); or ready `credentials`. A file that cannot be used is a ValueError naming it."""
from __future__ import annotations

import asyncio
import datetime
import time as _time
import uuid

import grpc

from .cluster.routing import HEADER, proposition_id
from .cluster.split import split_stream
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


def _pem(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path}: {e.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"the {what} {path} is not a PEM file")
    return data


def tls_credentials(ca: str | None = None, cert: str | None = None, key: str | None = None):
    """TLS credentials: the server verified by the CA certificate in file `ca` (None: the
    system's CAs); `cert` and `key` (PEM files), a client certificate for mutual TLS."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs its key, and a key its certificate (tls_cert and tls_key)")
    return grpc.ssl_channel_credentials(_pem(ca, "CA certificate"), _pem(key, "client key"),
                                        _pem(cert, "client certificate"))


class _Base:
    def __init__(self, target: str, admin_token: str | None, timeout: float, retry_for: float, credentials,
                 tls: bool, tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
                 tls_server_name: str | None, options):
        self.target, self.timeout, self.retry_for = target, timeout, retry_for
        self._admin = (("authorization", f"Bearer {admin_token}"),) if admin_token else ()
        if credentials is None and (tls or tls_ca or tls_cert or tls_key or tls_server_name):
            credentials = tls_credentials(tls_ca, tls_cert, tls_key)
        self._credentials = credentials
        self._options = list(options) + ([("grpc.ssl_target_name_override", tls_server_name)]
                                         if tls_server_name else [])

    def _call(self, method, request, key: str | None = None, admin: bool = False, timeout: float | None = None):
        """`method(request)` with its deadline and metadata (the admin token, or the routing
        key), as a function of nothing, for `_retried` or to call at once."""
        metadata = self._admin if admin else route(key)
        return lambda: method(request, timeout=timeout or self.timeout, metadata=metadata)

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
        from grpc_health.v1 import health_pb2_grpc

        self.channel = channel
        self.decisions = rpc.DecisionServiceStub(channel)
        self.profiles = rpc.ProfileServiceStub(channel)
        self.admin = rpc.AdminServiceStub(channel)
        self.health_stub = health_pb2_grpc.HealthStub(channel)

    def _health_call(self, service: str):
        from grpc_health.v1 import health_pb2

        return self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service))

    @staticmethod
    def _status_name(reply) -> str:
        from grpc_health.v1 import health_pb2

        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _simulate_request(spaces, population, version, time_us, context_json, ignore_caps) -> pb.SimulateRequest:
    return pb.SimulateRequest(hash=version, spaces=spaces, population=population, time_us=time_us,
                              context_json=context_json, ignore_caps=ignore_caps)


class Client(_Base):
    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0, options=(),
                 retry_for: float = 0.0, tls: bool = False, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None):
        super().__init__(target, admin_token, timeout, retry_for, credentials, tls, tls_ca, tls_cert, tls_key,
                         tls_server_name, options)
        self._stubs(grpc.secure_channel(target, self._credentials, self._options) if self._credentials
                    else grpc.insecure_channel(target, self._options))

    def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        request, safe = self._decide_call(spaces, contact_id, options)
        return self._retried(self._call(self.decisions.Decide, request, contact_id), safe)

    def decide_batch(self, requests: list[pb.DecideRequest]) -> list[pb.StreamReply]:
        """Several decisions in one call (build each with `decide_request`); one reply each,
        in order: `.decision` or `.error`."""
        return list(self._call(self.decisions.DecideBatch, pb.DecideBatchRequest(requests=requests))().replies)

    def decide_stream(self, requests):
        """An iterator of StreamReply for an iterable of DecideRequest, in order."""
        return self.decisions.DecideStream(iter(requests))

    def decide_batch_stream(self, batches):
        """An iterator of DecideBatchResponse for an iterable of DecideBatchRequest."""
        return self.decisions.DecideBatchStream(iter(batches))

    def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        request = pb.RecordRequest(proposition=proposition, status=status, time_us=_us(time))
        return self._retried(self._call(self.decisions.Record, request, proposition)).changed

    def schema(self) -> pb.SchemaResponse:
        """The live catalog's hash, timezone, and contact and context attributes with their
        types (as ODL writes them) and closed sets or ranges."""
        return self._retried(self._call(self.decisions.Schema, pb.SchemaRequest()))

    def upsert_profile(self, contact_id: str, attributes: dict) -> None:
        request = pb.Profile(contact_id=contact_id, attributes=_values(attributes))
        self._retried(self._call(self.profiles.Upsert, request, contact_id))

    def get_profile(self, contact_id: str) -> pb.Profile:
        return self._retried(self._call(self.profiles.Get, pb.GetProfileRequest(contact_id=contact_id), contact_id))

    def validate(self, files: dict[str, str]) -> pb.ValidateResponse:
        return self._call(self.admin.Validate, pb.CatalogFiles(files=files), admin=True)()

    def deploy(self, files: dict[str, str], label: str = "") -> pb.DeployResponse:
        return self._call(self.admin.Deploy, pb.CatalogFiles(files=files, label=label), admin=True,
                          timeout=max(self.timeout, 60))()

    def versions(self) -> list[pb.Version]:
        return list(self._call(self.admin.ListVersions, pb.ListVersionsRequest(), admin=True)().versions)

    def activate(self, digest: str) -> str:
        """Make a saved version live: its hash, or a unique prefix of at least 4 hex digits.
        Returns the whole hash."""
        return self._call(self.admin.Activate, pb.ActivateRequest(hash=digest), admin=True,
                          timeout=max(self.timeout, 60))().hash

    def simulate(self, spaces: list[str], population: bytes, *, version: str = "", time_us: int = 0,
                 context_json: str = "", ignore_caps: bool = False):
        """AdminService.Simulate: an iterator of replies, progress first, the report last."""
        request = _simulate_request(spaces, population, version, time_us, context_json, ignore_caps)
        return self.admin.Simulate(request, metadata=self._admin)

    def rollback(self) -> str:
        return self._call(self.admin.Rollback, pb.RollbackRequest(), admin=True, timeout=max(self.timeout, 60))().hash

    def health(self, service: str = "") -> str:
        """grpc.health.v1 Check of `service` (default: the whole server): `SERVING` or
        `NOT_SERVING`; NOT_FOUND for a service the server does not have."""
        return self._status_name(self._health_call(service)())

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncClient(_Base):
    """Client's calls as coroutines (the streams as async iterators), on grpc.aio."""

    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0, options=(),
                 retry_for: float = 0.0, tls: bool = False, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None):
        super().__init__(target, admin_token, timeout, retry_for, credentials, tls, tls_ca, tls_cert, tls_key,
                         tls_server_name, options)
        self._stubs(grpc.aio.secure_channel(target, self._credentials, self._options) if self._credentials
                    else grpc.aio.insecure_channel(target, self._options))

    async def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        request, safe = self._decide_call(spaces, contact_id, options)
        return await self._retried_async(self._call(self.decisions.Decide, request, contact_id), safe)

    async def decide_batch(self, requests: list[pb.DecideRequest]) -> list[pb.StreamReply]:
        return list((await self._call(self.decisions.DecideBatch, pb.DecideBatchRequest(requests=requests))()).replies)

    def decide_stream(self, requests, shards: int = 0):
        """An async iterator of StreamReply for an (async) iterable of DecideRequest, in order.
        `shards`: the number of shards of the cluster behind the address; the requests are then
        split into one stream per shard, each routed to its shard, so that no shard passes
        messages on to another (about 1.8x the messages/s: docs/cluster.md)."""
        if shards <= 1:
            return self.decisions.DecideStream(requests)
        return split_stream(self.decisions, requests, shards)

    def decide_batch_stream(self, batches):
        """An async iterator of DecideBatchResponse for an (async) iterable of DecideBatchRequest."""
        return self.decisions.DecideBatchStream(batches)

    async def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        request = pb.RecordRequest(proposition=proposition, status=status, time_us=_us(time))
        return (await self._retried_async(self._call(self.decisions.Record, request, proposition))).changed

    async def schema(self) -> pb.SchemaResponse:
        return await self._retried_async(self._call(self.decisions.Schema, pb.SchemaRequest()))

    async def upsert_profile(self, contact_id: str, attributes: dict) -> None:
        request = pb.Profile(contact_id=contact_id, attributes=_values(attributes))
        await self._retried_async(self._call(self.profiles.Upsert, request, contact_id))

    async def get_profile(self, contact_id: str) -> pb.Profile:
        request = pb.GetProfileRequest(contact_id=contact_id)
        return await self._retried_async(self._call(self.profiles.Get, request, contact_id))

    async def validate(self, files: dict[str, str]) -> pb.ValidateResponse:
        return await self._call(self.admin.Validate, pb.CatalogFiles(files=files), admin=True)()

    async def deploy(self, files: dict[str, str], label: str = "") -> pb.DeployResponse:
        return await self._call(self.admin.Deploy, pb.CatalogFiles(files=files, label=label), admin=True,
                                timeout=max(self.timeout, 60))()

    async def versions(self) -> list[pb.Version]:
        return list((await self._call(self.admin.ListVersions, pb.ListVersionsRequest(), admin=True)()).versions)

    async def activate(self, digest: str) -> str:
        return (await self._call(self.admin.Activate, pb.ActivateRequest(hash=digest), admin=True,
                                 timeout=max(self.timeout, 60))()).hash

    def simulate(self, spaces: list[str], population: bytes, *, version: str = "", time_us: int = 0,
                 context_json: str = "", ignore_caps: bool = False):
        """AdminService.Simulate: an async iterator of replies, progress first, the report last."""
        request = _simulate_request(spaces, population, version, time_us, context_json, ignore_caps)
        return self.admin.Simulate(request, metadata=self._admin)

    async def rollback(self) -> str:
        return (await self._call(self.admin.Rollback, pb.RollbackRequest(), admin=True,
                                 timeout=max(self.timeout, 60))()).hash

    async def health(self, service: str = "") -> str:
        return self._status_name(await self._health_call(service)())

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
