"""What the metrics endpoint reads at scrape time rather than the workers count: each
worker process's CPU, memory, fds and start (from /proc), the supervisor's restarts, the
build, and from the store the live catalog, the fill of its total caps and the file's size.

It runs in the process serving /metrics: the supervisor with several workers (which has no
store of its own open: it opens one per scrape, never while forking a worker), or the one
server process with --workers 1 (which reads through the server's own store)."""
from __future__ import annotations

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


def build_info() -> GaugeMetricFamily:
    import google.protobuf
    import grpc

    from .. import __version__

    info = GaugeMetricFamily("offerd_build_info", "The running offerd and what it runs on (always 1)",
                             labels=["version", "python", "grpcio", "protobuf"])
    info.add_metric([__version__, ".".join(map(str, sys.version_info[:3])), grpc.__version__,
                     google.protobuf.__version__], 1)
    return info


class Catalogs:
    """The live catalog, the count and limit of each of its total caps, and the store's size,
    read from the store at each scrape. `open_store()` gives (store, close) where close()
    ends what it opened (a no-op for the server's own store); `lock` is held while a store
    is open here (the supervisor forks no worker meanwhile)."""

    def __init__(self, open_store, lock: threading.Lock | None = None):
        self.open_store, self.lock = open_store, lock or threading.Lock()
        self._known: tuple[str, str, int, list] | None = None  # the live hash, its label, offers, total caps

    def collect(self):
        out = [build_info()]
        try:
            with self.lock:
                opened = self.open_store()
                if opened is None:
                    return out
                store, close = opened
                try:
                    out += self._read(store)
                finally:
                    close()
        except Exception as e:  # a scrape answers what it can; the store's trouble is logged, not raised
            log.warning("metrics: cannot read the store: %s", e)
        return out

    def _read(self, store):
        digest = store.live_hash()
        info = GaugeMetricFamily("offerd_catalog_info", "The live catalog version (always 1)",
                                 labels=["hash", "label", "offers"])
        count = GaugeMetricFamily("offerd_cap_count", "Propositions counted by a total cap of the live catalog "
                                  "now, within its window (this store's own, in a cluster)", labels=["cap"])
        limit = GaugeMetricFamily("offerd_cap_limit", "The limit of a total cap of the live catalog",
                                  labels=["cap"])
        if digest is not None:
            if self._known is None or self._known[0] != digest:
                self._known = _describe(store, digest)
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


def _describe(store, digest: str) -> tuple[str, str, int, list]:
    """(hash, label, offers, [(cap name, CapCheck)]) of a version: parsed once per version."""
    from .. import lang
    from ..engine.plan import Plan

    with store.env.begin() as txn:
        meta = json.loads(txn.get(digest.encode(), db=store.db["versions"]))
    catalog = lang.check(meta["files"])
    plan, caps = Plan(catalog), {}
    for offer in catalog.offers:
        for space in offer.spaces:
            for cap in plan.caps(offer, space):
                if cap.check.scope == "total":
                    caps.setdefault(f"{cap.rule.owner}: {cap.rule.text}", cap.check)
    return digest, meta["label"], len(catalog.offers), sorted(caps.items())


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
