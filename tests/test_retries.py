"""Safe retries: a recorded Decide sent again with the same request id, for the same contact,
within the retry window, gets the first answer back (the same propositions, ids, time) and
counts once, also when the copies arrive together, also after a restart."""
import asyncio
import time

import pytest

from offerd import lang
from offerd.client import AsyncClient, Client, decide_request
from offerd.engine import Engine, Request, retries
from offerd.examples import CATALOG as EXAMPLE_CATALOG
from offerd.store import Contact, Store
from served import ADULT, Running, Served


def recorded(store: Store, contact: str) -> int:
    return len(store.read_history(Contact(contact)))


def answer(d):
    """The answer without its `replayed` flag, which only a copy's answer has."""
    out = type(d)()
    out.CopyFrom(d)
    out.replayed = False
    return out


def ids(answer) -> list[str]:
    return [p.id for s in answer.spaces for p in s.propositions]


@pytest.fixture
def local(tmp_path):
    """(store, engine) in this process: the bundled catalog on a store in a temp dir."""
    store = Store(str(tmp_path / "db"))
    yield store, Engine(store, lang.check(lang.read_dir(EXAMPLE_CATALOG)))
    store.close()


def test_a_retried_decision_gets_the_first_answer_and_counts_once(tmp_path):
    srv = Running(str(tmp_path))
    try:
        with Client(srv.target) as c:
            first = c.decide(["web_home"], "alice", attributes=ADULT, request_id="r-1")
            again = c.decide(["web_home"], "alice", attributes=ADULT, request_id="r-1")
            other = c.decide(["web_home"], "alice", attributes=ADULT, request_id="r-2")
            bob = c.decide(["web_home"], "bob", attributes=ADULT, request_id="r-1")  # another contact's r-1
            plain = c.decide(["web_home"], "alice", attributes=ADULT)  # no id: never taken for a retry
            dry = c.decide(["web_home"], "alice", attributes=ADULT, request_id="r-1", dry_run=True)
        assert ids(first) and all(ids(first))
        assert again.replayed and not first.replayed  # said to be the first answer, given again
        again.replayed = False
        assert again == first  # the same propositions, ids, decision time, catalog
        assert set(ids(other)).isdisjoint(ids(first)) and set(ids(bob)).isdisjoint(ids(first))
        assert set(ids(plain)).isdisjoint(ids(first))
        assert dry.spaces[0].propositions and not any(ids(dry))  # a dry run is decided afresh, records nothing
        assert recorded(srv.store, "alice") == len(ids(first)) + len(ids(other)) + len(ids(plain))
        assert recorded(srv.store, "bob") == len(ids(bob))
    finally:
        srv.stop()


def test_copies_of_a_request_arriving_together_count_once(tmp_path):
    srv = Running(str(tmp_path))

    async def burst():
        async with AsyncClient(srv.target) as c:
            return await asyncio.gather(*(c.decide(["web_home"], "carol", attributes=ADULT, request_id="burst")
                                          for _ in range(20)))

    try:
        answers = asyncio.run(burst())
        assert ids(answers[0]) and all(answer(a) == answer(answers[0]) for a in answers)
        assert sum(not a.replayed for a in answers) == 1  # the one decided
        assert recorded(srv.store, "carol") == len(ids(answers[0]))
    finally:
        srv.stop()


def test_after_the_retry_window_the_same_id_is_a_new_decision(tmp_path):
    srv = Running(str(tmp_path), retry_window=1.0)
    try:
        with Client(srv.target) as c:
            first = c.decide(["web_home"], "dave", attributes=ADULT, request_id="r")
            time.sleep(1.5)
            later = c.decide(["web_home"], "dave", attributes=ADULT, request_id="r")
        assert set(ids(later)).isdisjoint(ids(first))
    finally:
        srv.stop()


def test_a_retry_after_a_restart_still_gets_the_first_answer(tmp_path):
    s = Served(tmp_path)
    with Client(s.target) as c:
        first = c.decide(["web_home"], "erin", attributes=ADULT, request_id="before-restart")
    assert s.stop() == 0
    s = Served(tmp_path)
    try:
        with Client(s.target) as c:
            again = c.decide(["web_home"], "erin", attributes=ADULT, request_id="before-restart")
        assert again.replayed
        again.replayed = False
        assert again == first
    finally:
        s.stop()


def test_copies_decided_together_are_written_once_by_the_write_itself(local):
    """All the copies read before any is written: the write's own check keeps one."""
    store, engine = local
    request = Request(("web_home",), "frank", attributes=ADULT, request_id="same")

    async def together():
        return await asyncio.gather(*(engine.decide_async(request) for _ in range(20)))

    answers = asyncio.run(together())
    first = [p.id for p in answers[0].spaces[0].proposals]
    assert first and all([p.id for p in a.spaces[0].proposals] == first for a in answers)
    assert recorded(store, "frank") == len(first)


