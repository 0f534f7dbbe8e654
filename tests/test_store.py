"""The LMDB store, on a real environment in a temp dir: history, exact totals, status
reports, caps re-checked under concurrency (threads and processes), versions, crashes,
a full map, corrupt values, pruning."""
import asyncio
import datetime
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from offerd.domain import CapCheck, NewProposition
from offerd.store.keys import Contact, us
from offerd.store import (Corrupt, ImpossibleMove, NotFound,
                                     Store, StoreError, StoreFull)

T0 = 1_790_000_000.0  # a fixed decision time (2026-09-21)
ALICE, BOB = Contact("alice"), Contact("bob")


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db"))
    yield s
    s.close()


def decide(store, contact, at, *offers, checks=()):
    return store.record_decision(contact, at, [NewProposition(o, "web", ("loyalty",), tuple(checks)) for o in offers])


def test_profiles_round_trip_and_absent(store):
    attrs = {"age": 30, "name": "Ann", "score": 1.5, "vip": True, "tags": frozenset({"a"}),
             "birthday": datetime.date(1990, 1, 2)}
    store.put_profile(ALICE, attrs)
    assert store.get_profile(ALICE) == attrs
    assert store.get_profile(BOB) is None


def test_history_newest_first_within_window(store):
    for i, offer in enumerate(["a", "b", "c"]):
        decide(store, ALICE, T0 + i, offer)
    decide(store, BOB, T0 + 5, "z")
    assert [r.offer for r in store.read_history(ALICE)] == ["c", "b", "a"]
    assert [r.offer for r in store.read_history(ALICE, since=T0 + 0.5)] == ["c", "b"]


def test_anonymous_and_identified_ids_do_not_collide(store):
    decide(store, Contact("42"), T0, "a")
    decide(store, Contact("42", anonymous=True), T0, "b")
    assert [r.offer for r in store.read_history(Contact("42"))] == ["a"]
    assert [r.offer for r in store.read_history(Contact("42", anonymous=True))] == ["b"]


def test_totals_are_exact_for_any_window(store):
    rnd = random.Random(7)
    times = sorted(T0 - rnd.uniform(0, 3 * 86400) for _ in range(400))
    for t in times:
        decide(store, Contact(f"c{rnd.randrange(20)}"), t, "a")
    for _ in range(200):
        until = T0 - rnd.uniform(0, 3 * 86400)
        window = rnd.choice([30, 60, 61, 3599, 3600, 7200.5, 86400, 2 * 86400, rnd.uniform(1, 3 * 86400)])
        expected = sum(1 for t in times if us(until - window) < us(t) <= us(until))
        assert store.total("offer", "a", "proposed", until - window, until) == expected
    assert store.total("offer", "a", "proposed", None, T0) == 400
    assert store.total("category", "loyalty", "proposed", None, T0) == 400
    assert store.total("offer", "a", "proposed", None, times[99]) == 100  # lifetime up to a time


def test_totals_read_again_and_again_stay_exact_as_time_moves_and_events_come_and_go(store):
    """A total read again (the last count reused while the lifetime counter has not moved)
    against a brute-force count, as the clock moves on, events arrive (some dated in the
    past), the window changes and pruning takes old events."""
    rnd = random.Random(3)
    times: list[float] = []
    now, pruned = T0, None
    for step in range(300):
        now += rnd.choice([0.0, 1e-6, 0.4, 3, 61, 3600])
        roll = rnd.random()
        if roll < 0.3:
            t = now - rnd.choice([0, 0, 5, 90, 7200, 2 * 86400])  # now, or a replay in the past
            decide(store, Contact(f"c{rnd.randrange(9)}"), t, "a")
            times.append(t)
        elif roll < 0.33:
            cutoff = now - 3 * 86400
            store.prune(cutoff)
            pruned = cutoff
            times = [t for t in times if us(t) >= us(cutoff)]
        for window in rnd.sample([1, 60, 3600, 86400, 2 * 86400], 2):
            if pruned is not None and now - window < pruned:
                continue  # counts reaching before a prune's cutoff are not exact (see docs/storage.md)
            expected = sum(1 for t in times if us(now - window) < us(t) <= us(now))
            assert store.total("offer", "a", "proposed", now - window, now) == expected, (step, window)


