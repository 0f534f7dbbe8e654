#!/usr/bin/env python3
"""Instructions per call, counted by valgrind's callgrind: the same figure on a busy machine
as on an idle one, so two checkouts (before and after a change) compare exactly.

Each mode runs twice under callgrind, with N and with 4N calls after the same set-up; the
difference over 3N is the work of one call, set-up and interpreter start cancelled out.

- dry: a dry-run decision (engine.decide) on the 20-offer generated catalog of rules.py,
  100 contacts with stored profiles and 10 propositions each (few: set-up runs under
  callgrind too); `dry 1000`: the same on the 1,000-offer generated catalog;
- recorded: the same decision, recorded (the writer thread's work included);
- compile: parse, check and compile a 300-offer generated catalog's space;
- the stages of a decision on the same data, each alone on inputs prepared outside the count
  (this checkout only: they call the engine's parts): `convert in` (offerd.v1 request to the
  engine's Request), `inputs` (the decision time and the context checked against the schema),
  `read` (the profile and the history, one read transaction), `rules` (the compiled space's
  evaluate, its history index built as in a decision), `arbitrate`, `content` (the winners'
  content rendered), `write` (the propositions recorded, synced off), `convert out` (the
  Decision to an offerd.v1 response). Their sum beside `dry` and `recorded` shows what the
  engine adds around them.
- `--cold`: every mode with the store's memory of recent contacts off, so each decision
  reads and decodes its contact's history; `--json FILE` also writes the figures.

    .venv/bin/python benchmarks/instructions.py                     # this checkout
    .venv/bin/python benchmarks/instructions.py --tree ../other     # another (its .venv)
    .venv/bin/python benchmarks/instructions.py --tree ../other --tree .   # side by side

It runs against any checkout of offerd with this benchmark folder's rules.py generator
(the imports below cover the layouts before and after the store's split)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = {"dry": 100, "dry 1000": 100, "recorded": 100, "compile": 1}  # N per mode (the second run makes 4N calls)
STAGES = ("convert in", "inputs", "read", "rules", "arbitrate", "content", "write", "convert out")
NOW = 1_795_000_000.0


def _inner(mode: str, calls: int, cold: bool = False) -> None:
    """One measured run: set-up, then `calls` calls. `cold`: the store's memory of recent
    contacts off, so every decision reads and decodes its contact's history."""
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
    files, offers = generate_catalog(1000 if mode == "dry 1000" else 20, 7, today)
    catalog = check(files)
    rnd = random.Random(7)
    contexts = catalog_contexts(100, 7, catalog)
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, durability="fast", map_size=1 << 30)  # valgrind cannot map 1 TiB
        if cold and hasattr(store, "recent"):
            store.recent.size = 0
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
                            dry_run=mode.startswith("dry")) for i in range(calls)]
        for r in requests[:5]:  # compile the space and warm the caches outside the count
            engine.decide(Request(r.spaces, r.contact_id, context=r.context, time=when, dry_run=True))
        if mode in STAGES:
            stage = _stage(mode, engine, store, contexts, when, cold)
            for i in range(calls):
                stage(i % 100)
        else:
            for r in requests:
                engine.decide(r)
        store.close()


