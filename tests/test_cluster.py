"""A cluster on loopback: three `offerd serve` shards, Redis and HAProxy, each a real
process (offerd.cluster.local), called through the balancer as a gateway would."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import threading
import time
from types import SimpleNamespace

import grpc
import pytest

from offerd.client import AsyncClient, Client, decide_request, route
from offerd.store import Contact, Store
from offerd.cluster.local import LocalCluster
from offerd.cluster.routing import FORWARDED, shard_of
from offerd.cluster.topology import load
from offerd.v1 import offerd_pb2 as pb
from offerd.v1 import offerd_pb2_grpc as rpc

import test_conformance as conf

pytestmark = pytest.mark.skipif(not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"))
                                or not shutil.which("redis-server"),
                                reason="haproxy and redis-server are installed by `make test`")

CAPPED = """schema contact { }
schema context { }
space web { limit 1 }
offer rare { spaces web  weight 10  cap 5 total per 1d }
offer plain { spaces web  weight 1 }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path, shards=3, catalog=None) -> LocalCluster:
    """A cluster serving `catalog` ({file: text}) from its start: each shard loads it from a
    folder as it starts (a deploy through the balancer after the start made each test wait for
    the shards' next catalog check, 1.6 s)."""
    folder = None
    if catalog is not None:
        folder = tmp_path / "catalog"
        folder.mkdir()
        for name, text in catalog.items():
            (folder / name).write_text(text)
    cluster = LocalCluster(str(tmp_path / "cluster"), shards, f"127.0.0.1:{free_port()}", catalog=folder and str(folder),
                           extra=("--drain", "0", "--grace", "2"), check_every=0.2)
    cluster.start()
    return cluster


@pytest.fixture
def cluster(tmp_path):
    c = start(tmp_path, catalog={"a.offer": CAPPED})
    wait_ready(c)
    yield c
    c.stop(drain=False)


def wait_ready(cluster, heads=("offer:rare",), timeout=30) -> None:
    """Until every shard's part of the shared counts is in Redis (the caps are closed before)."""
    import redis
    host, port = cluster.redis_address.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    keys = [f"offerd:ready:{h}:{i}" for h in heads for i in range(len(cluster.shards))]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(v is not None for v in r.mget(keys)):
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError("the shards did not put their counts into Redis")


def mark(cluster) -> tuple:
    """The metadata of a call one shard passes to another: answered where it arrives."""
    return ((FORWARDED, load(cluster.cluster_file, 0).token),)


def direct(cluster, shard: int):
    """The shard's own stubs, called at its own address."""
    channel = grpc.insecure_channel(cluster.shards[shard])
    return channel, rpc.DecisionServiceStub(channel), rpc.AdminServiceStub(channel)


def offers(d) -> list[str]:
    return [p.offer for s in d.spaces for p in s.propositions]


# --- the engine's conformance scenarios, through the balancer ---------------------------

CODES = {"BadRequest": "INVALID_ARGUMENT", "InputError": "INVALID_ARGUMENT", "UnknownSpace": "NOT_FOUND",
         "NotFound": "NOT_FOUND", "ImpossibleMove": "FAILED_PRECONDITION", "NoCatalog": "FAILED_PRECONDITION"}


class Through:
    """The engine's calls made over gRPC, through the balancer."""

    def __init__(self, client: Client):
        self.client = client

    def decide(self, r):
        # on the wire 0 means "not given": the case's 0 goes as -1, refused the same way
        max_offers = 0 if r.max_offers is None else r.max_offers or -1
        d = self.client.decide(r.spaces, r.contact_id, anonymous=r.anonymous, attributes=r.attributes,
                               context=r.context, max_offers=max_offers, categories=r.categories,
                               themes=r.themes, dry_run=r.dry_run, explain=r.explain, time=r.time)
        return SimpleNamespace(spaces=[SimpleNamespace(
            space=s.space,
            proposals=[SimpleNamespace(offer=p.offer, id=p.id or None, content=dict(p.content),
                                       weight=p.weight if p.has_weight else None) for p in s.propositions],
            explain=[SimpleNamespace(offer=x.offer, kind=x.kind, rule=x.rule) for x in s.explain])
            for s in d.spaces])

    def record(self, pid, status, at):
        return self.client.record(pid, status, at)


