"""`offerd serve --workers N`: N processes sharing one port (SO_REUSEPORT) and one LMDB
environment. Nothing here imports gRPC: the processes are forked before any gRPC object
exists, and each opens its own store and server after the fork."""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback

from .. import lang
from ..examples import CATALOG as EXAMPLE_CATALOG
from ..process import die_with
from ..store import Store, StoreError
from . import telemetry
from .corelog import capture
from .logs import set_worker

log = logging.getLogger("offerd.server")
RESTARTS_PER_MINUTE = 10  # more workers than this dying within a minute stop the server
RESTART_PAUSE = 0.2  # seconds before a dead worker's replacement starts
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Local:
    """With one worker, what /metrics reads of the server (app.py sets and clears them): its
    store and engine; `lock` is held while a scrape reads them (and to clear them at a stop,
    before the store closes)."""

    def __init__(self):
        self.store = self.engine = None
        self.lock = threading.Lock()

    def open(self):
        store = self.store
        return None if store is None else (store, lambda: None, self.engine)


LOCAL = _Local()


def _where(address: str, port: int) -> str:
    return f"{address.rpartition(':')[0]}:{port}"


def start_catalog(store: Store, directory: str | None) -> None:
    """Deploy `directory` (or the bundled example if nothing is live yet)."""
    if directory is None:
        if store.live() is not None:
            return
        directory = EXAMPLE_CATALOG
    files = lang.read_dir(directory)
    lang.check(files)  # refuse to start on a broken catalog, with every error printed
    digest = store.save_version(files, label=os.path.abspath(directory))
    live = store.live()
    if live is None or live[0] != digest:
        store.activate(digest, when=0)  # in a cluster, any version made live through the API is newer


