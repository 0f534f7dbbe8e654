"""The gRPC server on 127.0.0.1, a real LMDB store in a temp dir, real clients."""
from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from offerd import lang
from offerd.client import AsyncClient, Client, decide_request
from offerd.examples import CATALOG
from offerd.store.keys import Contact
from offerd.store import Store
from offerd.v1 import offerd_pb2 as pb

from served import ADULT, Running, Served, free_port

T = datetime.datetime(2026, 11, 20, 10, tzinfo=datetime.timezone.utc)
EXTRA = 'offer extra { spaces web_home  weight 1000  content web_home { title "Extra", url "https://x" } }'


@pytest.fixture
def server(tmp_path):
    s = Running(str(tmp_path), admin_token="s3cret")
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with Client(server.target, admin_token="s3cret") as c:
        yield c


def code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def test_decide_record_and_content(client, server):
    d = client.decide(["web_home", "callcenter_next"], "alice", attributes=ADULT, context={"page": "home"}, time=T)
    assert [s.space for s in d.spaces] == ["web_home", "callcenter_next"]
    web = d.spaces[0].propositions
    assert web and all(p.id and p.rank == i + 1 for i, p in enumerate(web))
    assert all(p.content.get("title") for p in web)
    assert client.record(web[0].id, "accepted") is True
    assert client.record(web[0].id, "presented") is False  # implied by accepted
    with pytest.raises(grpc.RpcError) as e:
        client.record(web[0].id, "rejected")
    assert code(e) == grpc.StatusCode.FAILED_PRECONDITION and "already accepted" in e.value.details()
    stored = server.store.read_history(Contact("alice"))
    assert {r.offer for r in stored} >= {p.offer for p in web}


def test_error_codes_and_messages(client):
    cases = [
        (lambda: client.decide(["nowhere"], "al"), grpc.StatusCode.NOT_FOUND, "no space 'nowhere'"),
        (lambda: client.decide(["web_home"], "al", attributes={"age": "old"}), grpc.StatusCode.INVALID_ARGUMENT,
         "contact.age: expected int"),
        (lambda: client.decide(["web_home"], "al", attributes={"agee": 3}), grpc.StatusCode.INVALID_ARGUMENT,
         "did you mean contact.age"),
        (lambda: client.decide([], "al"), grpc.StatusCode.INVALID_ARGUMENT, "at least one space"),
        (lambda: client.record("00" * 16, "accepted"), grpc.StatusCode.NOT_FOUND, "no proposition"),
        (lambda: client.record("00" * 16, "liked"), grpc.StatusCode.INVALID_ARGUMENT, "presented, accepted or rejected"),
        (lambda: client.decide(["web_home"], "al", max_offers=-1), grpc.StatusCode.INVALID_ARGUMENT, "max_offers"),
        (lambda: client.get_profile("nobody"), grpc.StatusCode.NOT_FOUND, "no profile"),
    ]
    for call, want, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert code(e) == want, e.value.details()
        assert text in e.value.details()
    bad_date = decide_request(["web_home"], "al")
    bad_date.attributes["birthday"].date_value.month = 13
    with pytest.raises(grpc.RpcError) as e:
        client.decisions.Decide(bad_date)
    assert code(e) == grpc.StatusCode.INVALID_ARGUMENT and "not a date" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:  # 5 MiB: over the 4 MiB message limit
        client.decide(["web_home"], "al", context={"page": "x" * (5 << 20)})
    assert code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.decide(["web_home"], "al", dry_run=True).spaces  # the server is fine afterwards


