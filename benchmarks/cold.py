#!/usr/bin/env python3
"""Why a decision costs more CPU in the server than in a loop: the server's Decide handler
(conversion in, the decision, metrics, conversion out) timed in process back to back, then
with some memory written between calls, as the gRPC stack, the event loop and the kernel
do between two calls in a server; and, beside them, the same handler's CPU per call in a
server under load. Every figure is the calling thread's CPU time around the same call.

Dry runs on the bundled catalog, the requests of benchmarks/load.py. Writes
benchmarks/results/cold.{json,md} (a --quick run: benchmarks/scratch/).

    .venv/bin/python benchmarks/cold.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOUCH_KIB = (0, 256, 1024, 4096, 16384)  # memory written between two calls


def deployed(data: str) -> None:
    """The bundled catalog live in a new store under `data`."""
    from offerd.server.app import open_store
    from offerd.server.config import Config
    from offerd.server.workers import start_catalog

    store = open_store(Config(data=data))
    start_catalog(store, None)
    store.close()


def in_process(data: str, calls: int) -> list[dict]:
    """µs of CPU per handler call, hot and with each amount of memory written between calls."""
    sys.path.insert(0, HERE)
    from load import ADULT, CONTEXT

    from offerd.client import decide_request
    from offerd.server import services
    from offerd.server.app import create_server
    from offerd.server.config import Config

    deployed(data)
    out = []

    async def run():
        server, _ = await create_server("127.0.0.1:0", Config(data=data))
        engine = server.offerd.engine
        requests = [decide_request(["web_home"], f"c{i}", attributes=ADULT, context=CONTEXT, dry_run=True)
                    for i in range(calls)]
        for r in requests[:200]:
            await services._decide(engine, r)
        for kib in TOUCH_KIB:
            scratch, spent = bytearray(kib << 10), 0.0
            for r in requests:
                if kib:
                    scratch[:] = bytes(len(scratch))  # written: out of the caches go the handler's lines
                t = time.thread_time()
                await services._decide(engine, r)
                spent += time.thread_time() - t
            out.append({"touched_kib": kib, "us_per_call": spent / len(requests) * 1e6})
            print(f"  {kib:6,} KiB written between calls: {out[-1]['us_per_call']:6.1f} µs per call", flush=True)
        await server.stop(0)

    asyncio.run(run())
    return out


def serve_timed(data: str, port: int, workers: int, out: str) -> None:
    """`offerd serve` (the bundled catalog, `workers` processes) with its Decide handler
    wrapped: each worker keeps the thread CPU time of its calls and writes its total to a
    file under `out` every 200 calls."""
    from offerd.server import services, workers as serving
    from offerd.server.config import Config

    inner, spent = services._decide, [0.0, 0]

    async def timed(engine, request):
        t = time.thread_time()  # a dry run never suspends: this is the call's own CPU
        try:
            return await inner(engine, request)
        finally:
            spent[0] += time.thread_time() - t
            spent[1] += 1
            if spent[1] % 200 == 0:
                with open(os.path.join(out, f"cpu.{os.getpid()}"), "w") as f:
                    json.dump(spent, f)

    services._decide = timed  # before the fork: every worker has it
    serving.run(Config(listen=f"127.0.0.1:{port}", data=data), workers)


def served(data: str, seconds: float, workers: int = 2) -> dict:
    """The same handler's CPU per call inside `offerd serve` under load.py's dry load (as
    many workers as load.py gives it), thread time around each call, as in process."""
    sys.path.insert(0, HERE)
    import load

    port, out = load.free_port(), data + ".cpu"
    os.makedirs(out)
    srv = load.Server([sys.executable, os.path.abspath(__file__), "--serve", data, str(port), str(workers), out], port)
    try:
        got = load.run_client(port, scenario="decide_dry", space="web_home", inflight=16, server_pids=srv.pids(),
                              connections=8, warmup=0.5, seconds=seconds, contacts=2000)
    finally:
        srv.stop()
    total, calls = 0.0, 0
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as f:
            t, n = json.load(f)
        total, calls = total + t, calls + n
    return {"per_s": got["per_s"], "workers": workers, "calls": calls, "us_per_call": total / calls * 1e6}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--serve", nargs=4, metavar=("DATA", "PORT", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve_timed(args.serve[0], int(args.serve[1]), int(args.serve[2]), args.serve[3])
    calls, seconds = (1000, 2.0) if args.quick else (3000, 5.0)
    root = tempfile.mkdtemp(prefix="cold-")
    try:
        print("the Decide handler in process:", flush=True)
        touched = in_process(os.path.join(root, "a"), calls)
        print("the same handler in `offerd serve` under load (2 workers, 16 calls in flight):", flush=True)
        server = served(os.path.join(root, "b"), seconds)
        print(f"  {server['us_per_call']:.1f} µs per call ({server['per_s']:,.0f} calls/s)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"touched": touched, "served": server}
    out_dir = os.path.join(HERE, "scratch" if args.quick else "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cold.json"), "w") as f:
        json.dump(result, f, indent=2)
    hot = touched[0]["us_per_call"]
    lines = ["# A decision in a loop and in a server", "", "Generated by `benchmarks/cold.py`: a dry Decide on the "
             "bundled catalog (the requests of load.py).", "",
             "| memory written between two calls | µs of CPU per handler call | x back to back |", "|---:|---:|---:|"]
    lines += [f"| {t['touched_kib']:,} KiB | {t['us_per_call']:.1f} | {t['us_per_call'] / hot:.2f} |" for t in touched]
    lines += [f"| in `offerd serve` under load ({server['workers']} workers, 16 calls in flight, "
              f"{server['per_s']:,.0f} calls/s) | "
              f"{server['us_per_call']:.1f} | {server['us_per_call'] / hot:.2f} |", ""]
    with open(os.path.join(out_dir, "cold.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