def test_totals_are_exact_for_dense_events_and_sub_second_windows(store):
    """Bursts inside one second and one minute, and windows whose ends fall between them,
    exercise every grain's edges (day, hour, minute, second, event index)."""
    rnd = random.Random(11)
    times = sorted({round(T0 - rnd.choice([0.3, 2.5, 59.9, 61, 3599.5, 3601, 90000]) - rnd.uniform(0, 1.5), 6)
                    for _ in range(300)})
    for t in times:
        decide(store, ALICE, t, "a")
    ends = [T0 + 1] + [t + d for t in rnd.sample(times, 40) for d in (0, 1e-6, -1e-6)]
    for until in ends:
        for window in (1e-6, 0.5, 1, 1.000001, 59.5, 60, 3600.25, 86400, 10 * 86400):
            expected = sum(1 for t in times if us(until - window) < us(t) <= us(until))
            assert store.total("offer", "a", "proposed", until - window, until) == expected, (until, window)
        assert store.total("offer", "a", "proposed", None, until) == sum(1 for t in times if us(t) <= us(until))


def test_windowed_total_cap_inside_one_batch(store):
    """Many decisions in one group commit: the cap's re-check adds the batch's counts,
    not yet written to the counters, to the committed ones."""
    cap = CapCheck("total", "offer", "hot", "proposed", 60, 7)
    decide(store, BOB, T0 - 30, "hot")  # committed before: counts, and is inside the window
    decide(store, BOB, T0 - 61, "hot")  # outside the window
    gate, commits = threading.Event(), store.commits
    store.submit(lambda txn: gate.wait(10))  # holds the writer while the 40 queue up
    ops = [store.submit(store._decision_op(Contact(f"b{i}"), T0 + i / 100, [NewProposition("hot", "web", (), (cap,))]))
           for i in range(40)]
    gate.set()
    results = [f.result()[0] for f in ops]
    assert sum(r is not None for r in results) == 6
    assert results[:6] == [r for r in results[:6] if r is not None]  # the first six won
    assert store.total("offer", "hot", "proposed", T0 - 60, T0 + 1) == 7
    assert store.commits - commits <= 2  # the gate, the 40 with it or in the next batch


def test_reports_are_idempotent_and_imply_presented(store):
    (pid,) = decide(store, ALICE, T0, "a")
    assert store.report(pid, "accepted", T0 + 10) is True
    assert store.report(pid, "accepted", T0 + 20) is False
    assert store.report(pid, "presented", T0 + 30) is False
    (rec,) = store.read_history(ALICE)
    assert rec.events == {"accepted": us(T0 + 10), "presented": us(T0 + 10)}
    assert store.total("offer", "a", "presented", T0, T0 + 60) == 1
    assert store.total("offer", "a", "accepted", T0, T0 + 60) == 1
    with pytest.raises(ImpossibleMove, match="already accepted"):
        store.report(pid, "rejected", T0 + 40)
    with pytest.raises(NotFound):
        store.report(os.urandom(16), "presented")
    with pytest.raises(ValueError):
        store.report(pid, "proposed")
    view = store.history(ALICE)
    assert view.count(("offer", "a"), "accepted", T0, T0 + 60) == 1
    assert view.propensity("a", "web", T0 + 60) == (1 + 1) / (1 + 2)
    # presented 40 days before, accepted inside the window: a rate still, at most 1
    old = [decide(store, BOB, T0 - 40 * 86400, "b")[0] for _ in range(2)]
    for p in old:
        store.report(p, "presented", T0 - 40 * 86400)
        store.report(p, "accepted", T0 - 86400)
    assert store.history(BOB).propensity("b", "web", T0) == 1.0


def test_caps_are_rechecked_inside_the_transaction(store):
    total = CapCheck("total", "offer", "a", "proposed", 86400, 2)
    mine = CapCheck("contact", "category", "loyalty", "proposed", 3600, 1)
    assert decide(store, ALICE, T0, "a", checks=[total])[0] is not None
    # one decision never takes a cap past its limit: the second proposition sees the first
    assert decide(store, BOB, T0 + 1, "a", "a", checks=[total])[1] is None
    assert decide(store, Contact("carol"), T0 + 2, "a", checks=[total]) == [None]
    assert decide(store, ALICE, T0 + 3, "b", checks=[mine]) == [None]  # alice had loyalty/a
    assert decide(store, ALICE, T0 + 3601, "b", checks=[mine])[0] is not None
    # a per-contact cap sees the decision's own earlier propositions too
    once = CapCheck("contact", "offer", "z", "proposed", 60, 1)
    assert decide(store, Contact("dan"), T0, "z", "z", checks=[once])[1] is None


