"""Metrics, the Grafana dashboard's queries, tracing and the access log, on real servers on
127.0.0.1 (docs/observability.md)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from offerd import lang
from offerd.client import Client, decide_request
from offerd.examples import CATALOG
from offerd.v1 import offerd_pb2 as pb
from offerd.v1 import offerd_pb2_grpc as rpc

from served import ADULT, Running, Served, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "offerd-dashboard.json")
EXTRA = 'offer extra { spaces web_home  weight 1000  content web_home { title "Extra", url "https://x" } }'
GOLD = "offer gold_upgrade: cap 50000 total"


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                      if line and not line.startswith("#"))}


def value(samples: dict[str, float], name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for key, v in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{w}"' in rest for k, w in labels.items()):
            total += v
    return total


def wait_for(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def dashboard_metrics() -> set[str]:
    with open(DASHBOARD) as f:
        board = json.load(f)
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 15
    return {m for e in exprs for m in re.findall(r"\b(offerd_[a-z_]+)\b", e)}


def test_every_dashboard_metric_is_served_and_the_new_ones_follow_the_server(tmp_path):
    metrics = free_port()
    s = Served(tmp_path, "--workers", "2", "--metrics", f"127.0.0.1:{metrics}", "--admin-token", "t")
    try:
        before = scrape(metrics)
        assert value(before, "offerd_cap_count", cap=GOLD) == 0
        assert value(before, "offerd_cap_limit", cap=GOLD) == 50000
        gold = 0
        for i in range(8):  # new connections: both workers get some
            with Client(s.target, timeout=10, options=[("offerd.test", i)]) as c:
                d = c.decide(["web_home"], f"m{i}", attributes=ADULT, context={"page": "cart", "device": "desktop"})
                gold += sum(p.offer == "gold_upgrade" for p in d.spaces[0].propositions)
                c.record(d.spaces[0].propositions[0].id, "presented")
                with pytest.raises(grpc.RpcError):
                    c.decide(["nowhere"], f"m{i}")
                replies = list(c.decisions.DecideStream(iter([decide_request(["web_home"], f"s{i}", dry_run=True)] * 3)))
                assert len(replies) == 3
        with grpc.insecure_channel(s.target) as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert gold > 0

        def counted():  # each worker adds its calls to the metrics within a second
            now = scrape(metrics)
            done = (value(now, "offerd_rpc_calls_total", method="Decide") == 16
                    and value(now, "offerd_rpc_calls_total", method="Check") == 1
                    and value(now, "offerd_rpc_messages_total", method="DecideStream", direction="sent") == 24)
            return now if done else None
        after = wait_for(counted)
        names = {k.partition("{")[0] for k in after}
        missing = dashboard_metrics() - names
        assert not missing, f"the dashboard queries metrics the server does not serve: {missing}"
        assert value(after, "offerd_rpc_calls_total", method="Decide", code="OK") == 8
        assert value(after, "offerd_rpc_calls_total", method="Decide", code="NOT_FOUND") == 8
        assert value(after, "offerd_rpc_calls_total", method="Record", code="OK") == 8
        assert value(after, "offerd_rpc_seconds_count", method="Decide") == 16
        assert value(after, "offerd_rpc_calls_total", method="DecideStream", code="OK") == 8
        assert value(after, "offerd_rpc_messages_total", method="DecideStream", direction="received") == 24
        assert value(after, "offerd_rpc_messages_total", method="DecideStream", direction="sent") == 24
        assert value(after, "offerd_rpc_calls_total", service="Health", method="Check", code="OK") == 1
        assert value(after, "offerd_cap_count", cap=GOLD) == gold  # every recorded gold_upgrade, both workers'
        assert value(after, "offerd_build_info", version="0.1.0", grpcio=grpc.__version__) == 1
        for w in ("0", "1", "supervisor"):
            assert value(after, "offerd_process_resident_memory_bytes", worker=w) > 10 << 20
            assert value(after, "offerd_process_open_fds", worker=w) > 3
            assert value(after, "offerd_process_cpu_seconds_total", worker=w) > 0
        assert 0 < value(after, "offerd_store_bytes") < value(after, "offerd_store_map_bytes")

        live = [k for k in after if k.startswith("offerd_catalog_info{")]
        assert len(live) == 1 and 'offers="9"' in live[0]
        with Client(s.target, admin_token="t") as admin:
            digest = admin.deploy(dict(lang.read_dir(CATALOG), **{"99.offer": EXTRA}), "with extra").hash
        deployed = wait_for(lambda: [k for k in scrape(metrics) if k.startswith("offerd_catalog_info{")
                                     and digest in k])
        assert len(deployed) == 1 and 'label="with extra"' in deployed[0] and 'offers="10"' in deployed[0]
        with Client(s.target, admin_token="t") as admin:
            admin.rollback()
        assert wait_for(lambda: [k for k in scrape(metrics) if k.startswith("offerd_catalog_info{")
                                 and 'offers="9"' in k])

        pids = s.workers(2)
        by_worker = {w: value(after, "offerd_process_start_time_seconds", worker=w) for w in ("0", "1")}
        assert value(after, "offerd_worker_restarts_total") == 0
        os.kill(pids[0], signal.SIGKILL)
        s.wait_log("starting another", 1)

        def moved():  # the replacement's start time, once it is there
            now = scrape(metrics)
            return now, [w for w in ("0", "1") if value(now, "offerd_process_start_time_seconds", worker=w)
                         > by_worker[w]]
        restarted, which = wait_for(lambda: (lambda got: got if got[1] else None)(moved()))
        assert len(which) == 1 and value(restarted, "offerd_worker_restarts_total", worker=which[0]) == 1
        assert value(restarted, "offerd_worker_restarts_total") == 1
    finally:
        assert s.stop() == 0, s.output()


def test_metrics_answer_only_at_metrics(tmp_path):
    metrics = free_port()
    s = Served(tmp_path, "--workers", "1", "--metrics", f"127.0.0.1:{metrics}")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=10)
        assert e.value.code == 404 and b"/metrics" in e.value.read()
        root = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/", timeout=10).read()
        assert b"/metrics" in root and b"offerd_" not in root
        samples = scrape(metrics)  # one worker: the same names as with several
        assert value(samples, "offerd_process_resident_memory_bytes", worker="0") > 10 << 20
        assert value(samples, "offerd_cap_limit", cap=GOLD) == 50000
    finally:
        assert s.stop() == 0, s.output()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_on_a_port_in_use_is_one_line_and_no_start(tmp_path, workers):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{free_port()}",
                              "--data", str(tmp_path), "--workers", workers, "--metrics", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60)
    assert got.returncode != 0
    lines = (got.stdout + got.stderr).strip().splitlines()
    assert lines == [f"offerd: cannot serve metrics on 127.0.0.1:{port}: Address already in use"], lines


# --- tracing -------------------------------------------------------------------------------

TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
def traced(tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    server = Running(str(tmp_path), trace=True, trace_provider=provider)
    yield server, spans
    server.stop()


def test_a_span_per_call_with_its_stages_under_the_callers_trace(traced):
    server, spans = traced
    with grpc.insecure_channel(server.target) as ch:
        stub = rpc.DecisionServiceStub(ch)
        stub.Decide(decide_request(["web_home"], "t1", attributes=ADULT, request_id="r-1"),
                    metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),))
        with pytest.raises(grpc.RpcError):
            stub.Decide(decide_request(["nowhere"], "t1"))
        list(stub.DecideStream(iter([decide_request(["web_home"], "t2", dry_run=True)] * 2)))
    done = spans.get_finished_spans()
    calls = [s for s in done if s.name == "offerd.v1.DecisionService/Decide"]
    assert len(calls) == 2
    first, refused = calls
    assert f"{first.context.trace_id:032x}" == TRACE_ID and f"{first.parent.span_id:016x}" == PARENT
    assert first.attributes["offerd.request_id"] == "r-1" and first.attributes["rpc.grpc.status_code"] == 0
    assert first.attributes["rpc.method"] == "Decide" and first.status.is_ok
    stages = [s for s in done if s.parent is not None and s.parent.span_id == first.context.span_id]
    assert [s.name for s in sorted(stages, key=lambda s: s.start_time)] == [
        "offerd.convert_request", "offerd.decide", "offerd.store_write", "offerd.convert_response"]
    assert all(s.context.trace_id == first.context.trace_id for s in stages)
    assert not set(first.attributes) - {"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
                                         "offerd.request_id"}  # no contact ids, no attribute values
    assert refused.parent is None and f"{refused.context.trace_id:032x}" != TRACE_ID
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not refused.status.is_ok
    stream = next(s for s in done if s.name == "offerd.v1.DecisionService/DecideStream")
    under = [s.name for s in done if s.parent is not None and s.parent.span_id == stream.context.span_id]
    assert sorted(under) == sorted(["offerd.convert_request", "offerd.decide", "offerd.convert_response"] * 2)


def test_the_callers_sampling_decision_is_followed(tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))  # only what the caller sampled
    provider.add_span_processor(SimpleSpanProcessor(spans))
    server = Running(str(tmp_path), trace=True, trace_provider=provider)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = rpc.DecisionServiceStub(ch)
            for flags in ("00", None, "01"):
                meta = (("traceparent", f"00-{TRACE_ID}-{PARENT}-{flags}"),) if flags else ()
                stub.Decide(decide_request(["web_home"], "t", attributes=ADULT), metadata=meta)
                if flags != "01":
                    assert spans.get_finished_spans() == ()
    finally:
        server.stop()
    assert sorted(s.name for s in spans.get_finished_spans()) == sorted([
        "offerd.v1.DecisionService/Decide", "offerd.convert_request", "offerd.decide", "offerd.store_write",
        "offerd.convert_response"])


def test_tracing_off_imports_no_opentelemetry(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from served import Running, ADULT
from offerd.client import Client
s = Running({str(tmp_path)!r}, access_log=False)
with Client(s.target) as c:
    c.decide(["web_home"], "x", attributes=ADULT)
s.stop()
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip().splitlines()[-1] == "[]"


def test_trace_with_a_missing_exporter_is_one_line(tmp_path):
    env = dict(os.environ, OTEL_TRACES_EXPORTER="otlp")
    got = subprocess.run([sys.executable, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{free_port()}",
                          "--data", str(tmp_path), "--workers", "1", "--trace"],
                         capture_output=True, text=True, timeout=60, env=env)
    lines = (got.stdout + got.stderr).strip().splitlines()
    assert got.returncode != 0 and len(lines) == 1 and "pip install 'offerd[otlp]'" in lines[0], lines
    env["OTEL_TRACES_EXPORTER"] = "zipkin"
    got = subprocess.run([sys.executable, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{free_port()}",
                          "--data", str(tmp_path), "--workers", "1", "--trace"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode != 0 and got.stderr.strip() == ("offerd: OTEL_TRACES_EXPORTER=zipkin: offerd exports "
                                                         "spans with otlp, console or none")


# --- the access log ----------------------------------------------------------------------

def test_access_log_a_json_line_per_call_and_the_request_id_returned(tmp_path):
    s = Served(tmp_path, "--workers", "1", "--access-log", "--log-json")
    try:
        with grpc.insecure_channel(s.target) as ch:
            stub = rpc.DecisionServiceStub(ch)
            _, call = stub.Decide.with_call(decide_request(["web_home"], "a", dry_run=True),
                                            metadata=(("x-request-id", "from-header"),))
            assert dict(call.trailing_metadata())["x-request-id"] == "from-header"
            _, call = stub.Decide.with_call(decide_request(["web_home"], "a", request_id="from-body"))
            assert dict(call.trailing_metadata())["x-request-id"] == "from-body"
            with pytest.raises(grpc.RpcError) as e:  # refused: the id comes back too
                stub.Decide(decide_request(["nowhere"], "a"))
            made = dict(e.value.trailing_metadata())["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{16}", made)
            rpc.ProfileServiceStub(ch).Upsert(pb.Profile(contact_id="a"))
        s.wait_log('"request_id"', 4)
    finally:
        assert s.stop() == 0, s.output()
    lines = [json.loads(line) for line in s.output().splitlines() if '"logger": "offerd.access"' in line]
    assert [(x["method"], x["code"], x["request_id"]) for x in lines] == [
        ("offerd.v1.DecisionService/Decide", "OK", "from-header"),
        ("offerd.v1.DecisionService/Decide", "OK", "from-body"),
        ("offerd.v1.DecisionService/Decide", "NOT_FOUND", made),
        ("offerd.v1.ProfileService/Upsert", "OK", lines[3]["request_id"])]
    for x in lines:
        assert x["peer"].startswith("ipv4:127.0.0.1:") and x["ms"] > 0 and x["level"] == "info"
        assert x["message"].startswith(f'{x["method"]} {x["code"]} ')


def test_access_log_off_returns_no_request_id(tmp_path):
    server = Running(str(tmp_path))
    try:
        with grpc.insecure_channel(server.target) as ch:
            _, call = rpc.DecisionServiceStub(ch).Decide.with_call(decide_request(["web_home"], "a", dry_run=True))
        assert "x-request-id" not in dict(call.trailing_metadata())
    finally:
        server.stop()


# --- streams the client abandons, request ids from the caller, scrapes ------------------------

def abandon_streams(target: str, count: int, requests: int = 5000, wait: float = 1.5) -> None:
    """`count` DecideStreams that send `requests` requests, read no answer and are cancelled
    after `wait` seconds: the server is left blocked writing an answer, its handler suspended
    at a yield (were it still deciding, the cancel could end its request stream as a close)."""
    import threading

    def held_open(i, done):  # the requests, then the stream left open until the cancel
        yield from [decide_request(["web_home", "newsletter"], f"a{i}", attributes=ADULT, dry_run=True,
                                   explain_all=True)] * requests  # long answers: they fill the window soon
        done.wait(30)

    with grpc.insecure_channel(target) as ch:
        stub = rpc.DecisionServiceStub(ch)
        for i in range(count):
            done = threading.Event()
            replies = stub.DecideStream(held_open(i, done))
            time.sleep(wait)
            replies.cancel()
            done.set()
        time.sleep(0.3)


def test_a_stream_the_client_abandons_is_counted_cancelled_and_the_server_lives_on(tmp_path):
    metrics = free_port()
    s = Served(tmp_path, "--workers", "1", "--access-log", "--metrics", f"127.0.0.1:{metrics}")
    try:
        abandon_streams(s.target, 3)
        with grpc.insecure_channel(s.target) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
        with Client(s.target, timeout=10) as c:  # the event loop closes the abandoned streams meanwhile
            for i in range(50):
                assert c.decide(["web_home"], f"after{i}", attributes=ADULT, dry_run=True).spaces[0].propositions
        s.wait_log("DecideStream CANCELLED", 3)

        def counted():
            now = scrape(metrics)
            return now if value(now, "offerd_rpc_calls_total", method="Watch", code="CANCELLED") == 1 else None
        after = wait_for(counted)
        assert value(after, "offerd_rpc_calls_total", method="DecideStream", code="CANCELLED") == 3
        assert value(after, "offerd_rpc_calls_total", method="DecideStream") == 3
        assert value(after, "offerd_rpc_messages_total", method="Watch", direction="sent") == 1
    finally:
        code = s.stop()
    assert code == 0, s.output()[-3000:]  # -11 when a stream closed late read its call's context
    # (gRPC itself logs the write that failed as the client left: ExecuteBatchError, not ours)
    assert "GeneratorExit" not in s.output() and "offerd/server" not in s.output(), s.output()[-3000:]


def test_a_stream_the_client_abandons_ends_its_span_and_leaves_no_context_behind(traced, caplog):
    import gc

    server, spans = traced
    abandon_streams(server.target, 2, wait=3)  # tracing, in this process: the server decides slower
    with grpc.insecure_channel(server.target) as ch:  # an id that is not one: the span gets a made-up one
        rpc.DecisionServiceStub(ch).Decide(decide_request(["web_home"], "t", dry_run=True, request_id="é\nx"))

    def ended():
        gc.collect()  # the abandoned streams, collected: the event loop closes them
        return [s for s in spans.get_finished_spans() if s.name == "offerd.v1.DecisionService/DecideStream"]
    streams = wait_for(lambda: (lambda got: got if len(got) == 2 else None)(ended()))
    for span in streams:
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0], span.attributes
        assert span.status.description == "CANCELLED"
        under = [s for s in spans.get_finished_spans() if s.parent is not None
                 and s.parent.span_id == span.context.span_id]
        assert under and {s.name for s in under} <= {"offerd.convert_request", "offerd.decide",
                                                     "offerd.convert_response"}
    decide = next(s for s in spans.get_finished_spans() if s.name == "offerd.v1.DecisionService/Decide")
    assert re.fullmatch(r"[0-9a-f]{16}", decide.attributes["offerd.request_id"])
    assert "Failed to detach context" not in caplog.text


def test_request_ids_that_are_not_short_printable_ascii_are_replaced(tmp_path):
    s = Served(tmp_path, "--workers", "1", "--access-log")
    kept = ["r-1", "x" * 128, "A.b_c:d/e=f"]
    replaced = ["forged\n2026-12-05 07:43:08,783 INFO offerd.v1.DecisionService/Decide OK 0.1 ms", "é", "x" * 129,
                "x" * 20000, "a b", "tab\there", "\x7f"]
    try:
        with grpc.insecure_channel(s.target) as ch:
            stub = rpc.DecisionServiceStub(ch)
            got = []
            for rid in kept + replaced:
                reply, call = stub.Decide.with_call(decide_request(["web_home"], "a", dry_run=True, request_id=rid),
                                                    timeout=10)
                assert reply.request_id == rid  # the answer still carries the caller's own
                got.append(dict(call.trailing_metadata())["x-request-id"])
            for header in ("y" * 129, "two words"):  # metadata: the same rule; the body's id is used then
                _, call = stub.Decide.with_call(decide_request(["web_home"], "a", dry_run=True, request_id="body"),
                                                metadata=(("x-request-id", header),), timeout=10)
                got.append(dict(call.trailing_metadata())["x-request-id"])
        assert got[:len(kept)] == kept
        made = got[len(kept):len(kept) + len(replaced)]
        assert all(re.fullmatch(r"[0-9a-f]{16}", x) for x in made) and len(set(made)) == len(made), made
        assert got[-2:] == ["body", "body"]
        s.wait_log("Decide OK", len(got))
    finally:
        assert s.stop() == 0, s.output()
    text = s.output()
    assert "Traceback" not in text and "Invalid metadata" not in text, text[-3000:]
    access = [line for line in text.splitlines() if "offerd.v1.DecisionService/Decide" in line]
    assert len(access) == len(got) and all(line.endswith(f"request_id={x}") for line, x in zip(access, got)), access


def test_a_scrape_of_several_workers_reads_the_store_while_a_write_holds_its_lock(tmp_path):
    import lmdb

    metrics = free_port()
    s = Served(tmp_path, "--workers", "2", "--metrics", f"127.0.0.1:{metrics}")
    try:
        env = lmdb.open(os.path.join(str(tmp_path), "db"), max_dbs=16, map_size=1 << 40)
        txn = env.begin(write=True)  # another process's write, held (the workers have nothing to write)
        try:
            samples = scrape(metrics)
            assert value(samples, "offerd_cap_limit", cap=GOLD) == 50000
            assert [k for k in samples if k.startswith("offerd_catalog_info{") and 'offers="9"' in k]
        finally:
            txn.abort()
            env.close()
        assert "cygrpc" not in open(f"/proc/{s.proc.pid}/maps").read()  # the supervisor never loads gRPC
    finally:
        assert s.stop() == 0, s.output()
    assert "cannot read the store" not in s.output()


def test_a_flush_that_fails_is_logged_and_the_next_ones_go_on(tmp_path, caplog):
    import errno

    from prometheus_client import REGISTRY

    class Full:  # prometheus_client's value, as a full disk leaves it under multiprocess files
        def inc(self, amount):
            raise OSError(errno.ENOSPC, "No space left on device")

    server = Running(str(tmp_path))
    labels = {"service": "DecisionService", "method": "Schema", "code": "OK"}
    tally = next(t for t in server.server.offerd.observer.tallies if t.method == "Schema")
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = rpc.DecisionServiceStub(ch)
            before = REGISTRY.get_sample_value("offerd_rpc_calls_total", labels) or 0
            kept, tally.seconds._sum = tally.seconds._sum, Full()
            stub.Schema(pb.SchemaRequest(), timeout=10)
            wait_for(lambda: "cannot add the calls counted to the metrics" in caplog.text)
            tally.seconds._sum = kept  # room made
            for _ in range(3):
                stub.Schema(pb.SchemaRequest(), timeout=10)
            wait_for(lambda: (REGISTRY.get_sample_value("offerd_rpc_calls_total", labels) or 0) - before >= 3)
        assert not server.server.offerd.observer.flusher.done()
    finally:
        server.stop()
    assert caplog.text.count("cannot add the calls counted") == 1


def test_a_call_past_its_deadline_is_counted_deadline_exceeded(tmp_path, caplog):
    import threading

    caplog.set_level(logging.INFO, "offerd.access")
    server = Running(str(tmp_path), access_log=True)
    done = threading.Event()

    def held_open():
        yield decide_request(["web_home"], "d", dry_run=True)
        done.wait(10)
    try:
        with grpc.insecure_channel(server.target) as ch:
            with pytest.raises(grpc.RpcError) as e:
                list(rpc.DecisionServiceStub(ch).DecideStream(held_open(), timeout=0.5))
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            done.set()
            done = threading.Event()
            replies = rpc.DecisionServiceStub(ch).DecideStream(held_open(), timeout=30)
            next(replies)  # the handler runs, waiting for the next request
            replies.cancel()  # the client cancels: CANCELLED
            done.set()
            wait_for(lambda: len([r for r in caplog.records if "DecideStream" in r.getMessage()]) == 2)
    finally:
        server.stop()
    codes = [r.getMessage().split()[1] for r in caplog.records if "DecideStream" in r.getMessage()]
    assert codes == ["DEADLINE_EXCEEDED", "CANCELLED"], codes


def test_a_stream_whose_deadline_passes_while_its_answers_wait_is_counted_deadline_exceeded(tmp_path, caplog):
    """Answers the client never reads block the server's writes; the deadline ends the call and
    the event loop closes the stream later, when the call is gone: still DEADLINE_EXCEEDED."""
    import gc
    import threading

    caplog.set_level(logging.INFO, "offerd.access")
    server = Running(str(tmp_path), access_log=True)
    done = threading.Event()

    def many():
        yield from [decide_request(["web_home", "newsletter"], "a", attributes=ADULT, dry_run=True,
                                   explain_all=True)] * 5000
        done.wait(30)
    try:
        with grpc.insecure_channel(server.target) as ch:
            replies = rpc.DecisionServiceStub(ch).DecideStream(many(), timeout=2)
            time.sleep(4)  # nothing read: the deadline passes while the server waits to write
            with pytest.raises(grpc.RpcError) as e:
                list(replies)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            done.set()

        def logged():
            server.run(asyncio.sleep(0.1))
            gc.collect()  # the abandoned stream's generator is closed when it is collected
            return [r.getMessage().split()[1] for r in caplog.records
                    if r.name == "offerd.access" and "DecideStream" in r.getMessage()]
        wait_for(logged)
        codes = logged()
    finally:
        server.stop()
    assert codes == ["DEADLINE_EXCEEDED"], codes
