#!/usr/bin/env python3
"""Distributed simulation benchmark: `offerd simulate` on this machine's processes against
`offerd simulate --dask` on a Dask cluster (a scheduler and 2 single-threaded workers,
separate processes on loopback, as on a real cluster) on the same 2 cores, over the bundled
example catalog (its total caps fill during the run) and a generated population; interleaved
rounds, each run in its own process as a user would run it, and their reports compared.
Then the per-part costs a projection to more cores is made from: a worker's CPU per row,
the bytes a part sends back, and the run's own serial CPU per row, when the parts come back
with the totals they were sent with (the usual case) and when every part must be arbitrated
again (the totals moved: the parts in flight while a total cap fills).

    .venv/bin/python benchmarks/simulate_dask.py --contacts 1000000 --rounds 3 --big 10000000  # ~40 min
    .venv/bin/python benchmarks/simulate_dask.py --quick      # 100,000 contacts, one round
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
AT = "2026-11-23T10:00:00Z"
SPACES = ["web_home", "newsletter"]
CONTEXT = {"page": "cart", "device": "mobile"}
VOLATILE = ("seconds", "contacts_per_second", "workers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offerd(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([PY, "-m", "offerd.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def simulate(people: str, out: str, *extra: str) -> float:
    return offerd("simulate", os.path.join(ROOT, "src/offerd/examples/catalog"), *[a for s in SPACES for a in ("--space", s)],
                  "--population", people, "--at", AT, "--context", "page=cart", "--context", "device=mobile",
                  "--quiet", "--json", out, *extra)


def report(path: str) -> dict:
    with open(path) as f:
        out = json.load(f)
    for key in VOLATILE:
        out.pop(key)
    out["run"]["population"].pop("file")
    return out


class DaskCluster:
    """`dask scheduler` and `dask worker` processes on loopback."""

    def __init__(self, workers: int):
        port, dash = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        bindir = os.path.dirname(PY)
        self.procs = [subprocess.Popen([os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                        str(port), "--dashboard-address", f"127.0.0.1:{dash}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.procs.append(subprocess.Popen([os.path.join(bindir, "dask"), "worker", self.address, "--nworkers",
                                            str(workers), "--nthreads", "1", "--host", "127.0.0.1",
                                            "--dashboard-address", "127.0.0.1:0"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t = time.perf_counter()
        try:
            from distributed import Client
            with Client(self.address, timeout=60) as c:
                c.wait_for_workers(workers, timeout=60)
        except BaseException:
            self.close()  # no scheduler or worker left behind
            raise
        self.ready = time.perf_counter() - t

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            p.wait(30)


def part_costs(people: str, part_bytes: int) -> dict:
    """A part's costs, in this process: the worker's CPU per row, the bytes sent back per
    row, the share of rows that read a total; the run's serial CPU per row when every part
    comes back exact, and when every part must be arbitrated again."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from offerd import lang
    from offerd.compiler.space import Moment
    from offerd.offline import evaluate, parts
    from offerd.offline import simulate as sim

    catalog = lang.load(os.path.join(ROOT, "src/offerd/examples/catalog"))
    at = datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)
    job = evaluate.Job([catalog], SPACES, [], Moment.at(at, catalog.timezone), CONTEXT, True, 0, False)
    todo = parts.split([people], catalog, part_bytes)
    out = {}
    for case, stale in (("exact", False), ("stale", True)):
        blobs, cpu, totals = [], 0.0, {}
        for part in todo:  # in order, each with the totals of the parts before it, or with none
            t = time.process_time()
            result = evaluate.run_part(job, (part, {} if stale else dict(totals)))  # as a worker: its own cache
            cpu += time.process_time() - t
            for k, n in result.added.items():
                totals[k] = totals.get(k, 0) + n
            blobs.append(pickle.dumps(result))
        rows = sum(r.contacts + r.ordered_count for r in map(pickle.loads, blobs))
        reading = sum(r.ordered_count for r in map(pickle.loads, blobs))

        class Replay:
            workers, remote = 1, False

            def map(self, job, items, fn=None, count=0):
                for blob, _ in zip(blobs, items):
                    yield pickle.loads(blob)  # the run reads each part as it would from a worker

        t = time.process_time()
        sim.simulate(catalog, SPACES, people, at, context=CONTEXT, engine=Replay(), part_bytes=part_bytes)
        serial = time.process_time() - t
        out[case] = {"parts": len(todo), "rows": rows, "worker_cpu_us_per_row": round(cpu / rows * 1e6, 2),
                     "bytes_back_per_row": round(sum(map(len, blobs)) / rows, 1),
                     "rows_reading_a_total": round(reading / rows, 3),
                     "run_serial_cpu_us_per_row": round(serial / rows * 1e6, 2),
                     "run_serial_cpu_us_per_row_reading_a_total": round(serial / reading * 1e6, 2) if reading else None}
    return out


