#!/usr/bin/env python3
"""Ray against Dask (dask.distributed), local mode on this machine, for a distributed
simulation: offerd's real per-chunk rule evaluation (offline/simulate.py `_outcomes`) over
partitions of a generated population, results collected by the driver in partition order,
at most 2 x workers + 2 partitions in flight. Measured in interleaved rounds (Ray, Dask,
offerd's own `simulate`, the order alternating): cluster start-up, idle memory and shutdown;
throughput per partition size; per-task overhead and a 20 MB result's transfer; a worker
SIGKILLed mid-run; a driver SIGKILLed; reading partitioned input through each engine's
filesystem layer and Parquet; install footprint and import time.

Needs a venv with the engines (kept out of offerd's own), run with offerd's src on the path:

    python3 -m venv /work/scratch/ev && /work/scratch/ev/bin/pip install 'ray[default]' 'dask[distributed]' pyarrow
    /work/scratch/ev/bin/pip install -e .
    PYTHONPATH=$PWD/src /work/scratch/ev/bin/python benchmarks/engines.py                      # quick (~2 min), benchmarks/scratch/
    PYTHONPATH=$PWD/src /work/scratch/ev/bin/python benchmarks/engines.py --contacts 400000 --rounds 3 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
CATALOG = os.path.join(SRC, "offerd", "examples", "catalog")
SPACES = ["web_home", "newsletter"]
AT = "2026-11-23T10:00:00+00:00"
WORKERS = 2
WINDOW = 2 * WORKERS + 2  # partitions in flight
CHUNK = 256

_cache: dict = {}  # in each worker process: catalog hash -> compiled state, built once


# ---- worker side (this module is imported by name in the workers, so _cache persists) ----

def partition_task(path: str, start: int, end: int, first_line: int, catalog, spaces: list[str], at: str,
                   attempts: str | None = None):
    """One partition: its byte range of JSON lines run through `_outcomes` in chunks of
    256 with this process's cached state. Returns (pid, [per-chunk results])."""
    from offerd.compiler.space import Moment
    from offerd.offline import simulate as sim
    from offerd.offline.population import BadRow

    if attempts:  # one marker per attempt: shows a partition run twice after a worker died
        with open(os.path.join(attempts, f"{first_line}-{os.getpid()}-{time.time_ns()}"), "w"):
            pass
    state = _cache.get(catalog.hash)
    if state is None:
        state = _cache[catalog.hash] = sim._state([catalog], spaces, [])
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    moment = Moment.at(datetime.datetime.fromisoformat(at), catalog.timezone)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    out, items = [], []
    for line_no, raw in enumerate(lines, first_line):
        try:
            items.append((line_no, raw.decode("utf-8")))
        except UnicodeDecodeError as e:
            items.append((line_no, BadRow(line_no, f"not UTF-8: {e.reason}")))
        if len(items) == CHUNK:
            out.append(sim._outcomes((moment, {}, True, items), state))
            items = []
    if items:
        out.append(sim._outcomes((moment, {}, True, items), state))
    return os.getpid(), out


def echo(x):
    return x


def big(kind: str, n: int, send: bool):
    """A result of ~20 MB pickled (bytes, or Python tuples like a simulation's rows); with
    send False only its length, so the difference is the transfer."""
    value = b"x" * n if kind == "bytes" else [(i, [(i % 7, 1.5 + i)], True, None) for i in range(n)]
    if kind == "objects pickled":
        value = pickle.dumps(value, 5)
    return value if send else len(value)


def pid():
    return os.getpid()


# ---- processes and memory ----

def children() -> dict[int, list[int]]:
    kids = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids[ppid].append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def descendants(root: int | None = None) -> list[int]:
    kids, out, todo = children(), [], [root or os.getpid()]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def memory(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MB summed over pids (PSS shares shared pages out fairly)."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def cmdline(p: int) -> str:
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return ""


def alive(p: int) -> bool:
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], limit: float) -> float | None:
    t = time.perf_counter()
    while time.perf_counter() - t < limit:
        if not any(alive(p) for p in pids):
            return time.perf_counter() - t
        time.sleep(0.05)
    return None