def test_the_writer_reuses_the_decisions_read_only_while_the_contact_is_unchanged(store):
    """record_decision(seen=...) skips re-reading the contact's history when no proposition
    was added since the decision read it; otherwise, or when the read was too short for the
    cap's window, it reads again, so a stale read never lets a cap pass."""
    cap = CapCheck("contact", "offer", "a", "proposed", 3600, 2)
    prop = [NewProposition("a", "web", (), (cap,))]
    decide(store, ALICE, T0 - 100, "a")
    _, seen = store.decision_inputs(ALICE, T0 - 3600, profile=False)
    assert store.record_decision(ALICE, T0, prop, seen)[0] is not None  # fresh read: 1 < 2
    assert store.record_decision(ALICE, T0, prop, seen) == [None]  # stale read: re-read, 2 made
    decide(store, BOB, T0 - 100, "a", "a")
    _, short = store.decision_inputs(BOB, T0 - 10, profile=False)  # reads 10 s, the cap counts 1 h
    assert store.record_decision(BOB, T0, prop, short) == [None]
    dana = Contact("dana")  # a write dated before her newest proposition changes her stamp too
    decide(store, dana, T0 - 100, "a")
    _, seen = store.decision_inputs(dana, T0 - 3600, profile=False)
    decide(store, dana, T0 - 200, "a")
    assert store.record_decision(dana, T0, prop, seen) == [None]
    _, fresh = store.decision_inputs(Contact("carol"), T0 - 3600, profile=False)
    assert store.record_decision(Contact("carol"), T0, prop * 3, fresh)[2] is None  # sees its own two


def test_a_failed_operation_leaves_nothing_and_its_batch_commits(store):
    """An operation fails before writing (here: a corrupt record in the history its cap
    reads), so nothing of it is written, its pending counters are taken back, and the
    other operations of the same transaction commit."""
    decide(store, ALICE, T0 - 10, "a")
    with store.env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor(db=store.db["history"]) if k.startswith(ALICE.key()) and k != ALICE.key())
        txn.put(key, b"\x07garbage", db=store.db["history"])
    mine = CapCheck("contact", "offer", "a", "proposed", 3600, 5)
    gate = threading.Event()
    store.submit(lambda txn: gate.wait(10))
    bad = store.submit(store._decision_op(ALICE, T0, [NewProposition("b", "web"),
                                                      NewProposition("a", "web", (), (mine,))]))
    good = store.submit(store._decision_op(BOB, T0, [NewProposition("b", "web")]))
    gate.set()
    with pytest.raises(Corrupt, match="alice"):
        bad.result()
    assert good.result()[0] is not None
    assert store.total("offer", "b", "proposed", T0 - 1, T0 + 1) == 1  # bob's alone
    assert [r.contact for r in store.read_history(BOB)] == [BOB.key()]


def test_per_contact_status_cap_sees_old_propositions_reported_lately(store):
    """A proposition made long before the window, presented inside it, counts: the
    re-check cannot stop reading history at the window's start for status caps."""
    (old,) = decide(store, ALICE, T0 - 30 * 86400, "a")
    for i in range(20):
        decide(store, ALICE, T0 - 20 * 86400 + i, "filler")
    store.report(old, "presented", T0 - 10)
    shown = CapCheck("contact", "offer", "a", "presented", 3600, 1)
    proposed = CapCheck("contact", "offer", "a", "proposed", 3600, 1)
    assert decide(store, ALICE, T0, "a", checks=[shown]) == [None]
    assert decide(store, ALICE, T0, "a", checks=[proposed])[0] is not None


def test_group_commit_under_threads_never_passes_a_cap(store):
    cap = CapCheck("total", "offer", "hot", "proposed", None, 5)
    results = []

    def worker(n):
        for i in range(25):
            results.extend(decide(store, Contact(f"t{n}-{i}"), T0 + i, "hot", checks=[cap]))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 5
    assert store.total("offer", "hot", "proposed", None, T0 + 100) == 5
    assert store.commits < 200  # decisions were batched into fewer transactions


