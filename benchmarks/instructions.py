#!/usr/bin/env python3
"""Instructions per call, counted by valgrind's callgrind: the same figure on a busy machine
as on an idle one, so two checkouts (before and after a change) compare exactly.

Each mode runs twice under callgrind, with N and with 4N calls after the same set-up; the
difference over 3N is the work of one call, set-up and interpreter start cancelled out.

- dry: a dry-run decision (engine.decide) on the 20-offer generated catalog of rules.py,
  100 contacts with stored profiles and 10 propositions each (few: set-up runs under
  callgrind too);
- recorded: the same decision, recorded (the writer thread's work included);
- compile: parse, check and compile a 300-offer generated catalog's space.

    .venv/bin/python benchmarks/instructions.py                     # this checkout
    .venv/bin/python benchmarks/instructions.py --tree ../other     # another (its .venv)
    .venv/bin/python benchmarks/instructions.py --tree ../other --tree .   # side by side

It runs against any checkout of offerd with this benchmark folder's rules.py generator
(the imports below cover the layouts before and after the store's split)."""
from __future__ import annotations

import argparse
import datetime
import os
import random
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = {"dry": 100, "recorded": 100, "compile": 1}  # N per mode (the second run makes 4N calls)
NOW = 1_795_000_000.0


def _inner(mode: str, calls: int) -> None:
    """One measured run: set-up, then `calls` calls."""
    sys.path.insert(0, HERE)
    from rules import catalog_contexts, generate_catalog

    from offerd import compiler
    from offerd.engine import Engine, Request
    from offerd.lang import check
    from offerd.store.keys import Contact
    try:
        from offerd.domain import NewProposition
        from offerd.store import Store
    except ImportError:  # a checkout from before offerd.domain and the store's split
        from offerd.store.lmdb_store import NewProposition, Store

    utc = datetime.timezone.utc
    today = datetime.datetime.fromtimestamp(NOW, utc).date()
    if mode == "compile":
        files, _ = generate_catalog(300, 7, today)
        for _ in range(calls):
            compiler.compile_space(check(files), "s", compiler.SpaceCache()).evaluate
        return
    files, offers = generate_catalog(20, 7, today)
    catalog = check(files)
    rnd = random.Random(7)
    contexts = catalog_contexts(100, 7, catalog)
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, durability="fast", map_size=1 << 30)  # valgrind cannot map 1 TiB
        store.put_profiles([(Contact(f"c{i}"), contexts[i][0]) for i in range(100)])
        for i in range(100):
            for _ in range(10):
                offer, chain = rnd.choice(offers)
                at = NOW - rnd.uniform(60, 20 * 86400)
                (pid,) = store.record_decision(Contact(f"c{i}"), at, [NewProposition(offer, "s", chain)])
                if rnd.random() < 0.3:
                    store.report(pid, "accepted" if rnd.random() < 0.3 else "presented", NOW - 30)
        engine = Engine(store, catalog)
        when = datetime.datetime.fromtimestamp(NOW, utc)
        requests = [Request(("s",), f"c{i % 100}", context=contexts[i % 100][1], time=when,
                            dry_run=mode == "dry") for i in range(calls)]
        for r in requests[:5]:  # compile the space and warm the caches outside the count
            engine.decide(Request(r.spaces, r.contact_id, context=r.context, time=when, dry_run=True))
        for r in requests:
            engine.decide(r)
        store.close()


def _count(tree: str, mode: str, calls: int) -> int:
    python = os.path.join(tree, ".venv", "bin", "python")
    with tempfile.TemporaryDirectory() as out:
        got = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg", python, os.path.abspath(__file__),
             "--inner", mode, str(calls)],
            cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", got.stderr)
    if got.returncode != 0 or not found:
        sys.exit(f"instructions.py: {mode} in {tree} failed:\n{got.stderr[-2000:]}")
    return int(found.group(1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", help="a checkout with its .venv (default: this one); repeatable")
    ap.add_argument("--mode", action="append", choices=sorted(MODES), help="default: all")
    ap.add_argument("--inner", nargs=2, metavar=("MODE", "CALLS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        _inner(args.inner[0], int(args.inner[1]))
        return
    trees = [os.path.abspath(t) for t in args.tree or [os.path.dirname(HERE)]]
    print("| mode | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for mode in args.mode or list(MODES):
        n = MODES[mode]
        row = [(_count(t, mode, 4 * n) - _count(t, mode, n)) / (3 * n) for t in trees]
        print(f"| {mode} | " + " | ".join(f"{x:,.0f}" for x in row) + " |", flush=True)


if __name__ == "__main__":
    main()
