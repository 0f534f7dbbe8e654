"""A small typed client for gateways: `Client` (blocking) and `AsyncClient` (asyncio).

    with Client("127.0.0.1:50051") as c:
        d = c.decide(["web_home"], "alice", attributes={"age": 30}, context={"page": "home"})
        c.record(d.spaces[0].propositions[0].id, "accepted")

Attribute values are Python values: str, int, float, bool, datetime.date, or a list/set of
strings. Errors are grpc.RpcError with the server's status code and message. Every call
carries its routing key (`x-offerd-route`: the contact id, or the proposition id for
`record`), so the same client talks to one server or to a cluster's balancer."""
from __future__ import annotations

import datetime

import grpc

from .cluster.routing import HEADER, proposition_id
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
                   request_id="") -> pb.DecideRequest:
    return pb.DecideRequest(spaces=list(spaces), contact=pb.Contact(id=contact_id or "", anonymous=anonymous),
                            attributes=_values(attributes), context=_values(context), max_offers=max_offers,
                            categories=list(categories), themes=list(themes), dry_run=dry_run, explain=explain,
                            time_us=_us(time), request_id=request_id)


class _Base:
    def __init__(self, target: str, admin_token: str | None, timeout: float):
        self.target, self.timeout = target, timeout
        self._admin = (("authorization", f"Bearer {admin_token}"),) if admin_token else ()

    def _stubs(self, channel):
        self.channel = channel
        self.decisions = rpc.DecisionServiceStub(channel)
        self.profiles = rpc.ProfileServiceStub(channel)
        self.admin = rpc.AdminServiceStub(channel)


class Client(_Base):
    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0, options=()):
        super().__init__(target, admin_token, timeout)
        channel = (grpc.secure_channel(target, credentials, options) if credentials
                   else grpc.insecure_channel(target, options))
        self._stubs(channel)

    def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        return self.decisions.Decide(decide_request(spaces, contact_id, **options), timeout=self.timeout,
                                     metadata=route(contact_id))

    def decide_batch(self, requests: list[pb.DecideRequest]) -> list[pb.StreamReply]:
        """Several decisions in one call (build each with `decide_request`); one reply each,
        in order: `.decision` or `.error`."""
        return list(self.decisions.DecideBatch(pb.DecideBatchRequest(requests=requests), timeout=self.timeout).replies)

    def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        return self.decisions.Record(pb.RecordRequest(proposition=proposition, status=status, time_us=_us(time)),
                                     timeout=self.timeout, metadata=route(proposition)).changed

    def upsert_profile(self, contact_id: str, attributes: dict) -> None:
        self.profiles.Upsert(pb.Profile(contact_id=contact_id, attributes=_values(attributes)), timeout=self.timeout,
                             metadata=route(contact_id))

    def get_profile(self, contact_id: str) -> pb.Profile:
        return self.profiles.Get(pb.GetProfileRequest(contact_id=contact_id), timeout=self.timeout,
                                 metadata=route(contact_id))

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


class AsyncClient(_Base):
    def __init__(self, target: str = "127.0.0.1:50051", *, admin_token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, timeout: float = 10.0):
        super().__init__(target, admin_token, timeout)
        channel = (grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target))
        self._stubs(channel)

    async def decide(self, spaces, contact_id=None, **options) -> pb.DecideResponse:
        return await self.decisions.Decide(decide_request(spaces, contact_id, **options), timeout=self.timeout,
                                           metadata=route(contact_id))

    async def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        reply = await self.decisions.Record(pb.RecordRequest(proposition=proposition, status=status,
                                                             time_us=_us(time)), timeout=self.timeout,
                                            metadata=route(proposition))
        return reply.changed

    def decide_stream(self, requests):
        """An async iterator of StreamReply for an (async) iterable of DecideRequest."""
        return self.decisions.DecideStream(requests)

    def decide_batch_stream(self, batches):
        """An async iterator of DecideBatchResponse for an (async) iterable of DecideBatchRequest."""
        return self.decisions.DecideBatchStream(batches)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
