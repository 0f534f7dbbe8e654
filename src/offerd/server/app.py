"""The gRPC server: offerd.v1 services on grpc.aio, with health and reflection.

`create_server(addr)` builds and starts a server on an address and returns it with its port
(tests use 127.0.0.1:0); `stop_server(server)` stops it and closes its store; `serve(...)`
runs one until SIGTERM or SIGINT, then drains (health NOT_SERVING, calls still served for
`config.drain` seconds), finishes the calls in flight and closes the store, so no
acknowledged write is lost."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from types import SimpleNamespace

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from .. import lang
from ..compiler import default_cache
from ..engine import Engine, retries
from ..store import Store
from ..v1 import offerd_pb2_grpc as rpc
from . import reflection
from .audit import audited
from .config import Config
from .guard import Refusals, guarded
from .health import SERVING, Health
from .observe import Observer
from .services import AdminService, DecisionService, ProfileService
from .workers import LOCAL

log = logging.getLogger("offerd.server")
MAX_MESSAGE = 4 << 20  # bytes; larger requests get RESOURCE_EXHAUSTED
SERVICES = ("offerd.v1.DecisionService", "offerd.v1.ProfileService", "offerd.v1.AdminService")


class Live:
    """Keeps the engine on the store's live catalog version: at start, and whenever another
    worker deploys or rolls back (polled), compiling every space before switching."""

    def __init__(self, engine: Engine, store: Store):
        self.engine, self.store, self.hash = engine, store, None

    def load(self, digest: str, files: dict[str, str]) -> None:
        catalog = lang.check(files)
        for space in catalog.spaces:  # compile now, not on the first request after the switch
            default_cache.get(catalog, space).warm()
        self.engine.load(catalog)
        self.hash = digest
        # The catalog lives until the next deploy. Frozen, its many objects (AST, compiled
        # code) leave the collector's full passes, which otherwise cost a large catalog's
        # decisions a third of their time; the old catalog is collected first.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("catalog %s live (%d offers, spaces: %s)", digest[:12], len(catalog.offers),
                 ", ".join(catalog.spaces))

    def refresh(self) -> None:
        if self.store.live_hash() == self.hash:
            return  # the usual case: one small read, the version's files stay unread
        live = self.store.live()
        if live is not None and live[0] != self.hash:
            self.load(*live)

    async def watch(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a broken version stays out; the current one keeps serving
                log.exception("cannot load the live catalog version")


async def create_server(addr: str, config: Config | None = None,
                        store: Store | None = None) -> tuple[grpc.aio.Server, int]:
    """A started server on `addr` and its port. The other settings come from `config`; the
    store is opened under `config.data` unless given. `server.offerd` holds the store, the
    engine and the catalog watcher."""
    config = config or Config()
    store = store or open_store(config)
    engine = Engine(store)
    engine.retry_window = config.retry_window
    peers = None
    if config.cluster is not None:  # one shard of several (docs/cluster.md)
        from ..cluster.forward import Peers
        engine.routed, peers = True, Peers(config.cluster)
        if config.cluster.redis is not None:
            from ..cluster.totals import Totals
            engine.totals = Totals(config.cluster, store, rebuilder=config.pruner)  # one worker rebuilds
    live = Live(engine, store)
    live.refresh()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE),
                                      ("grpc.so_reuseport", 1)])
    decisions = DecisionService(engine, peers)
    refusals = Refusals()  # requests that are not the method's message: INVALID_ARGUMENT, logged sparingly
    ours = guarded(server, refusals, streams_answered=True)
    seen = Observer(config)  # every method wrapped: metrics, and spans and access log lines if asked for
    seen.stages(engine, store, decisions)
    rpc.add_DecisionServiceServicer_to_server(seen(decisions, SERVICES[0]), ours)
    rpc.add_ProfileServiceServicer_to_server(seen(ProfileService(engine, store, peers), SERVICES[1]), ours)
    rpc.add_AdminServiceServicer_to_server(
        seen(audited(AdminService(store, live, config.admin_token, peers)), SERVICES[2]), ours)
    health_servicer = Health()
    health_pb2_grpc.add_HealthServicer_to_server(seen(health_servicer, health.SERVICE_NAME), guarded(server, refusals))
    for name in SERVICES + ("",):
        await health_servicer.set(name, SERVING)
    reflection.enable(SERVICES + (health.SERVICE_NAME,), server, refusals, wrap=seen)
    if config.tls_cert:
        with open(config.tls_key, "rb") as k, open(config.tls_cert, "rb") as c:
            pair = (k.read(), c.read())
        ca = open(config.client_ca, "rb").read() if config.client_ca else None
        creds = grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)
        port = server.add_secure_port(addr, creds)
    else:
        port = server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"cannot listen on {addr}")
    await server.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(live.watch(config.poll_seconds))]
    if config.pruner and config.prune_every > 0:
        tasks.append(loop.create_task(prune_forever(store, engine, config)))
    if config.pruner:
        tasks.append(loop.create_task(prune_retries_forever(store, config)))
    if engine.totals is not None:
        tasks.append(loop.create_task(engine.totals.watch()))
    if peers is not None and config.pruner:  # one worker per shard compares versions with the others
        from ..cluster.catchup import catch_up_forever
        token = (("authorization", f"Bearer {config.admin_token}"),) if config.admin_token else ()
        tasks.append(loop.create_task(catch_up_forever(peers, store, token)))
    server.offerd = SimpleNamespace(store=store, engine=engine, tasks=tasks, health=health_servicer, peers=peers,
                                    decisions=decisions, refusals=refusals, observer=seen)
    return server, port


async def stop_server(server: grpc.aio.Server, grace: float = 10) -> None:
    """Finish the calls in flight (up to `grace` seconds; health Watch streams end at once),
    then close the store: its writer commits everything it acknowledged first."""
    for task in server.offerd.tasks:
        task.cancel()
    try:  # each takes every Watch stream's lock: a client that stopped reading must not hold the stop
        await asyncio.wait_for(server.offerd.health.drain(), grace)
        await asyncio.wait_for(server.offerd.health.end_watches(), grace)
    except TimeoutError:
        log.warning("health Watch streams did not take the stop within %g s: stopping anyway", grace)
    stopping = asyncio.ensure_future(server.stop(grace))  # no new calls from here on
    await asyncio.sleep(0)
    server.offerd.decisions.end_relays()  # other shards' streams: answered, then ended
    await stopping
    if server.offerd.peers is not None:
        await server.offerd.peers.close()
    if server.offerd.engine.totals is not None:
        await server.offerd.engine.totals.close()
    server.offerd.store.close()
    server.offerd.refusals.flush(again=False)
    server.offerd.observer.close()  # the last spans exported


def open_store(config: Config) -> Store:
    return Store(os.path.join(config.data, "db"), durability=config.durability, map_size=config.map_size,
                 recent=config.recent)


def prune_cutoff(engine: Engine, config: Config, now: float) -> float | None:
    """Propositions made before this time are older than every window of the live catalog's
    rules (a per-contact status count reads older ones only until they are pruned) and than
    `config.retain`; None: keep everything (a rule reads whole histories, or nothing is live)."""
    window = engine.retention
    if window is None:
        return None
    return now - max(window, config.retain)


async def prune_forever(store: Store, engine: Engine, config: Config) -> None:
    """Every `config.prune_every` seconds, delete the history no rule reads any more, in
    small transactions (Store.prune), so the file stops growing once the oldest history
    goes as fast as new history comes; the freed pages are reused."""
    while True:
        await asyncio.sleep(config.prune_every)
        cutoff = prune_cutoff(engine, config, time.time())
        if cutoff is None:
            continue
        try:
            t = time.monotonic()
            removed = await asyncio.to_thread(store.prune, cutoff)
            log.info("pruned %d entries older than %s in %.2f s", removed,
                     time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cutoff)), time.monotonic() - t)
        except Exception:  # a full disk, say: the next round tries again
            log.exception("pruning failed")


async def prune_retries_forever(store: Store, config: Config) -> None:
    """Once a window (at least a minute, at most an hour), delete the answers kept for
    retries whose window is over (all of them with no window): a few key-ordered deletes."""
    while True:
        await asyncio.sleep(min(max(config.retry_window, 60.0), 3600.0))
        try:
            await asyncio.to_thread(store.prune_notes, retries.PREFIX,
                                    retries.expired_below(time.time(), config.retry_window))
        except Exception:
            log.exception("pruning the answers kept for retries failed")


async def _run(config: Config) -> None:
    store = open_store(config)
    server, port = await create_server(config.listen, config, store)
    LOCAL.store, LOCAL.engine = store, server.offerd.engine  # what /metrics reads with one worker
    log.info("offerd serving on %s (port %d), data in %s, durability %s", config.listen, port,
             config.data, config.durability)
    stop, now = asyncio.Event(), asyncio.Event()  # drain, then stop; stop at once
    loop = asyncio.get_running_loop()
    if config.worker:
        # A stop reaches a worker twice when it is sent to the whole process group (systemd,
        # `kill -- -PGID`) and the supervisor forwards it too: a worker drains on SIGTERM, as
        # often as it comes, and ends its drain only on the supervisor's SIGUSR2 (a second
        # stop signal to the supervisor). SIGINT is ignored (workers.run).
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR2, lambda: (stop.set(), now.set()))
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: now.set() if stop.is_set() else stop.set())
    await stop.wait()
    t = time.monotonic()
    if config.drain > 0 and not now.is_set():
        # Balancers and orchestrators see NOT_SERVING (Check, and Watch at once) and send no
        # new calls; those already on their way are still answered meanwhile.
        await server.offerd.health.drain()
        log.info("draining: health NOT_SERVING, calls served for %g s more (a second stop signal ends it now)",
                 config.drain)
        try:
            await asyncio.wait_for(now.wait(), config.drain)
        except TimeoutError:
            pass
    log.info("stopping: finishing the calls in flight (at most %g s)", config.grace)
    with LOCAL.lock:  # a scrape reading the store finishes first: it is closed below
        LOCAL.store = LOCAL.engine = None
    await stop_server(server, config.grace)
    log.info("stopped in %.2f s", time.monotonic() - t)


def serve(config: Config) -> None:
    use_event_loop(config.loop)
    asyncio.run(_run(config))


def use_event_loop(kind: str) -> None:
    """uvloop (the default) or asyncio's own loop; uvloop missing falls back, with a warning."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: serving on asyncio's event loop")
            return
        uvloop.install()
    elif kind != "asyncio":
        raise ValueError(f"unknown event loop {kind!r}: uvloop or asyncio")
