"""Fine counters only for the totals a catalog reads: a (kind, name, status) pair's second,
minute, hour and day counters are kept once it is tracked, rebuilt from the event index when
it starts being tracked; a pair that is not tracked is counted in the event index. Either
way a total is the same exact count, whenever tracking started, in this process or another."""
import os
import random
import subprocess
import sys
import textwrap
import threading

import pytest

from offerd import lang
from offerd.domain import CapCheck, NewProposition
from offerd.engine import Engine
from offerd.store import Store, StoreFull
from offerd.store.keys import STATUS_BYTE, U64, Contact, ref_key
from offerd.store.tracking import PREFIX

T0 = 1_790_000_000.0
OFFERS = ("a", "b", "c")
PAIRS = [("offer", o, s) for o in OFFERS for s in ("proposed", "presented", "accepted")] + \
        [("category", "loyalty", "proposed"), ("space", "web", "proposed"), ("pair", "a/web", "presented")]


def history(store: Store, seed: int, n: int = 300) -> None:
    """n propositions over the 3 days before T0, some presented and accepted later."""
    rnd = random.Random(seed)
    for i in range(n):
        at = T0 - rnd.uniform(0, 3 * 86400)
        pid = store.record_decision(Contact(f"c{i % 17}"), at,
                                    [NewProposition(rnd.choice(OFFERS), "web", ("loyalty",))])[0]
        if rnd.random() < 0.4:
            store.report(pid, "accepted" if rnd.random() < 0.3 else "presented", at + rnd.uniform(1, 7200))


def windows(seed: int, n: int = 60, floor: float = T0 - 3 * 86400 - 10):
    """Windows of every size, on and off bucket boundaries, all starting after `floor`."""
    rnd = random.Random(seed)
    out = [(None, T0), (T0 - 86400, T0), (T0 - 3600, T0), (T0 - 60, T0)]
    for _ in range(n):
        lo = rnd.uniform(floor, T0)
        out.append((lo, rnd.uniform(lo, T0 + 60)))
    return out


def totals(store: Store, spans) -> list[int]:
    return [store.total(kind, name, status, lo, hi) for kind, name, status in PAIRS for lo, hi in spans]


def counters(store: Store) -> dict:
    with store.env.begin() as txn:
        return dict(txn.cursor(db=store.db["counters"]))


def grains(store: Store) -> int:
    with store.env.begin() as txn:
        return sum(1 for key, _ in txn.cursor(db=store.db["counters"]) if key[key.index(b"\0") + 2:][:1] != b"L")


def test_a_total_is_the_same_whether_its_pair_was_tracked_from_the_start_later_or_never(tmp_path):
    always, later, never = (Store(str(tmp_path / name)) for name in ("always", "later", "never"))
    try:
        always.track(PAIRS)
        for s in (always, later, never):
            history(s, seed=3)
        assert grains(never) == 0 and grains(later) == 0 and grains(always) > 0  # no fine counters kept untracked
        assert later.track(PAIRS) == len(PAIRS) and later.track(PAIRS) == 0
        spans = windows(seed=5)
        expected = totals(always, spans)
        assert totals(later, spans) == expected
        assert totals(never, spans) == expected
        history(later, seed=4, n=50)  # tracked now: new events go to its fine counters too
        history(always, seed=4, n=50)
        assert totals(later, spans) == totals(always, spans)
    finally:
        for s in (always, later, never):
            s.close()


def test_tracking_after_a_prune_counts_what_counters_kept_all_along_count(tmp_path):
    always, later = Store(str(tmp_path / "always")), Store(str(tmp_path / "later"))
    try:
        always.track(PAIRS)
        cutoff = T0 - 2 * 86400 + 1234.5  # inside a day, an hour and a minute
        for s in (always, later):
            history(s, seed=7)
            s.prune(cutoff)
        later.track(PAIRS)
        spans = windows(seed=8, floor=cutoff + 1)
        assert totals(later, spans) == totals(always, spans)
    finally:
        always.close()
        later.close()