def test_schema_gives_the_live_catalogs_attributes_typed_as_odl_writes_them(client):
    s = client.schema()
    assert s.catalog == client.decide(["web_home"], dry_run=True).catalog and s.timezone == "Europe/Paris"
    types = {a.name: a.type for a in s.contact}
    assert types == {"first_name": "string", "age": "int", "country": "string", "segment": "string",
                     "cart_total": "float", "tags": "set<string>", "birthday": "date", "vip": "bool",
                     "opt_in_sms": "bool", "satisfaction": "int"}
    assert list(types) == ["first_name", "age", "country", "segment", "cart_total", "tags", "birthday", "vip",
                           "opt_in_sms", "satisfaction"]  # as declared
    by_name = {a.name: a for a in s.contact}
    assert list(by_name["segment"].values) == ["basic", "silver", "gold", "platinum"]
    assert not by_name["segment"].HasField("low") and not by_name["age"].HasField("low")
    sat = by_name["satisfaction"]
    assert (sat.low.int_value, sat.high.int_value, list(sat.values)) == (1, 5, [])
    assert [(a.name, a.type) for a in s.context] == [("page", "string"), ("device", "string")]
    files = {"a.offer": 'schema contact { scores: list<int>  ratio: float in 0.5 to 2.5  '
                        'since: date in 2020-01-01 to 2030-12-31  kinds: set<string> in ["a", "b"] }\n'
                        'schema context { }\nspace web { limit 1 }\noffer o { spaces web }\n'}
    live = client.deploy(files).hash
    s = client.schema()
    assert s.catalog == live and s.timezone == "UTC" and not s.context
    got = {a.name: a for a in s.contact}
    assert [(a.name, a.type) for a in s.contact] == [("scores", "list<int>"), ("ratio", "float"), ("since", "date"),
                                                     ("kinds", "set<string>")]
    assert (got["ratio"].low.float_value, got["ratio"].high.float_value) == (0.5, 2.5)
    assert got["since"].low.date_value == pb.Date(year=2020, month=1, day=1)
    assert list(got["kinds"].values) == ["a", "b"]


def test_schema_without_a_live_catalog_is_a_failed_precondition_and_the_async_client_asks_too(tmp_path):
    from offerd.server.app import Config, create_server, stop_server

    async def main():
        store = Store(str(tmp_path / "db"))  # nothing deployed: no live version
        server, port = await create_server("127.0.0.1:0", Config(listen="127.0.0.1:0", data=str(tmp_path)), store)
        try:
            async with AsyncClient(f"127.0.0.1:{port}") as c:
                with pytest.raises(grpc.RpcError) as e:
                    await c.schema()
                await c.admin.Deploy(pb.CatalogFiles(files=lang.read_dir(CATALOG)))  # no admin token here
                return e.value, await c.schema()
        finally:
            await stop_server(server, 1)

    error, schema = asyncio.run(main())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "no catalog is live" in error.details()
    assert schema.catalog and [a.name for a in schema.context] == ["page", "device"]


def test_decide_stream_answers_in_order_and_survives_bad_requests(server):
    async def main():
        async with AsyncClient(server.target) as c:
            requests = [decide_request(["web_home"], f"s{i}", attributes=ADULT, request_id=f"r{i}") for i in range(20)]
            requests[7] = decide_request(["nowhere"], "s7", request_id="r7")
            return [r async for r in c.decide_stream(iter(requests))]

    replies = asyncio.run(main())
    assert len(replies) == 20
    assert replies[7].WhichOneof("reply") == "error"
    assert replies[7].error.code == "NOT_FOUND" and replies[7].error.request_id == "r7"
    others = [r.decision for i, r in enumerate(replies) if i != 7]
    assert [d.request_id for d in others] == [f"r{i}" for i in range(20) if i != 7]
    assert all(d.spaces[0].propositions for d in others)