def test_asyncio_callers_share_group_commits(store):
    async def main():
        commits = store.commits
        ids = await asyncio.gather(*(store.record_decision_async(Contact(f"a{i}"), T0, [NewProposition("x", "web")])
                                     for i in range(50)))
        assert store.commits - commits < 50  # batched: one event-loop wake-up per batch
        changed = await asyncio.gather(*(store.report_async(i[0], "accepted", T0 + 1) for i in ids))
        assert changed == [True] * 50
        with pytest.raises(NotFound):
            await store.report_async(b"\0" * 16, "presented")
        return ids

    ids = asyncio.run(main())
    assert store.total("offer", "x", "presented", None, T0 + 2) == 50
    assert store.total("offer", "x", "accepted", T0, T0 + 2) == 50
    assert len({i[0] for i in ids}) == 50


def test_versions_activate_and_roll_back(store):
    v1 = store.save_version({"a.offer": "space s { limit 1 }\n"}, "first")
    v2 = store.save_version({"a.offer": "space s { limit 2 }\n"}, "second")
    assert store.live() is None
    store.activate(v1)
    store.activate(v2)
    assert store.live()[0] == v2 and "limit 2" in store.live()[1]["a.offer"]
    assert [v["live"] for v in store.versions()] == [False, True]
    assert store.rollback() == v1 and store.live()[0] == v1
    assert store.live_hash() == store.live()[0]
    with pytest.raises(StoreError, match="nothing to roll back"):
        store.rollback()
    with pytest.raises(NotFound):
        store.activate("0" * 64)


def test_the_live_version_says_when_it_was_made_live(store):
    """A cluster's shards compare it: a catalog made live at start (0) is older than any
    change through the API."""
    v1 = store.save_version({"a.offer": "space s { limit 1 }\n"}, "first")
    v2 = store.save_version({"a.offer": "space s { limit 2 }\n"}, "second")
    assert store.live_since() == 0
    store.activate(v1, when=0)
    assert store.live_since() == 0
    t = time.time()
    store.activate(v2)
    assert abs(store.live_since() / 1e6 - t) < 60
    store.activate(v1, when=1_000.5)
    assert store.live_since() == 1_000_500_000
    store.rollback()
    assert abs(store.live_since() / 1e6 - t) < 60


def test_corrupt_values_give_clear_errors_and_the_rest_works(tmp_path):
    path = str(tmp_path / "db")
    with Store(path) as s:
        decide(s, ALICE, T0, "a")
        decide(s, BOB, T0, "b")
        s.put_profile(BOB, {"age": 3})
        with s.env.begin(write=True) as txn:
            key = next(k for k, _ in txn.cursor(db=s.db["history"]) if k.startswith(ALICE.key()) and k != ALICE.key())
            txn.put(key, b"\x07garbage", db=s.db["history"])
            txn.put(ALICE.key(), b"\xffnot a profile", db=s.db["profiles"])
        with pytest.raises(Corrupt, match="history record"):
            s.read_history(ALICE)
        with pytest.raises(Corrupt, match="profile of 'alice'"):
            s.get_profile(ALICE)
        assert [r.offer for r in s.read_history(BOB)] == ["b"]
        assert s.get_profile(BOB) == {"age": 3}
        assert decide(s, Contact("carol"), T0, "c")[0] is not None


def test_a_report_on_a_record_that_cannot_be_rewritten_leaves_nothing(store):
    """A stored record that decodes but cannot be encoded again (300 categories, more than
    the format holds): the report fails before writing anything, its event-index keys
    included, and the rest of its batch commits."""
    from offerd.store.keys import history_key
    from offerd.store.records import encode_new

    (pid,) = decide(store, ALICE, T0, "o")
    block = b"".join(bytes((len(x),)) + x for x in [b"o", b"web"] + [b"k"] * 300)
    hkey = history_key(ALICE.key(), us(T0), pid)
    store.submit(lambda txn: txn.put(hkey, encode_new(us(T0), block, ALICE.key(), pid), db=store.db["history"])).result()
    with pytest.raises(ValueError):
        store.report(pid, "presented", T0 + 1)
    with store.env.begin() as txn:
        assert not [k for k, _ in txn.cursor(db=store.db["events"]) if k.startswith(b"oo\0S")]
    assert store.total("offer", "o", "presented", None, T0 + 10) == 0
    assert decide(store, BOB, T0, "o")[0] is not None


