"""Total caps counted across a cluster's shards in Redis: one atomic check-and-add per
recorded decision (a Lua script), exact for sliding and lifetime windows.

Per counted (kind, name): a sorted set of the last window's propositions (score: time in
µs) for sliding windows, and per shard a lifetime counter. The caps fail closed: while
Redis is slow or gone, or has lost its data, a total-capped offer is not proposed. A Redis
that comes back empty is refilled by every shard from its own store, each marking its part
done (`offerd:ready:<shard>`); until every shard has, the caps stay closed."""
from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..server.metrics import SHARED
from .topology import Topology

log = logging.getLogger("offerd.cluster")
TIMEOUT = 0.25  # seconds a Redis call may take before the caps it guards fail closed
QUIET = 10.0  # seconds between two warnings of the same trouble
PAUSE = 1.0  # seconds a shard stops asking a Redis that did not answer (the caps stay closed meanwhile)
SETTLE = 1.0  # seconds a rebuild waits, caps closed, for decisions other workers had counted to be written

# (µs since 1970 are 16 digits: Lua's own number-to-string keeps 14, so the script formats
# them with %d and passes the score as it came.)
# ARGV: shards, this shard, now µs, picks; per pick: its member (the proposition id),
# checks, (head, window µs or -1, limit) each, adds, heads each. Returns -1 while some
# shard's part of a head a check reads is missing (or built for a shorter window), else 1
# or 0 per pick: a pick whose checks all pass is added at once, so the next pick of the
# same decision (or any other call) sees it.
RESERVE = """
local n, me, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local picks, pos = tonumber(ARGV[4]), 5
for p = 1, picks do
  local nc = tonumber(ARGV[pos + 1])
  for c = 1, nc do
    local head, window = ARGV[pos + 3 * c - 1], tonumber(ARGV[pos + 3 * c])
    for i = 0, n - 1 do
      local built = redis.call('GET', 'offerd:ready:' .. head .. ':' .. i)
      if not built or tonumber(built) < window then return -1 end
    end
  end
  pos = pos + 3 * nc + 2
  pos = pos + tonumber(ARGV[pos]) + 1
end
local out = {}
pos = 5
for p = 1, picks do
  local member, nc = ARGV[pos], tonumber(ARGV[pos + 1])
  local ok = true
  for c = 1, nc do
    local head, window, limit = ARGV[pos + 3 * c - 1], tonumber(ARGV[pos + 3 * c]), tonumber(ARGV[pos + 3 * c + 1])
    if ok then
      local count = 0
      if window < 0 then
        for i = 0, n - 1 do count = count + tonumber(redis.call('GET', 'offerd:n:' .. head .. ':' .. i) or '0') end
      else
        count = redis.call('ZCOUNT', 'offerd:z:' .. head, string.format('(%d', now - window), '+inf')
      end
      ok = count < limit
    end
  end
  pos = pos + 3 * nc + 2
  local adds = tonumber(ARGV[pos])
  if ok then
    for a = 1, adds do
      local head = ARGV[pos + a]
      local keep = tonumber(redis.call('GET', 'offerd:keep:' .. head) or '0')
      if keep > 0 then  -- 0: lifetime caps only, or not built yet (never trim what a rebuild puts in)
        redis.call('ZADD', 'offerd:z:' .. head, ARGV[3], member)
        redis.call('ZREMRANGEBYSCORE', 'offerd:z:' .. head, '-inf', string.format('(%d', now - keep))
      end
      redis.call('INCR', 'offerd:n:' .. head .. ':' .. me)
    end
  end
  pos = pos + adds + 1
  out[p] = ok and 1 or 0
end
return out
"""

# ARGV: this shard, then (head, member) pairs: reservations whose write was refused (a
# per-contact cap taken meanwhile) given back
RELEASE = """
for i = 2, #ARGV, 2 do  -- only granted reservations come here: each was counted once
  redis.call('ZREM', 'offerd:z:' .. ARGV[i], ARGV[i + 1])
  redis.call('DECR', 'offerd:n:' .. ARGV[i] .. ':' .. ARGV[1])
end
return 1
"""

# ARGV: head, this shard, µs kept, lifetime count: after its events are in, a shard's part
# of a head is marked built; the sorted set keeps the longest window any shard asked for
REBUILT = """
local head, me, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
if keep > tonumber(redis.call('GET', 'offerd:keep:' .. head) or '0') then
  redis.call('SET', 'offerd:keep:' .. head, keep)
end
if ARGV[4] ~= '' then
  redis.call('SET', 'offerd:n:' .. head .. ':' .. me, ARGV[4])
  redis.call('SET', 'offerd:ready:' .. head .. ':' .. me, keep)
end
return 1
"""


