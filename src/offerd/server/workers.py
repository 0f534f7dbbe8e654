"""`offerd serve --workers N`: N processes sharing one port (SO_REUSEPORT) and one LMDB
environment. Nothing here imports gRPC: the processes are forked before any gRPC object
exists, and each opens its own store and server after the fork."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import traceback

from .. import lang
from ..examples import CATALOG as EXAMPLE_CATALOG
from ..store.lmdb_store import Store
from .logs import set_worker

log = logging.getLogger("offerd.server")


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
        store.activate(digest)


def _metrics_dir(data: str) -> None:
    """A fresh directory for the workers' metric files (prometheus_client's multiprocess
    mode), set before anything imports prometheus_client: it reads it once, at import."""
    path = os.path.join(data, f"metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def run(config, workers: int) -> int:
    """Deploy the starting catalog, then serve in `workers` processes until SIGTERM/SIGINT,
    which each finishes its calls in flight. Returns the exit status."""
    # gRPC's fork support handles forking after gRPC started; here nothing gRPC exists before
    # the fork, so it is off, and said so explicitly.
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    store = Store(os.path.join(config.data, "db"), durability=config.durability)
    try:
        start_catalog(store, config.catalog)
    finally:
        store.close()  # each worker opens the environment itself, after the fork
    if workers == 1:
        from .app import serve

        if config.metrics:
            from .metrics import serve_http

            log.info("metrics on http://%s/metrics", config.metrics)
            serve_http(config.metrics, multiprocess=False)
        serve(config)
        return 0
    if config.listen.endswith(":0"):
        raise SystemExit("offerd: with --workers > 1, give a port: workers share it (SO_REUSEPORT)")
    if config.metrics:
        _metrics_dir(config.data)
    children = []
    for n in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                set_worker(n)
                from .app import serve

                serve(config)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    log.info("%d workers: %s", workers, ", ".join(map(str, children)))
    if config.metrics:
        from .metrics import serve_http

        serve_http(config.metrics, multiprocess=True)
        log.info("metrics of every worker on http://%s/metrics", config.metrics)

    def forward(sig, _frame):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) != 0)
    if config.metrics:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return worst
