"""Faults: workers and servers killed under load, a full disk, a broken deploy, pruning.

Servers run as `offerd serve` in their own process group on 127.0.0.1, with a real LMDB
under tmp_path. Outcomes are kept as a history: what was acknowledged must be there after
the fault, what was refused must not, and what timed out or was cut off may be either.
"""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

from offerd import lang
from offerd.client import Client
from offerd.examples import CATALOG
from offerd.server.app import prune_cutoff
from offerd.server.config import Config
from offerd.engine.decide import Engine
from offerd.store.keys import Contact
from offerd.store import Store

from served import ADULT, Served, stored

CUT_OFF = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class Outcomes:
    """What clients were told, kept to be checked against the store afterwards."""

    def __init__(self):
        self.lock = threading.Lock()
        self.decided: dict[str, str] = {}  # acknowledged proposition id → contact
        self.reported: dict[str, str] = {}  # proposition id → status acknowledged
        self.refused: list[tuple[str, grpc.StatusCode]] = []  # what the server said no to
        self.cut_off: list[grpc.StatusCode] = []  # may or may not have happened
        self.other: list[str] = []  # anything else: a failure of the test
        self.last_answer: dict[int, float] = {}  # load thread → when it was last answered

    def call(self, what: str, fn):
        try:
            return fn()
        except grpc.RpcError as e:
            with self.lock:
                if e.code() in CUT_OFF:
                    self.cut_off.append(e.code())
                elif e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self.refused.append((what, e.code()))
                else:
                    self.other.append(f"{what}: {e.code().name}: {e.details()}")
            return None


def decide_and_report(target: str, k: int, out: Outcomes, stop: threading.Event, contacts: int = 12):
    """Decisions for a few contacts (so caps fill), and reports on about half of what they
    got: presented, then accepted or rejected; now and then an impossible move, refused."""
    with Client(target, timeout=5, options=[("offerd.test.connection", k)]) as c:
        i = 0
        while not stop.is_set():
            who = f"c{(k * 7 + i) % contacts}"
            d = out.call("decide", lambda: c.decide(["web_home"], who, attributes=ADULT))
            if d is None:
                time.sleep(0.05)  # as a gateway backs off before retrying
            else:
                out.last_answer[k] = time.monotonic()
                ids = [p.id for p in d.spaces[0].propositions]
                with out.lock:
                    out.decided.update(dict.fromkeys(ids, who))
                for j, pid in enumerate(ids[: (i % 2) + 1]):
                    status = ("accepted", "rejected", "presented")[(i + j) % 3]
                    if out.call("record", lambda: c.record(pid, status)) is not None:
                        with out.lock:
                            out.reported[pid] = status
                        if status == "accepted":  # already accepted: this move is impossible
                            out.call(f"record {pid} rejected", lambda: c.record(pid, "rejected"))
            i += 1


