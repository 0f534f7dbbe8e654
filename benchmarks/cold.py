#!/usr/bin/env python3
"""Why a decision costs more CPU in the server than in a loop: the server's Decide handler
(conversion in, the decision, metrics, conversion out) timed in process back to back, then
with some memory written between calls, as the gRPC stack, the event loop and the kernel
do between two calls in a server; and, beside them, the mean time the running server
reports for the same decisions (`offerd_decision_seconds`: conversion in and the decision).

Dry runs on the bundled catalog, the requests of benchmarks/load.py. Writes
benchmarks/results/cold.{json,md} (a --quick run: benchmarks/scratch/).

    .venv/bin/python benchmarks/cold.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOUCH_KIB = (0, 256, 1024, 4096, 16384)  # memory written between two calls


def in_process(data: str, calls: int) -> tuple[list[dict], float]:
    """µs of CPU per handler call, hot and with each amount of memory written between calls;
    and of the span `offerd_decision_seconds` measures (conversion in and the decision), hot."""
    sys.path.insert(0, HERE)
    from load import ADULT, CONTEXT

    from offerd.client import decide_request
    from offerd.server import convert, services
    from offerd.server.app import create_server, open_store
    from offerd.server.config import Config
    from offerd.server.workers import start_catalog

    store = open_store(Config(data=data))
    start_catalog(store, None)
    store.close()
    out, span = [], []

    async def run():
        server, _ = await create_server("127.0.0.1:0", Config(data=data))
        engine = server.offerd.engine
        requests = [decide_request(["web_home"], f"c{i}", attributes=ADULT, context=CONTEXT, dry_run=True,
                                   request_id=str(i)) for i in range(calls)]
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
        t = time.thread_time()
        for r in requests:
            engine.decide(convert.request(r))
        span.append((time.thread_time() - t) / len(requests) * 1e6)
        await server.stop(0)

    asyncio.run(run())
    return out, span[0]


def served(data: str, seconds: float) -> dict:
    """The running server's own mean decision time under benchmarks/load.py's dry load."""
    sys.path.insert(0, HERE)
    import load

    metrics = load.free_port()
    port = load.free_port()
    srv = load.Server([sys.executable, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
                       "--workers", "2", "--metrics", f"127.0.0.1:{metrics}"], port)
    try:
        got = load.run_client(port, scenario="decide_dry", space="web_home", inflight=16, server_pids=srv.pids(),
                              connections=8, warmup=0.5, seconds=seconds, contacts=2000)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
    finally:
        srv.stop()
    total = float(re.search(r"^offerd_decision_seconds_sum (\S+)", text, re.M).group(1))
    count = float(re.search(r"^offerd_decision_seconds_count (\S+)", text, re.M).group(1))
    return {"per_s": got["per_s"], "server_cpu_us": got["server_cpu_us"], "decision_us": total / count * 1e6}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    calls, seconds = (1000, 2.0) if args.quick else (3000, 5.0)
    root = tempfile.mkdtemp(prefix="cold-")
    try:
        print("the Decide handler in process:", flush=True)
        touched, span = in_process(os.path.join(root, "a"), calls)
        print(f"  conversion in and decision, back to back: {span:.1f} µs", flush=True)
        print("the same in a loaded server (2 workers, 16 calls in flight):", flush=True)
        server = served(os.path.join(root, "c"), seconds)
        print(f"  {server['decision_us']:.1f} µs per decision (the server's own histogram), "
              f"{server['server_cpu_us']:.0f} µs of server CPU per call", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"touched": touched, "span_hot_us": span, "served": server}
    out_dir = os.path.join(HERE, "scratch" if args.quick else "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cold.json"), "w") as f:
        json.dump(result, f, indent=2)
    hot = touched[0]["us_per_call"]
    lines = ["# A decision in a loop and in a server", "", "Generated by `benchmarks/cold.py`: a dry Decide on the "
             "bundled catalog (the requests of load.py).", "",
             "| memory written between two calls | µs of CPU per handler call | x back to back |", "|---:|---:|---:|"]
    lines += [f"| {t['touched_kib']:,} KiB | {t['us_per_call']:.1f} | {t['us_per_call'] / hot:.2f} |" for t in touched]
    lines += ["", "| conversion in and decision (`offerd_decision_seconds`) | µs |", "|---|---:|",
              f"| in process, back to back | {span:.1f} |",
              f"| in a server under load (its histogram's mean) | {server['decision_us']:.1f} |", ""]
    with open(os.path.join(out_dir, "cold.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