def tracker(p: int) -> bool:
    return "resource_tracker" in cmdline(p)


def kill_leftovers() -> list[str]:
    left = [p for p in descendants() if alive(p) and not tracker(p)]
    names = [cmdline(p) for p in left]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return names


# ---- the engines, one interface ----

class Ray:
    name = "ray"

    def start(self):
        import ray
        self.ray = ray
        # loopback only; no dashboard (not needed, and one process less)
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 configure_logging=False)
        self.task = ray.remote(num_cpus=1, max_retries=3)(partition_task)  # max_retries: reruns after a worker dies
        self.echo = ray.remote(num_cpus=1)(echo)
        self.big = ray.remote(num_cpus=1)(big)
        self.pid = ray.remote(num_cpus=1)(pid)

    def warm(self) -> set[int]:
        seen: set[int] = set()
        while len(seen) < WORKERS:
            seen |= set(self.ray.get([self.pid.remote() for _ in range(8)]))
        return seen

    def submit(self, *args):
        return self.task.remote(*args)

    def result(self, ref):
        return self.ray.get(ref)

    def many(self, n: int) -> list:
        return self.ray.get([self.echo.remote(i) for i in range(n)])

    def one(self, x):
        return self.ray.get(self.echo.remote(x))

    def call_big(self, kind, n, send):
        return self.ray.get(self.big.remote(kind, n, send))

    def stop(self):
        self.ray.shutdown()


class Dask:
    name = "dask"

    def start(self):
        import dask
        from distributed import Client, LocalCluster
        # allowed-failures: how many workers may die running one task before it is given up (KilledWorker)
        dask.config.set({"distributed.scheduler.allowed-failures": 3, "distributed.worker.daemon": True})
        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def warm(self) -> set[int]:
        self.client.submit(pid, pure=False).result()
        return set(self.client.run(os.getpid).values())

    def submit(self, *args):
        return self.client.submit(partition_task, *args, pure=False)

    def result(self, fut):
        r = fut.result()
        fut.release()
        return r

    def many(self, n: int) -> list:
        return self.client.gather(self.client.map(echo, range(n), pure=False))

    def one(self, x):
        return self.client.submit(echo, x, pure=False).result()

    def call_big(self, kind, n, send):
        return self.client.submit(big, kind, n, send, pure=False).result()

    def stop(self):
        self.client.close()
        self.cluster.close()


# ---- the workload ----

def partitions(path: str, rows: int) -> list[tuple[int, int, int]]:
    """(start byte, end byte, first line number) of every `rows` lines."""
    out, start, pos, line, first = [], 0, 0, 0, 1
    with open(path, "rb") as f:
        for raw in f:
            pos += len(raw)
            line += 1
            if line - first + 1 > rows:
                out.append((start, pos, first))
                start, first = pos, line
    if pos > start:
        out.append((start, pos, first))
    return out


class Arbiter:
    """offerd's driver side of `simulate` (counts, then each contact arbitrated in
    population order), fed with per-chunk results; its report equals `simulate`'s."""

    def __init__(self, catalog, path: str):
        from offerd.compiler.space import Moment
        from offerd.offline import simulate as sim
        from offerd.offline.report import Inputs
        self.sim = sim
        at = datetime.datetime.fromisoformat(AT)
        self.v = sim._Version(0, catalog, Inputs("", catalog.hash, at, SPACES, {}, path, [], 0, True, None), WORKERS)
        self.now = Moment.at(at, catalog.timezone).ts

    def add(self, outcomes, counts):
        v = self.v
        for c, (removed, eligibility, by_rule, clauses) in zip(v.compiled, counts[0]):
            stats = v.report.spaces[c.space.name]
            stats.eliminations.update(removed)
            stats.eligibility.update(eligibility)
            stats.rule_contacts.update(by_rule)
            stats.clause_contacts.update(clauses)
        for entry in outcomes:
            if isinstance(entry, self.sim.BadRow):
                self.sim._bad(v.report, entry)
                continue
            line, per_version, _ = entry
            self.sim._arbitrate(v, line, per_version[0], self.now)
            v.report.contacts += 1

    def report(self) -> dict:
        self.sim._finish(self.v)
        return comparable(self.v.report.to_json())


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("seconds", "contacts_per_second", "workers", "run")}