def start_load(target: str, threads: int, out: Outcomes):
    stop = threading.Event()
    ts = [threading.Thread(target=decide_and_report, args=(target, k, out, stop), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()

    def finish():
        stop.set()
        for t in ts:
            t.join(30)

    return finish


def check_history(store: Store, out: Outcomes) -> None:
    """Acknowledged decisions and reports are stored; refused moves are not; caps held."""
    assert out.other == []
    missing = [pid for pid in out.decided if stored(store, pid) is None]
    assert missing == [], f"{len(missing)} acknowledged decisions lost"
    for pid, status in out.reported.items():
        assert status in stored(store, pid).events, f"acknowledged {status} of {pid} lost"
    for what, _ in out.refused:
        _, pid, status = what.split()
        assert status not in stored(store, pid).events, f"refused {what} was stored"
    for who in set(out.decided.values()):
        check_caps(store, who)


def check_caps(store: Store, who: str) -> None:
    """web_home: cap 6 per contact per 1d (the fallback, welcome, ignores caps);
    gold_upgrade: cap 3 per contact per 7d."""
    records = store.read_history(Contact(who))
    capped = [r.time_us for r in records if r.space == "web_home" and r.offer != "welcome"]
    assert sliding_ok(capped, 6, 86_400_000_000), who
    gold = [r.time_us for r in records if r.offer == "gold_upgrade"]
    assert sliding_ok(gold, 3, 7 * 86_400_000_000), who


def sliding_ok(times_us: list[int], cap: int, window_us: int) -> bool:
    times = sorted(times_us)
    return all(b - a >= window_us for a, b in zip(times, times[cap:]))


# --- workers and servers killed -------------------------------------------------------------

def test_a_killed_worker_is_replaced_and_the_others_keep_answering(tmp_path):
    s = Served(tmp_path, "--workers", "2")
    try:
        first = s.workers(2)
        out = Outcomes()
        finish = start_load(s.target, 6, out)
        time.sleep(1.0)
        before = len(out.decided)
        os.kill(first[0], signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(3.0)
        after_kill = len(out.decided)
        finish()
        # every client was answered again, those connected to the killed worker after reconnecting
        assert all(out.last_answer[k] > killed + 1 for k in range(6)), out.last_answer
        second = s.workers(2)
        assert first[0] not in second and first[1] in second
        assert after_kill > before + 20  # decisions went on while a worker was gone
        # the replacement serves: with the other original worker gone too, it answers alone
        s.wait_log("offerd serving on", 3)
        os.kill(first[1], signal.SIGKILL)
        replacement = next(p for p in second if p != first[1])
        answered = []
        with Client(s.target, timeout=10, options=[("offerd.test.fresh", 1)]) as c:
            for i in range(100):  # a connection made as the worker died is reset: the gateway retries
                if len(answered) == 20:
                    break
                try:
                    answered.append(c.decide(["web_home"], f"after{i}", attributes=ADULT).spaces[0].propositions)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE and not answered
                    time.sleep(0.1)
        assert len(answered) == 20 and all(answered)
        assert os.path.exists(f"/proc/{replacement}")
        third = s.workers(2)
        assert replacement in third
        s.wait_log("offerd serving on", 4)  # two workers, then their two replacements
    finally:
        code = s.stop()
    log = s.output()
    assert code == 0, log
    assert f"worker 0 (pid {first[0]}) ended (signal 9); starting another" in log
    assert log.count("stopped in") == 2
    with Store(os.path.join(s.data, "db")) as store:
        check_history(store, out)
    assert set(out.cut_off) <= {grpc.StatusCode.UNAVAILABLE}


def test_sigkill_of_the_whole_server_loses_nothing_acknowledged_and_caps_hold(tmp_path):
    s = Served(tmp_path, "--workers", "2")
    out = Outcomes()
    try:
        s.workers(2)
        finish = start_load(s.target, 6, out)
        time.sleep(2.5)
        s.kill()
        finish()
    finally:
        if s.proc.poll() is None:
            s.kill()
    assert len(out.decided) > 50 and out.reported and out.refused
    assert set(out.cut_off) <= CUT_OFF
    with Store(os.path.join(s.data, "db")) as store:
        check_history(store, out)
    # restarted on the same data: the caps count what came before the kill
    s = Served(tmp_path, "--workers", "2")
    more = Outcomes()
    try:
        finish = start_load(s.target, 4, more)
        time.sleep(1.0)
        finish()
    finally:
        assert s.stop() == 0, s.output()
    with Store(os.path.join(s.data, "db")) as store:
        check_history(store, more)
        for who in {f"c{i}" for i in range(12)}:
            check_caps(store, who)


# --- a full disk ----------------------------------------------------------------------------

def test_a_full_disk_is_resource_exhausted_and_writes_resume_when_room_is_made(tmp_path):
    limit = 4 << 20

    def small_files():  # the file size limit stands in for a full disk: no privileges needed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    s = Served(tmp_path, "--workers", "1", "--map-size", "1G", preexec=small_files)
    try:
        with Client(s.target, timeout=10) as c:
            stored_ok, full = [], None
            for i in range(200):
                try:
                    c.upsert_profile(f"big{i}", {"first_name": "x" * 60_000})
                    stored_ok.append(f"big{i}")
                except grpc.RpcError as e:
                    full = e
                    break
            assert full is not None and full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "file size limit" in full.details() and "make room" in full.details()
            assert 10 < len(stored_ok) < 200
            # small writes may still fit in free pages; the rest are refused the same way
            acked, refused = [], 0
            for i in range(300):
                try:
                    d = c.decide(["web_home"], f"while-full{i}", attributes=ADULT)
                    acked += [p.id for p in d.spaces[0].propositions]
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
                    refused += 1
            assert refused > 0
            # everything that needs no room goes on
            assert c.decide(["web_home"], "dry", attributes=ADULT, dry_run=True).spaces[0].propositions
            assert c.get_profile(stored_ok[-1]).attributes["first_name"].string_value == "x" * 60_000
            # room is made: the server goes on writing, without a restart
            resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            c.upsert_profile("after", {"first_name": "y"})
            d = c.decide(["web_home"], "after", attributes=ADULT)
            assert c.record(d.spaces[0].propositions[0].id, "presented")
            for who in stored_ok:
                assert c.get_profile(who).attributes["first_name"].string_value == "x" * 60_000
            for pid in acked:  # every acknowledged decision is there (a report on it works)
                c.record(pid, "presented")
    finally:
        code = s.stop()
    assert code == 0, s.output()
    assert "Traceback" not in s.output()


def test_a_full_map_is_resource_exhausted_and_a_larger_map_resumes_writes(tmp_path):
    s = Served(tmp_path, "--workers", "1", "--map-size", "1M")
    try:
        with Client(s.target, timeout=10) as c:
            stored_ok = []
            with pytest.raises(grpc.RpcError) as e:
                for i in range(100):
                    c.upsert_profile(f"big{i}", {"first_name": "x" * 60_000})
                    stored_ok.append(f"big{i}")
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "map is full" in e.value.details() and "larger map size" in e.value.details()
            assert c.decide(["web_home"], "dry", attributes=ADULT, dry_run=True).spaces[0].propositions
    finally:
        assert s.stop() == 0, s.output()
    assert len(stored_ok) > 3
    s = Served(tmp_path, "--workers", "1", "--map-size", "64M")  # room made: a larger map
    try:
        with Client(s.target, timeout=10) as c:
            c.upsert_profile("after", {"first_name": "y" * 60_000})
            for who in stored_ok:
                assert c.get_profile(who).attributes["first_name"].string_value == "x" * 60_000
    finally:
        assert s.stop() == 0, s.output()


# --- catalogs -------------------------------------------------------------------------------

BROKEN = {
    "syntax": {"bad.offer": "offer x { weight 1 +  }"},
    "types": {"bad.offer": 'offer x { spaces web_home  weight contact.country * 2 }'},
    "traversal": {"../../escape.offer": "let a = 1"},
    "folder": {"sub/inner.offer": "let a = 1"},
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_deploy_under_load_is_refused_and_the_live_version_serves_on(tmp_path, kind):
    s = Served(tmp_path, "--workers", "2", "--admin-token", "t")
    try:
        with Client(s.target, admin_token="t") as admin:
            live = next(v.hash for v in admin.versions() if v.live)
            count = len(admin.versions())
            out = Outcomes()
            finish = start_load(s.target, 4, out)
            try:
                files = dict(lang.read_dir(CATALOG), **BROKEN[kind])
                with pytest.raises(grpc.RpcError) as e:
                    admin.deploy(files)
                time.sleep(1.2)  # more than a worker's poll
            finally:
                finish()
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "error" in e.value.details()
            assert [v.hash for v in admin.versions() if v.live] == [live]
            assert len(admin.versions()) == count
        assert out.other == [] and len(out.decided) > 10 and out.cut_off == []
    finally:
        assert s.stop() == 0, s.output()
    if kind in ("traversal", "folder"):
        assert not os.path.exists(tmp_path.parent / "escape.offer")


# --- pruning --------------------------------------------------------------------------------

SHORT = """
schema contact { age: int }
space web { channel inbound  limit 1  cap 5 per contact per 2s }
offer hello { spaces web  cap 1 total per 1s  weight 1 }
offer bye { spaces web }
"""


def test_the_server_prunes_history_no_rule_reads(tmp_path):
    s = Served(tmp_path, "--workers", "1", "--admin-token", "t", "--retain", "1s", "--prune-every", "0.5s")
    try:
        with Client(s.target, admin_token="t", timeout=10) as c:
            c.deploy({"short.offer": SHORT})
            time.sleep(1.0)
            old = [c.decide(["web"], f"p{i}").spaces[0].propositions[0].id for i in range(20)]
            time.sleep(4.0)  # past the 2 s window and the 1 s retention, and a prune or more
            with pytest.raises(grpc.RpcError) as e:
                c.record(old[0], "presented")
            assert e.value.code() == grpc.StatusCode.NOT_FOUND and "pruned" in e.value.details()
            new = c.decide(["web"], "p0").spaces[0].propositions[0].id
            assert c.record(new, "presented")  # what is recent stays
    finally:
        assert s.stop() == 0, s.output()
    assert "pruned" in s.output()


def test_pruning_keeps_what_the_live_catalog_reads():
    config = Config(retain=60)
    now = 1_800_000_000.0
    engine = Engine(None, lang.check({"short.offer": SHORT}))
    assert prune_cutoff(engine, config, now) == now - 60  # the retention beats the 2 s window
    assert prune_cutoff(engine, Config(retain=0), now) == now - 2
    example = Engine(None, lang.load(CATALOG))
    # its longest window: a calendar month, 31 days and a day to spare for clock changes
    assert prune_cutoff(example, Config(retain=0), now) == now - 32 * 86400
    uses_propensity = "space web { channel inbound }\noffer a { spaces web  weight propensity * 10 }"
    assert prune_cutoff(Engine(None, lang.check({"a.offer": uses_propensity})), Config(retain=0), now) == \
        now - 30 * 86400
    assert prune_cutoff(Engine(None), config, now) is None  # nothing live: nothing pruned


def test_workers_dying_over_and_over_stop_the_server(tmp_path):
    s = Served(tmp_path, "--workers", "2")
    killed = set()
    try:
        s.workers(2)
        deadline = time.monotonic() + 60
        while s.proc.poll() is None and time.monotonic() < deadline:  # until the supervisor gives up
            try:
                with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as f:
                    pids = [int(p) for p in f.read().split() if int(p) not in killed]
            except FileNotFoundError:
                break
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.add(pids[0])
            time.sleep(0.1)
        s.proc.wait(30)
    finally:
        s.stop()
    assert s.proc.returncode == 1
    assert "10 restarts within a minute: stopping" in s.output()
    assert len(killed) >= 11


@pytest.mark.parametrize("reuseport", [False, True], ids=["another program", "another offerd (SO_REUSEPORT)"])
def test_a_port_taken_by_another_program_stops_the_start_with_a_message(tmp_path, reuseport):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuseport))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{port}",
                              "--data", str(tmp_path), "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert got.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in got.stderr
