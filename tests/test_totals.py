"""The shared counts of total caps (offerd.cluster.totals) against a real Redis: window
edges to the microsecond, and caps that fail closed when Redis is gone."""
from __future__ import annotations

import asyncio
import shutil
import signal
import time

import pytest
import redis

from offerd.cluster.local import LocalCluster, free_port
from offerd.cluster.topology import Topology
from offerd.cluster.totals import Totals
from offerd import periods
from offerd.domain import CapCheck
from offerd.engine.shared import periods_back
from offerd.store import Store

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is installed by `make test`")

DAY = 86_400_000_000


@pytest.fixture
def shared(tmp_path):
    """A Redis of its own, and one shard's Totals on a fresh store."""
    parts = LocalCluster(str(tmp_path / "c"), 1, f"127.0.0.1:{free_port()}")
    (tmp_path / "c").mkdir()
    parts.start_redis()
    store = Store(str(tmp_path / "db"))
    totals = Totals(Topology(("127.0.0.1:1",), parts.redis_address, 0), store)
    totals.keep = {"offer:x": DAY}
    yield parts, totals
    store.close()
    parts.signal("redis", signal.SIGKILL)
    parts.wait("redis")


def test_a_window_edge_is_exact_to_the_microsecond(shared):
    parts, totals = shared
    t0 = int(time.time() * 1e6) - 3 * DAY
    t0 -= t0 % 100 - 49  # ends in 49: rounded to 14 digits it would move by 49 µs
    cap = (("offer:x", DAY, 1),)

    async def run():
        assert await totals.rebuild() == 1  # this shard's part in: the cap opens
        first = await totals.reserve([("m1", cap, ("offer:x",))], t0)
        edge = await totals.reserve([("m2", cap, ("offer:x",))], t0 + DAY)  # m1 just left the window
        after = await totals.reserve([("m3", cap, ("offer:x",))], t0 + DAY + 1)
        await totals.close()
        return first, edge, after
    assert asyncio.run(run()) == ([True], [True], [False])
    host, port = parts.redis_address.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    assert int(r.zscore("offerd:z:offer:x", "m2")) == t0 + DAY  # the score as sent, every digit


def test_a_calendar_day_counts_from_midnight_in_the_catalogs_timezone(shared):
    """A shard asks Redis for a calendar period's count from its first instant: yesterday's
    last second is out of today's cap, today's first is in."""
    parts, totals = shared
    cap = CapCheck("total", "offer", "x", "proposed", None, 1, calendar="day", zone="Asia/Kathmandu")
    now = time.time()
    start = periods.bounds(now, "day", "Asia/Kathmandu")[0]

    async def run():
        assert await totals.rebuild() == 1
        got = []
        for member, at in (("m1", start - 1), ("m2", start), ("m3", now)):
            checks = periods_back((("offer:x", cap, 1),), at)
            got += await totals.reserve([(member, checks, ("offer:x",))], int(at * 1e6))
        await totals.close()
        return got
    assert asyncio.run(run()) == [True, True, False]


def test_caps_fail_closed_at_once_when_redis_is_gone_and_open_when_it_is_back(shared):
    parts, totals = shared
    cap = (("offer:x", DAY, 100),)

    async def run():
        await totals.rebuild()
        now = int(time.time() * 1e6)
        before = await totals.reserve([("a", cap, ("offer:x",))], now)
        totals.done()  # as the engine does once the decision is written
        parts.signal("redis", signal.SIGKILL)
        parts.wait("redis")
        calls, script = [], totals._reserve  # Redis's side of the call, counted

        def counted(**kw):
            calls.append(1)
            return script(**kw)
        totals._reserve = counted
        gone = [await totals.reserve([(f"b{i}", cap, ("offer:x",))], now) for i in range(20)]
        asked = len(calls)
        parts.start_redis()  # back empty: closed until this shard's part is in again
        empty = await totals.reserve([("c", cap, ("offer:x",))], now)
        await asyncio.sleep(1.1)  # the pause after a failure
        rebuilt = await totals.rebuild()
        back = await totals.reserve([("d", cap, ("offer:x",))], now)
        await totals.close()
        return before, gone, asked, empty, rebuilt, back
    before, gone, asked, empty, rebuilt, back = asyncio.run(run())
    assert before == [True] and gone == [[False]] * 20 and empty == [False] and back == [True]
    assert asked == 1  # one failed call, then a pause: 20 decisions did not wait 20 timeouts
    assert rebuilt == 1 and totals.inflight == 1  # `d` granted, its write not ended