def test_map_full_is_a_clear_error_and_the_store_keeps_working(tmp_path):
    path = str(tmp_path / "db")
    with Store(path, map_size=256 * 1024) as s:
        with pytest.raises(StoreFull, match="map is full"):
            for i in range(10_000):
                s.put_profile(Contact(f"c{i}"), {"bio": "x" * 2000})
        written = i
        assert s.get_profile(Contact("c0")) == {"bio": "x" * 2000}  # reads go on
        with pytest.raises(StoreFull):  # and the writer thread survived to refuse the next write
            s.put_profile(Contact("late"), {"bio": "y"})
    with Store(path, map_size=64 * 1024 * 1024) as s:  # room made: reopened with a larger map
        s.put_profile(Contact("late"), {"bio": "y"})
        assert s.get_profile(Contact("late")) == {"bio": "y"}
        assert s.get_profile(Contact(f"c{written - 1}")) == {"bio": "x" * 2000}


def test_pruning_removes_old_propositions(store):
    store.track([("offer", "a", "proposed"), ("offer", "b", "proposed")])  # fine counters kept for these
    old = decide(store, ALICE, T0 - 40 * 86400, "a")[0]
    decide(store, ALICE, T0, "b")
    with store.env.begin() as txn:
        before = {name: txn.stat(store.db[name])["entries"] for name in ("events", "counters")}
    assert store.prune(T0 - 30 * 86400) > 1  # the proposition, its event keys and old counters
    assert [r.offer for r in store.read_history(ALICE)] == ["b"]
    with store.env.begin() as txn:
        after = {name: txn.stat(store.db[name])["entries"] for name in ("events", "counters")}
    assert after["events"] < before["events"] and after["counters"] < before["counters"]
    assert store.total("offer", "b", "proposed", T0 - 86400, T0) == 1  # recent windows intact
    assert store.total("offer", "a", "proposed", None, T0) == 1  # lifetime counts stay
    with pytest.raises(NotFound):
        store.report(old, "presented")


def test_pruning_resumes_across_small_chunks_and_ignores_corrupt_values(store):
    old = [decide(store, Contact(f"c{i}"), T0 - 40 * 86400 + i, "a")[0] for i in range(25)]
    decide(store, BOB, T0, "b")
    with store.env.begin(write=True) as txn:  # a corrupt old record must not stop pruning
        key = next(k for k, _ in txn.cursor(db=store.db["history"]) if k.startswith(Contact("c3").key()) and k != Contact("c3").key())
        txn.put(key, b"\x07garbage", db=store.db["history"])
    commits = store.commits
    removed = store.prune(T0 - 30 * 86400, chunk=3)
    assert removed >= 25 and store.commits - commits > 25 // 3
    with store.env.begin() as txn:
        # bob's record and his stamp: the stamps of contacts with nothing left went too
        assert txn.stat(store.db["history"])["entries"] == 2 and txn.stat(store.db["props"])["entries"] == 1
        assert txn.get(BOB.key(), db=store.db["history"]) is not None
        assert all(txn.get(pid, db=store.db["props"]) is None for pid in old)
    assert [r.offer for r in store.read_history(BOB)] == ["b"]
    assert store.prune(T0 - 30 * 86400, chunk=3) == 0  # nothing left to do


def test_a_store_opened_before_fork_refuses_to_be_used_after(store):
    pid = os.fork()
    if pid == 0:  # child
        try:
            store.read_history(ALICE)
        except StoreError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


CHILD = textwrap.dedent("""
    import os, sys
    from offerd.store.keys import Contact
    from offerd.domain import NewProposition
    from offerd.store import Store
    store = Store(sys.argv[1])
    out = open(sys.argv[2], "a", buffering=1)
    i = int(sys.argv[3])
    while True:
        (pid,) = store.record_decision(Contact(f"c{i % 7}"), 1.79e9 + i, [NewProposition("a", "web")])
        out.write(f"{i} {pid.hex()}\\n")  # written only once the write call returned: acknowledged
        i += 1
""")


