"""The store's memory of recent contacts: a decision that reuses a contact's remembered
profile and history index decides exactly as one that reads and decodes them afresh, after
any write: this process's, another process's, a status report, pruning. Real LMDB."""
from __future__ import annotations

import datetime
import os
import random
import subprocess
import sys

from offerd.engine import Engine, Request
from offerd.lang import check
from offerd.store import Contact, Store

T = datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
CATALOG = {"00.offer": """
schema contact { age: int }
schema context { }
category promo { cap 3 per contact per 2d }
space web { limit 2 }
offer a { spaces web  category promo  weight 10  cap 1 per contact per 1d }
offer b { spaces web  category promo  weight 8 - proposed(b, 7d)  eligible rejected(b, 3d) == 0 }
offer c { spaces web  weight 6  eligible accepted(a, 2d) == 0  cap 4 per contact }
offer d { spaces web  weight 1 + (contact.age ?? 0) / 100 }
"""}


def _why(engine: Engine, contact: str, when: datetime.datetime):
    d = engine.decide(Request(("web",), contact, time=when, dry_run=True, explain=True))
    return [(x.offer, x.kind, x.rule) for x in d.spaces[0].explain]


def _fresh(engine: Engine, contact: str, when: datetime.datetime):
    engine.store.recent.clear()
    return _why(engine, contact, when)


def test_remembered_contacts_decide_as_fresh_reads_after_every_kind_of_write(tmp_path):
    """Random recorded decisions, reports, profile changes and prunes over 12 days; after each,
    a dry decision for a random contact from memory equals one read afresh."""
    rnd = random.Random(5)
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, check(CATALOG))
        contacts = [f"c{i}" for i in range(6)]
        ids, when, compared = [], T, 0
        for step in range(400):
            when += datetime.timedelta(minutes=rnd.choice([1, 10, 60, 240]))
            who = rnd.choice(contacts)
            roll = rnd.random()
            if roll < 0.45:
                d = engine.decide(Request(("web",), who, time=when))
                ids += [p.id for p in d.spaces[0].proposals]
            elif roll < 0.65 and ids:
                pid = rnd.choice(ids)
                try:
                    engine.record(pid, rnd.choice(["presented", "accepted", "rejected"]), when)
                except Exception as e:  # accepted after rejected, pruned: refused, nothing written
                    assert type(e).__name__ in ("ImpossibleMove", "NotFound")
            elif roll < 0.72:
                store.put_profile(Contact(who), {"age": rnd.randint(18, 90)})
            elif roll < 0.76:
                store.prune((when - rnd.choice([1, 3, 5]) * DAY).timestamp(), chunk=rnd.choice([2, 1000]))
            remembered = _why(engine, who, when)  # a read that fills the memory
            again = _why(engine, who, when)  # from memory, if the contact is unchanged
            assert again == remembered == _fresh(engine, who, when), f"step {step}"
            compared += 1
        assert store.recent.hits > compared // 2  # the memory was used, not bypassed


def test_the_writer_keeps_the_memory_current_across_recorded_decisions(tmp_path):
    """A contact decided (and recorded) again and again reads its history from memory after
    each write, and decides as a store without the memory does."""
    got = []
    for size, name in ((10_000, "memory"), (0, "none")):
        with Store(str(tmp_path / name)) as store:
            store.recent.size = size
            engine = Engine(store, check(CATALOG))
            got.append([engine.decide(Request(("web",), "al", time=T + i * datetime.timedelta(hours=7))).offers("web")
                        for i in range(8)])
            got.append(store.recent.hits)
    assert got[0] == got[2] and got[0][:3] == [["a", "b"], ["b", "c"], ["c", "d"]]  # caps and weights at work
    # from memory: every read after the second (the first finds a contact never seen, with
    # nothing to remember; the second reads the history its first decision wrote)
    assert (got[1], got[3]) == (6, 0)


ELSEWHERE = """
import datetime, sys
from offerd.engine import Engine, Request
from offerd.lang import check
from offerd.store import Store
from test_recent import CATALOG, T
with Store(sys.argv[1]) as store:
    print(Engine(store, check(CATALOG)).decide(Request(("web",), "al", time=T)).offers("web"))
"""


