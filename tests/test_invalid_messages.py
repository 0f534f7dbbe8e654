"""Requests that are not the message their method takes, by the thousand, against a real
`offerd serve`: each is INVALID_ARGUMENT naming the method (never UNKNOWN or INTERNAL), the
server's log grows by a few lines however many come, every refusal is counted in it, and a
well-behaved client deciding all along sees correct answers throughout."""
from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from offerd import lang
from offerd.client import Client
from offerd.examples import CATALOG
from offerd.v1 import offerd_pb2 as pb

from served import ADULT, Running, Served, free_port
from test_observability import scrape, value, wait_for

Code = grpc.StatusCode
TOKEN = "s3cret"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)
CONTEXT = {"page": "home", "device": "desktop"}
PER_METHOD = 400  # undecodable bodies sent to each unary method

V = pb.Value
DECIDE = pb.DecideRequest(spaces=["web_home"], contact=pb.Contact(id="c1"), attributes={"age": V(int_value=30)},
                          context={"page": V(string_value="home")}, dry_run=True, request_id="r1")
UNARY = {  # method path → (the message class, a valid request to mutate)
    "/offerd.v1.DecisionService/Decide": (pb.DecideRequest, DECIDE),
    "/offerd.v1.DecisionService/DecideBatch": (pb.DecideBatchRequest, pb.DecideBatchRequest(requests=[DECIDE] * 3)),
    "/offerd.v1.DecisionService/Record": (pb.RecordRequest, pb.RecordRequest(proposition="ab" * 16,
                                                                             status="accepted", time_us=5)),
    "/offerd.v1.DecisionService/Schema": (pb.SchemaRequest, pb.SchemaRequest()),
    "/offerd.v1.ProfileService/Upsert": (pb.Profile, pb.Profile(contact_id="c1", attributes={"age": V(int_value=3)})),
    "/offerd.v1.ProfileService/Get": (pb.GetProfileRequest, pb.GetProfileRequest(contact_id="c1")),
    "/offerd.v1.AdminService/Validate": (pb.CatalogFiles, pb.CatalogFiles(files={"a.offer": "offer x {}"}, label="l")),
    "/offerd.v1.AdminService/Deploy": (pb.CatalogFiles, pb.CatalogFiles(files={"a.offer": "offer x {}"}, label="l")),
    "/offerd.v1.AdminService/ListVersions": (pb.ListVersionsRequest, pb.ListVersionsRequest()),
    "/offerd.v1.AdminService/Activate": (pb.ActivateRequest, pb.ActivateRequest(hash="0" * 64)),
    "/offerd.v1.AdminService/Rollback": (pb.RollbackRequest, pb.RollbackRequest()),
    "/offerd.v1.AdminService/Simulate": (pb.SimulateRequest, pb.SimulateRequest(spaces=["web_home"],
                                                                                population=b'{"id": "a"}\n')),
    "/grpc.health.v1.Health/Check": (health_pb2.HealthCheckRequest, health_pb2.HealthCheckRequest(service="")),
    "/grpc.health.v1.Health/List": (health_pb2.HealthListRequest, health_pb2.HealthListRequest()),
    "/grpc.health.v1.Health/Watch": (health_pb2.HealthCheckRequest, health_pb2.HealthCheckRequest(service="")),
}
STREAMED = ("/offerd.v1.AdminService/Simulate", "/grpc.health.v1.Health/Watch")  # answers read to the end


def undecodable(kind, valid, rng: random.Random, count: int) -> list[bytes]:
    """`count` bodies that `kind` cannot parse: `valid`'s bytes mutated (bytes flipped,
    inserted, cut) or random bytes, kept only if protobuf refuses them."""
    base, out = valid.SerializeToString(), []
    while len(out) < count:
        data = bytearray(base if rng.random() < 0.8 else rng.randbytes(rng.randint(1, 64)))
        for _ in range(rng.randint(1, 4)):
            how = rng.random()
            at = rng.randrange(len(data) + 1)
            if how < 0.4 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif how < 0.7:
                data[at:at] = rng.randbytes(rng.randint(1, 3))
            elif data:
                del data[at:]
        try:
            kind.FromString(bytes(data))
        except DecodeError:
            out.append(bytes(data))
    return out


def raw(channel, path: str, kind: str = "unary_unary"):
    return getattr(channel, kind)(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)


class Bystander:
    """A well-behaved client deciding on its own connection all along."""

    def __init__(self, target: str):
        self.errors, self.done, self.stopped = [], 0, threading.Event()
        self.thread = threading.Thread(target=self.run, args=(target,), daemon=True)
        self.thread.start()

    def run(self, target):
        with Client(target, timeout=20) as c:
            while not self.stopped.is_set():
                try:
                    d = c.decide(["web_home"], f"bystander{self.done % 5}", attributes=ADULT, context=CONTEXT,
                                 dry_run=True)
                    assert [p.offer for p in d.spaces[0].propositions], d
                    self.done += 1
                except Exception as e:  # noqa: BLE001 - every failure is one to report
                    self.errors.append(repr(e))
                self.stopped.wait(0.002)

    def stop(self):
        self.stopped.set()
        self.thread.join(30)
        assert self.errors == [] and self.done > 0, (self.errors[:3], self.done)


