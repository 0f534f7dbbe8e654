#!/usr/bin/env python3
"""Ray against Dask (dask.distributed), local mode on this machine, for offerd's distributed
simulation: the population cut into parts (offline/parts.py), each part's real work done by
`evaluate.run_part` on a worker, results taken in part order with at most 2 x workers + 2
parts in flight, and the whole product path `simulate(..., engine=...)` on each engine
(offerd's `engines.Dask`, and a Ray engine of the same interface written here). Measured in
interleaved rounds (Ray, Dask, offerd's own fork pool, the order alternating): cluster
start-up, idle memory and shutdown; throughput per part size; per-task overhead and a 20 MB
result's transfer; a worker SIGKILLed mid-run; a driver SIGKILLed; reading input through each
engine's filesystem layer and Parquet; install footprint and import time.

Needs a venv with the engines (kept out of offerd's own), run with offerd's src on the path:

    python3 -m venv /work/scratch/ev && /work/scratch/ev/bin/pip install 'ray[default]' 'dask[distributed]' pyarrow
    PYTHONPATH=$PWD/src /work/scratch/ev/bin/python benchmarks/engines.py                      # quick, benchmarks/scratch/
    PYTHONPATH=$PWD/src /work/scratch/ev/bin/python benchmarks/engines.py --contacts 400000 --rounds 3 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import collections
import datetime
import functools
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
MB = 1 << 20
_END = object()


# ---- worker side (this module is imported by name in the workers) ----

def call(fn, job, item):
    return fn(job, item)


def tracked(fn, attempts: str | None, job, item):
    """A part's task, returning (pid, result); with `attempts`, a marker per attempt shows a
    part run twice after a worker died."""
    if attempts:
        with open(os.path.join(attempts, f"{item[0].start}-{os.getpid()}-{time.time_ns()}"), "w"):
            pass
    return os.getpid(), fn(job, item)


def echo(x):
    return x


def big(n: int, send: bool):
    """n bytes, or with send False only their length, so the difference is the transfer."""
    value = b"x" * n
    return value if send else len(value)


def pid():
    return os.getpid()


# ---- processes and memory ----

def descendants() -> list[int]:
    kids = collections.defaultdict(list)
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                kids[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(name))
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [os.getpid()]
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


def kill(pids) -> list[str]:
    names = [cmdline(p) for p in pids]
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return names


def kill_leftovers() -> list[str]:
    return kill([p for p in descendants() if alive(p) and not tracker(p)])


# ---- the engines: offerd's interface (.map, .workers, .remote, .close), plus the cluster's own calls ----

class RayEngine:
    """offerd's engine interface on Ray: `fn(job, item)` of each item in order, at most
    2 x workers + 2 in flight; a task whose worker dies runs again (max_retries)."""

    remote = True

    def __init__(self, ray, workers: int):
        self.ray, self.workers = ray, workers
        self.task = ray.remote(num_cpus=1, max_retries=3)(call)

    def map(self, job, items, fn=None, count: int = 0):
        from offerd.offline.evaluate import run_part
        ref = self.ray.put(job)  # once in the object store, which outlives a worker
        pending, todo, window = collections.deque(), iter(items), 2 * self.workers + 2
        try:
            while True:
                while len(pending) >= window:
                    yield self.ray.get(pending.popleft())
                item = next(todo, _END)  # taken when sent: a part's totals are those of that moment
                if item is _END:
                    break
                pending.append(self.task.remote(fn or run_part, ref, item))
            while pending:
                yield self.ray.get(pending.popleft())
        finally:
            for r in pending:
                self.ray.cancel(r)

    def close(self) -> None:
        pass


class Ray:
    name = "ray"

    def start(self):
        import ray
        self.ray = ray
        # loopback only; no dashboard (not needed, and one process less)
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 configure_logging=False)
        self.engine = RayEngine(ray, WORKERS)
        self.tasks = {f: ray.remote(num_cpus=1)(f) for f in (echo, big, pid)}

    def warm(self) -> set[int]:
        seen: set[int] = set()
        while len(seen) < WORKERS:
            seen |= set(self.ray.get([self.tasks[pid].remote() for _ in range(8)]))
        return seen

    def many(self, fn, args: list) -> list:
        return self.ray.get([self.tasks[fn].remote(*a) for a in args])

    def stop(self):
        self.ray.shutdown()


class Dask:
    name = "dask"

    def start(self):
        import dask
        from distributed import LocalCluster
        from offerd.offline import engines
        # allowed-failures: how many workers may die running one task before it is given up (KilledWorker)
        dask.config.set({"distributed.scheduler.allowed-failures": 3, "distributed.worker.daemon": True})
        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None)
        self.engine = engines.Dask(self.cluster.scheduler_address)  # offerd's own, a client of this cluster
        self.client = self.engine.client

    def warm(self) -> set[int]:
        self.client.submit(pid, pure=False).result()
        return set(self.client.run(os.getpid).values())

    def many(self, fn, args: list) -> list:
        return self.client.gather([self.client.submit(fn, *a, pure=False) for a in args])

    def stop(self):
        self.engine.close()
        self.cluster.close()


class Watched:
    """An engine whose map is watched: which worker ran each part, the driver's time
    between results (what `simulate` does with them), each attempt marked in `attempts`,
    and the worker that returned the `kill_at`-th result SIGKILLed (it has already started
    another part)."""

    def __init__(self, engine, attempts: str | None = None, kill_at: int | None = None):
        self.engine, self.workers, self.remote = engine, engine.workers, engine.remote
        self.attempts, self.kill_at = attempts, kill_at
        self.busy, self.pids, self.killed = 0.0, collections.Counter(), None

    def map(self, job, items, fn=None, count: int = 0):
        from offerd.offline.evaluate import run_part
        task = functools.partial(tracked, fn or run_part, self.attempts)
        t0 = time.perf_counter()
        for done, (worker, result) in enumerate(self.engine.map(job, items, task, count), 1):
            self.pids[worker] += 1
            if self.kill_at is not None and self.killed is None and done >= self.kill_at:
                os.kill(worker, signal.SIGKILL)
                self.killed = (worker, done, time.perf_counter() - t0)
            t = time.perf_counter()
            yield result
            self.busy += time.perf_counter() - t


# ---- the workload ----

def make_job(catalog):
    """The job `simulate` makes for this run (no --by, --compare or per-contact output)."""
    from offerd.compiler.space import Moment
    from offerd.offline.evaluate import Job
    moment = Moment.at(datetime.datetime.fromisoformat(AT), catalog.timezone)
    return Job([catalog], SPACES, [], moment, {}, True, 0, ordered=False)


def sha(report: dict) -> str:
    same = {k: v for k, v in report.items() if k not in ("seconds", "contacts_per_second", "workers")}
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()


def collect(engine, job, todo) -> dict:
    """Every part run by `run_part` with no totals, results taken in order and dropped."""
    w = Watched(engine)
    t = time.perf_counter()
    lines = sum(r.lines for r in w.map(job, ((p, {}) for p in todo), count=len(todo)))
    return {"seconds": time.perf_counter() - t, "driver_busy_s": w.busy, "lines": lines, "pids": dict(w.pids)}


def run_simulate(engine, catalog, path: str, part_bytes: int, **watch) -> dict:
    """offerd's product path, `simulate(..., engine=...)`, on the engine."""
    from offerd.offline.simulate import simulate
    w = Watched(engine, **watch)
    t = time.perf_counter()
    rep = simulate(catalog, SPACES, path, datetime.datetime.fromisoformat(AT), engine=w, part_bytes=part_bytes)
    return {"seconds": time.perf_counter() - t, "driver_busy_s": w.busy, "contacts": rep.contacts,
            "report_sha": sha(rep.to_json()), "pids": dict(w.pids), "killed": w.killed}