# Propensity reads the presented and accepted counts of every contact, and a dry run's explain
# the rules' total counts: in a cluster, those of the shard's own contacts (docs/cluster.md;
# only a recorded decision asks the shared counts). These steps weigh with another contact's
# acceptance, or explain a total cap filled by other contacts, counted on other shards.
PER_SHARD = {("history_rules.case", 26), ("groups.case", 23)}


class ClusterScenario(conf.Scenario):
    def __init__(self, path, cluster: LocalCluster):
        files, self.steps = conf.split_file(open(path, encoding="utf-8").read())
        self.path, self.catalog = path, conf.check(files)
        self.client = Client(cluster.listen)
        self.client.deploy(files)
        from offerd.engine.plan import Plan
        wait_ready(cluster, tuple(Plan(self.catalog, shared=True).shared_heads))
        self.engine = Through(self.client)
        self.now = self.last = None
        self.ids = {}
        name = os.path.basename(path)
        self.steps = [(n, line) for n, line in self.steps if (name, n) not in PER_SHARD]

    def do_profile(self, ws, expect, where):
        self.client.upsert_profile(ws[0], self.values(conf.json.loads(ws[1])))

    def expect_error(self, fn, expect, where):
        m = conf.re.fullmatch(r"error (\w+)(?: (.*))?", expect)
        if not m:
            return fn()
        with pytest.raises(grpc.RpcError) as info:
            fn()
        assert info.value.code().name == CODES[m.group(1)], info.value.details()
        if m.group(2):
            assert m.group(2).strip('"') in info.value.details(), info.value.details()
        return None


@pytest.mark.parametrize("case", conf.CASES)
def test_conformance_through_the_balancer(case, tmp_path):
    cluster = start(tmp_path)
    try:
        scenario = ClusterScenario(os.path.join(conf.HERE, case), cluster)
        scenario.run()
        scenario.client.close()
    finally:
        cluster.stop(drain=False)


# --- routing -----------------------------------------------------------------------------

def test_a_contacts_decisions_land_on_its_shard_and_record_finds_it_from_the_id(cluster):
    with Client(cluster.listen) as c:
        ids = {}
        for who in [f"contact-{i}" for i in range(30)] + ["José", "客户-7"]:  # metadata is ASCII: sent by CRC
            d = c.decide(["web"], who)
            ids[who] = d.spaces[0].propositions[0].id
            assert len(ids[who]) == 44
            assert shard_of(ids[who], 3) == shard_of(who, 3)
        for who, pid in ids.items():
            assert c.record(pid, "presented") is True  # through the balancer, from the id alone
    owners = {shard_of(w, 3) for w in ids}
    assert owners == {0, 1, 2}
    for shard in range(3):  # each shard holds its own contacts' propositions, and no other's
        channel, decisions, _ = direct(cluster, shard)
        with channel:
            for who, pid in ids.items():
                request = pb.RecordRequest(proposition=pid, status="accepted")
                if shard_of(who, 3) == shard:
                    assert decisions.Record(request, metadata=mark(cluster)).changed
                else:
                    with pytest.raises(grpc.RpcError) as e:
                        decisions.Record(request, metadata=mark(cluster))
                    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_gateway_cannot_pass_for_a_shard(cluster):
    """A call to a shard that does not own the contact, with a forged mark, is still passed on
    to the owner: only the cluster's token makes a shard answer for another's contact."""
    who = next(f"forged-{i}" for i in range(100) if shard_of(f"forged-{i}", 3) == 1)
    channel, decisions, _ = direct(cluster, 0)
    with channel:
        for md in (((FORWARDED, "1"),), ((FORWARDED, ""),)):
            d = decisions.Decide(decide_request(["web"], who), metadata=md)
            assert shard_of(d.spaces[0].propositions[0].id, 3) == 1
            channel1, decisions1, _ = direct(cluster, 1)
            with channel1:  # the owner has it: Record answered there with the true mark
                assert decisions1.Record(pb.RecordRequest(proposition=d.spaces[0].propositions[0].id,
                                                          status="presented"), metadata=mark(cluster)).changed


def test_a_stream_of_many_contacts_is_decided_by_each_owner(cluster):
    """A stream reaches one shard; it passes each message on to the contact's owner."""
    with Client(cluster.listen) as c:
        requests = [decide_request(["web"], f"s-{i}") for i in range(24)]
        replies = list(c.decisions.DecideStream(iter(requests), metadata=route("s-0")))
        assert [r.WhichOneof("reply") for r in replies] == ["decision"] * 24
        for i, r in enumerate(replies):
            assert shard_of(r.decision.spaces[0].propositions[0].id, 3) == shard_of(f"s-{i}", 3)
            assert c.record(r.decision.spaces[0].propositions[0].id, "presented")