def _metrics_dir(data: str) -> None:
    """A fresh directory for the workers' metric files (prometheus_client's multiprocess
    mode), set before anything imports prometheus_client: it reads it once, at import."""
    path = os.path.join(data, f"metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def check_tls(config) -> None:
    """TLS settings that cannot work stop the start, before any worker exists."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise SystemExit("offerd: --tls-cert and --tls-key go together")
    if config.client_ca and not config.tls_cert:
        raise SystemExit("offerd: --client-ca (mutual TLS) needs --tls-cert and --tls-key")
    for path in (config.tls_cert, config.tls_key, config.client_ca):
        if path:
            try:
                with open(path, "rb") as f:
                    if b"-----BEGIN" not in f.read(1 << 20):
                        raise SystemExit(f"offerd: {path} is not a PEM file")
            except OSError as e:
                raise SystemExit(f"offerd: cannot read {path}: {e.strerror}") from None


def check_listen(addr: str) -> None:
    """A port taken by another program, or by another offerd (whose SO_REUSEPORT would let
    the two share it, each on its own store), stops the start with a message, rather than
    every worker failing to listen in turn."""
    if addr.startswith("unix:"):
        return
    host, _, port = addr.rpartition(":")
    try:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port {port} is not 0-65535")
        for family, kind, proto, _, where in socket.getaddrinfo(host.strip("[]") or None, int(port),
                                                                 type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a past run's TIME_WAIT is fine
                s.bind(where)
            return
    except (OSError, ValueError, OverflowError) as e:
        raise SystemExit(f"offerd: cannot listen on {addr}: {getattr(e, 'strerror', None) or e}") from None


def run(config, workers: int) -> int:
    """Deploy the starting catalog, then serve in `workers` processes until SIGTERM/SIGINT,
    which each finishes its calls in flight. Returns the exit status."""
    check_tls(config)
    check_listen(config.listen)
    telemetry.check(config)
    # gRPC's fork support handles forking after gRPC started; here nothing gRPC exists before
    # the fork, so it is off, and said so explicitly.
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    try:
        store = Store(os.path.join(config.data, "db"), durability=config.durability, map_size=config.map_size)
        try:
            start_catalog(store, config.catalog)
        finally:
            store.close()  # each worker opens the environment itself, after the fork
    except StoreError as e:  # cannot open it, or it is full: one line, not a traceback
        raise SystemExit(f"offerd: {e}") from None
    if workers > 1 and config.listen.endswith(":0"):
        raise SystemExit("offerd: with --workers > 1, give a port: workers share it (SO_REUSEPORT)")
    http = None
    if config.metrics:  # bound now: a port in use stops the start before any worker exists
        if workers > 1:
            _metrics_dir(config.data)
        from .metrics import bind_http

        http = bind_http(config.metrics)
    if workers == 1:
        capture()  # before gRPC loads: its core's lines through our log format
        from .app import serve

        if http is not None:
            from .collectors import registry
            from .metrics import serve_http

            port = serve_http(http, registry(False, lambda: {0: os.getpid()}, LOCAL.open, LOCAL.lock)[0])
            log.info("metrics on http://%s/metrics", _where(config.metrics, port))
        serve(config)
        return 0
    parent = os.getpid()
    children: dict[int, int] = {}  # pid → worker number
    stopping = []
    forking = threading.Lock()  # no fork while the metrics thread has a store open (collectors.py)

    def forward(sig, _frame):
        # The first stop signal (SIGTERM or SIGINT) goes on as SIGTERM: the workers drain. A
        # second one goes on as SIGUSR2: they stop at once. Workers ignore SIGINT and repeated
        # SIGTERMs, which a terminal's Ctrl-C or a stop sent to the whole process group (as
        # systemd does) deliver to them as well as to the supervisor.
        stopping.append(sig)
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if len(stopping) == 1 else signal.SIGUSR2)
            except ProcessLookupError:
                pass

    def start(n: int) -> None:
        # Stop signals wait while the worker is forked: the parent must know the pid before
        # it forwards a stop, and the child must not run the parent's `forward`.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            with forking:
                pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    if http is not None:  # the supervisor's socket: a worker does not hold the port
                        http.socket.close()
                    # until the worker's own handlers are set, a stop ends it at once, with
                    # nothing in flight yet
                    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
                    signal.signal(signal.SIGUSR2, lambda *_: os._exit(0))
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards it as SIGTERM
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                    die_with(parent, signal.SIGTERM)  # finish the calls in flight, then go
                    set_worker(n)
                    capture()  # before gRPC loads: its core's lines through our log format
                    from .app import serve

                    serve(dataclasses.replace(config, pruner=n == 0, worker=True))
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children[pid] = n
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if stopping:  # a stop that another thread (metrics) took while the pid was unknown
            os.kill(pid, signal.SIGTERM)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    for n in range(workers):
        if not stopping:
            start(n)
    log.info("%d workers: %s", workers, ", ".join(map(str, children)))
    procs = None
    if http is not None:
        from .collectors import StoreReader, registry
        from .metrics import serve_http

        def own_store():  # read-only, per scrape, closed after it: nothing of it is left for a fork
            store = StoreReader(os.path.join(config.data, "db"), config.map_size)
            return store, store.close, None

        reg, procs = registry(True, lambda: {n: pid for pid, n in list(children.items())}, own_store, forking)
        port = serve_http(http, reg)
        log.info("metrics of every worker on http://%s/metrics", _where(config.metrics, port))

    worst, restarts = 0, collections.deque()
    while children:
        pid, status = os.wait()
        n = children.pop(pid, None)
        if n is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            worst = max(worst, code != 0)
            continue
        # A worker died on its own (killed, out of memory, a crash): the others go on serving,
        # and a new one takes its place, unless workers keep dying (a broken set-up).
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        now = time.monotonic()
        restarts.append(now)
        while restarts[0] < now - 60:
            restarts.popleft()
        if len(restarts) > RESTARTS_PER_MINUTE:
            log.error("worker %d (pid %d) ended (%s); %d restarts within a minute: stopping", n, pid, how,
                      len(restarts) - 1)
            forward(signal.SIGTERM, None)
            worst = 1
            continue
        log.error("worker %d (pid %d) ended (%s); starting another", n, pid, how)
        if procs is not None:
            procs.restarts[n] = procs.restarts.get(n, 0) + 1
        time.sleep(RESTART_PAUSE)
        if not stopping:
            start(n)
    if config.metrics:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    log.info("offerd stopped: every worker has finished" if not worst else "offerd stopped: a worker failed")
    return worst