def test_profiles_upsert_get_and_bulk_load(client, server):
    client.upsert_profile("bob", {"age": 41, "tags": ["a", "b"], "birthday": datetime.date(1985, 3, 4)})
    got = client.get_profile("bob")
    assert got.attributes["age"].int_value == 41
    assert list(got.attributes["tags"].strings_value.values) == ["a", "b"]
    assert got.attributes["birthday"].date_value.year == 1985
    profiles = [pb.Profile(contact_id=f"b{i}", attributes={"age": pb.Value(int_value=i)}) for i in range(2500)]
    assert client.profiles.BulkLoad(iter(profiles)).loaded == 2500
    assert server.store.get_profile(Contact("b2499")) == {"age": 2499}
    bad = profiles[:10] + [pb.Profile(contact_id="x", attributes={"age": pb.Value(string_value="old")})]
    with pytest.raises(grpc.RpcError) as e:
        client.profiles.BulkLoad(iter(bad))
    assert code(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert "profile #11 ('x')" in e.value.details() and "10 loaded before it" in e.value.details()


def test_admin_validate_deploy_versions_rollback_and_token(client, server):
    files = lang.read_dir(CATALOG)
    broken = dict(files, **{"99.offer": "offer bad { spaces web_home weight contact.nope }"})
    v = client.validate(broken)
    assert not v.ok and {d.file for d in v.diagnostics} == {"99.offer"}
    (unknown,) = [d for d in v.diagnostics if "unknown attribute contact.nope" in d.message]
    assert (unknown.line, unknown.column) == (1, 36) and "^" in unknown.rendered
    with pytest.raises(grpc.RpcError) as e:
        client.deploy(broken)
    assert code(e) == grpc.StatusCode.INVALID_ARGUMENT and "99.offer:1:" in e.value.details()
    first = server.store.live()[0]
    changed = dict(files, **{"99.offer": EXTRA})
    digest = client.deploy(changed, "with extra").hash
    assert digest != first
    assert client.decide(["web_home"], "al", dry_run=True).spaces[0].propositions[0].offer == "extra"
    assert [v.live for v in client.versions() if v.hash == digest] == [True]
    assert client.rollback() == first
    with pytest.raises(grpc.RpcError) as e:
        client.rollback()
    assert code(e) == grpc.StatusCode.FAILED_PRECONDITION and "nothing to roll back to" in e.value.details()
    assert client.decide(["web_home"], "al", dry_run=True).spaces[0].propositions[0].offer != "extra"
    assert client.activate(digest) == digest
    with pytest.raises(grpc.RpcError) as e:
        client.activate("0" * 64)
    assert code(e) == grpc.StatusCode.NOT_FOUND
    with Client(server.target) as anonymous, pytest.raises(grpc.RpcError) as e:
        anonymous.versions()
    assert code(e) == grpc.StatusCode.UNAUTHENTICATED
    with Client(server.target, admin_token="wrong") as wrong, pytest.raises(grpc.RpcError) as e:
        wrong.rollback()
    assert code(e) == grpc.StatusCode.UNAUTHENTICATED
    assert server.store.live()[0] == digest  # the refused rollback changed nothing


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="offerd.v1.DecisionService"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"offerd.v1.DecisionService", "offerd.v1.ProfileService", "offerd.v1.AdminService",
                "grpc.health.v1.Health"} <= names