def test_the_async_client_splits_a_stream_by_shard_and_answers_in_order(cluster):
    names = [f"split-{i}" for i in range(40)]

    async def run():
        async with AsyncClient(cluster.listen) as c:
            requests = [decide_request(["web"], n, request_id=n) for n in names] + [decide_request(["web"])]
            return [r async for r in c.decide_stream(iter(requests), shards=3)]
    replies = asyncio.run(run())
    assert [r.decision.request_id for r in replies] == names + [""]  # in order, the unknown contact too
    with Client(cluster.listen) as c:
        for name, r in zip(names, replies):
            pid = r.decision.spaces[0].propositions[0].id
            assert shard_of(pid, 3) == shard_of(name, 3) and c.record(pid, "presented")


def test_a_split_stream_ends_with_the_error_of_its_requests_iterator(cluster):
    def requests():
        for i in range(5):
            yield decide_request(["web"], f"it-{i}")
        raise ValueError("the gateway's source broke")

    async def run(source):
        got = []
        async with AsyncClient(cluster.listen) as c:
            async for r in c.decide_stream(source, shards=3):
                got.append(r)
        return got
    with pytest.raises(ValueError, match="source broke"):
        asyncio.run(run(requests()))
    assert asyncio.run(run(iter([]))) == []


def test_a_streams_messages_for_a_shard_that_is_down_fail_alone_and_work_again_when_it_is_back(cluster):
    """The shard that receives the stream passes other shards' messages on over one stream
    per owner: when an owner dies, only its messages fail, and the next ones open a new one,
    every answer matched to its own message (twice over: a broken stream leaves nothing
    behind that could shift the next one's answers)."""
    first = next(f"d-{i}" for i in range(100) if shard_of(f"d-{i}", 3) == 0)  # the stream goes to shard 0
    rounds = iter(range(100))

    def stream():
        r = next(rounds)
        names = [first] + [f"d{r}-{i}" for i in range(30)]
        with Client(cluster.listen) as c:
            replies = list(c.decisions.DecideStream(
                iter([decide_request(["web"], n, request_id=n) for n in names]), metadata=route(first)))
        for name, reply in zip(names, replies):  # each answer is its own message's
            got = reply.decision.request_id if reply.WhichOneof("reply") == "decision" else reply.error.request_id
            assert got == name
        return names, replies

    for _ in range(2):
        names, replies = stream()
        assert all(r.WhichOneof("reply") == "decision" for r in replies)  # shard 0's relays are open
        cluster.signal("shard-2", signal.SIGKILL)
        cluster.wait("shard-2")
        names, replies = stream()
        for name, r in zip(names, replies):
            if shard_of(name, 3) == 2:
                assert r.WhichOneof("reply") == "error" and r.error.code == "UNAVAILABLE", r
                assert "shard 2" in r.error.message
            else:
                assert r.WhichOneof("reply") == "decision", r
        cluster.start_shard(2)
        time.sleep(1.0)  # the other shards' channels to it try again within a second
    names, replies = stream()
    assert all(r.WhichOneof("reply") == "decision" for r in replies), [r.error for r in replies if r.error.code]


# --- total caps across shards ------------------------------------------------------------

def _burst(cluster, names) -> list:
    def one(name):
        with Client(cluster.listen) as c:
            return offers(c.decide(["web"], name))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, names))


def test_a_total_cap_holds_across_shards_under_concurrent_decisions(cluster):
    got = _burst(cluster, [f"burst-{i}" for i in range(200)])
    assert sum(o == ["rare"] for o in got) == 5
    assert all(o in (["rare"], ["plain"]) for o in got)


def test_a_total_cap_holds_when_redis_restarts_empty_in_the_middle(cluster):
    first = _burst(cluster, [f"r1-{i}" for i in range(3)])
    assert sum(o == ["rare"] for o in first) == 3
    cluster.signal("redis", signal.SIGKILL)
    cluster.wait("redis")
    with Client(cluster.listen) as c:  # Redis gone: the capped offer fails closed
        assert offers(c.decide(["web"], "while-down")) == ["plain"]
    cluster.start_redis()  # empty: the shards put their counts back before the cap opens
    deadline = time.monotonic() + 30
    rare = 0
    names = iter(f"r2-{i}" for i in range(10_000))
    while time.monotonic() < deadline and rare < 2:
        rare += sum(o == ["rare"] for o in _burst(cluster, [next(names) for _ in range(20)]))
    assert rare == 2  # 3 before, 2 after: never more than 5
    assert sum(o == ["rare"] for o in _burst(cluster, [next(names) for _ in range(100)])) == 0


