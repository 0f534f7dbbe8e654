#!/usr/bin/env python3
"""Decision benchmark, in-process (no gRPC): offerd.engine on a real LMDB store, beside the
cost of its parts measured in the same run.

Spaces of 20 and of 1,000 offers (the generated catalogs of benchmarks/rules.py), 2,000
contacts each with a stored profile and 50 history events over the last 30 days. Per call,
one caller, interleaved rounds:

- rules alone: the compiled space's rules as the engine runs them (`evaluate`, or for a
  large space `top`, best first) on inputs and history already in memory;
- store reads alone: the profile get and the history read a decision makes;
- engine, dry run: decide(dry_run=True): everything but the write;
- store write alone: record_decision of the same propositions, synced;
- engine, recorded: decide(), synced.

Then recorded decisions from 64 asyncio callers (decide_async), synced and fast, at the
clock's time, each contact in turn (the caps of the catalog refuse more and more offers as
the run goes on: the share of decisions that proposed something is reported).

    .venv/bin/python benchmarks/decide.py            # writes benchmarks/results/decide.{md,json}
    .venv/bin/python benchmarks/decide.py --quick    # shorter; writes benchmarks/scratch/
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from rules import catalog_contexts, generate_catalog  # noqa: E402

from offerd.engine import Engine, Request  # noqa: E402
from offerd.lang import check  # noqa: E402
from offerd.domain import NewProposition  # noqa: E402
from offerd.store import Contact, Store, StoredHistory  # noqa: E402

perf = time.perf_counter
UTC = datetime.timezone.utc
CONTACTS, EVENTS = 2_000, 50


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def populate(store: Store, catalog, offers, now: float, seed: int) -> None:
    """Profiles and 50 propositions per contact over the last 30 days, half presented, a
    tenth accepted, a tenth rejected, written in large batches."""
    rnd = random.Random(seed)
    contexts = catalog_contexts(CONTACTS, seed, catalog)
    store.put_profiles([(Contact(f"c{i}"), contexts[i][0]) for i in range(CONTACTS)])
    futures = []
    for i in range(CONTACTS):
        contact = Contact(f"c{i}")
        for _ in range(EVENTS):
            offer, chain = rnd.choice(offers)
            t = now - rnd.uniform(60, 30 * 86400)
            futures.append((store.submit(store._decision_op(contact, t, [NewProposition(offer, "s", chain)])),
                            t, rnd.random()))
    reports = []
    for f, t, r in futures:
        (pid,) = f.result()
        if r < 0.5:
            reports.append(store.submit(store._report_op(
                pid, "accepted" if r < 0.1 else "rejected" if r < 0.2 else "presented", t + 30)))
    for f in reports:
        f.result()


def run_size(root: str, n: int, loops: int, rounds: int, seconds: float, seed: int) -> dict:
    today = datetime.date.today()
    files, offers = generate_catalog(n, seed, today)
    catalog = check(files)
    now = time.time()
    path = os.path.join(root, f"n{n}")
    store = Store(path)
    populate(store, catalog, offers, now, seed)
    engine = Engine(store, catalog)
    space = engine.space("s")
    contexts = catalog_contexts(loops, seed + 1, catalog)
    rnd = random.Random(seed)
    who = [f"c{rnd.randrange(CONTACTS)}" for _ in range(loops)]
    when = datetime.datetime.fromtimestamp(now, UTC)
    requests = [Request(("s",), who[i], context=contexts[i][1], time=when) for i in range(loops)]
    dry = [Request(r.spaces, r.contact_id, context=r.context, time=r.time, dry_run=True) for r in requests]
    moment = space.moment(when)
    plan = engine._plan
    since = now - plan.horizon if plan.horizon is not None else None

    # inputs for the parts, prepared outside the timing
    profiles = [store.get_profile(Contact(w)) for w in who]
    histories = [store.decision_inputs(Contact(w), since, False, plan.indexer)[1] for w in who]
    chosen = [[plan.proposition(p.offer and catalog.offers_by_name[p.offer], "s") for p in
               engine.decide(d).spaces[0].proposals if not p.fallback] for d in dry]

    need = 2 * space.space.limit + 2  # what the engine asks a large space for (best first)

    def rules(i):  # a fresh view each call: its index is built on the first count, as in a decision
        h = histories[i]
        view = StoredHistory(store, h._values, plan.indexer)
        if space.ranks_by_bound:  # as the engine runs them
            space.top(need, profiles[i], contexts[i][1], moment, view)
        else:
            space.evaluate(profiles[i], contexts[i][1], moment, view)

    def reads(i):
        store.decision_inputs(Contact(who[i]), since, True, plan.indexer)

    def engine_dry(i):
        engine.decide(dry[i])

    def write(i):
        store.record_decision(Contact(who[i]), now, chosen[i])

    def engine_recorded(i):
        engine.decide(requests[i])

    gc.collect()
    gc.freeze()  # as the server does once a catalog is loaded (offerd.server.app.Live)
    cases = {"rules alone": rules, "store reads alone": reads, "engine, dry run": engine_dry,
             "store write alone (synced)": write, "engine, recorded (synced)": engine_recorded}
    slow = {"store write alone (synced)", "engine, recorded (synced)"}
    lat: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in random.sample(list(cases.items()), len(cases)):
            count = loops if name not in slow else max(50, loops // 10)
            for i in range(count):
                t = perf()
                fn(i)
                lat[name].append(perf() - t)
    rows = {name: {"p50_us": pct(v, 0.5) * 1e6, "p99_us": pct(v, 0.99) * 1e6, "calls": len(v)}
            for name, v in lat.items()}
    gc.unfreeze()
    parts = rows["rules alone"]["p50_us"] + rows["store reads alone"]["p50_us"]
    own = rows["engine, dry run"]["p50_us"] - parts
    eligible = statistics_mean([len(space.evaluate(profiles[i], contexts[i][1], moment, histories[i]))
                                for i in range(min(200, loops))])
    history_len = statistics_mean([h.size for h in histories[:200]])
    store.close()

    everyone = [Request(("s",), f"c{i}", context=contexts[i % loops][1]) for i in range(CONTACTS)]
    loads = {}
    for durability in ("sync", "fast"):
        loads[durability] = load(path, durability, catalog, everyone, seconds)
    return {"offers": n, "eligible_mean": eligible, "history_records_mean": history_len,
            "rows": rows, "engine_own_us": own, "engine_own_share": own / rows["engine, dry run"]["p50_us"],
            "load_64": loads}


def statistics_mean(values) -> float:
    return sum(values) / max(len(values), 1)


def load(path: str, durability: str, catalog, requests: list[Request], seconds: float) -> dict:
    """64 asyncio callers deciding (recorded) in a closed loop for `seconds`."""
    store = Store(path, durability=durability)
    engine = Engine(store, catalog)
    lat: list[float] = []
    proposed: list[bool] = []
    state = {"stop": False}

    async def caller(k: int):
        i = k
        while not state["stop"]:
            r = requests[i % len(requests)]
            t = perf()
            d = await engine.decide_async(r)
            lat.append(perf() - t)
            proposed.append(bool(d.spaces[0].proposals))
            i += 64
            await asyncio.sleep(0)  # a decision that proposes nothing never waits: let the others run

    async def main():
        tasks = [asyncio.create_task(caller(k)) for k in range(64)]
        await asyncio.sleep(0.5)
        lat.clear()
        proposed.clear()
        t = perf()
        await asyncio.sleep(seconds)
        n, elapsed = len(lat), perf() - t
        state["stop"] = True
        await asyncio.gather(*tasks)
        return n, elapsed

    n, elapsed = asyncio.run(main())
    done = lat[:n]
    store.close()
    return {"per_s": n / elapsed, "p50_ms": pct(done, 0.5) * 1e3, "p99_ms": pct(done, 0.99) * 1e3,
            "proposing_share": sum(proposed[:n]) / max(n, 1)}


def tables(results: list[dict]) -> str:
    out = ["| offers | path | p50 µs | p99 µs | calls |", "|---:|---|---:|---:|---:|"]
    for r in results:
        for name, row in r["rows"].items():
            out.append(f"| {r['offers']:,} | {name} | {row['p50_us']:,.1f} | {row['p99_us']:,.1f} | {row['calls']:,} |")
    out += ["", "| offers | eligible per call | history records read | engine's own µs (dry p50 - rules - reads) "
            "| share of the dry run |", "|---:|---:|---:|---:|---:|"]
    for r in results:
        out.append(f"| {r['offers']:,} | {r['eligible_mean']:.1f} | {r['history_records_mean']:.0f} | "
                   f"{r['engine_own_us']:.1f} | {r['engine_own_share']:.0%} |")
    out += ["", "| offers | 64 asyncio callers, recorded | decisions/s | p50 ms | p99 ms | proposing something |",
            "|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for durability, row in r["load_64"].items():
            out.append(f"| {r['offers']:,} | {durability} | {row['per_s']:,.0f} | {row['p50_ms']:.2f} | "
                       f"{row['p99_ms']:.2f} | {row['proposing_share']:.0%} |")
    return "\n".join(out)


def goals(results: list[dict]) -> list[str]:
    r20 = next(r for r in results if r["offers"] == 20)
    dry = r20["rows"]["engine, dry run"]["p50_us"]
    own = r20["engine_own_share"]
    return [f"20 offers, dry run p50 {dry:.1f} µs (goal < 100 µs): {'MET' if dry < 100 else 'MISSED'}",
            f"20 offers, engine's own share of the dry run {own:.0%} (goal < 30%): {'MET' if own < 0.3 else 'MISSED'}"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    loops, rounds, seconds = (300, 2, 1.0) if args.quick else (1000, 5, 3.0)
    os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
    root = tempfile.mkdtemp(prefix="decide-", dir=os.path.join(HERE, "scratch"))
    load0 = os.getloadavg()
    try:
        results = []
        for n in (20, 1000):
            print(f"{n} offers ...", flush=True)
            results.append(run_size(root, n, loops, rounds, seconds, args.seed))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text, met = tables(results), goals(results)
    print("\n" + text + "\n\n" + "\n".join(met))
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "load_before": load0, "load_after": os.getloadavg()}
    out_dir = os.path.join(HERE, "scratch" if args.quick else "results")
    with open(os.path.join(out_dir, "decide.json"), "w") as f:
        json.dump({"machine": machine, "loops": loops, "rounds": rounds, "results": results, "goals": met}, f, indent=2)
    with open(os.path.join(out_dir, "decide.md"), "w") as f:
        f.write(f"# Decision benchmark\n\nGenerated by `benchmarks/decide.py` on {machine['platform']}, "
                f"{machine['cpus']} CPUs, Python {machine['python']}; load {load0[0]:.2f} before, "
                f"{machine['load_after'][0]:.2f} after. {CONTACTS:,} contacts with {EVENTS} history events "
                f"each; one caller, {rounds} interleaved rounds.\n\n" + text + "\n\n## Goals\n\n"
                + "\n".join(f"- {g}" for g in met) + "\n")


if __name__ == "__main__":
    main()