def test_a_write_by_another_process_is_seen(tmp_path):
    path = str(tmp_path / "db")
    with Store(path) as store:
        engine = Engine(store, check(CATALOG))
        before = _why(engine, "al", T)
        done = subprocess.run([sys.executable, "-c", ELSEWHERE, path], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)})
        assert done.stdout.strip() == "['a', 'b']", done.stderr
        after = _why(engine, "al", T)
        assert after == _fresh(engine, "al", T)
    assert dict((o, k) for o, k, _ in before)["a"] == "won"
    assert dict((o, k) for o, k, _ in after)["a"] == "cap"  # cap 1 per contact per 1d: taken elsewhere


def test_pruning_changes_what_a_remembered_contact_counts(tmp_path):
    """`cap 4 per contact` counts all the history kept: once pruning takes old propositions,
    the contact is below the cap again, in memory as on disk."""
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, check(CATALOG))
        for day in (0, 6):  # c's lifetime cap is reached on day 6
            for hour in range(8):
                engine.decide(Request(("web",), "al", time=T + day * DAY + hour * datetime.timedelta(hours=1)))
        made = [r.time_us for r in store.read_history(Contact("al")) if r.offer == "c"]
        assert len(made) == 4 and min(made) < (T + 5 * DAY).timestamp() * 1e6
        when = T + 7 * DAY
        capped = _why(engine, "al", when)
        assert dict((o, k) for o, k, _ in capped)["c"] == "cap"
        store.prune((T + 5 * DAY).timestamp())
        after = _why(engine, "al", when)
        assert after == _fresh(engine, "al", when)
        assert dict((o, k) for o, k, _ in after)["c"] != "cap"


def test_a_status_reached_inside_its_window_counts_for_a_proposition_made_before_it(tmp_path):
    """`accepted(a, 2d)` counts an acceptance made inside the last 2 days of a proposition made
    8 days ago: the decision reads the contact's history back further than any window (7d)."""
    source = """space web { limit 2 }
offer a { spaces web  weight 10  cap 1 per contact per 7d }
offer c { spaces web  weight 6  eligible accepted(a, 2d) == 0 }"""
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, check({"a.offer": source}))
        d = engine.decide(Request(("web",), "al", time=T - 8 * DAY))
        (pid,) = [p.id for p in d.spaces[0].proposals if p.offer == "a"]
        engine.record(pid, "accepted", T - DAY)
        why = dict((o, k) for o, k, _ in _fresh(engine, "al", T))
    assert why == {"a": "won", "c": "eligible"}


def test_a_prune_stopping_inside_a_contact_leaves_nothing_remembered_of_what_it_took(tmp_path):
    """Pruning in steps of 2 deletions stops inside a contact's history and resumes there;
    a decision between any two steps, and after the last, counts as a fresh read does."""
    from offerd.store.prune import prune_step

    source = """space web { limit 2 }
offer o { spaces web  weight 10 }
offer p { spaces web  weight 5  eligible accepted(o, 7d) == 0 }"""
    now = T
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, check({"a.offer": source}))
        for days in (43, 42, 41, 40):
            d = engine.decide(Request(("web",), "al", time=now - days * DAY))
            if days == 42:
                (old,) = [x.id for x in d.spaces[0].proposals if x.offer == "o"]
        engine.decide(Request(("web",), "al", time=now - datetime.timedelta(seconds=100)))
        engine.record(old, "accepted", now - datetime.timedelta(seconds=50))
        cutoff = int((now - 35 * DAY).timestamp() * 1e6)
        kinds, start = [], b""
        while start is not None:
            remembered = _why(engine, "al", now)  # read, or remembered, before the step
            assert _why(engine, "al", now) == remembered == _fresh(engine, "al", now)
            _why(engine, "al", now)  # remembered again for the step to invalidate
            kinds.append(dict((o, k) for o, k, _ in remembered)["p"])
            _, start = store.submit(lambda txn, s=start: prune_step(txn, store.db, "history", cutoff, 2, s)).result()
        assert _why(engine, "al", now) == _fresh(engine, "al", now)
        after = dict((o, k) for o, k, _ in _fresh(engine, "al", now))
    assert kinds[0] == "eligible" and after["p"] == "won"  # the acceptance went with its proposition
