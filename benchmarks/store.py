#!/usr/bin/env python3
"""Store benchmark: offerd.store on a real LMDB environment, beside raw `lmdb` calls on the
same bytes (the limit), in one run.

Part 1, reads: a contact's history of 100 events, and a profile, through the store and raw.
Part 2, decision writes (2 propositions with a per-contact cap and a total cap, their
history entries, ids, event-index keys and counters) from 1, 8 and 64 concurrent callers,
durability sync and fast. Each caller does what the engine does: reads the contact's
history (one read transaction), then records the decision with that read, which the writer
reuses for the per-contact re-check while the contact is unchanged; one row has the writer
read it again instead; status reports from 64 callers; raw puts of the same kind of
bytes, one synced transaction per decision and 64 decisions per transaction.

    .venv/bin/python benchmarks/store.py            # writes benchmarks/results/store.{md,json}
    .venv/bin/python benchmarks/store.py --quick    # shorter; writes benchmarks/scratch/
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

import lmdb

from offerd.store.decode import decode_attrs
from offerd.store.keys import Contact
from offerd.domain import CapCheck, NewProposition
from offerd.store import Store
from offerd.store.records import Indexer
from offerd.store.records import Record

HERE = os.path.dirname(os.path.abspath(__file__))
perf = time.perf_counter
OFFERS, CONTACTS = 20, 10_000
DAY = 86400.0


def propositions() -> list[NewProposition]:
    """One per offer, built once and reused, as the engine does: each with a per-contact cap
    (3 a day) and a total cap (a million a day, so it never refuses and every decision
    writes), both re-checked inside the transaction."""
    return [NewProposition(f"offer{o:02d}", "web", (f"cat{o % 4}",),
                           (CapCheck("contact", "offer", f"offer{o:02d}", "proposed", DAY, 3),
                            CapCheck("total", "offer", f"offer{o:02d}", "proposed", DAY, 10**6)))
            for o in range(OFFERS)]


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# --- part 1: reads ------------------------------------------------------------------------

def bench_reads(root: str, loops: int, rounds: int) -> dict:
    store = Store(os.path.join(root, "reads"))
    alice = Contact("alice")
    profile = {"first_name": "Zoë", "age": 42, "cart_total": 123.45, "vip": True,
               "country": "FR", "churn_score": 0.0731, "interests": frozenset({"sports", "travel"})}
    store.put_profile(alice, profile)
    props = [NewProposition(p.offer, p.space, p.categories) for p in propositions()]  # no caps
    t0 = time.time() - 100 * 3600
    for i in range(100):  # 100 propositions, a third of them presented, some accepted
        ids = store.record_decision(alice, t0 + i * 3600, [props[i % OFFERS]])
        if i % 3 == 0:
            store.report(ids[0], "accepted" if i % 2 else "presented", t0 + i * 3600 + 1)
    for i in range(50):  # neighbours on both sides of alice's keys
        store.record_decision(Contact(f"alic{i}"), t0, [props[0]])
        store.record_decision(Contact(f"alice{i}"), t0, [props[0]])
    env, hdb, pdb = store.env, store.db["history"], store.db["profiles"]
    key = alice.key()
    assert len(store.read_history(alice)) == 100

    def raw_history():
        with env.begin() as txn:
            cursor = txn.cursor(db=hdb)
            out = []
            if cursor.set_range(key):
                for k, v in cursor:
                    if not k.startswith(key):
                        break
                    if k != key:  # the contact's stamp
                        out.append(Record.decode(v))
            return out

    def raw_history_bytes():
        with env.begin() as txn:
            cursor = txn.cursor(db=hdb)
            out = []
            if cursor.set_range(key):
                for k, v in cursor:
                    if not k.startswith(key):
                        break
                    if k != key:  # the contact's stamp
                        out.append(v)
            return out

    def raw_profile():
        with env.begin() as txn:
            return decode_attrs(txn.get(key, db=pdb))

    cases = {
        "history, store.read_history": lambda: store.read_history(alice),
        "history, raw cursor + Record.decode": raw_history,
        "history, raw cursor, no decode": raw_history_bytes,
        "profile, store.get_profile": lambda: store.get_profile(alice),
        "profile, raw get + decode_attrs": raw_profile,
    }
    assert raw_history() == store.read_history(alice) and raw_profile() == store.get_profile(alice)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved, so noise hits every case alike
        for name, fn in random.sample(list(cases.items()), len(cases)):
            t = perf()
            for _ in range(loops):
                fn()
            times[name].append((perf() - t) / loops * 1e6)
    store.close()
    rows = {name: {"us": statistics.median(v), "min_us": min(v)} for name, v in times.items()}
    rows["history, store.read_history"]["x_raw"] = (
        rows["history, store.read_history"]["us"] / rows["history, raw cursor + Record.decode"]["us"])
    rows["profile, store.get_profile"]["x_raw"] = (
        rows["profile, store.get_profile"]["us"] / rows["profile, raw get + decode_attrs"]["us"])
    return rows


# --- part 2: writes -----------------------------------------------------------------------

async def _async_callers(store: Store, callers: int, seconds: float, warmup: float, work,
                         seed: int = 0) -> tuple:
    latencies: list[float] = []
    state = {"measure": False, "stop": False}

    async def caller(k: int):
        rnd = random.Random(seed + k)
        while not state["stop"]:
            t = perf()
            await work(rnd)
            if state["measure"]:
                latencies.append(perf() - t)

    tasks = [asyncio.create_task(caller(k)) for k in range(callers)]
    await asyncio.sleep(warmup)
    commits0, state["measure"], t = store.commits, True, perf()
    await asyncio.sleep(seconds)
    state["measure"], elapsed, commits = False, perf() - t, store.commits - commits0
    state["stop"] = True
    await asyncio.gather(*tasks)
    return latencies, elapsed, commits


def _thread_callers(store: Store, callers: int, seconds: float, warmup: float, work) -> tuple:
    latencies: list[float] = []
    state = {"measure": False, "stop": False}

    def caller(k: int):
        rnd = random.Random(k)
        while not state["stop"]:
            t = perf()
            work(rnd)
            if state["measure"]:
                latencies.append(perf() - t)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    for th in threads:
        th.start()
    time.sleep(warmup)
    commits0, state["measure"], t = store.commits, True, perf()
    time.sleep(seconds)
    state["measure"], elapsed, commits = False, perf() - t, store.commits - commits0
    state["stop"] = True
    for th in threads:
        th.join()
    return latencies, elapsed, commits


def _row(latencies: list[float], elapsed: float, commits: int, **extra) -> dict:
    latencies.sort()
    n = len(latencies)
    return {**extra, "ops": n, "per_s": n / elapsed, "p50_ms": pct(latencies, 0.5) * 1e3,
            "p99_ms": pct(latencies, 0.99) * 1e3, "commits": commits, "batch": n / max(commits, 1)}


SEED_DECISIONS = 40_000


def seeded(root: str) -> str:
    """A store that has been serving for a day: 40,000 decisions over the last 26 hours, so
    the day windows of the caps start among existing events and counters. Built once,
    copied for each scenario."""
    path = os.path.join(root, "seed")
    if not os.path.exists(path):
        store, props, rnd, now = Store(path, durability="fast"), propositions(), random.Random(3), time.time()
        plain = [NewProposition(p.offer, p.space, p.categories) for p in props]
        times = sorted(now - rnd.uniform(0, 26 * 3600) for _ in range(SEED_DECISIONS))
        futures = [store.submit(store._decision_op(Contact(f"c{rnd.randrange(CONTACTS)}"), t, rnd.sample(plain, 2)))
                   for t in times]
        for f in futures:
            f.result()
        store.close()
    return path


def copy_store(root: str, name: str) -> str:
    path = os.path.join(root, name)
    env = lmdb.open(seeded(root), max_dbs=16, readonly=True, lock=False)
    os.makedirs(path)
    env.copy(path)
    env.close()
    return path


def engine_indexer(props: list[NewProposition]) -> Indexer:
    """What the engine's plan indexes of a contact's history: what its rules count."""
    return Indexer(frozenset(k for p in props for k in p.contact_keys))


def bench_decisions(root: str, durability: str, callers: int, seconds: float, warmup: float,
                    threads: bool = False, empty: bool = False, reread: bool = False) -> dict:
    name = f"decide-{durability}-{callers}-{'t' if threads else 'a'}{'-empty' if empty else ''}{'-r' if reread else ''}"
    path = os.path.join(root, name) if empty else copy_store(root, name)
    store = Store(path, durability=durability)
    props, contacts = propositions(), [Contact(f"c{i}") for i in range(CONTACTS)]
    indexer, refused = engine_indexer(props), [0]

    def pick(rnd):
        a, b = rnd.sample(props, 2)
        contact, now = contacts[rnd.randrange(CONTACTS)], time.time()
        seen = None if reread else store.decision_inputs(contact, now - DAY, False, indexer)[1]
        return contact, now, [a, b], seen

    async def work_async(rnd):
        ids = await store.record_decision_async(*pick(rnd))
        refused[0] += ids.count(None)

    def work_sync(rnd):
        ids = store.record_decision(*pick(rnd))
        refused[0] += ids.count(None)

    if threads:
        result = _thread_callers(store, callers, seconds, warmup, work_sync)
    else:
        result = asyncio.run(_async_callers(store, callers, seconds, warmup, work_async))
    store.close()
    kind = ("threads" if threads else "asyncio") + (", empty store" if empty else "") + (
        ", writer re-reads history" if reread else "")
    return _row(*result, durability=durability, callers=callers, kind=kind, capped=refused[0])


def bench_processes(root: str, durability: str, processes: int, callers: int, seconds: float,
                    warmup: float) -> dict:
    """`processes` forked processes sharing one environment, each with its own writer and
    `callers` asyncio callers: how `offerd serve --workers N` runs."""
    import multiprocessing

    path = copy_store(root, f"decide-{durability}-{processes}x{callers}")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(processes)
    out = ctx.Queue()

    def child(k: int):
        store = Store(path, durability=durability)  # opened after the fork, in each process
        props, contacts = propositions(), [Contact(f"c{i}") for i in range(CONTACTS)]
        indexer = engine_indexer(props)

        async def work(rnd):
            a, b = rnd.sample(props, 2)
            contact, now = contacts[rnd.randrange(CONTACTS)], time.time()
            seen = store.decision_inputs(contact, now - DAY, False, indexer)[1]
            await store.record_decision_async(contact, now, [a, b], seen)

        start.wait()
        lat, elapsed, commits = asyncio.run(_async_callers(store, callers, seconds, warmup, work, seed=k * 1000))
        store.close()
        out.put((lat, elapsed, commits))

    procs = [ctx.Process(target=child, args=(k,)) for k in range(processes)]
    for proc in procs:
        proc.start()
    parts = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    latencies = [x for lat, _, _ in parts for x in lat]
    elapsed = statistics.mean(e for _, e, _ in parts)
    return _row(latencies, elapsed, sum(c for _, _, c in parts), durability=durability,
                callers=processes * callers, kind=f"asyncio, {processes} processes")


def bench_reports(root: str, durability: str, callers: int, seconds: float, warmup: float) -> dict:
    """64 callers reporting presented, then accepted, on propositions made beforehand."""
    store = Store(os.path.join(root, f"report-{durability}"), durability=durability)
    plain, now = [NewProposition(p.offer, p.space, p.categories) for p in propositions()], time.time()
    n = int(30_000 * (seconds + warmup))  # 2 reports each: more than 64 callers can send
    futures = [store.submit(store._decision_op(Contact(f"c{i % CONTACTS}"), now - 60, [plain[i % OFFERS]]))
               for i in range(n)]
    queue = iter([(f.result()[0], s) for f in futures for s in ("presented", "accepted")])

    async def work(rnd):
        pid, status = next(queue)
        await store.report_async(pid, status)

    result = asyncio.run(_async_callers(store, callers, seconds, warmup, work))
    store.close()
    return _row(*result, durability=durability, callers=callers, kind="asyncio reports")


def raw_decision_bytes(n: int, seed: int = 7) -> list[list[tuple[str, bytes, bytes]]]:
    """The puts a decision makes, as raw (database, key, value) triples: 2 history records,
    2 ids, 8 event-index keys and 24 counters (2 propositions x 3 refs x 4 grains)."""
    rnd, now, out = random.Random(seed), int(time.time() * 1e6), []
    for i in range(n):
        puts = []
        contact = Contact(f"c{rnd.randrange(CONTACTS)}").key()
        for o in rnd.sample(range(OFFERS), 2):
            pid = os.urandom(16)
            rec = Record(pid, contact, f"offer{o:02d}", "web", (f"cat{o % 4}",), now + i)
            hkey = contact + (2**64 - 1 - rec.time_us).to_bytes(8, "big") + pid
            puts += [("history", hkey, rec.encode()), ("props", pid, hkey)]
            for ref in (b"o" + rec.offer.encode() + b"\0", b"sweb\0", b"c" + rec.categories[0].encode() + b"\0"):
                puts.append(("events", ref + b"P" + rec.time_us.to_bytes(8, "big") + pid, b""))
                for grain in b"mhdL":
                    puts.append(("counters", ref + b"P" + bytes((grain,)) + (i // 60).to_bytes(8, "big"),
                                 (i + 1).to_bytes(8, "big")))
        out.append(puts)
    return out


def bench_raw(root: str, per_txn: int, seconds: float) -> dict:
    """Raw lmdb puts of decision-shaped bytes, synced, into a copy of the same day-old store:
    the limit of LMDB and this disk."""
    path = copy_store(root, f"raw-{per_txn}")
    env = lmdb.open(path, map_size=1 << 40, max_dbs=16, sync=True, metasync=True)
    dbs = {name: env.open_db(name.encode()) for name in ("history", "props", "events", "counters")}
    decisions = raw_decision_bytes(per_txn * 200)
    n, t = 0, perf()
    latencies = []
    while perf() - t < seconds and n + per_txn <= len(decisions):
        t1 = perf()
        with env.begin(write=True) as txn:
            for puts in decisions[n:n + per_txn]:
                for db, key, value in puts:
                    txn.put(key, value, db=dbs[db])
        latencies.append(perf() - t1)
        n += per_txn
    elapsed = perf() - t
    env.close()
    latencies.sort()
    return {"decisions_per_txn": per_txn, "per_s": n / elapsed, "txn_p50_ms": pct(latencies, 0.5) * 1e3,
            "txn_p99_ms": pct(latencies, 0.99) * 1e3}


# --- report -------------------------------------------------------------------------------

def tables(results: dict) -> str:
    out = ["### Reads", "", "| operation | µs | min µs | x raw |", "|---|---:|---:|---:|"]
    for name, r in results["reads"].items():
        x = f"{r['x_raw']:.2f}x" if "x_raw" in r else ""
        out.append(f"| {name} | {r['us']:.1f} | {r['min_us']:.1f} | {x} |")
    out += ["", "### Decision writes and status reports", "",
            "| durability | callers | kind | ops/s | p50 ms | p99 ms | commits | ops/commit |",
            "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results["writes"]:
        out.append(f"| {r['durability']} | {r['callers']} | {r['kind']} | {r['per_s']:,.0f} | "
                   f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['commits']:,} | {r['batch']:.1f} |")
    out += ["", "### Raw lmdb puts of decision-shaped bytes, synced (the limit)", "",
            "| decisions per transaction | decisions/s | txn p50 ms | txn p99 ms |", "|---:|---:|---:|---:|"]
    for r in results["raw"]:
        out.append(f"| {r['decisions_per_txn']} | {r['per_s']:,.0f} | {r['txn_p50_ms']:.2f} | {r['txn_p99_ms']:.2f} |")
    return "\n".join(out)


def goals(results: dict) -> list[str]:
    hist = results["reads"]["history, store.read_history"]["x_raw"]
    sync64 = next(r for r in results["writes"] if r["durability"] == "sync" and r["callers"] == 64
                  and r["kind"] == "asyncio")
    raw64 = next(r for r in results["raw"] if r["decisions_per_txn"] == 64)
    return [f"history read {hist:.2f}x raw cursor + decode (goal ≤ 2x): {'MET' if hist <= 2 else 'MISSED'}",
            f"sync, 64 callers: {sync64['per_s']:,.0f} decisions/s (goal ≥ 10,000): "
            f"{'MET' if sync64['per_s'] >= 10_000 else 'MISSED'}",
            f"sync, 64 callers: p99 {sync64['p99_ms']:.2f} ms (goal < 5 ms): "
            f"{'MET' if sync64['p99_ms'] < 5 else 'MISSED'}",
            f"sync, 64 callers: {sync64['per_s'] / raw64['per_s']:.0%} of raw synced puts of decision-shaped "
            f"bytes, 64 decisions per transaction, in the same run ({raw64['per_s']:,.0f}/s)"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs; writes to scratch/")
    ap.add_argument("--seconds", type=float, default=None, help="measured seconds per write scenario")
    ap.add_argument("--dir", default=None, help="where the LMDB environments go (default: a temp "
                    "dir under benchmarks/scratch, on the repository's disk: fsync must be real)")
    args = ap.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    warmup = 0.3 if args.quick else 1.0
    loops, rounds = (500, 3) if args.quick else (2000, 9)
    os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
    root = tempfile.mkdtemp(prefix="store-", dir=args.dir or os.path.join(HERE, "scratch"))
    load0 = os.getloadavg()
    try:
        print("reads ...", flush=True)
        results: dict = {"reads": bench_reads(root, loops, rounds), "writes": [], "raw": []}
        for durability in ("sync", "fast"):
            for callers in (1, 8, 64):
                print(f"decisions, {durability}, {callers} callers ...", flush=True)
                results["writes"].append(bench_decisions(root, durability, callers, seconds, warmup))
        print("decisions, sync, 64 threads ...", flush=True)
        results["writes"].append(bench_decisions(root, "sync", 64, seconds, warmup, threads=True))
        print("decisions, sync, 64 callers, the writer re-reads history ...", flush=True)
        results["writes"].append(bench_decisions(root, "sync", 64, seconds, warmup, reread=True))
        print("decisions, sync, 64 callers, empty store ...", flush=True)
        results["writes"].append(bench_decisions(root, "sync", 64, seconds, warmup, empty=True))
        for durability in ("sync", "fast"):
            print(f"decisions, {durability}, 2 processes x 32 callers ...", flush=True)
            results["writes"].append(bench_processes(root, durability, 2, 32, seconds, warmup))
        print("status reports ...", flush=True)
        results["writes"].append(bench_reports(root, "sync", 64, seconds, warmup))
        for per_txn in (1, 64):
            print(f"raw puts, {per_txn} decisions per transaction ...", flush=True)
            results["raw"].append(bench_raw(root, per_txn, seconds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write(results, seconds, warmup, load0, args.quick)


def write(results: dict, seconds: float, warmup: float, load0, quick: bool) -> None:
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "lmdb": lmdb.version(), "py_lmdb": lmdb.__version__,
               "load_before": load0, "load_after": os.getloadavg(),
               "switch_interval_s": sys.getswitchinterval()}
    text = tables(results)
    met = goals(results)
    print("\n" + text + "\n\n" + "\n".join(met))
    out_dir = os.path.join(HERE, "scratch" if quick else "results")
    with open(os.path.join(out_dir, "store.json"), "w") as f:
        json.dump({"machine": machine, "seconds": seconds, "results": results, "goals": met}, f, indent=2)
    with open(os.path.join(out_dir, "store.md"), "w") as f:
        f.write(f"# Store benchmark\n\nGenerated by `benchmarks/store.py` on {machine['platform']}, "
                f"{machine['cpus']} CPUs, Python {machine['python']}, LMDB {machine['lmdb']}; "
                f"load {load0[0]:.2f} before, {machine['load_after'][0]:.2f} after. "
                f"{seconds:g} s measured per write scenario after {warmup:g} s of warm-up.\n\n"
                + text + "\n\n## Goals\n\n" + "\n".join(f"- {g}" for g in met) + "\n")


if __name__ == "__main__":
    main()