# --- faults ------------------------------------------------------------------------------

def test_a_killed_shard_loses_nothing_and_only_its_contacts_see_errors(cluster):
    names = [f"k-{i}" for i in range(60)]
    acked, failed = {}, []

    def one(name):
        try:
            with Client(cluster.listen, timeout=5) as c:
                acked[name] = c.decide(["web"], name).spaces[0].propositions[0].id
        except grpc.RpcError as e:
            failed.append((name, e.code()))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, n) for n in names[:30]]
        time.sleep(0.05)
        cluster.signal("shard-1", signal.SIGKILL)
        futures += [pool.submit(one, n) for n in names[30:]]
        concurrent.futures.wait(futures)
    cluster.wait("shard-1")
    assert all(shard_of(n, 3) == 1 and code == grpc.StatusCode.UNAVAILABLE for n, code in failed), failed
    assert all(n in acked for n in names[30:] if shard_of(n, 3) != 1)  # the others kept answering
    cluster.start_shard(1)
    with Client(cluster.listen) as c:
        for name, pid in acked.items():  # every acknowledged decision is there
            assert c.record(pid, "presented") is True, name


def test_a_rolling_restart_under_load_fails_no_call_and_counts_each_decision_once(tmp_path):
    """Each shard in turn drains (health NOT_SERVING, calls still served), stops and starts
    again while gateways decide; the client retries what the restarting shard's contacts
    are refused meanwhile, with a request id, so nothing fails and nothing counts twice."""
    cluster = LocalCluster(str(tmp_path / "cluster"), 3, f"127.0.0.1:{free_port()}",
                           extra=("--drain", "1", "--grace", "5"), check_every=0.2)
    cluster.start()
    acked, failed, stop = {}, [], threading.Event()
    try:
        with Client(cluster.listen) as c:
            c.deploy({"a.offer": CAPPED})

        def load(k):
            with Client(cluster.listen, timeout=5, retry_for=30) as c:
                i = 0
                while not stop.is_set():
                    name = f"roll-{k}-{i}"
                    i += 1
                    try:
                        acked[name] = c.decide(["web"], name).spaces[0].propositions[0].id
                    except grpc.RpcError as e:
                        failed.append((name, e.code(), e.details()))
        threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for i in range(3):
            time.sleep(0.5)
            cluster.signal(f"shard-{i}", signal.SIGTERM)
            assert cluster.wait(f"shard-{i}", 30) == 0
            cluster.start_shard(i)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        cluster.stop(drain=False)
    assert failed == []
    assert len(acked) > 100
    owners = [Store(os.path.join(cluster.folder, f"shard-{i}", "db")) for i in range(3)]
    try:
        for name, pid in acked.items():  # every decision there once, with the id it was answered
            history = owners[shard_of(name, 3)].read_history(Contact(name))
            assert [r.id.hex() for r in history] == [pid[:32]], name
    finally:
        for s in owners:
            s.close()


def test_a_retried_request_id_counts_once_through_the_cluster(cluster):
    with Client(cluster.listen) as c:
        first = c.decide(["web"], "again", request_id="req-1")
        second = c.decide(["web"], "again", request_id="req-1")
        assert first.spaces[0].propositions[0].id == second.spaces[0].propositions[0].id
        third = c.decide(["web"], "again", request_id="req-2")
        assert third.spaces[0].propositions[0].id != first.spaces[0].propositions[0].id


# --- admin -------------------------------------------------------------------------------

