"""The engine beyond the conformance cases: concurrency against exact caps, asyncio, dry
runs, catalog switches, stored profiles under a changed schema. Real LMDB in a temp dir."""
from __future__ import annotations

import asyncio
import datetime
import multiprocessing
import threading

import pytest

from offerd.engine import BadRequest, Engine, NoCatalog, NotFound, Request, UnknownSpace
from offerd.lang import check
from offerd.store import Contact, Store

T = datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc)
CATALOG = {"00.offer": """
schema contact { segment: string  age: int }
schema context { }
space web { limit 2  fallback none }
offer hot { spaces web  weight 10  cap 5 total }
offer mine { spaces web  weight 5  cap 2 per contact per 1d }
offer none { spaces web }
"""}


@pytest.fixture
def engine(tmp_path):
    store = Store(str(tmp_path / "db"))
    yield Engine(store, check(CATALOG))
    store.close()


def _race(path: str, worker: int, threads: int, decisions: int, out) -> None:
    store = Store(path)  # opened after the fork, in this process
    engine = Engine(store, check(CATALOG))
    got = []

    def run(t):
        for i in range(decisions):
            contact = "same" if i % 2 else f"c{worker}-{t}-{i}"
            d = engine.decide(Request(("web",), contact, time=T + datetime.timedelta(seconds=i)))
            got.extend((contact, o) for o in d.offers("web"))

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    store.close()
    out.put(got)


def test_threads_and_processes_never_exceed_caps(tmp_path):
    """4 processes x 4 threads decide for one shared contact and for many others: the total
    cap and the shared contact's cap are reached exactly, never passed."""
    path = str(tmp_path / "db")
    Store(path).close()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, w, 4, 12, out)) for w in range(4)]
    for p in procs:
        p.start()
    got = [x for _ in procs for x in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(1 for _, o in got if o == "hot") == 5
    assert sum(1 for c, o in got if c == "same" and o == "mine") == 2
    with Store(path) as store:
        assert store.total("offer", "hot", "proposed", None, T.timestamp() + 100) == 5
        assert len([r for r in store.read_history(Contact("same")) if r.offer == "mine"]) == 2


def test_asyncio_decisions_share_commits_and_respect_caps(engine):
    async def main():
        return await asyncio.gather(*(engine.decide_async(Request(("web",), f"a{i}", time=T))
                                      for i in range(40)))

    commits = engine.store.commits
    decisions = asyncio.run(main())
    assert sum(d.offers("web").count("hot") for d in decisions) == 5
    assert all(p.id for d in decisions for r in d.spaces for p in r.proposals)
    assert engine.store.commits - commits < 40


def test_dry_run_records_nothing(engine):
    for _ in range(10):
        d = engine.decide(Request(("web",), "al", time=T, dry_run=True))
        assert d.offers("web") == ["hot", "mine"]
        assert all(p.id is None for p in d.spaces[0].proposals)
    assert engine.store.read_history(Contact("al")) == []
    assert engine.store.total("offer", "hot", "proposed", None, T.timestamp()) == 0


def test_a_new_catalog_decides_the_next_request(engine):
    assert engine.decide(Request(("web",), "al", time=T, dry_run=True)).offers("web") == ["hot", "mine"]
    engine.load(check({"00.offer": CATALOG["00.offer"].replace("weight 10", "weight 1")}))
    assert engine.decide(Request(("web",), "al", time=T, dry_run=True)).offers("web") == ["mine", "hot"]


def test_stored_profile_under_a_changed_schema(engine):
    engine.store.put_profile(Contact("al"), {"segment": "gold", "age": "forty", "gone": 1})
    engine.load(check({"00.offer": CATALOG["00.offer"].replace(
        "offer mine { spaces web", 'offer mine { spaces web  eligible contact.segment == "gold" and not has(contact.age)')}))
    # `gone` is no longer declared and `age` has the wrong type: both are left out, the rest used
    assert engine.decide(Request(("web",), "al", time=T, dry_run=True)).offers("web") == ["hot", "mine"]


def test_requests_the_engine_refuses(engine, tmp_path):
    with pytest.raises(BadRequest, match="timezone"):
        engine.decide(Request(("web",), "al", time=datetime.datetime(2026, 11, 2)))
    with pytest.raises(BadRequest, match="at least one space"):
        engine.decide(Request((), "al"))
    with pytest.raises(BadRequest, match="visitor id"):
        engine.decide(Request(("web",), None, anonymous=True))
    with pytest.raises(BadRequest, match="256"):
        engine.decide(Request(("web",), "x" * 300))
    with pytest.raises(UnknownSpace, match="spaces: web"):
        engine.decide(Request(("mail",), "al"))
    with pytest.raises(NotFound):
        engine.record("zz", "presented")
    with pytest.raises(NoCatalog):
        Engine(engine.store).decide(Request(("web",), "al"))


def test_the_clock_decides_when_the_request_gives_no_time(engine):
    before = datetime.datetime.now(datetime.timezone.utc)
    d = engine.decide(Request(("web",), "al"))
    assert before <= d.time <= datetime.datetime.now(datetime.timezone.utc)
    (rec,) = [r for r in engine.store.read_history(Contact("al")) if r.offer == "hot"]
    assert abs(rec.time_us / 1e6 - d.time.timestamp()) < 1e-3


def test_a_cap_taken_between_deciding_and_committing_is_left_out(engine):
    """The rules saw room under `cap 5 total`; before this decision committed, others took
    the last places: the store's re-check refuses it, and the answer leaves it out."""
    for i in range(4):
        engine.decide(Request(("web",), f"early{i}", time=T))
    work = engine._prepare(Request(("web",), "late", time=T, explain=True))
    assert [p.offer.name for p in work.picks] == ["hot", "mine"]
    engine.decide(Request(("web",), "meanwhile", time=T))  # takes the fifth place
    engine._commit(work, engine.store.record_decision(work.contact, work.moment.ts, engine._props(work)))
    d = engine._answer(work)
    assert [(p.offer, p.rank) for p in d.spaces[0].proposals] == [("mine", 1)]
    why = {x.offer: x.kind for x in d.spaces[0].explain}
    assert why["hot"] == "cap at commit"
    assert engine.store.total("offer", "hot", "proposed", None, T.timestamp()) == 5


@pytest.mark.parametrize("window, when", [("36500d", T), ("1d", datetime.datetime(1970, 1, 1, 0, 0, 1,
                                                                                 tzinfo=datetime.timezone.utc))],
                         ids=["a century's window", "a decision in 1970"])
def test_windows_reaching_before_1970_count_from_the_start(tmp_path, window, when):
    """The window's start is before 1970: the store counts from its start (was struct.error)."""
    source = f"space web {{ limit 1 }}\noffer o {{ spaces web  cap 2 per contact per {window}  " \
             f"cap 3 total per {window}  weight propensity }}"
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, check({"a.offer": source}))
        got = [engine.decide(Request(("web",), f"c{i // 2}", time=when + datetime.timedelta(seconds=i))).offers("web")
               for i in range(6)]
    assert got == [["o"], ["o"], ["o"], [], [], []]  # the total cap: 3 in the window