def refusals_logged(text: str) -> int:
    """How many refusals a log holds: one per first line, and each summary's count."""
    return len(re.findall(r"refused: ", text)) + sum(int(n) for n in re.findall(r"refused (\d+) more requests", text))


def test_a_flood_of_undecodable_requests_is_refused_quietly_while_others_are_served(tmp_path):
    rng = random.Random(20)
    metrics = free_port()
    server = Served(tmp_path, "--workers", "2", "--admin-token", TOKEN, "--metrics", f"127.0.0.1:{metrics}")
    try:
        server.workers(2)
        server.wait_log("offerd serving on", 2)
        time.sleep(0.5)
        before = server.output()
        bystander = Bystander(server.target)
        sent = 0
        with grpc.insecure_channel(server.target) as channel:
            for path, (kind, valid) in UNARY.items():
                call = raw(channel, path, "unary_stream" if path in STREAMED else "unary_unary")
                bodies = undecodable(kind, valid, rng, PER_METHOD)
                if path in STREAMED:  # streamed answers: read to the end
                    pending = [(lambda c=call(b, metadata=ADMIN, timeout=30): list(c)) for b in bodies]
                else:  # all sent at once, then each answer read
                    pending = [call.future(b, metadata=ADMIN, timeout=30).result for b in bodies]
                for body, result in zip(bodies, pending):
                    with pytest.raises(grpc.RpcError) as e:
                        result()
                    assert e.value.code() == Code.INVALID_ARGUMENT, (path, body, e.value.code(), e.value.details())
                    want = f"{path[1:]}: the request is not a valid {kind.DESCRIPTOR.name} message: "
                    assert e.value.details().startswith(want), (want, e.value.details())
                sent += len(bodies)
            sent += streams(channel, rng)
        bystander.stop()
        grown = server.output()[len(before):].splitlines()
        assert sent > 4000
        # one line per worker at the first refusal; the rest are counted until the minute is over
        assert len(grown) <= 4 and all("refused" in line for line in grown), grown

        def counted():  # every refusal, as a call ended INVALID_ARGUMENT, whichever service (each second)
            samples = scrape(metrics)
            got = {path: value(samples, "offerd_rpc_calls_total", method=path.rpartition("/")[2],
                               code="INVALID_ARGUMENT") for path in list(UNARY) + STREAM_PATHS}
            return got if sum(got.values()) == sent else None
        got = wait_for(counted)
        assert got == {**{path: PER_METHOD for path in UNARY}, **{path: 5 for path in STREAM_PATHS}}, got
    finally:
        assert server.stop() == 0
    text = server.output()
    assert "Traceback" not in text and "DecodeError" not in text, text[-3000:]
    assert refusals_logged(text) == sent  # the stop logs what was counted since


STREAM_PATHS = ["/offerd.v1.DecisionService/DecideStream", "/offerd.v1.DecisionService/DecideBatchStream",
                "/offerd.v1.ProfileService/BulkLoad", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]


def streams(channel, rng: random.Random) -> int:
    """A few streams whose third message is not the method's message: ended INVALID_ARGUMENT
    naming the method and the message's position, after the answers owed. Returns how many."""
    good = DECIDE.SerializeToString()
    cases = [("/offerd.v1.DecisionService/DecideStream", pb.DecideRequest, good, "stream_stream", 2),
             ("/offerd.v1.DecisionService/DecideBatchStream", pb.DecideBatchRequest,
              pb.DecideBatchRequest(requests=[DECIDE]).SerializeToString(), "stream_stream", 2),
             ("/offerd.v1.ProfileService/BulkLoad", pb.Profile,
              pb.Profile(contact_id="bulk", attributes={"age": V(int_value=4)}).SerializeToString(), "stream_unary", 0),
             ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None,
              b"\x3a\x00", "stream_stream", 2)]  # list_services
    n = 0
    for path, kind, ok, shape, answers in cases:
        for bad in undecodable(kind or pb.DecideRequest, DECIDE, rng, 5) if kind else [b"\xff\xff\xff"] * 5:
            call = raw(channel, path, shape)
            replies = []
            with pytest.raises(grpc.RpcError) as e:
                if shape == "stream_unary":
                    call(iter([ok, ok, bad, ok]), metadata=ADMIN, timeout=30)
                else:
                    replies.extend(call(iter([ok, ok, bad, ok]), metadata=ADMIN, timeout=30))
            assert e.value.code() == Code.INVALID_ARGUMENT, (path, e.value.code(), e.value.details())
            assert e.value.details().startswith(path[1:] + ": "), e.value.details()
            assert len(replies) == answers
            n += 1
    return n