def local_simulate(path: str, part_bytes: int) -> dict:
    """`simulate(..., workers=2)` (offerd's fork pool), in a fresh process with no engine in it."""
    code = (
        "import sys, json, time, datetime\n"
        "from offerd.cli.catalog import load\n"
        "from offerd.offline.simulate import simulate\n"
        "c = load(sys.argv[1], sys.stderr)\n"
        "t = time.perf_counter()\n"
        f"r = simulate(c, {SPACES!r}, sys.argv[2], datetime.datetime.fromisoformat({AT!r}), workers={WORKERS},"
        f" part_bytes={part_bytes})\n"
        "print(json.dumps([time.perf_counter() - t, r.to_json()], default=str))\n")
    res = subprocess.run([sys.executable, "-c", code, CATALOG, path], capture_output=True, text=True, check=True)
    seconds, report = json.loads(res.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "report_sha": sha(report)}


def session(eng, catalog, path: str, sizes: list[float], contacts: int) -> dict:
    """One engine's round: start, idle memory, throughput per part size (collect only, and
    `simulate` at the middle size), tiny tasks, a 20 MB result, shutdown."""
    from offerd.offline import parts
    out: dict = {}
    before = set(descendants())
    t = time.perf_counter()
    eng.start()
    out["start_s"] = time.perf_counter() - t
    eng.warm()
    out["start_to_both_workers_s"] = time.perf_counter() - t
    time.sleep(2)
    procs = [p for p in descendants() if p not in before and not tracker(p)]
    rss, pss = memory(procs)
    out["idle"] = {"processes": len(procs), "rss_mb": rss, "pss_mb": pss,
                   "commands": sorted({cmdline(p).split(" ")[0].rsplit("/", 1)[-1] + " " + " ".join(
                       cmdline(p).split(" ")[1:3]) for p in procs})[:20],
                   "java": any("java" in cmdline(p) for p in procs)}
    try:
        job = make_job(catalog)
        collect(eng.engine, job, parts.split([path], catalog, 256 << 10)[:4])  # untimed: workers import, compile
        out["runs"] = []
        for size in sizes:
            todo = parts.split([path], catalog, int(size * MB))
            r = collect(eng.engine, job, todo)
            r.update(part_mb=size, parts=len(todo), mode="collect", per_s=contacts / r["seconds"])
            assert r["lines"] == contacts, r["lines"]
            out["runs"].append(r)
        mid = sizes[len(sizes) // 2]
        r = run_simulate(eng.engine, catalog, path, int(mid * MB))
        r.update(part_mb=mid, parts=len(parts.split([path], catalog, int(mid * MB))), mode="simulate",
                 per_s=contacts / r["seconds"])
        out["runs"].append(r)
        mem = memory([p for p in descendants() if p not in before])
        out["after_runs"] = {"rss_mb": mem[0], "pss_mb": mem[1]}
        eng.many(echo, [(i,) for i in range(50)])  # per-task overhead
        t = time.perf_counter()
        assert eng.many(echo, [(i,) for i in range(2000)]) == list(range(2000))
        out["tiny_2000_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(200):
            eng.many(echo, [(i,)])
        out["roundtrip_ms"] = (time.perf_counter() - t) / 200 * 1000
        times = {True: [], False: []}
        for _ in range(3):
            for send in (False, True):
                t = time.perf_counter()
                eng.many(big, [(20_000_000, send)])
                times[send].append(time.perf_counter() - t)
        out["big_bytes_transfer_s"] = statistics.median(times[True]) - statistics.median(times[False])
    finally:
        procs = [p for p in descendants() if p not in before and not tracker(p)]
        t = time.perf_counter()
        eng.stop()
        out["stop_s"] = time.perf_counter() - t
        gone = wait_gone(procs, 30)
        out["stop_until_processes_gone_s"] = None if gone is None else out["stop_s"] + gone
    return out


def lost_worker(eng, catalog, path: str, size: float, tmp: str, local_sha: str) -> dict:
    """`simulate` on the engine undisturbed, then with a worker SIGKILLed after ~30% of parts."""
    from offerd.offline import parts
    out: dict = {}
    before = set(descendants())
    eng.start()
    eng.warm()
    try:
        n = len(parts.split([path], catalog, int(size * MB)))
        for label, kill_at in (("undisturbed", None), ("killed", max(1, round(0.3 * n)))):
            attempts = tempfile.mkdtemp(prefix=f"attempts-{eng.name}-{label}-", dir=tmp)
            try:
                r = run_simulate(eng.engine, catalog, path, int(size * MB), attempts=attempts, kill_at=kill_at)
                r["completed"] = True
                r["same_as_local"] = r["report_sha"] == local_sha
            except Exception as e:  # what the engine raises when it gives up
                r = {"completed": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            runs = collections.Counter(name.split("-")[0] for name in os.listdir(attempts))
            r["parts_run_twice"] = sorted(int(k) for k, c in runs.items() if c > 1)  # by start byte
            r["attempts"], r["parts"] = sum(runs.values()), n
            out[label] = r
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
    pids = json.loads(proc.stdout.readline())
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
    survivors = kill(left)
    return {"processes": len(pids), "all_gone_s": None if left else round(time.perf_counter() - t, 1),
            "timeline": timeline, "survivors_after_30s": survivors}


def driver_child(name: str) -> None:
    eng = Ray() if name == "ray" else Dask()
    eng.start()
    eng.warm()
    print(json.dumps(descendants()), flush=True)
    time.sleep(120)


# ---- input: offerd's parts, and each engine's filesystem layer ----

def reading(path: str, contacts: int, catalog, tmp: str) -> dict:
    import dask
    import fsspec
    import pyarrow.fs as pafs
    import pyarrow.json as pajson
    import pyarrow.parquet as pq
    from dask.bytes import read_bytes
    from offerd.offline import parts
    out: dict = {"jsonl_mb": os.path.getsize(path) / 1e6}
    t = time.perf_counter()
    todo = parts.split([path], catalog, 4 * MB)
    lines = 0
    for part in todo:
        items, n = parts.read(part, catalog)
        for _ in items:
            pass
        lines += n[0]
    out["offerd_parts_read_4MB"] = {"s": time.perf_counter() - t, "parts": len(todo), "lines": lines}
    t = time.perf_counter()
    with fsspec.open("file://" + path, "rb") as f:
        assert f.read().count(b"\n") == contacts
    out["fsspec_open_whole_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _, blocks = read_bytes("file://" + path, delimiter=b"\n", blocksize=4_000_000)
    data = dask.compute(*blocks[0], scheduler="sync")
    out["dask_read_bytes_4MB_blocks"] = {"s": time.perf_counter() - t, "blocks": len(blocks[0]),
                                         "whole_lines_only": all(d.endswith(b"\n") for d in data)}
    t = time.perf_counter()
    fs, p = pafs.FileSystem.from_uri("file://" + path)
    with fs.open_input_file(p) as f:
        sum(f.read_at(part.end - part.start, part.start).count(b"\n") for part in todo)
    out["pyarrow_fs_read_at_4MB_ranges_s"] = time.perf_counter() - t
    t = time.perf_counter()
    table = pajson.read_json(path)
    out["pyarrow_read_json_s"] = time.perf_counter() - t
    out["pyarrow_inferred_types"] = {f.name: str(f.type) for f in table.schema}
    pq_path = os.path.join(tmp, "people.parquet")
    t = time.perf_counter()
    pq.write_table(table, pq_path, row_group_size=25_000)
    out["parquet_write_s"] = time.perf_counter() - t
    out["parquet_mb"] = os.path.getsize(pq_path) / 1e6
    t = time.perf_counter()
    with fsspec.open("file://" + pq_path, "rb") as f:
        pq.ParquetFile(f).read_row_group(0).to_pylist()
    out["parquet_one_row_group_to_dicts_s"] = time.perf_counter() - t
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
    out["ray_jars"] = [str(f) for f in metadata.files("ray") or [] if str(f).endswith(".jar")]
    out["java_on_path"] = bool(subprocess.run(["sh", "-c", "command -v java"], capture_output=True).stdout)
    times = collections.defaultdict(list)
    for _ in range(rounds):
        for mod in ("ray", "dask.distributed"):
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
    ap.add_argument("--sizes", default="2,4,8", help="part sizes, MB of JSON Lines (about 5,600 rows a MB)")
    ap.add_argument("--out", default=os.path.join(HERE, "scratch"))
    ap.add_argument("--driver-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # the workers import this module and offerd by name
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE, SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    if args.driver_child:
        driver_child(args.driver_child)
        return
    from offerd.cli.catalog import load
    from offerd.offline import parts
    from offerd.offline.evaluate import run_part
    os.makedirs(args.out, exist_ok=True)
    sizes = [float(s) for s in args.sizes.split(",")]
    mid = sizes[len(sizes) // 2]
    catalog = load(CATALOG, sys.stderr)
    tmp = tempfile.mkdtemp(prefix="engines-")
    path = os.path.join(tmp, "people.jsonl")
    result: dict = {"args": vars(args), "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                                    "cpus": os.cpu_count(), "load_start": os.getloadavg()}}
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "offerd.cli", "gen-population", CATALOG, str(args.contacts), "--seed", "1",
                        "--out", path], check=True, capture_output=True)
        job = make_job(catalog)
        first = parts.split([path], catalog, int(mid * MB))[0]
        result["pickled_kb"] = {"job": len(pickle.dumps(job, 5)) / 1e3,
                                "part_result": len(pickle.dumps(run_part(job, (first, {})), 5)) / 1e3}
        rounds = []
        for r in range(args.rounds):
            order = [Ray, Dask, None] if r % 2 == 0 else [None, Dask, Ray]
            this: dict = {}
            for kind in order:
                print(f"round {r + 1}: {kind.name if kind else 'local'} ({time.perf_counter() - started:.0f} s)",
                      flush=True)
                if kind is None:
                    this["local"] = local_simulate(path, int(mid * MB))
                else:
                    this[kind.name] = session(kind(), catalog, path, sizes, args.contacts)
                    left = kill_leftovers()
                    if left:
                        this[kind.name]["leftovers_killed"] = left
            rounds.append(this)
        result["rounds"] = rounds
        print(f"lost worker ({time.perf_counter() - started:.0f} s)", flush=True)
        local_sha = rounds[0]["local"]["report_sha"]
        result["lost_worker"] = {}
        for kind in (Ray, Dask):
            result["lost_worker"][kind.name] = lost_worker(kind(), catalog, path, mid, tmp, local_sha)
            kill_leftovers()
        print(f"driver death ({time.perf_counter() - started:.0f} s)", flush=True)
        result["driver_death"] = {name: driver_death(name) for name in ("ray", "dask")}
        print(f"reading, footprint ({time.perf_counter() - started:.0f} s)", flush=True)
        result["reading"] = reading(path, args.contacts, catalog, tmp)
        result["footprint"] = footprint(args.rounds)
    finally:
        result["leftovers_at_end"] = kill_leftovers()
        subprocess.run(["rm", "-rf", tmp])
    result["machine"]["load_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    with open(os.path.join(args.out, "engines.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    summary = tables(result, args.contacts)
    print(summary)
    with open(os.path.join(args.out, "engines.md"), "w") as f:
        f.write(summary + "\n")


def tables(res: dict, contacts: int) -> str:
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
            ("20 MB bytes result, transfer s", lambda s: s["big_bytes_transfer_s"])]
    for label, get in rows:
        a, b = m("ray", get), m("dask", get)
        L.append(f"| {label} | {'' if a is None else f'{a:,.3g}'} | {'' if b is None else f'{b:,.3g}'} |")
    pk = res["pickled_kb"]
    L += ["", f"## Throughput, {contacts:,} contacts, spaces {' and '.join(SPACES)}\n",
          "| path | part MB | parts | seconds | contacts/s | driver busy, s |", "|---|---:|---:|---:|---:|---:|"]
    local = med([r["local"]["seconds"] for r in rounds])
    sim = rounds[0]["ray"]["runs"][-1]
    L.append(f"| offerd `simulate(workers=2)` (fork pool) | {sim['part_mb']:g} | {sim['parts']} | {local:.1f} | "
             f"{contacts / local:,.0f} | |")
    for engine in ("ray", "dask"):
        for i, run in enumerate(rounds[0][engine]["runs"]):
            secs = m(engine, lambda s, i=i: s["runs"][i]["seconds"])
            busy = m(engine, lambda s, i=i: s["runs"][i]["driver_busy_s"])
            what = "`run_part` collect only" if run["mode"] == "collect" else "`simulate(engine=...)`: collect + offerd arbitration"
            L.append(f"| {engine}, {what} | {run['part_mb']:g} | {run['parts']} | {secs:.1f} | {contacts / secs:,.0f} | "
                     f"{busy:.2f} |")
    shas = {r[e]["runs"][-1]["report_sha"] for r in rounds for e in ("ray", "dask")}
    same = shas == {r["local"]["report_sha"] for r in rounds} and len(shas) == 1
    L.append(f"\nEach engine's `simulate` report equals `simulate(workers=2)`'s (all but seconds, rate, workers): "
             f"{'yes' if same else 'NO'}. Pickled: the job {pk['job']:.1f} kB (sent with each part), one "
             f"{sim['part_mb']:g} MB part's result {pk['part_result']:.1f} kB.\n")
    L += ["## A worker SIGKILLed after ~30% of parts, in `simulate(engine=...)`\n",
          "| | Ray | Dask |", "|---|---|---|"]
    lw = res["lost_worker"]

    def both(get):
        return " | ".join(str(get(lw[e])) for e in ("ray", "dask"))
    L.append(f"| completed with no driver action | {both(lambda x: x['killed'].get('completed'))} |")
    L.append(f"| report equals `simulate(workers=2)`'s, undisturbed / killed | "
             f"{both(lambda x: '%s / %s' % (x['undisturbed'].get('same_as_local'), x['killed'].get('same_as_local')))} |")
    L.append("| undisturbed / killed run, s | " + " | ".join(
        f"{lw[e]['undisturbed'].get('seconds', 0):.1f} / {lw[e]['killed'].get('seconds', 0):.1f}" for e in ("ray", "dask")) + " |")
    L.append(f"| parts run twice (start byte), of | "
             f"{both(lambda x: '%s of %s' % (x['killed']['parts_run_twice'], x['killed']['parts']))} |")
    L.append(f"| workers after | {both(lambda x: x.get('workers_after'))} |")
    L += ["", "## The driver SIGKILLed\n", "| | Ray | Dask |", "|---|---|---|"]
    dd = res["driver_death"]
    L.append(f"| its processes | {dd['ray']['processes']} | {dd['dask']['processes']} |")
    L.append(f"| all gone after, s | {dd['ray']['all_gone_s']} | {dd['dask']['all_gone_s']} |")
    L.append(f"| still there after 30 s | {len(dd['ray']['survivors_after_30s'])} | {len(dd['dask']['survivors_after_30s'])} |")
    rd = res["reading"]
    op, rb = rd["offerd_parts_read_4MB"], rd["dask_read_bytes_4MB_blocks"]
    L += ["", "## Reading input\n", "| | |", "|---|---:|",
          f"| offerd `parts.split` + `parts.read`, 4 MB parts (lines, not parsed), s | {op['s']:.2f} "
          f"({op['parts']} parts, {op['lines']:,} lines) |",
          f"| fsspec.open, whole file, s | {rd['fsspec_open_whole_s']:.2f} |",
          f"| dask.bytes.read_bytes, 4 MB blocks, delimiter \\n, s | {rb['s']:.2f} "
          f"({rb['blocks']} blocks, whole lines: {rb['whole_lines_only']}) |",
          f"| pyarrow.fs read_at, the same 4 MB ranges, s | {rd['pyarrow_fs_read_at_4MB_ranges_s']:.2f} |",
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
    sys.path[:0] = [HERE, SRC]
    import engines  # the workers find these functions by module name, not pickled from __main__
    engines.main()