def test_fine_counters_left_by_an_older_store_are_rebuilt_not_added_to(tmp_path):
    """Older stores kept fine counters for every pair, tracked or not: once such a pair is
    tracked its stale counters must not count twice, nor count what came since."""
    old, fresh = Store(str(tmp_path / "old")), Store(str(tmp_path / "fresh"))
    try:
        old.track(PAIRS)
        history(old, seed=11)
        with old.env.begin(write=True) as txn:  # as an older offerd left it: counters, no marks
            for kind, name, status in PAIRS:
                txn.delete(PREFIX + ref_key(kind, name) + STATUS_BYTE[status], db=old.db["meta"])
        old.close()
        old = Store(str(tmp_path / "old"))
        history(old, seed=12, n=80)  # untracked now: these events reach no fine counter
        for seed in (11, 12):
            history(fresh, seed=seed, n=300 if seed == 11 else 80)
        cutoff = T0 - 2 * 86400 + 1234.5  # some stale counters keep events the index no longer has
        old.prune(cutoff)
        fresh.prune(cutoff)
        old.track(PAIRS)
        fresh.track(PAIRS)
        spans = windows(seed=13, floor=cutoff + 1)
        assert totals(old, spans) == totals(fresh, spans)
        assert counters(old) == counters(fresh)  # the same fine counters, as if never kept before
    finally:
        old.close()
        fresh.close()


def test_tracking_while_decisions_are_written_loses_and_doubles_nothing(tmp_path):
    """The tracking transaction is one of its own: decisions queued around it in the same
    batch are counted once, either in the rebuild or in the counters after it."""
    store = Store(str(tmp_path / "db"), durability="fast")
    try:
        cap = CapCheck("total", "offer", "a", "proposed", 86400.0, 10**9)
        stop, errors = threading.Event(), []

        def writer(k):
            i = 0
            try:
                while not stop.is_set():
                    store.record_decision(Contact(f"w{k}-{i}"), T0 - i % 500, [NewProposition("a", "web", ("loyalty",), (cap,))])
                    i += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            for name in OFFERS:  # several tracking transactions among the decisions
                store.track([("offer", name, "proposed"), ("space", "web", "proposed")])
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors
        spans = [(T0 - 86400, T0), (T0 - 300, T0), (T0 - 61.5, T0 - 3.25), (None, T0)]
        got = [store.total("offer", "a", "proposed", lo, hi) for lo, hi in spans]
        with store.env.begin() as txn:  # every proposition made has its event key: count them by hand
            times = [U64.unpack_from(key, 4)[0] / 1e6 for key, _ in txn.cursor(db=store.db["events"])
                     if key.startswith(b"oa\0P")]
        assert got == [sum(1 for t in times if (lo is None or t > lo) and t <= hi) for lo, hi in spans]
        assert store.total("space", "web", "proposed", T0 - 86400, T0) == got[0]
    finally:
        store.close()


def test_a_catalog_loaded_tracks_the_totals_it_reads_and_nothing_else(tmp_path):
    files = {"c.offer": textwrap.dedent("""\
        schema contact { age: int }
        space web { limit 2 }
        category loyalty { cap 100 total per 7d }
        offer a { spaces web  category loyalty  cap 5 total per 1d  cap 9 per contact per 1d }
        offer b { spaces web  weight 3 * propensity }
        offer c { spaces web  cap 50 total }
        """)}
    store = Store(str(tmp_path / "db"))
    try:
        Engine(store, lang.check(files))
        with store.env.begin() as txn:
            marks = sorted(key[len(PREFIX):] for key, _ in txn.cursor(db=store.db["meta"]) if key.startswith(PREFIX))
        assert marks == sorted([b"cloyalty\0P", b"oa\0P", b"oc\0P", b"pb/web\0S", b"pb/web\0A"])
    finally:
        store.close()


