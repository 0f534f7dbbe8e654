#!/usr/bin/env python3
"""Simulation benchmark: `offerd simulate` over generated populations of 100,000 and
1,000,000 contacts on the generated 20-offer space (benchmarks/rules.py), caps applied, on
one process and on every core, each run in its own process as a user would run it; and the
same contacts recorded with `offerd batch` (the store synced once before the output is
written, its default), on one process and on every core, into a fresh store each time. The
anchor: a hosted suite publishes a million profiles in 8 minutes without caps and 30 with
caps; the goal is a million contacts, caps on, in under 2 minutes on this 2-core machine.

    .venv/bin/python benchmarks/simulate.py            # about 6 min; writes benchmarks/results/simulate.{md,json}
    .venv/bin/python benchmarks/simulate.py --quick    # 100,000 only; writes benchmarks/scratch/
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
AT = "2026-11-23T10:00:00Z"


def run(args: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run([PY, "-m", "offerd.cli", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, out.stdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    from rules import generate_catalog

    sizes = (100_000,) if args.quick else (100_000, 1_000_000)
    cores = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="simulate-", dir=os.path.join(HERE, "scratch"))
    rows = []
    try:
        folder = os.path.join(tmp, "catalog")
        os.makedirs(folder)
        files, _ = generate_catalog(20, 5, datetime.date(2026, 11, 23))
        for name, text in files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        for n in sizes:
            people = os.path.join(tmp, f"people-{n}.jsonl")
            gen_s, _ = run(["gen-population", folder, str(n), "--seed", "1", "--out", people])
            print(f"{n:,} contacts generated in {gen_s:.1f} s", flush=True)
            reports = {}
            for workers in sorted({1, cores}):
                out = os.path.join(tmp, f"report-{n}-{workers}.json")
                seconds, _ = run(["simulate", folder, "--space", "s", "--population", people, "--at", AT,
                                  "--context", "page=cart", "--context", "device=mobile", "--workers", str(workers),
                                  "--quiet", "--json", out])
                with open(out) as f:
                    report = json.load(f)
                reports[workers] = report
                bound = len(report["spaces"]["s"]["caps"])
                rows.append({"contacts": n, "processes": workers, "seconds": seconds, "per_s": n / seconds,
                             "caps_bound": bound})
                print(f"  {workers} process{'es' if workers > 1 else ''}: {seconds:.1f} s, {n / seconds:,.0f} "
                      f"contacts/s, {bound} caps bound", flush=True)
            same = [{k: v for k, v in r.items() if k not in ("seconds", "contacts_per_second", "workers")}
                    for r in reports.values()]
            rows[-1]["same_report_as_one_process"] = all(x == same[0] for x in same)
            # recorded: `offerd batch` (synced once at the end), into a fresh store each time
            for workers in sorted({1, cores}):
                seconds, _ = run(["batch", folder, "--data", os.path.join(tmp, f"data-{n}-{workers}"), "--space", "s",
                                  "--population", people, "--out", os.path.join(tmp, f"out-{n}.jsonl"), "--at", AT,
                                  "--context", "page=cart", "--context", "device=mobile", "--workers", str(workers),
                                  "--quiet"])
                rows.append({"contacts": n, "processes": workers, "seconds": seconds, "per_s": n / seconds,
                             "caps_bound": None, "recorded": True})
                print(f"  recorded (offerd batch), {workers} process{'es' if workers > 1 else ''}: {seconds:.1f} s, "
                      f"{n / seconds:,.0f} contacts/s", flush=True)
                shutil.rmtree(os.path.join(tmp, f"data-{n}-{workers}"), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(rows, args.quick)


def write(rows: list[dict], quick: bool) -> None:
    lines = ["| contacts | run | processes | seconds (whole command) | contacts/s | caps that bound |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        kind = "recorded (`offerd batch`)" if r.get("recorded") else "simulated"
        bound = "" if r["caps_bound"] is None else r["caps_bound"]
        lines.append(f"| {r['contacts']:,} | {kind} | {r['processes']} | {r['seconds']:.1f} | {r['per_s']:,.0f} | {bound} |")
    lines.append("")
    for recorded in (False, True):
        million = [r for r in rows if r["contacts"] == 1_000_000 and bool(r.get("recorded")) == recorded]
        if million:
            best = min(r["seconds"] for r in million)
            lines.append(f"- a million contacts, caps on, {'recorded' if recorded else 'simulated'}: {best:.1f} s "
                         f"(goal < 120 s): {'MET' if best < 120 else 'MISSED'}")
    same = all(r.get("same_report_as_one_process", True) for r in rows)
    lines.append(f"- the same report on one process and on all: {'yes' if same else 'NO'}")
    text = "\n".join(lines)
    print("\n" + text)
    out_dir = os.path.join(HERE, "scratch" if quick else "results")
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    with open(os.path.join(out_dir, "simulate.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=2)
    with open(os.path.join(out_dir, "simulate.md"), "w") as f:
        f.write(f"# Simulation benchmark\n\nGenerated by `benchmarks/simulate.py` on {machine['platform']}, "
                f"{machine['cpus']} CPUs, Python {machine['python']}: `offerd simulate` on the generated 20-offer "
                f"space, generated contacts, caps applied, each run a separate command (start-up and "
                f"compilation included).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