def test_deploys_and_rollbacks_while_decisions_run_fail_nothing(client, server):
    files = lang.read_dir(CATALOG)
    extra = dict(files, **{"99.offer": EXTRA})
    failures, done, stop = [], [0], threading.Event()

    def decide_loop(k):
        with Client(server.target) as c:
            while not stop.is_set():
                try:
                    c.decide(["web_home"], f"load{k}", attributes=ADULT)
                    done[0] += 1
                except grpc.RpcError as e:
                    failures.append(e.details())

    threads = [threading.Thread(target=decide_loop, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            client.deploy(extra)
            client.rollback()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and done[0] > 0


def test_sigterm_during_load_loses_no_acknowledged_decision(tmp_path):
    s = Served(tmp_path)
    try:
        acked, errors, stop = [], [], threading.Event()

        def load(k):
            with Client(s.target, timeout=5) as c:
                i = 0
                while not stop.is_set():
                    try:
                        d = c.decide(["web_home"], f"t{k}-{i}", attributes=ADULT)
                        acked.extend(p.id for p in d.spaces[0].propositions)
                    except grpc.RpcError as e:
                        errors.append(e.code())
                        return  # the server is going away
                    i += 1

        threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
    finally:
        code = s.stop()
        stop.set()
        for t in threads:
            t.join()
    out = s.output()
    assert code == 0, out
    assert "stopped in" in out
    assert len(acked) > 50
    with Store(str(tmp_path / "db")) as store:
        with store.env.begin() as txn:
            missing = [pid for pid in acked if txn.get(bytes.fromhex(pid), db=store.db["props"]) is None]
    assert missing == []
    # calls cut off by the stop (or slowed past their deadline on a busy machine) may or may not
    # have happened; only acknowledged ones must be stored
    assert set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}


def test_two_workers_share_the_port_and_see_a_deploy_within_a_second(tmp_path):
    s = Served(tmp_path, "--workers", "2", "--admin-token", "t")
    try:
        files = dict(lang.read_dir(CATALOG), **{"99.offer": EXTRA})

        def offers_from_fresh_connections(n):
            out = []
            for i in range(n):  # a distinct channel argument: a new connection each time
                with Client(s.target, timeout=5, options=[("offerd.test", i)]) as c:
                    out.append(c.decide(["web_home"], "w", dry_run=True).spaces[0].propositions[0].offer)
            return out

        assert "extra" not in offers_from_fresh_connections(10)
        with Client(s.target, admin_token="t") as admin:
            digest = admin.deploy(files).hash
        time.sleep(1.0)
        assert offers_from_fresh_connections(20) == ["extra"] * 20
        with Client(s.target, admin_token="t") as admin:
            admin.rollback()
        time.sleep(1.0)
        assert "extra" not in offers_from_fresh_connections(20)
    finally:
        code = s.stop()
    out = s.output()
    assert code == 0, out
    assert out.count("stopped in") == 2
    for n in (0, 1):  # each worker switched to the deployed version itself
        assert f"worker {n}: catalog {digest[:12]} live" in out, out


def test_grpcurl_lists_services_and_decides_through_reflection(server):
    grpcurl = os.path.join(os.path.dirname(sys.executable), "grpcurl")
    listed = subprocess.run([grpcurl, "-plaintext", server.target, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert "offerd.v1.DecisionService" in listed.stdout.split()
    body = '{"spaces": ["web_home"], "contact": {"id": "curl"}, "attributes": {"age": {"intValue": 30}}, "dryRun": true}'
    got = subprocess.run([grpcurl, "-plaintext", "-d", body, server.target, "offerd.v1.DecisionService/Decide"],
                         capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    first = json.loads(got.stdout)["spaces"][0]["propositions"][0]
    assert first["rank"] == 1 and first["offer"] and "id" not in first  # a dry run has no id
    bad = subprocess.run([grpcurl, "-plaintext", "-d", '{"spaces": ["nowhere"]}', server.target,
                          "offerd.v1.DecisionService/Decide"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "NotFound" in bad.stderr and "no space 'nowhere'" in bad.stderr


def test_mtls_requires_a_client_certificate(tmp_path, certs):
    s = Running(str(tmp_path / "data"), tls_cert=certs["server.pem"], tls_key=certs["server.key"],
                client_ca=certs["ca.pem"])
    read = {k: open(v, "rb").read() for k, v in certs.items()}
    try:
        good = grpc.ssl_channel_credentials(read["ca.pem"], read["client.key"], read["client.pem"])
        with Client(s.target, credentials=good) as c:
            assert c.decide(["web_home"], "tls", dry_run=True).spaces[0].propositions
        no_cert = grpc.ssl_channel_credentials(read["ca.pem"])
        with Client(s.target, credentials=no_cert, timeout=5) as c, pytest.raises(grpc.RpcError) as e:
            c.decide(["web_home"], "tls", dry_run=True)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with Client(s.target, timeout=5) as plain, pytest.raises(grpc.RpcError) as e:
            plain.decide(["web_home"], "tls", dry_run=True)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s.stop()


def test_metrics_of_two_workers_are_served_summed(tmp_path):
    import urllib.request

    metrics = free_port()
    s = Served(tmp_path, "--workers", "2", "--metrics", f"127.0.0.1:{metrics}")
    try:
        for i in range(12):  # new connections: both workers get some
            with grpc.insecure_channel(s.target, options=[("offerd.test", i)]) as ch:
                from offerd.v1 import offerd_pb2_grpc as rpc

                stub = rpc.DecisionServiceStub(ch)
                stub.Decide(decide_request(["web_home"], f"m{i}", attributes=ADULT))
                with pytest.raises(grpc.RpcError):
                    stub.Decide(decide_request(["nowhere"], f"m{i}"))
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
    finally:
        assert s.stop() == 0, s.output()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['offerd_decisions_total{mode="recorded"}']) == 12
    assert float(lines['offerd_errors_total{code="NOT_FOUND",method="Decide"}']) == 12
    assert float(lines["offerd_decision_seconds_count"]) == 12
    assert float(lines['offerd_offers_proposed_total{space="web_home"}']) >= 12


def test_json_logs_are_one_object_per_line(capsys):
    import logging

    from offerd.server import logs

    logs.setup(json_lines=True)
    try:
        logs.set_worker(3)
        logging.getLogger("offerd.server").info("hello %s", "there")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("offerd.server").exception("failed")
    finally:
        logs.set_worker(None)
        logging.getLogger().handlers[:] = []
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "hello there" and lines[0]["worker"] == 3 and lines[0]["level"] == "info"
    assert lines[0]["time"].endswith("Z") and "ValueError: boom" in lines[1]["exception"]


def test_a_missed_deadline_is_deadline_exceeded_and_harms_nothing(client):
    def slow_profiles():
        yield pb.Profile(contact_id="d1", attributes={"age": pb.Value(int_value=1)})
        time.sleep(3.0)  # the deadline passes while the stream is open
        yield pb.Profile(contact_id="d2", attributes={"age": pb.Value(int_value=2)})

    t = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        client.profiles.BulkLoad(slow_profiles(), timeout=0.3)
    assert code(e) == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t < 2.5  # not the stream's end
    assert client.decide(["web_home"], "late", attributes=ADULT).spaces[0].propositions


def test_decide_batch_answers_each_request_in_order(client, server):
    requests = [decide_request(["web_home"], f"batch{i}", attributes=ADULT, context={"page": "cart", "device": "x"},
                               request_id=f"b{i}") for i in range(50)]
    requests[10] = decide_request(["nowhere"], "x", request_id="b10")
    replies = client.decide_batch(requests)
    assert [r.WhichOneof("reply") for r in replies] == ["decision"] * 10 + ["error"] + ["decision"] * 39
    assert replies[10].error.code == "NOT_FOUND" and replies[10].error.request_id == "b10"
    assert [r.decision.request_id for r in replies if r.HasField("decision")] == [f"b{i}" for i in range(50) if i != 10]
    ids = [p.id for r in replies if r.HasField("decision") for p in r.decision.spaces[0].propositions]
    assert len(ids) >= 49 and all(ids)
    with server.store.env.begin() as txn:
        assert all(txn.get(bytes.fromhex(i), db=server.store.db["props"]) for i in ids)
    with pytest.raises(grpc.RpcError) as e:
        client.decide_batch([decide_request(["web_home"], "x")] * 1001)
    assert code(e) == grpc.StatusCode.INVALID_ARGUMENT and "at most 1000" in e.value.details()

    async def stream():
        async with AsyncClient(server.target) as c:
            batches = [pb.DecideBatchRequest(requests=[decide_request(["web_home"], f"s{j}-{i}", attributes=ADULT)
                                                       for i in range(20)]) for j in range(5)]
            return [len(r.replies) async for r in c.decide_batch_stream(iter(batches))]

    assert asyncio.run(stream()) == [20] * 5


def test_a_batch_mixing_dry_runs_and_recorded_decisions_answers_in_order(client, server):
    """Dry runs are decided inline and recorded ones together (their writes share commits);
    the replies still come back in the requests' order, errors in their places."""
    requests = [decide_request(["web_home"], f"mix{i}", attributes=ADULT, dry_run=i % 3 == 0, request_id=f"m{i}")
                for i in range(30)]
    requests[6] = decide_request(["nowhere"], "x", dry_run=True, request_id="m6")
    requests[7] = decide_request(["nowhere"], "x", request_id="m7")
    replies = client.decide_batch(requests)
    assert [r.decision.request_id or r.error.request_id for r in replies] == [f"m{i}" for i in range(30)]
    assert [i for i, r in enumerate(replies) if r.HasField("error")] == [6, 7]
    for i, r in enumerate(replies):
        if r.HasField("decision"):
            ids = [p.id for p in r.decision.spaces[0].propositions]
            assert ids and (all(x == "" for x in ids) if i % 3 == 0 else all(ids)), (i, ids)
    assert server.store.read_history(Contact("mix0")) == []  # a dry run recorded nothing
    assert server.store.read_history(Contact("mix1"))


def test_admin_simulate_streams_progress_then_the_report(client, server):
    people = "\n".join(json.dumps({"id": f"p{i}", "age": 20 + i % 50, "segment": "gold", "country": "FR"})
                       for i in range(1500)) + "\n{\"id\": \"bad\", \"age\": \"x\"}\n"
    replies = list(client.simulate(["web_home"], people.encode(), context_json='{"page": "cart", "device": "mobile"}',
                                   time_us=1_795_000_000_000_000))
    assert replies[-1].HasField("report_json") and all(r.HasField("progress") for r in replies[:-1])
    assert replies[-2].progress.done == replies[-2].progress.total == 1501
    report = json.loads(replies[-1].report_json)
    assert report["contacts"] == 1500 and report["bad_rows"] == 1
    assert report["bad_row_examples"][0].startswith("line 1501: contact.age")
    assert sum(report["spaces"]["web_home"]["ranks"][0].values()) + report["spaces"]["web_home"]["fallback_only"] == 1500
    assert server.store.read_history(Contact("p1")) == []  # nothing recorded
    live, label = next((v.hash, v.label) for v in client.versions() if v.live)
    by_hash = json.loads(list(client.simulate(["web_home"], people.encode(), version=live,
                                              time_us=1_795_000_000_000_000))[-1].report_json)
    assert by_hash["catalog"] == live and by_hash["contacts"] == 1500
    assert label and report["run"]["catalog"] == by_hash["run"]["catalog"] == {"label": label, "hash": live}
    assert report["run"]["context"] == {"page": "cart", "device": "mobile"}
    assert report["run"]["population"] == {"file": None, "contacts": 1500, "bad_rows": 1}
    with pytest.raises(grpc.RpcError) as e:
        list(client.simulate(["web_home"], people.encode(), version="0" * 64))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        list(client.simulate(["nope"], people.encode()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        list(client.simulate(["web_home"], people.encode(), context_json="[1]"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with Client(server.target, admin_token="wrong") as wrong, pytest.raises(grpc.RpcError) as e:
        list(wrong.simulate(["web_home"], people.encode()))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_loaded_catalog_is_kept_out_of_full_collections(server):
    import gc

    assert gc.get_freeze_count() > 0  # Live.load froze the heap once the catalog was compiled


def test_a_cancelled_simulation_stops_and_the_server_goes_on(client, server):
    people = "".join(json.dumps({"id": f"p{i}", "age": 30}) + "\n" for i in range(60_000)).encode()
    call = client.simulate(["web_home"], people)
    first = next(call)
    assert first.HasField("progress") and first.progress.done < first.progress.total
    call.cancel()
    with pytest.raises(grpc.RpcError) as e:
        list(call)
    assert e.value.code() == grpc.StatusCode.CANCELLED
    assert client.decide(["web_home"], "after", attributes=ADULT).spaces[0].propositions


def test_refused_requests_of_a_batch_are_counted_under_the_batch_method(client, server):
    """Each method counts its own errors: a batch's refused requests are DecideBatch's (or
    DecideBatchStream's), not DecideStream's."""
    from prometheus_client import REGISTRY

    def errors(method):
        return REGISTRY.get_sample_value("offerd_errors_total", {"method": method, "code": "NOT_FOUND"}) or 0.0

    methods = ("DecideBatch", "DecideBatchStream", "DecideStream")
    before = {m: errors(m) for m in methods}
    replies = client.decide_batch([decide_request(["nowhere"], "x"), decide_request(["nowhere"], "y", dry_run=True),
                                   decide_request(["web_home"], "z", attributes=ADULT)])
    assert [r.WhichOneof("reply") for r in replies] == ["error", "error", "decision"]

    async def stream():
        async with AsyncClient(server.target) as c:
            batches = iter([pb.DecideBatchRequest(requests=[decide_request(["nowhere"], "s")])])
            return [r async for r in c.decide_batch_stream(batches)]

    assert len(asyncio.run(stream())) == 1
    assert {m: errors(m) - before[m] for m in methods} == {"DecideBatch": 2, "DecideBatchStream": 1, "DecideStream": 0}