def test_another_process_writing_keeps_the_counters_of_a_pair_tracked_meanwhile(tmp_path):
    """Each writer reads which pairs are tracked in every transaction it commits: a process
    that was writing before a pair got tracked keeps its fine counters from then on."""
    path = str(tmp_path / "db")
    store = Store(path)
    store.track([("offer", "b", "proposed")])  # something tracked already when the child starts
    script = textwrap.dedent(f"""
        import sys, time
        from offerd.domain import NewProposition
        from offerd.store import Store, StoreFull
        from offerd.store.keys import Contact
        s = Store({path!r})
        s.record_decision(Contact("first"), {T0} - 5000, [NewProposition("a", "web", ("loyalty",))])
        print("ready", flush=True)  # its writer has committed once: it has read what is tracked
        sys.stdin.readline()
        for i in range(200):
            s.record_decision(Contact(f"x{{i}}"), {T0} - i * 37.5, [NewProposition("a", "web", ("loyalty",))])
        s.close()
        print("done", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "ready"
        history(store, seed=21, n=40)
        store.track([("offer", "a", "proposed")])
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        assert child.wait(30) == 0
        fresh = Store(str(tmp_path / "fresh"))
        try:
            history(fresh, seed=21, n=40)
            fresh.record_decision(Contact("first"), T0 - 5000, [NewProposition("a", "web", ("loyalty",))])
            for i in range(200):
                fresh.record_decision(Contact(f"x{i}"), T0 - i * 37.5, [NewProposition("a", "web", ("loyalty",))])
            fresh.track([("offer", "a", "proposed")])
            spans = windows(seed=22, floor=T0 - 3 * 86400 - 10)
            assert [store.total("offer", "a", "proposed", lo, hi) for lo, hi in spans] == \
                [fresh.total("offer", "a", "proposed", lo, hi) for lo, hi in spans]
        finally:
            fresh.close()
    finally:
        if child.poll() is None:
            child.kill()
        store.close()


def test_a_windowed_total_cap_holds_on_a_pair_nobody_tracked(tmp_path):
    """A cap check the engine did not plan (the store's own API): counted in the event index."""
    store = Store(str(tmp_path / "db"))
    try:
        cap = CapCheck("total", "offer", "a", "proposed", 3600.0, 3)
        got = [store.record_decision(Contact(f"k{i}"), T0 + i, [NewProposition("a", "web", (), (cap,))])[0]
               for i in range(6)]
        assert [g is not None for g in got] == [True] * 3 + [False] * 3
        assert grains(store) == 0
    finally:
        store.close()


def test_a_transaction_older_than_the_tracking_does_not_read_counters_it_cannot_see(tmp_path):
    """What one thread learnt (a pair is tracked) holds only for transactions that see the
    tracking's commit: a read begun before it still counts in the event index."""
    store = Store(str(tmp_path / "db"))
    try:
        history(store, seed=31, n=60)
        head = ref_key("offer", "a") + STATUS_BYTE["proposed"]
        tracked = store._tracked
        with store.env.begin() as before:
            store.track([("offer", "a", "proposed")])
            with store.env.begin() as after:
                assert tracked.has(after, head)  # learnt here
            assert not tracked.has(before, head)  # and not believed where it is not so
    finally:
        store.close()


def test_a_catalog_whose_pairs_cannot_be_tracked_still_loads_and_counts_exactly(tmp_path, caplog):
    """A rebuild too large for the map (or a full disk) leaves the pairs untracked: the
    catalog goes live all the same and its totals are counted in the event index."""
    store = Store(str(tmp_path / "db"), durability="fast", map_size=1 << 21)
    try:
        made = 0
        with pytest.raises(StoreFull):
            for i in range(100_000):  # events in as many seconds as the map takes
                store.record_decision(Contact(f"f{i % 50}"), T0 - i * 1.5, [NewProposition("a", "web", ())])
                made += 1
        files = {"c.offer": "schema contact { age: int }\nspace web { limit 1 }\n"
                            "offer a { spaces web  cap 1000000 total per 30d }\n"}
        engine = Engine(store, lang.check(files))
        assert "counted in the event index" in caplog.text
        assert engine.catalog is not None and grains(store) == 0
        assert store.total("offer", "a", "proposed", T0 - 30 * 86400, T0) == made
    finally:
        store.close()
