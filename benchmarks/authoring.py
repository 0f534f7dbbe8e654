#!/usr/bin/env python3
"""The rule author's commands against their goals: `offerd test` on the bundled example's
tests (goal: under 1 s), a full `offerd check` of a 1,000-offer catalog (goal: under 1 s),
and `offerd fmt` on both. Each command is timed as a whole process, as a person waits for
it, and the in-process part beside it (a process spends some 0.3 s importing and building
the parser before it reads anything). Rounds alternate the commands, so a busy machine
slows all of them alike. The language server's per-keystroke latency is benchmarks/lsp.py.

Writes benchmarks/results/authoring.json (a --quick run: benchmarks/scratch/).

    .venv/bin/python benchmarks/authoring.py [--quick] [--rounds N]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "src", "offerd", "examples", "catalog")
OFFERD = [sys.executable, "-m", "offerd.cli"]
sys.path.insert(0, HERE)


def big_catalog(folder: str, offers: int) -> str:
    """A generated catalog of `offers` offers (benchmarks/rules.py's generator), formatted."""
    from rules import generate_catalog

    from offerd.authoring.fmt import format_source

    sources, _ = generate_catalog(offers, 7, datetime.date.today())
    os.makedirs(folder)
    for name, text in sources.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(format_source(text, name))
    return folder


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - started
    if r.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return took


def in_process(catalog: str, rounds: int) -> dict:
    """Seconds of the work itself, the process already warm: check and fmt of `catalog`."""
    from offerd import lang
    from offerd.authoring.fmt import format_source

    files = lang.read_dir(catalog)
    lang.check(files)  # warm the parser
    out = {"check": [], "fmt": []}
    for _ in range(rounds):
        started = time.perf_counter()
        lang.check(files)
        out["check"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for name, text in files.items():
            format_source(text, name)
        out["fmt"].append(time.perf_counter() - started)
    return {k: summary(v) for k, v in out.items()}


def test_in_process(rounds: int) -> dict:
    """`offerd test` on the example, the process already warm: check, compile, 32 cases."""
    from offerd.cli import main

    test = []
    devnull = open(os.devnull, "w")
    for _ in range(rounds):
        saved, sys.stdout = sys.stdout, devnull
        started = time.perf_counter()
        try:
            code = main(["test", EXAMPLE])
        finally:
            sys.stdout = saved
        test.append(time.perf_counter() - started)
        assert code == 0, "the example's tests failed"
    return summary(test)


def summary(xs: list[float]) -> dict:
    return {"median_s": round(statistics.median(xs), 4), "min_s": round(min(xs), 4), "max_s": round(max(xs), 4),
            "runs": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, results to benchmarks/scratch/")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--offers", type=int, default=1000)
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    tmp = tempfile.mkdtemp(prefix="offerd-authoring-")
    try:
        big = big_catalog(os.path.join(tmp, "big"), args.offers)
        commands = {
            "offerd test EXAMPLE": OFFERD + ["test", EXAMPLE],
            "offerd check EXAMPLE": OFFERD + ["check", EXAMPLE],
            f"offerd check {args.offers} offers": OFFERD + ["check", big],
            "offerd fmt --check EXAMPLE": OFFERD + ["fmt", "--check", EXAMPLE],
            f"offerd fmt --check {args.offers} offers": OFFERD + ["fmt", "--check", big],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        times = {k: [] for k in commands}
        for _ in range(rounds):  # interleaved: each round runs every command once
            for name, argv in commands.items():
                times[name].append(wall(argv))
        whole = {k: summary(v) for k, v in times.items()}
        warm = {"example": in_process(EXAMPLE, rounds), f"{args.offers} offers": in_process(big, rounds)}
        warm["example"]["test"] = test_in_process(rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "what": __doc__.split("\n")[0],
        "machine": {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()[0], "python": sys.version.split()[0]},
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "whole_process": whole,
        "in_process": warm,
        "goals": {
            "offerd test on the example under 1 s": whole["offerd test EXAMPLE"]["median_s"] < 1.0,
            f"full check of {args.offers} offers under 1 s (whole command)":
                whole[f"offerd check {args.offers} offers"]["median_s"] < 1.0,
        },
    }
    out = os.path.join(HERE, "scratch" if args.quick else "results", "authoring.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    width = max(map(len, whole))
    print(f"{'whole process':<{width}}  median    min    max")
    for k, v in whole.items():
        print(f"{k:<{width}}  {v['median_s']:6.3f} {v['min_s']:6.3f} {v['max_s']:6.3f}")
    for where, figures in warm.items():
        print(f"in process, {where}: " + ", ".join(f"{k} {v['median_s'] * 1000:.0f} ms" for k, v in figures.items()))
    for goal, met in result["goals"].items():
        print(f"{'met' if met else 'MISSED'}: {goal}")
    print(f"written to {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