def test_answers_kept_for_retries_are_pruned_once_their_window_is_over(local):
    store, engine = local
    engine.retry_window = 60.0
    request = Request(("web_home",), "g0", attributes=ADULT, request_id="kept")
    engine.decide(request)
    for i in range(1, 5):
        engine.decide(Request(("web_home",), f"g{i}", attributes=ADULT, request_id="kept"))
    now = time.time()
    assert engine._first(engine._once(request)) is not None
    assert store.prune_notes(retries.PREFIX, retries.expired_below(now, 60.0)) == 0  # this window's and the last
    assert store.prune_notes(retries.PREFIX, retries.expired_below(now + 180, 60.0)) == 5
    assert engine._first(engine._once(request)) is None
    again = engine.decide(request)
    assert recorded(store, "g0") == 2 * len(again.spaces[0].proposals)  # decided afresh


def test_the_same_id_for_another_request_of_the_contact_is_decided_on_its_own(tmp_path):
    """A gateway may give one id to every call of a page view: a call for other spaces (or
    other attributes) is another request, not a retry."""
    srv = Running(str(tmp_path))
    try:
        with Client(srv.target) as c:
            home = c.decide(["web_home"], "hank", attributes=ADULT, request_id="page-1")
            cart = c.decide(["newsletter"], "hank", attributes=ADULT, request_id="page-1")
            older = c.decide(["web_home"], "hank", attributes={**ADULT, "age": 60}, request_id="page-1")
        assert [s.space for s in cart.spaces] == ["newsletter"]
        assert set(ids(older)).isdisjoint(ids(home))
    finally:
        srv.stop()


def test_copies_in_one_batch_count_once(tmp_path):
    srv = Running(str(tmp_path))
    try:
        with Client(srv.target) as c:
            one = decide_request(["web_home"], "ivy", attributes=ADULT, request_id="b-1")
            replies = c.decide_batch([one, one, decide_request(["web_home"], "ivy", attributes=ADULT, request_id="b-2")])
        first, copy, other = (r.decision for r in replies)
        assert copy.replayed and answer(copy) == first and set(ids(other)).isdisjoint(ids(first))
        assert recorded(srv.store, "ivy") == len(ids(first)) + len(ids(other))
    finally:
        srv.stop()


def test_a_corrupt_kept_answer_is_decided_again_not_a_failure(local, caplog):
    store, engine = local
    request = Request(("web_home",), "jo", attributes=ADULT, request_id="r")
    first = engine.decide(request)
    for bad in (b"\x01", retries._U64.pack(round(time.time() * 1e6)) + b"{not json"):  # short, not JSON
        with store.env.begin(write=True) as txn:
            txn.put(engine._once(request)[1][0], bad, db=store.db["meta"])
        again = engine.decide(request)
        assert [p.id for p in again.spaces[0].proposals] != [p.id for p in first.spaces[0].proposals]
        kept = engine.decide(request)  # its own answer is kept in place of the corrupt one
        assert kept.replayed and kept.spaces == again.spaces and kept.time == again.time
    assert "cannot be read" in caplog.text


def test_a_replayed_answer_keeps_its_decision_time_to_the_microsecond(tmp_path):
    srv = Running(str(tmp_path))
    try:
        request = decide_request(["web_home"], "kim", attributes=ADULT, request_id="t")
        request.time_us = 32_477_519_167_891_011  # 2999-03-04: a float of its seconds misses the last µs
        with Client(srv.target) as c:
            first = c.decisions.Decide(request, timeout=10)
            again = c.decisions.Decide(request, timeout=10)
        assert ids(first) and first.time_us == request.time_us and answer(again) == first
    finally:
        srv.stop()


def test_a_copy_that_began_in_the_next_window_and_wrote_first_is_found(local):
    """Copies of one request may take their keys on both sides of a window's end: whichever
    writes first, the other finds it."""
    store, engine = local
    request = Request(("web_home",), "lee", attributes=ADULT, request_id="edge")
    first = engine.decide(request)
    wall, (here, _, _) = engine._once(request)
    later = retries.keys(Contact("lee"), request, wall + engine.retry_window, engine.retry_window)[0]
    with store.env.begin(write=True) as txn:  # as if a copy that began in the next window wrote it
        txn.put(later, txn.pop(here, db=store.db["meta"]), db=store.db["meta"])
    again = engine.decide(request)
    assert again.replayed and again.spaces == first.spaces
    assert recorded(store, "lee") == len(first.spaces[0].proposals)


def test_answers_of_any_window_are_pruned_in_time_order_and_all_with_no_window(local):
    store, engine = local
    engine.retry_window = 60.0
    engine.decide(Request(("web_home",), "m1", attributes=ADULT, request_id="a"))
    now = time.time()
    assert store.prune_notes(retries.PREFIX, retries.expired_below(now, 3600.0)) == 0
    # the window grew to an hour: three hours on, the minute-window answer goes by its time
    assert store.prune_notes(retries.PREFIX, retries.expired_below(now + 3 * 3600, 3600.0)) == 1
    engine.decide(Request(("web_home",), "m2", attributes=ADULT, request_id="a"))
    assert store.prune_notes(retries.PREFIX, retries.expired_below(now, 0)) == 1  # no window: all go