def run_engine(eng, path: str, parts, catalog_ref, arbiter=None, digest=False, attempts=None, kill_at=None):
    """The driver: partitions submitted, at most WINDOW in flight, results taken in
    partition order. Returns timings and what was asked for."""
    t0 = time.perf_counter()
    pending, todo, busy, pids, done = collections.deque(), iter(parts), 0.0, collections.Counter(), 0
    h = hashlib.blake2b(digest_size=16) if digest else None
    killed = None
    rows = 0

    def submit():
        p = next(todo, None)
        if p is not None:
            pending.append(eng.submit(path, p[0], p[1], p[2], catalog_ref, SPACES, AT, attempts))

    for _ in range(WINDOW):
        submit()
    while pending:
        worker, chunks = eng.result(pending.popleft())
        submit()
        done += 1
        t = time.perf_counter()
        pids[worker] += 1
        for outcomes, counts in chunks:
            rows += len(outcomes)
            if arbiter is not None:
                arbiter.add(outcomes, counts)
            if h is not None:
                for row in outcomes:
                    h.update(pickle.dumps(row, 5))
        busy += time.perf_counter() - t
        if kill_at is not None and killed is None and done >= kill_at:
            os.kill(worker, signal.SIGKILL)  # it has already started a queued partition
            killed = (worker, done, time.perf_counter() - t0)
    return {"seconds": time.perf_counter() - t0, "driver_busy_s": busy, "rows": rows, "pids": dict(pids),
            "digest": h.hexdigest() if h else None, "killed": killed}