def project(costs: dict, contacts: int, cores: int, part_bytes: int, rows_per_part: float) -> dict:
    """Minutes for `contacts` on `cores`: one core runs the run's serial pass, the others the
    parts; the two overlap, so the slower sets the pace. The parts in flight while the caps
    fill (2 per worker + 2) are arbitrated again by the run, at the stale cost."""
    workers = cores - 1
    exact, stale = costs["exact"], costs["stale"]
    parallel = contacts * exact["worker_cpu_us_per_row"] / 1e6 / workers
    refilled = min((2 * workers + 2) * rows_per_part, contacts)
    serial = (contacts * exact["run_serial_cpu_us_per_row"] + refilled * (
        stale["run_serial_cpu_us_per_row"] - exact["run_serial_cpu_us_per_row"])) / 1e6
    tail = rows_per_part * exact["worker_cpu_us_per_row"] / 1e6  # the last part, after the others
    return {"contacts": contacts, "cores": cores, "part_bytes": part_bytes, "workers_seconds": round(parallel, 1),
            "serial_seconds": round(serial, 1), "rows_arbitrated_again": int(refilled),
            "minutes": round((max(parallel, serial) + tail) / 60, 2)}


def costs_only(args, tmp: str) -> None:
    name = os.path.join(args.out, "simulate-dask.json")
    with open(name) as f:
        result = json.load(f)
    people = os.path.join(tmp, "people.jsonl")
    try:
        offerd("gen-population", os.path.join(ROOT, "src/offerd/examples/catalog"), str(args.contacts), "--seed", "1",
               "--out", people)
        costs = part_costs(people, 16 << 20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["part_costs"] = costs
    rows_per_part = costs["exact"]["rows"] / costs["exact"]["parts"]
    result["projection"] = project(costs, 100_000_000, 64, 16 << 20, rows_per_part)
    print(json.dumps(costs, indent=1), json.dumps(result["projection"]), flush=True)
    with open(name, "w") as f:
        json.dump(result, f, indent=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big", type=int, default=0, help="also runs of each on this many contacts")
    ap.add_argument("--big-rounds", type=int, default=2, help="runs of each on --big (A B B A)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--costs-only", action="store_true", help="only the per-part costs and the projection, "
                    "added to the results file of an earlier run")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.contacts, args.rounds, args.big, args.out = 100_000, 1, 0, os.path.join(HERE, "scratch")
    os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="distributed-", dir=os.path.join(HERE, "scratch"))
    if args.costs_only:
        return costs_only(args, tmp)
    catalog = os.path.join(ROOT, "src/offerd/examples/catalog")
    result = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()}, "rounds": []}
    cluster = None
    try:
        people = os.path.join(tmp, "people.jsonl")
        t = offerd("gen-population", catalog, str(args.contacts), "--seed", "1", "--out", people)
        print(f"{args.contacts:,} contacts generated in {t:.1f} s", flush=True)
        cluster = DaskCluster(2)
        result["dask_cluster_ready_seconds"] = round(cluster.ready, 2)
        for r in range(args.rounds):  # A then B, B then A: the machine's noise falls on both
            order = ("local", "dask") if r % 2 == 0 else ("dask", "local")
            times = {}
            for kind in order:
                extra = ("--workers", "2") if kind == "local" else ("--dask", cluster.address)
                times[kind] = simulate(people, os.path.join(tmp, f"{kind}.json"), *extra)
            same = report(os.path.join(tmp, "local.json")) == report(os.path.join(tmp, "dask.json"))
            entry = {"local_s": round(times["local"], 2), "dask_s": round(times["dask"], 2),
                     "dask_over_local": round(times["dask"] / times["local"], 3), "reports_identical": same}
            result["rounds"].append(entry)
            print(f"round {r + 1}: {entry}", flush=True)
        ratios = sorted(e["dask_over_local"] for e in result["rounds"])
        result["median_dask_over_local"] = ratios[len(ratios) // 2]
        result["contacts"] = args.contacts
        if args.big:
            big = os.path.join(tmp, "big.jsonl")
            t = offerd("gen-population", catalog, str(args.big), "--seed", "2", "--out", big)
            print(f"{args.big:,} contacts generated in {t:.1f} s", flush=True)
            entry = {"contacts": args.big, "dask_s": [], "local_s": []}
            order = ["dask", "local", "local", "dask"][:2 * args.big_rounds] if args.big_rounds <= 2 else \
                ["dask", "local", "local", "dask"] * (args.big_rounds // 2)
            for kind in order:  # A B B A: a drift in the machine's load falls on both alike
                extra = ("--workers", "2") if kind == "local" else ("--dask", cluster.address)
                entry[f"{kind}_s"].append(round(simulate(big, os.path.join(tmp, f"big-{kind}.json"), *extra), 1))
                print(f"{args.big:,}: {kind} {entry[f'{kind}_s'][-1]} s", flush=True)
            entry["dask_over_local"] = round(sum(entry["dask_s"]) / sum(entry["local_s"]), 3)
            entry["reports_identical"] = report(os.path.join(tmp, "big-local.json")) == report(
                os.path.join(tmp, "big-dask.json"))
            with open(os.path.join(tmp, "big-dask.json")) as f:
                entry["caps_refused"] = {s: {k: v["refused"] for k, v in sp["caps"].items()}
                                         for s, sp in json.load(f)["spaces"].items()}
            result["big"] = entry
            os.remove(big)
        cluster.close()
        cluster = None
        part_bytes = 16 << 20
        costs = part_costs(people, part_bytes)
        result["part_costs"] = costs
        rows_per_part = costs["exact"]["rows"] / costs["exact"]["parts"]
        result["projection"] = project(costs, 100_000_000, 64, part_bytes, rows_per_part)
        print(json.dumps(result["part_costs"], indent=1), json.dumps(result["projection"]), flush=True)
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    name = "simulate-dask" if not args.quick else "simulate-dask-quick"
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"written {os.path.join(args.out, name + '.json')}")


if __name__ == "__main__":
    main()
