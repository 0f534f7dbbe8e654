"""What the metrics endpoint reads at scrape time rather than the workers count: each
worker process's CPU, memory, fds and start (from /proc), the supervisor's restarts, the
build, and from the store the live catalog, the fill of its total caps and the file's size.

It runs in the process serving /metrics: the supervisor with several workers (which has no
store of its own open and never imports gRPC, since it forks the workers: it opens the LMDB
environment read-only per scrape, never while forking a worker, and takes no write lock),
or the one server process with --workers 1 (which reads through the server's own store and
the catalog its engine already parsed)."""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import sys
import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("offerd.server")
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def read_process(pid: int) -> tuple[float, int, int, float] | None:
    """(CPU seconds, resident bytes, open fds, start time in epoch seconds) of a process; None
    if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
        with open(f"/proc/{pid}/statm") as f:
            resident = int(f.read().split()[1]) * _PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # fields[0] is field 3 of proc(5): utime is 14, stime 15, starttime 22
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    return cpu, resident, fds, _BOOT + int(fields[19]) / _TICK


_BOOT = _boot_time()


class Processes:
    """offerd_process_* per worker (label worker: its number, or "supervisor"), and the
    workers' restarts. `workers()` gives {worker number: pid} of the live ones."""

    def __init__(self, workers, supervisor: bool):
        self.workers, self.supervisor = workers, supervisor
        self.restarts: dict[int, int] = {}

    def collect(self):
        cpu = CounterMetricFamily("offerd_process_cpu_seconds", "CPU time (user and system) of the process",
                                  labels=["worker"])
        rss = GaugeMetricFamily("offerd_process_resident_memory_bytes", "Resident memory of the process",
                                labels=["worker"])
        fds = GaugeMetricFamily("offerd_process_open_fds", "Open file descriptors of the process",
                                labels=["worker"])
        start = GaugeMetricFamily("offerd_process_start_time_seconds", "When the process started (epoch "
                                  "seconds): it moves when a worker is replaced", labels=["worker"])
        procs = [(str(n), pid) for n, pid in sorted(self.workers().items())]
        if self.supervisor:
            procs.append(("supervisor", os.getpid()))
        for name, pid in procs:
            got = read_process(pid)
            if got is not None:
                cpu.add_metric([name], got[0])
                rss.add_metric([name], got[1])
                fds.add_metric([name], got[2])
                start.add_metric([name], got[3])
        restarts = CounterMetricFamily("offerd_worker_restarts", "Workers replaced after they died on their own",
                                       labels=["worker"])
        for n in sorted(set(self.workers()) | set(self.restarts)):
            restarts.add_metric([str(n)], self.restarts.get(n, 0))
        return [cpu, rss, fds, start, restarts]


def _installed(package: str) -> str:
    try:  # the installed distribution's version, read without importing it (gRPC, in the supervisor)
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def build_info() -> GaugeMetricFamily:
    from .. import __version__

    info = GaugeMetricFamily("offerd_build_info", "The running offerd and what it runs on (always 1)",
                             labels=["version", "python", "grpcio", "protobuf"])
    info.add_metric([__version__, ".".join(map(str, sys.version_info[:3])), _installed("grpcio"),
                     _installed("protobuf")], 1)
    return info


class StoreReader:
    """The store as a scrape in the supervisor reads it: the LMDB environment opened
    read-only (no writer thread, no write transaction: a worker's write never holds the
    scrape up), closed after the scrape."""

    def __init__(self, path: str, map_size: int):
        import lmdb

        from ..store.counters import Counts
        from ..store.environment import DATABASES

        # the map as large as the workers': a store growing meanwhile stays inside it
        self.env = lmdb.open(path, readonly=True, lock=True, create=False, subdir=True, max_dbs=len(DATABASES),
                             map_size=map_size, readahead=False)
        try:  # on a read-only environment, lmdb opens each in a read transaction, committed (a read
            # transaction of ours would drop the handles at its end: lmdb resets read transactions)
            self.db = {name: self.env.open_db(name.encode(), create=False) for name in DATABASES}
        except BaseException:
            self.env.close()
            raise
        self._counts = Counts(self.db)

    def live_hash(self) -> str | None:
        from ..store.versions import live_stack

        with self.env.begin() as txn:
            stack = live_stack(txn, self.db["meta"])
        return stack[-1] if stack else None

    def total(self, kind: str, name: str, status: str, since: float | None, until: float) -> int:
        from ..store.keys import ref_key

        with self.env.begin() as txn:
            return self._counts.total(txn, ref_key(kind, name), status, since, until)

    def close(self) -> None:
        self.env.close()