def test_acknowledged_writes_survive_sigkill(tmp_path):
    path, log = str(tmp_path / "db"), str(tmp_path / "acked.log")
    rnd = random.Random(3)
    start = 0
    for _ in range(20):
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, log, str(start)])
        try:
            child.wait(timeout=rnd.uniform(0.3, 0.9))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
        lines = open(log).read().splitlines() if os.path.exists(log) else []
        complete = [ln for ln in lines if len(ln.split()) == 2 and len(ln.split()[1]) == 32]
        start = len(complete) + 1000 * (_ + 1)
    acked = {bytes.fromhex(ln.split()[1]) for ln in complete}
    assert len(acked) > 20
    with Store(path) as s:  # reopens cleanly after 20 unclean exits
        with s.env.begin() as txn:
            missing = [p for p in acked if txn.get(p, db=s.db["props"]) is None]
        assert missing == []


RACER = textwrap.dedent("""
    import sys, threading
    from offerd.store.keys import Contact
    from offerd.domain import CapCheck, NewProposition
    from offerd.store import Store
    store = Store(sys.argv[1])
    total = CapCheck("total", "offer", "hot", "proposed", None, 5)
    mine = CapCheck("contact", "offer", "hot", "proposed", None, 2)
    warm = CapCheck("total", "offer", "warm", "proposed", 86400, 150)  # checked far below its limit
    won, warmed = [], []
    def run(t):
        for i in range(30):
            contact = Contact(f"c{i % 3}")
            won.extend(p for p in store.record_decision(contact, 1.79e9 + i, [NewProposition("hot", "web", (), (total, mine))]) if p)
            warmed.extend(p for p in store.record_decision(Contact(f"w{t}-{i}"), 1.79e9 + i, [NewProposition("warm", "web", (), (warm,))]) if p)
    threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(len(won), len(warmed))
    store.close()
""")


def test_processes_and_threads_racing_never_exceed_caps(tmp_path):
    path = str(tmp_path / "db")
    Store(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", RACER, path], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    wins, warm = zip(*(map(int, p.communicate(timeout=120)[0].split()) for p in procs))
    with Store(path) as s:
        committed = s.total("offer", "hot", "proposed", None, 1.8e9)
        per_contact = [len(s.read_history(Contact(f"c{i}"))) for i in range(3)]
        warm_committed = s.total("offer", "warm", "proposed", None, 1.8e9)
    assert sum(wins) == committed == 5
    assert sum(warm) == warm_committed == 150  # 240 tried: the cap, reached exactly
    assert all(n <= 2 for n in per_contact)


def test_fast_durability_writes_and_reopens(tmp_path):
    path = str(tmp_path / "db")
    with Store(path, durability="fast") as s:
        (pid,) = decide(s, ALICE, T0, "a")
        s.report(pid, "presented", T0 + 1)
    with Store(path) as s:
        assert [r.events for r in s.read_history(ALICE)] == [{"presented": us(T0 + 1)}]


def _set_format(path: str, value: bytes | None) -> None:
    import lmdb

    env = lmdb.open(path, max_dbs=8, subdir=True)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        if value is None:
            txn.delete(b"format", db=meta)
        else:
            txn.put(b"format", value, db=meta)
    env.close()


def test_a_store_of_another_format_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "db")
    with Store(path) as s:
        decide(s, ALICE, T0, "a")
        with s.env.begin() as txn:
            assert txn.get(b"format", db=s.db["meta"]) == b"2"  # stamped at creation
    _set_format(path, b"3")
    with pytest.raises(StoreError, match="in format '3', and this offerd reads format 2: it was written by a newer"):
        Store(path)
    _set_format(path, b"garbage")
    with pytest.raises(StoreError, match="not a store this offerd can read"):
        Store(path)
    for old in (None, b"1"):  # from before the stamp, or format 1 (fine counters for every pair): read, restamped
        _set_format(path, old)
        with Store(path) as s:
            assert len(s.read_history(ALICE)) == 1
            with s.env.begin() as txn:
                assert txn.get(b"format", db=s.db["meta"]) == b"2"  # an older offerd now refuses it