def test_a_deploy_through_the_balancer_reaches_every_shard(cluster):
    changed = CAPPED.replace("weight 1 }", "weight 2 }")
    with Client(cluster.listen) as c:
        digest = c.deploy({"a.offer": changed}).hash
    for shard in range(3):
        channel, _, admin = direct(cluster, shard)
        with channel:
            live = [v.hash for v in admin.ListVersions(pb.ListVersionsRequest()).versions if v.live]
        assert live == [digest], shard
        channel, decisions, _ = direct(cluster, shard)
        with channel:  # and its engine decides with it: the schema a CLI asks for, from any shard
            assert decisions.Schema(pb.SchemaRequest()).catalog == digest, shard
    with Client(cluster.listen) as c:  # through the balancer, no routing key: whichever shard, the same
        assert {c.schema().catalog for _ in range(6)} == {digest}
    with Client(cluster.listen) as c:  # and a rollback too
        back = c.rollback()
    assert back != digest
    for shard in range(3):
        channel, _, admin = direct(cluster, shard)
        with channel:
            assert [v.hash for v in admin.ListVersions(pb.ListVersionsRequest()).versions if v.live] == [back]


def live_on(cluster, shard: int) -> tuple[str, int]:
    channel, _, admin = direct(cluster, shard)
    with channel:
        got = admin.ListVersions(pb.ListVersionsRequest())
    return next(v.hash for v in got.versions if v.live), got.live_since_us


def test_a_late_push_of_an_older_change_does_not_undo_a_newer_one(cluster):
    """A change passed on between shards carries when it was made live, and applies only over
    an older one (a catch-up that read its state before a deploy, arriving after it)."""
    from offerd.cluster.forward import SINCE
    old = live_on(cluster, 1)[0]
    with Client(cluster.listen) as c:
        new = c.deploy({"a.offer": CAPPED.replace("weight 1 }", "weight 4 }")}).hash
    digest, since = live_on(cluster, 1)
    assert digest == new != old and [live_on(cluster, i) for i in (0, 2)] == [(new, since)] * 2
    channel, _, admin = direct(cluster, 1)
    with channel:
        admin.Activate(pb.ActivateRequest(hash=old), metadata=mark(cluster) + ((SINCE, str(since - 1)),))
        assert live_on(cluster, 1) == (new, since)  # older: refused
        admin.Activate(pb.ActivateRequest(hash=old), metadata=mark(cluster) + ((SINCE, str(since + 1)),))
        assert live_on(cluster, 1) == (old, since + 1)  # newer: taken, with its time


def test_a_deploy_with_a_shard_down_says_which_and_the_shard_catches_up_when_back(cluster):
    before = live_on(cluster, 2)[0]
    cluster.signal("shard-2", signal.SIGKILL)
    cluster.wait("shard-2")
    time.sleep(0.5)  # the balancer's check takes it out
    with Client(cluster.listen) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.deploy({"a.offer": CAPPED.replace("weight 1 }", "weight 3 }")})
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shard 2" in e.value.details()
    digest, since = live_on(cluster, 0)
    assert live_on(cluster, 1)[0] == digest != before and since > 0
    cluster.start_shard(2)
    deadline = time.monotonic() + 30
    while live_on(cluster, 2)[0] != digest and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_on(cluster, 2)[0] == digest
    time.sleep(3)  # and the others were not turned back to what shard 2 had
    assert [live_on(cluster, i)[0] for i in range(3)] == [digest] * 3


def test_a_shard_port_taken_before_it_binds_is_chosen_again(tmp_path):
    """Ports are free when chosen, but another process may bind one first: the cluster then
    starts on new ports instead of failing (it did, now and then, in the full suite)."""
    import socket

    cluster = LocalCluster(str(tmp_path / "c"), 2, f"127.0.0.1:{free_port()}")
    host, port = cluster.shards[0].rsplit(":", 1)
    taken = cluster.shards[0]
    with socket.socket() as blocker:
        blocker.bind((host, int(port)))
        blocker.listen()
        try:
            cluster.start()
            assert cluster.shards[0] != taken
            with Client(cluster.listen) as c:
                c.deploy({"a.offer": CAPPED})
                assert c.decide(["web"], "someone", dry_run=True).spaces[0].propositions
        finally:
            cluster.stop(drain=False)


def test_a_clusters_ports_are_distinct_and_not_the_balancers():
    """Shards and Redis get distinct ports, none the balancer's: ports chosen one at a time,
    each socket closed at once, came back twice now and then ("the cluster file names a shard
    address twice", seen once in the full suite)."""
    listen = free_port()
    for _ in range(5):
        cluster = LocalCluster("/nonexistent", 200, f"127.0.0.1:{listen}")
        ports = [a.rsplit(":", 1)[1] for a in [*cluster.shards, cluster.redis_address]]
        assert len(set(ports)) == 201 and str(listen) not in ports