def local_simulate(path: str, out: str) -> float:
    """offerd's own path, `simulate(..., workers=2)` (fork pool, arbitration included), in a
    fresh process with no engine in it; the call's seconds."""
    code = (
        "import sys, json, time, datetime\n"
        "from offerd.cli.catalog import load\n"
        "from offerd.offline.simulate import simulate\n"
        "c = load(sys.argv[1], sys.stderr)\n"
        "t = time.perf_counter()\n"
        f"r = simulate(c, {SPACES!r}, sys.argv[2], datetime.datetime.fromisoformat({AT!r}), workers={WORKERS})\n"
        "s = time.perf_counter() - t\n"
        "json.dump(r.to_json(), open(sys.argv[3], 'w'))\n"
        "print(s)\n")
    res = subprocess.run([sys.executable, "-c", code, CATALOG, path, out], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def session(eng, catalog, path: str, sizes: list[int], contacts: int, big_n: int, first: bool) -> dict:
    """One engine's round: start, idle memory, throughput per partition size (collect only,
    and collect + arbitration at the middle size), tiny tasks, 20 MB result, shutdown."""
    out: dict = {}
    before = set(descendants())
    rss0, _ = memory([os.getpid()])
    t = time.perf_counter()
    eng.start()
    out["start_s"] = time.perf_counter() - t
    eng.warm()
    out["start_to_both_workers_s"] = time.perf_counter() - t
    time.sleep(2)
    procs = [p for p in descendants() if p not in before and not tracker(p)]
    rss, pss = memory(procs)
    drv, _ = memory([os.getpid()])
    out["idle"] = {"processes": len(procs), "rss_mb": rss, "pss_mb": pss, "driver_rss_growth_mb": drv - rss0,
                   "commands": sorted({cmdline(p).split(" ")[0].rsplit("/", 1)[-1] + " " + " ".join(
                       cmdline(p).split(" ")[1:3]) for p in procs})[:20],
                   "java": any("java" in cmdline(p) for p in procs)}
    try:
        ref = catalog  # by value in each task: Dask loses a scattered object with its worker
        run_engine(eng, path, partitions(path, 500)[:4], ref)  # untimed: each worker imports offerd, compiles once
        out["runs"] = []
        for rows in sizes:
            parts = partitions(path, rows)
            t = time.perf_counter()
            parts = partitions(path, rows)
            index_s = time.perf_counter() - t
            r = run_engine(eng, path, parts, ref)
            r.update(partition_rows=rows, partitions=len(parts), index_s=index_s, mode="collect",
                     per_s=contacts / r["seconds"])
            assert r["rows"] == contacts, r["rows"]
            out["runs"].append(r)
        mid = sizes[len(sizes) // 2]
        arb = Arbiter(catalog, path)
        r = run_engine(eng, path, partitions(path, mid), ref, arbiter=arb)
        r.update(partition_rows=mid, mode="collect+arbitrate", per_s=contacts / r["seconds"])
        r["report_sha"] = hashlib.sha256(json.dumps(arb.report(), sort_keys=True).encode()).hexdigest()
        out["runs"].append(r)
        mem = memory([p for p in descendants() if p not in before])
        out["after_runs"] = {"rss_mb": mem[0], "pss_mb": mem[1]}
        # per-task overhead
        eng.many(50)
        t = time.perf_counter()
        assert eng.many(2000) == list(range(2000))
        out["tiny_2000_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(200):
            eng.one(i)
        out["roundtrip_ms"] = (time.perf_counter() - t) / 200 * 1000
        out["big"] = {}
        kinds = [("bytes", 20_000_000)] + ([("objects", big_n), ("objects pickled", big_n)] if first else [])
        for kind, n in kinds:  # the tuples only in the first round: Dask takes ~40 s over them
            with_, without = [], []
            for _ in range(3 if kind == "bytes" else 1):
                t = time.perf_counter()
                eng.call_big(kind, n, False)
                without.append(time.perf_counter() - t)
                t = time.perf_counter()
                value = eng.call_big(kind, n, True)
                if kind == "objects pickled":
                    pickle.loads(value)
                with_.append(time.perf_counter() - t)
            out["big"][kind] = {"with_result_s": statistics.median(with_), "length_only_s": statistics.median(without),
                                "transfer_s": statistics.median(with_) - statistics.median(without)}
    finally:
        procs = [p for p in descendants() if p not in before and not tracker(p)]
        t = time.perf_counter()
        eng.stop()
        out["stop_s"] = time.perf_counter() - t
        gone = wait_gone(procs, 30)
        out["stop_until_processes_gone_s"] = None if gone is None else out["stop_s"] + gone
    return out


def lost_worker(eng, catalog, path: str, rows: int, tmp: str) -> dict:
    """An undisturbed run, then one whose worker is SIGKILLed after ~30% of partitions."""
    out: dict = {}
    before = set(descendants())
    eng.start()
    eng.warm()
    try:
        ref = catalog  # by value in each task: Dask loses a scattered object with its worker
        parts = partitions(path, rows)
        for label, kill_at in (("undisturbed", None), ("killed", max(1, round(0.3 * len(parts))))):
            attempts = tempfile.mkdtemp(prefix=f"attempts-{eng.name}-{label}-", dir=tmp)
            try:
                r = run_engine(eng, path, parts, ref, digest=True, attempts=attempts, kill_at=kill_at)
                r["completed"] = r["rows"] == sum(1 for _ in open(path, "rb"))
            except Exception as e:  # what the engine raises when it gives up
                r = {"completed": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            runs = collections.Counter(name.split("-")[0] for name in os.listdir(attempts))
            r["partitions_run_twice"] = sorted(int(k) for k, n in runs.items() if n > 1)
            r["attempts"] = sum(runs.values())
            r["partitions"] = len(parts)
            out[label] = r
        u, k = out["undisturbed"], out["killed"]
        out["same_digest"] = u.get("digest") is not None and u.get("digest") == k.get("digest")
        if k.get("completed"):
            out["recovery_cost_s"] = k["seconds"] - u["seconds"]
        time.sleep(1)
        out["workers_after"] = len(eng.warm())
    finally:
        eng.stop()
        wait_gone([p for p in descendants() if p not in before], 30)
    return out


def driver_death(name: str) -> dict:
    """A driver that starts a cluster is SIGKILLed: which of its processes outlive it, and
    for how long (any still there after 30 s are killed here)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--driver-child", name],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    pids = json.loads(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t = time.perf_counter()
    left = {p for p in pids if alive(p)}
    timeline = []
    while left and time.perf_counter() - t < 30:
        time.sleep(0.1)
        now = {p for p in left if alive(p)}
        if now != left:
            timeline.append((round(time.perf_counter() - t, 1), len(now)))
        left = now
    survivors = [cmdline(p) for p in left]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return {"processes": len(pids), "all_gone_s": None if left else round(time.perf_counter() - t, 1),
            "timeline": timeline, "survivors_after_30s": survivors}


def driver_child(name: str) -> None:
    eng = Ray() if name == "ray" else Dask()
    eng.start()
    eng.warm()
    print(json.dumps(descendants()), flush=True)
    time.sleep(120)


# ---- input through each engine's filesystem layer ----

def reading(path: str, contacts: int, tmp: str) -> dict:
    out: dict = {}
    size = os.path.getsize(path)
    import fsspec
    from dask.bytes import read_bytes
    import dask
    t = time.perf_counter()
    with fsspec.open("file://" + path, "rb") as f:
        n = f.read().count(b"\n")
    out["fsspec_open_whole_s"] = time.perf_counter() - t
    assert n == contacts
    t = time.perf_counter()
    _, blocks = read_bytes("file://" + path, delimiter=b"\n", blocksize=4_000_000)
    data = dask.compute(*blocks[0], scheduler="sync")
    out["dask_read_bytes_4MB_blocks"] = {"s": time.perf_counter() - t, "blocks": len(blocks[0]),
                                         "lines": sum(d.count(b"\n") for d in data),
                                         "whole_lines_only": all(d.endswith(b"\n") for d in data)}
    import pyarrow.fs as pafs
    t = time.perf_counter()
    fs, p = pafs.FileSystem.from_uri("file://" + path)
    parts = partitions(path, 25_000)
    with fs.open_input_file(p) as f:
        lines = sum(f.read_at(end - start, start).count(b"\n") for start, end, _ in parts)
    out["pyarrow_fs_read_at_25k_ranges"] = {"s": time.perf_counter() - t, "lines": lines}
    import pyarrow.json as pajson
    import pyarrow.parquet as pq
    t = time.perf_counter()
    table = pajson.read_json(path)
    out["pyarrow_read_json_s"] = time.perf_counter() - t
    out["pyarrow_inferred_types"] = {f.name: str(f.type) for f in table.schema}
    pq_path = os.path.join(tmp, "people.parquet")
    t = time.perf_counter()
    pq.write_table(table, pq_path, row_group_size=25_000)
    out["parquet_write_s"] = time.perf_counter() - t
    out["parquet_mb"] = os.path.getsize(pq_path) / 1e6
    out["jsonl_mb"] = size / 1e6
    t = time.perf_counter()
    with fsspec.open("file://" + pq_path, "rb") as f:
        pf = pq.ParquetFile(f)
        groups = pf.num_row_groups
        first = pf.read_row_group(0).to_pylist()
    out["parquet_one_row_group_to_dicts_s"] = time.perf_counter() - t
    out["parquet_row_groups"] = groups
    out["parquet_first_row"] = {k: str(v) for k, v in first[0].items()}
    return out


# ---- footprint ----

def closure(root: str, extras: tuple[str, ...] = ()) -> set[str]:
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    seen, todo = set(), [(root, extras)]
    while todo:
        name, ex = todo.pop()
        key = canonicalize_name(name)
        if key in seen and not ex:
            continue
        seen.add(key)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (ex or ("",))):
                continue
            todo.append((req.name, tuple(req.extras)))
    return seen


def size_mb(names: set[str]) -> float:
    from importlib import metadata
    from packaging.utils import canonicalize_name
    total = 0
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) in names:
            for f in dist.files or []:
                try:
                    total += os.path.getsize(dist.locate_file(f))
                except OSError:
                    pass
    return total / 1e6


def footprint(rounds: int) -> dict:
    from importlib import metadata
    offerd = closure("offerd")
    out = {}
    for label, root, extras in (("ray[default]", "ray", ("default",)), ("ray (core)", "ray", ()),
                                ("dask[distributed]", "dask", ("distributed",)), ("pyarrow", "pyarrow", ())):
        deps = closure(root, extras)
        out[label] = {"packages": len(deps), "mb": size_mb(deps), "beyond_offerd_mb": size_mb(deps - offerd),
                      "version": metadata.version(root)}
    jars = [str(f) for f in metadata.files("ray") or [] if str(f).endswith(".jar")]
    out["ray_jars"] = jars
    out["java_on_path"] = bool(subprocess.run(["sh", "-c", "command -v java"], capture_output=True).stdout)
    times = collections.defaultdict(list)
    for _ in range(rounds):
        for mod in ("ray", "distributed", "dask.distributed"):
            code = f"import time; t = time.perf_counter(); import {mod}; print(time.perf_counter() - t)"
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times[mod].append(float(res.stdout.strip().splitlines()[-1]))
    out["import_s"] = {m: statistics.median(v) for m, v in times.items()}
    return out


# ---- the run ----

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="10000,25000,50000", help="partition sizes, rows")
    ap.add_argument("--out", default=os.path.join(HERE, "scratch"))
    ap.add_argument("--driver-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # the workers import this module and offerd by name
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE, SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    if args.driver_child:
        driver_child(args.driver_child)
        return
    from offerd.cli.catalog import load
    os.makedirs(args.out, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    catalog = load(CATALOG, sys.stderr)
    tmp = tempfile.mkdtemp(prefix="engines-")
    path = os.path.join(tmp, "people.jsonl")
    result: dict = {"args": vars(args), "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                                    "cpus": os.cpu_count(), "load_start": os.getloadavg()}}
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "offerd.cli", "gen-population", CATALOG, str(args.contacts), "--seed", "1",
                        "--out", path], check=True, capture_output=True)
        t = time.perf_counter()
        blob = pickle.dumps(catalog)
        result["catalog_pickle"] = {"bytes": len(blob), "dumps_s": time.perf_counter() - t}
        t = time.perf_counter()
        for _ in range(100):
            pickle.loads(blob)
        result["catalog_pickle"]["loads_ms"] = (time.perf_counter() - t) * 10
        try:
            from offerd.offline.simulate import _state
            pickle.dumps(_state([catalog], SPACES, []))
            result["state_pickles"] = True
        except Exception as e:
            result["state_pickles"] = f"no: {type(e).__name__}: {e}"
        sample = big("objects", 10_000, True)
        big_n = int(20_000_000 / (len(pickle.dumps(sample, 5)) / 10_000))
        result["big_objects_pickled_mb"] = len(pickle.dumps(big("objects", big_n, True), 5)) / 1e6
        rounds = []
        for r in range(args.rounds):
            order = [Ray, Dask, None] if r % 2 == 0 else [None, Dask, Ray]
            this: dict = {}
            for kind in order:
                print(f"round {r + 1}: {kind.name if kind else 'local'} ({time.perf_counter() - started:.0f} s)",
                      flush=True)
                if kind is None:
                    rep = os.path.join(tmp, "local.json")
                    s = local_simulate(path, rep)
                    with open(rep) as f:
                        sha = hashlib.sha256(json.dumps(comparable(json.load(f)), sort_keys=True).encode()).hexdigest()
                    this["local"] = {"seconds": s, "per_s": args.contacts / s, "report_sha": sha}
                else:
                    this[kind.name] = session(kind(), catalog, path, sizes, args.contacts, big_n, r == 0)
                    left = kill_leftovers()
                    if left:
                        this[kind.name]["leftovers_killed"] = left
            rounds.append(this)
        result["rounds"] = rounds
        print(f"lost worker ({time.perf_counter() - started:.0f} s)", flush=True)
        result["lost_worker"] = {}
        for kind in (Ray, Dask):
            result["lost_worker"][kind.name] = lost_worker(kind(), catalog, path, sizes[len(sizes) // 2], tmp)
            kill_leftovers()
        print(f"driver death ({time.perf_counter() - started:.0f} s)", flush=True)
        result["driver_death"] = {name: driver_death(name) for name in ("ray", "dask")}
        print(f"reading, footprint ({time.perf_counter() - started:.0f} s)", flush=True)
        result["reading"] = reading(path, args.contacts, tmp)
        result["footprint"] = footprint(args.rounds)
    finally:
        result["leftovers_at_end"] = kill_leftovers()
        subprocess.run(["rm", "-rf", tmp])
    result["machine"]["load_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    with open(os.path.join(args.out, "engines.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    summary = tables(result, sizes, args.contacts)
    print(summary)
    with open(os.path.join(args.out, "engines.md"), "w") as f:
        f.write(summary + "\n")


def tables(res: dict, sizes: list[int], contacts: int) -> str:
    rounds = res["rounds"]
    fp = res["footprint"]

    def m(engine, get):
        return med([get(r[engine]) for r in rounds])

    L = ["# Ray vs Dask for a distributed simulation\n",
         f"Generated by `benchmarks/engines.py --contacts {contacts} --rounds {len(rounds)}` on "
         f"{res['machine']['platform']}, {res['machine']['cpus']} CPUs, Python {res['machine']['python']}; "
         f"Ray {fp['ray[default]']['version']}, dask/distributed {fp['dask[distributed]']['version']}, pyarrow "
         f"{fp['pyarrow']['version']}. Medians of {len(rounds)} interleaved rounds; load average "
         f"{res['machine']['load_start'][0]:.1f} at start, {res['machine']['load_end'][0]:.1f} at end (a shared machine).\n",
         "## Cluster (2 worker processes, 1 thread each)\n",
         "| | Ray | Dask |", "|---|---:|---:|"]
    rows = [("start (init call), s", lambda s: s["start_s"]),
            ("start until both workers answer, s", lambda s: s["start_to_both_workers_s"]),
            ("shutdown call, s", lambda s: s["stop_s"]),
            ("shutdown until every process gone, s", lambda s: s["stop_until_processes_gone_s"]),
            ("idle processes", lambda s: s["idle"]["processes"]),
            ("idle RSS of its processes, MB", lambda s: s["idle"]["rss_mb"]),
            ("idle PSS of its processes, MB", lambda s: s["idle"]["pss_mb"]),
            ("RSS after the runs, MB", lambda s: s["after_runs"]["rss_mb"]),
            ("2,000 tiny tasks, s", lambda s: s["tiny_2000_s"]),
            ("one task's round trip, ms", lambda s: s["roundtrip_ms"]),
            ("20 MB bytes result, transfer s", lambda s: s["big"]["bytes"]["transfer_s"]),
            ("20 MB pickled tuples result (first round), transfer s", lambda s: s["big"].get("objects", {}).get("transfer_s")),
            ("the same tuples sent as pickle bytes (first round), transfer s",
             lambda s: s["big"].get("objects pickled", {}).get("transfer_s"))]
    for label, get in rows:
        a, b = m("ray", get), m("dask", get)
        L.append(f"| {label} | {'' if a is None else f'{a:,.3g}'} | {'' if b is None else f'{b:,.3g}'} |")
    L += ["", f"## Throughput, {contacts:,} contacts, spaces {' and '.join(SPACES)}\n",
          "| path | partition rows | seconds | contacts/s | driver busy, s |", "|---|---:|---:|---:|---:|"]
    local = med([r["local"]["seconds"] for r in rounds])
    L.append(f"| offerd `simulate(workers=2)` (fork pool, arbitration included) | 256-row tasks | {local:.1f} | "
             f"{contacts / local:,.0f} | |")
    for engine in ("ray", "dask"):
        for i, run in enumerate(rounds[0][engine]["runs"]):
            secs = m(engine, lambda s, i=i: s["runs"][i]["seconds"])
            busy = m(engine, lambda s, i=i: s["runs"][i]["driver_busy_s"])
            what = "collect only" if run["mode"] == "collect" else "collect + offerd arbitration"
            L.append(f"| {engine}, {what} | {run['partition_rows']:,} | {secs:.1f} | {contacts / secs:,.0f} | {busy:.2f} |")
    shas = {r[e]["runs"][-1]["report_sha"] for r in rounds for e in ("ray", "dask")} | {r["local"]["report_sha"] for r in rounds}
    same = len(shas) == 1
    L.append(f"\nThe engines' reports (collect + arbitration) equal `simulate`'s: {'yes' if same else 'NO'}.\n")
    L += ["## A worker SIGKILLed after ~30% of partitions\n",
          "| | Ray | Dask |", "|---|---|---|"]
    lw = res["lost_worker"]

    def both(get):
        return " | ".join(str(get(lw[e])) for e in ("ray", "dask"))
    L.append(f"| completed with no driver action | {both(lambda x: x['killed'].get('completed'))} |")
    L.append(f"| results identical to the undisturbed run (digest) | {both(lambda x: x['same_digest'])} |")
    L.append("| undisturbed / killed run, s | " + " | ".join(
        f"{lw[e]['undisturbed'].get('seconds', 0):.1f} / {lw[e]['killed'].get('seconds', 0):.1f}" for e in ("ray", "dask")) + " |")
    L.append(f"| partitions run twice | {both(lambda x: x['killed'].get('partitions_run_twice'))} |")
    L.append(f"| workers after | {both(lambda x: x.get('workers_after'))} |")
    L += ["", "## The driver SIGKILLed\n", "| | Ray | Dask |", "|---|---|---|"]
    dd = res["driver_death"]
    L.append(f"| its processes | {dd['ray']['processes']} | {dd['dask']['processes']} |")
    L.append(f"| all gone after, s | {dd['ray']['all_gone_s']} | {dd['dask']['all_gone_s']} |")
    L.append(f"| still there after 30 s | {len(dd['ray']['survivors_after_30s'])} | {len(dd['dask']['survivors_after_30s'])} |")
    rd = res["reading"]
    L += ["", "## Reading input\n", "| | |", "|---|---:|",
          f"| fsspec.open, whole file, s | {rd['fsspec_open_whole_s']:.2f} |",
          f"| dask.bytes.read_bytes, 4 MB blocks, delimiter \\n, s | {rd['dask_read_bytes_4MB_blocks']['s']:.2f} "
          f"({rd['dask_read_bytes_4MB_blocks']['blocks']} blocks, whole lines: {rd['dask_read_bytes_4MB_blocks']['whole_lines_only']}) |",
          f"| pyarrow.fs read_at, 25k-row byte ranges, s | {rd['pyarrow_fs_read_at_25k_ranges']['s']:.2f} |",
          f"| pyarrow.json.read_json, s | {rd['pyarrow_read_json_s']:.2f} |",
          f"| Parquet write (25k-row groups), s / MB (JSON Lines MB) | {rd['parquet_write_s']:.2f} / "
          f"{rd['parquet_mb']:.1f} ({rd['jsonl_mb']:.1f}) |",
          f"| one row group to dicts, s | {rd['parquet_one_row_group_to_dicts_s']:.2f} |"]
    L += ["", "## Footprint\n", "| | packages | MB installed | MB beyond offerd's deps | import, s |",
          "|---|---:|---:|---:|---:|"]
    imp = {"ray[default]": fp["import_s"]["ray"], "ray (core)": fp["import_s"]["ray"],
           "dask[distributed]": fp["import_s"]["dask.distributed"], "pyarrow": None}
    for k in ("ray[default]", "ray (core)", "dask[distributed]", "pyarrow"):
        v = fp[k]
        L.append(f"| {k} | {v['packages']} | {v['mb']:.0f} | {v['beyond_offerd_mb']:.0f} | "
                 f"{'' if imp[k] is None else f'{imp[k]:.2f}'} |")
    L.append(f"\nJVM: Ray ships {len(fp['ray_jars'])} .jar files; java on PATH: {fp['java_on_path']}; "
             f"a java process seen: {any(r[e]['idle']['java'] for r in rounds for e in ('ray', 'dask'))}.")
    L.append(f"\nWhole benchmark: {res['total_s']:.0f} s.")
    return "\n".join(L)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import engines  # the workers find these functions by module name, not pickled from __main__
    engines.main()