def _stage(mode: str, engine, store, contexts, when, cold: bool):
    """One stage of a decision as a call on contact i's inputs, prepared here."""
    from offerd.client import decide_request
    from offerd.engine import Request
    from offerd.engine.arbitrate import arbitrate, ranked
    from offerd.lang.values import check_attributes
    from offerd.server import convert
    from offerd.store import Contact, StoredHistory

    plan, space = engine._plan, engine.space("s")
    catalog, moment, limit = plan.catalog, space.moment(when), space.space.limit
    since = moment.ts if not plan.reads_history else None if plan.horizon is None else moment.ts - plan.horizon
    who = [Contact(f"c{i}") for i in range(100)]
    read = [store.decision_inputs(c, since, True, plan.indexer) for c in who]
    attrs, context = [a or {} for a, _ in read], [c for _, c in contexts[:100]]
    eligible = [space.evaluate(attrs[i], context[i], moment, read[i][1]) for i in range(100)]
    won = [arbitrate(plan, space, ranked(list(e), 2 * limit + 2), limit, set(), {}, read[i][1], moment.ts)
           for i, e in enumerate(eligible)]
    if mode == "convert in":
        messages = [decide_request(["s"], f"c{i}", context=context[i], time=when) for i in range(100)]
        return lambda i: convert.request(messages[i])
    if mode == "inputs":
        return lambda i: (space.moment(when), check_attributes(catalog.context, context[i], "context"))
    if mode == "read":
        return lambda i: store.decision_inputs(who[i], since, True, plan.indexer)
    if mode == "rules" and cold:  # a fresh view: its index is built on the first count, as in a decision
        return lambda i: space.evaluate(attrs[i], context[i], moment,
                                        StoredHistory(store, read[i][1]._values, plan.indexer))
    if mode == "rules":  # the view as a decision gets it: the index remembered from the last read
        return lambda i: space.evaluate(attrs[i], context[i], moment, read[i][1])
    if mode == "arbitrate":
        return lambda i: arbitrate(plan, space, ranked(list(eligible[i]), 2 * limit + 2), limit, set(), {},
                                   read[i][1], moment.ts)
    if mode == "content":
        return lambda i: [space.render(pos, attrs[i], context[i], moment, read[i][1]) for pos, _ in won[i]]
    if mode == "write":
        props = [[plan.proposition(space.offers[pos], "s") for pos, _ in w] for w in won]
        return lambda i: store.record_decision(who[i], moment.ts, props[i])
    decisions = [engine.decide(Request(("s",), f"c{i}", context=context[i], time=when, dry_run=True))
                 for i in range(100)]
    return lambda i: convert.response(decisions[i])


def callgrind(argv: list[str], what: str, cwd: str | None = None, env: dict | None = None) -> int:
    """The instructions `argv` (a Python command) runs under callgrind, hash seed fixed;
    exits the benchmark with callgrind's output if it fails (`what` names the run)."""
    with tempfile.TemporaryDirectory() as out:
        got = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg", *argv],
                             cwd=cwd, capture_output=True, text=True,
                             env={**os.environ, **(env or {}), "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", got.stderr)
    if got.returncode != 0 or not found:
        sys.exit(f"{what} failed:\n{got.stderr[-2000:]}")
    return int(found.group(1))


def _count(tree: str, mode: str, calls: int, cold: bool) -> int:
    python, env = os.path.join(tree, ".venv", "bin", "python"), {}
    if not os.path.exists(python):  # a git worktree without its own .venv: this Python, the tree's src/
        python, env["PYTHONPATH"] = sys.executable, os.path.join(tree, "src")
    return callgrind([python, os.path.abspath(__file__), "--inner", mode, str(calls)] + (["--cold"] if cold else []),
                     f"instructions.py: {mode} in {tree}", cwd=tree, env=env)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", help="a checkout with its .venv (default: this one); repeatable")
    ap.add_argument("--mode", action="append", choices=sorted(MODES) + list(STAGES),
                    help="default: dry, dry 1000, recorded, compile; --stages adds each stage of a decision")
    ap.add_argument("--stages", action="store_true", help="also each stage of a decision (the last --tree only)")
    ap.add_argument("--cold", action="store_true",
                    help="the store's memory of recent contacts off: every decision reads its contact afresh")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE (JSON)")
    ap.add_argument("--inner", nargs=2, metavar=("MODE", "CALLS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        _inner(args.inner[0], int(args.inner[1]), args.cold)
        return
    trees = [os.path.abspath(t) for t in args.tree or [os.path.dirname(HERE)]]
    print("| mode | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    rows = {}
    for mode in args.mode or list(MODES) + (list(STAGES) if args.stages else []):
        n = MODES.get(mode, 100)
        # a stage calls the engine's parts, which other checkouts may not have: the last tree only
        row = [None if mode in STAGES and t != trees[-1] else
               (_count(t, mode, 4 * n, args.cold) - _count(t, mode, n, args.cold)) / (3 * n) for t in trees]
        rows[mode] = row
        cells = " | ".join("" if x is None else f"{x:,.0f}" for x in row)
        print(f"| {mode}{' (memory off)' if args.cold else ''} | {cells} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trees": trees, "memory_off": args.cold, "instructions_per_call": rows}, f, indent=2)


if __name__ == "__main__":
    main()