def test_serve_refuses_a_store_of_another_format_with_its_reason(tmp_path):
    data = tmp_path / "var"
    Store(str(data / "db")).close()
    _set_format(str(data / "db"), b"7")
    out = subprocess.run([sys.executable, "-m", "offerd.cli", "serve", "--listen", "127.0.0.1:0", "--data", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "in format '7', and this offerd reads format 2" in out.stderr and "Traceback" not in out.stderr


def test_totals_up_to_a_time_before_the_last_prune_count_no_later_events(store):
    """Up to a time after the last prune, an event index with nothing later means nothing
    later; before it, pruning took events the index no longer shows (while the day's counter
    still counts them), so the count walks the counters. (Counts reaching back before a
    prune are not exact in general: the finer counters are gone; they never count more.)"""
    midnight = T0 // 86400 * 86400
    store.track([("offer", "a", "proposed")])
    for i in range(3):
        decide(store, Contact(f"p{i}"), midnight + 5 * 3600 + i, "a")
    store.prune(midnight + 6 * 3600)
    assert store.total("offer", "a", "proposed", None, midnight - 1) == 0
    assert store.total("offer", "a", "proposed", midnight - 3600, midnight - 1) == 0
    assert store.total("offer", "a", "proposed", None, midnight + 7 * 3600) == 3
    assert store.total("offer", "a", "proposed", midnight + 6 * 3600, midnight + 7 * 3600) == 0
    assert store.prune(-5.0) == 0 and store.prune(0.0) == 0  # a cutoff before 1970: nothing to do
    assert store.total("offer", "a", "proposed", None, midnight + 7 * 3600) == 3


def test_a_store_folder_that_cannot_be_made_is_a_store_error(tmp_path):
    (tmp_path / "db").write_text("a file, not a folder")
    with pytest.raises(StoreError, match="cannot create the LMDB store's folder"):
        Store(str(tmp_path / "db"))


def test_unknown_durability_is_refused(tmp_path):
    with pytest.raises(StoreError, match="unknown durability 'safe': sync or fast"):
        Store(str(tmp_path / "db"), durability="safe")


def test_history_view_counts_match_a_brute_force_count(store):
    rnd = random.Random(5)
    for i in range(120):
        offer, t = rnd.choice(["a", "b", "c"]), T0 - rnd.uniform(0, 10 * 86400)
        cats = ("loyalty", "loyalty.gold") if offer == "a" else ()
        (pid,) = store.record_decision(ALICE, t, [NewProposition(offer, rnd.choice(["web", "app"]), cats)])
        r = rnd.random()
        if r < 0.6:
            status = "accepted" if r < 0.2 else "rejected" if r < 0.3 else "presented"
            store.report(pid, status, t + rnd.uniform(0, 86400))
    view = store.history(ALICE)
    assert view.size == 120
    for _ in range(300):
        kind, name = rnd.choice([("offer", "a"), ("offer", "b"), ("category", "loyalty.gold"), ("space", "web"),
                                 ("offer", "zzz")])
        status = rnd.choice(["proposed", "presented", "accepted", "rejected"])
        until = T0 - rnd.uniform(-86400, 10 * 86400)
        since = rnd.choice([None, until - rnd.uniform(0, 5 * 86400)])
        lo, hi = (-1 if since is None else us(since)), us(until)
        want = 0
        for rec in store.read_history(ALICE):
            ok = {"offer": rec.offer == name, "category": name in rec.categories, "space": rec.space == name}[kind]
            t = rec.time_us if status == "proposed" else rec.events.get(status)
            want += ok and t is not None and lo < t <= hi
        assert view.count((kind, name), status, since, until) == want


def test_writes_after_close_fail_instead_of_waiting_forever(tmp_path):
    """A prune still running when the server stops (its thread outlives the cancelled task)
    must not hang the stop: its next chunk fails."""
    s = Store(str(tmp_path / "db"))
    for i in range(300):
        decide(s, Contact(f"c{i}"), T0 - 40 * 86400, "a")
    errors = []

    def prune():
        try:
            s.prune(T0, chunk=1)
        except StoreError as e:
            errors.append(str(e))

    t = threading.Thread(target=prune)
    t.start()
    time.sleep(0.05)
    s.close()
    t.join(10)
    assert not t.is_alive()
    assert errors == ["the store is closed (the server is stopping)"]
    with pytest.raises(StoreError, match="closed"):
        s.put_profile(Contact("late"), {"a": 1})


def test_a_failed_write_is_told_apart_as_a_full_disk_or_not(store):
    import lmdb

    assert "is full" in store._writer.why_full(lmdb.Error("mdb_txn_commit: No space left on device"))
    assert "quota" in store._writer.why_full(lmdb.Error("mdb_txn_commit: Disk quota exceeded"))
    assert store._writer.why_full(lmdb.Error("mdb_txn_commit: Input/output error")) is None  # room enough here