class Totals:
    """A shard's side of the shared counts. The engine calls `reserve` before a decision's
    write, `release` for what the write refused, and `done` when the write is over."""

    def __init__(self, topology: Topology, store, rebuilder: bool = True):
        host, port = topology.redis.rsplit(":", 1)
        self.topology, self.store = topology, store
        self.redis = aioredis.Redis(host=host, port=int(port), socket_timeout=TIMEOUT,
                                    socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))  # fail closed at once
        self._reserve = self.redis.register_script(RESERVE)
        self._release = self.redis.register_script(RELEASE)
        self._rebuilt = self.redis.register_script(REBUILT)
        self.keep: dict[str, int] = {}  # head → µs its sorted set keeps (the live catalog's longest window)
        self.inflight = 0  # granted reservations whose write has not ended
        self.rebuilding = False  # while this shard puts its counts back, it reserves nothing
        self.rebuilder = rebuilder  # with several workers, one puts the shard's counts back
        self._down_until = 0.0  # monotonic time before which Redis is not asked again
        self._task: asyncio.Task | None = None
        self._warned: dict[str, float] = {}

    def _warn(self, what: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._warned.get(what, -QUIET) >= QUIET:
            self._warned[what] = now
            log.warning(message, *args)

    async def reserve(self, picks: list[tuple[str, tuple, tuple[str, ...]]], now_us: int) -> list[bool]:
        """picks: (member, checks, heads it adds to) each, checks as (head, window µs or -1,
        limit). Per pick, whether it may be proposed. If any is, the reservation is in
        flight until `done`."""
        closed = [False] * len(picks)
        if self.rebuilding or time.monotonic() < self._down_until:
            SHARED.labels("rebuilding" if self.rebuilding else "unavailable").inc()
            return closed
        # a decision dated ahead counts from now, and never trims the window ahead of now
        now_us = min(now_us, int(time.time() * 1e6))
        argv: list = [len(self.topology.shards), self.topology.me, now_us, len(picks)]
        for member, checks, adds in picks:
            argv += (member, len(checks))
            for c in checks:
                argv += c
            argv.append(len(adds))
            argv += adds
        self.inflight += 1  # from before the call: a rebuild must not read the store while one may be granted
        try:
            got = await self._reserve(args=argv)
        except (RedisError, OSError) as e:
            self.inflight -= 1
            self._down_until = time.monotonic() + PAUSE
            SHARED.labels("unavailable").inc()
            self._warn("down", "total caps are closed: Redis at %s does not answer (%s); offers with a total cap "
                       "are not proposed until it does", self.topology.redis, e)
            return closed
        except BaseException:  # cancelled: if the script ran, its count stays (under-delivery, never over)
            self.inflight -= 1
            raise
        if got == -1 or not any(got):
            self.inflight -= 1
        if got == -1:
            SHARED.labels("rebuilding").inc()
            self._warn("empty", "total caps are closed: Redis at %s lacks some shard's counts (restarted empty, a "
                       "new cap, or a shard not back yet); each shard puts its own back, and the caps open when "
                       "all have", self.topology.redis)
            self.rebuild_soon()
            return closed
        return [bool(x) for x in got]

    def done(self) -> None:
        self.inflight -= 1

    async def release(self, given_back: list[tuple[str, str]]) -> None:
        """(head, member) of reservations whose write was refused."""
        if not given_back:
            return
        argv: list = [self.topology.me]
        for pair in given_back:
            argv += pair
        try:
            await self._release(args=argv)
        except (RedisError, OSError) as e:  # counted too high: under-delivery, never over the cap
            self._warn("release", "a refused proposition stays counted in Redis (%s)", e)

    def rebuild_soon(self) -> None:
        if self.rebuilder and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self.rebuild())

    async def rebuild(self) -> int:
        """This shard's part of every head it lacks put back from its store, with no
        reservation of its own in flight (its lifetime counter is set, not added to).
        Returns how many heads were put back."""
        me, keep = self.topology.me, dict(self.keep)
        try:
            built = await self.redis.mget([f"offerd:ready:{h}:{me}" for h in keep]) if keep else []
            missing = {h: k for (h, k), b in zip(keep.items(), built) if b is None or int(b) < k}
            if not missing:
                return 0
            self.rebuilding = True
            await asyncio.sleep(SETTLE)  # other workers' counted decisions reach the store
            while self.inflight:
                await asyncio.sleep(0.002)
            parts = await asyncio.to_thread(self._local, missing, time.time())
            for h, (events, lifetime) in parts.items():
                await self._rebuilt(args=[h, me, missing[h], ""])  # the window kept first: no trim takes the events
                for i in range(0, len(events), 1000):
                    await self.redis.zadd(f"offerd:z:{h}", {pid.hex(): t for t, pid in events[i:i + 1000]})
                await self._rebuilt(args=[h, me, missing[h], lifetime])
        except (RedisError, OSError) as e:
            self._warn("rebuild", "cannot put this shard's counts back into Redis yet (%s): total caps stay "
                       "closed", e)
            return 0
        finally:
            self.rebuilding = False
        log.info("this shard's counts of %d total cap(s) are in Redis: %s", len(parts), ", ".join(sorted(parts)))
        return len(parts)

    async def watch(self, every: float = 1.0) -> None:
        """Put this shard's part back whenever Redis lacks it (a restart, a new cap), even
        if no call here asks for it: every shard's part is needed for any cap to open."""
        while True:
            self.rebuild_soon()
            await asyncio.sleep(every)

    def _local(self, heads: dict[str, int], now: float) -> dict[str, tuple[list, int]]:
        out = {}
        for h, keep in heads.items():
            kind, name = h.split(":", 1)
            events = self.store.events(kind, name, "proposed", now - keep / 1e6) if keep else []
            out[h] = (events, self.store.total(kind, name, "proposed", None, float("inf")))
        return out

    async def close(self) -> None:
        await self.redis.aclose()