class Catalogs:
    """The live catalog, the count and limit of each of its total caps, and the store's size,
    read from the store at each scrape. `open_store()` gives None or (store, close, engine):
    close() ends what it opened (a no-op for the server's own store); engine, in the serving
    process, holds the live catalog parsed already (None in the supervisor). `lock` is held
    while a store is open here: the supervisor forks no worker meanwhile, and the one server
    process closes its store only once no scrape reads it."""

    def __init__(self, open_store, lock: threading.Lock | None = None):
        self.open_store, self.lock = open_store, lock or threading.Lock()
        self._known: tuple[str, str, int, list] | None = None  # the live hash, its label, offers, total caps

    def collect(self):
        out = [build_info()]
        try:
            for _ in range(3):  # a version to parse is parsed between two reads, outside the lock
                got, todo = self._read_locked()
                if todo is None:
                    return out + got
                digest, meta = todo
                self._known = _describe(digest, meta["label"], _parsed(meta["files"]))
            log.warning("metrics: the live catalog changed during the scrape; its figures are left out")
        except Exception as e:  # a scrape answers what it can; the store's trouble is logged, not raised
            log.warning("metrics: cannot read the store: %s", e)
        return out

    def _read_locked(self):
        """(metrics, None); or ([], (live hash, its saved version)) for a version not described
        yet, which the supervisor parses without holding the lock."""
        with self.lock:
            opened = self.open_store()
            if opened is None:
                return [], None
            store, close, engine = opened
            try:
                digest = store.live_hash()
                if digest is not None and (self._known is None or self._known[0] != digest):
                    meta = _version(store, digest)
                    catalog = _loaded(engine, digest)
                    if catalog is None:
                        return [], (digest, meta)
                    self._known = _describe(digest, meta["label"], catalog)
                return self._read(store, digest), None
            finally:
                close()

    def _read(self, store, digest: str | None):
        info = GaugeMetricFamily("offerd_catalog_info", "The live catalog version (always 1)",
                                 labels=["hash", "label", "offers"])
        count = GaugeMetricFamily("offerd_cap_count", "Propositions counted by a total cap of the live catalog "
                                  "now, within its window (this store's own, in a cluster)", labels=["cap"])
        limit = GaugeMetricFamily("offerd_cap_limit", "The limit of a total cap of the live catalog",
                                  labels=["cap"])
        if digest is not None:
            _, label, offers, caps = self._known
            info.add_metric([digest, label, str(offers)], 1)
            now = time.time()
            for name, check in caps:
                count.add_metric([name], store.total(check.ref_kind, check.ref, check.status, check.since(now), now))
                limit.add_metric([name], check.limit)
        env = store.env.info()
        size = GaugeMetricFamily("offerd_store_bytes", "The store's pages in use (the file may be larger: "
                                 "freed pages are reused)")
        size.add_metric([], (env["last_pgno"] + 1) * store.env.stat()["psize"])
        mapped = GaugeMetricFamily("offerd_store_map_bytes", "The most the store may hold (--map-size)")
        mapped.add_metric([], env["map_size"])
        return [info, count, limit, size, mapped]


def _version(store, digest: str) -> dict:
    with store.env.begin() as txn:
        return json.loads(txn.get(digest.encode(), db=store.db["versions"]))


def _loaded(engine, digest: str):
    """The engine's live catalog if it is version `digest` (parsed already: no parse here)."""
    if engine is None:
        return None
    try:
        catalog = engine.catalog
    except Exception:  # NoCatalog
        return None
    return catalog if catalog.hash == digest else None


def _parsed(files: dict[str, str]):
    from .. import lang

    return lang.check(files)


def _describe(digest: str, label: str, catalog) -> tuple[str, str, int, list]:
    """(hash, label, offers, [(cap name, CapCheck)]) of a version: once per version."""
    from ..engine.plan import Plan

    plan, caps = Plan(catalog), {}
    for offer in catalog.offers:
        for space in offer.spaces:
            for cap in plan.caps(offer, space):
                if cap.check.scope == "total":
                    caps.setdefault(f"{cap.rule.owner}: {cap.rule.text}", cap.check)
    return digest, label, len(catalog.offers), sorted(caps.items())


def registry(multiprocess: bool, workers, open_store, lock=None):
    """The registry the endpoint serves: the workers' metrics (summed over their files with
    several) and the collectors above. Returns it with the Processes collector (restarts)."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client import multiprocess as mp

    if multiprocess:
        reg = CollectorRegistry()
        mp.MultiProcessCollector(reg)
    else:
        reg = REGISTRY
    procs = Processes(workers, supervisor=multiprocess)
    reg.register(procs)
    reg.register(Catalogs(open_store, lock))
    return reg, procs