def test_refusals_after_the_first_are_logged_as_one_line_per_interval(tmp_path, caplog):
    server = Running(str(tmp_path))
    server.server.offerd.refusals.every = 0.3  # seconds, not a minute: the test waits out two intervals
    try:
        with grpc.insecure_channel(server.target) as channel:
            decide, record = raw(channel, "/offerd.v1.DecisionService/Decide"), raw(
                channel, "/offerd.v1.DecisionService/Record")
            for call, count in ((decide, 7), (record, 3)):
                for _ in range(count):
                    with pytest.raises(grpc.RpcError):
                        call(b"\xff\xff", timeout=10)
            deadline = time.monotonic() + 10
            while "refused 9 more" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
            assert len(lines) == 2, lines
            assert lines[0].startswith("refused: offerd.v1.DecisionService/Decide: the request is not a valid "
                                       "DecideRequest message")
            assert lines[1] == ("refused 9 more requests that were not valid messages "
                                "(offerd.v1.DecisionService/Decide 6, offerd.v1.DecisionService/Record 3)")
            time.sleep(0.7)  # a quiet interval: nothing more is logged, and the next refusal is logged at once
            with pytest.raises(grpc.RpcError):
                record(b"\xff\xff", timeout=10)
            lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
            assert len(lines) == 3 and lines[2].startswith("refused: offerd.v1.DecisionService/Record"), lines
    finally:
        server.stop()


def test_a_valid_request_is_answered_as_before(tmp_path):
    """The guard passes valid requests through untouched, on every kind of method."""
    server = Running(str(tmp_path))
    try:
        with Client(server.target) as c:
            assert c.decide(["web_home"], "v", attributes=ADULT, context=CONTEXT).spaces[0].propositions
            assert c.decisions.Schema(pb.SchemaRequest(), timeout=10).contact
            files = lang.read_dir(CATALOG)
            assert c.admin.Validate(pb.CatalogFiles(files=files), timeout=30).ok
            replies = list(c.decisions.DecideStream(iter([DECIDE] * 3), timeout=10))
            assert [r.decision.request_id for r in replies] == ["r1"] * 3
    finally:
        server.stop()


def test_every_refused_request_is_observed_like_any_call(tmp_path, caplog):
    """Whichever service: an access line, a span and a count, each INVALID_ARGUMENT."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    caplog.set_level(logging.INFO, "offerd.access")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    server = Running(str(tmp_path), access_log=True, trace=True, trace_provider=provider, admin_token=TOKEN)
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    try:
        with grpc.insecure_channel(server.target) as channel:
            for path in UNARY:
                with pytest.raises(grpc.RpcError) as e:
                    call = raw(channel, path, "unary_stream" if path in STREAMED else "unary_unary")
                    list(call(b"\xff\xff\xff", metadata=ADMIN, timeout=10)) if path in STREAMED else call(
                        b"\xff\xff\xff", metadata=ADMIN, timeout=10)
                assert e.value.code() == Code.INVALID_ARGUMENT, (path, e.value.details())
            with pytest.raises(grpc.RpcError) as e:
                list(raw(channel, reflection, "stream_stream")(iter([b"\xff\xff\xff"]), timeout=10))
            assert e.value.code() == Code.INVALID_ARGUMENT
    finally:
        server.stop()
    paths = list(UNARY) + [reflection]  # (their counts: the flood test above)
    access = [r.getMessage().split()[:2] for r in caplog.records if r.name == "offerd.access"]
    assert access == [[path[1:], "INVALID_ARGUMENT"] for path in paths], access
    ended = {s.name: s.attributes["rpc.grpc.status_code"] for s in spans.get_finished_spans() if s.parent is None}
    assert ended == {path[1:]: Code.INVALID_ARGUMENT.value[0] for path in paths}, ended


def test_a_handler_that_cannot_be_guarded_is_refused_at_registration():
    from offerd.server.guard import Refusals, guarded

    def sync_method(request, context):
        return request

    async def register():
        server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(sync_method, request_deserializer=pb.DecideRequest.FromString)
        with pytest.raises(TypeError, match="offerd.v1.Test/Sync: its handler .* cannot be refused"):
            guarded(server, Refusals()).add_registered_method_handlers("offerd.v1.Test", {"Sync": handler})
        streamed = grpc.stream_unary_rpc_method_handler(sync_method, request_deserializer=pb.Profile.FromString)
        with pytest.raises(TypeError, match="offerd.v1.Test/Load: only an async generator"):
            guarded(server, Refusals()).add_registered_method_handlers("offerd.v1.Test", {"Load": streamed})
        await server.stop(None)
    asyncio.run(register())
