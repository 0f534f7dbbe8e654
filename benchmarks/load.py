#!/usr/bin/env python3
"""Load benchmark over gRPC: offerd beside a no-op server with the same message shapes and the
same server settings, loaded by the same client, in one run. Every figure is also printed as
ours / no-op.

The client is a separate process (asyncio, N calls in flight over M connections, closed
loop, a warm-up, then a fixed duration, latencies in an HDR histogram); the server is
`offerd serve` (or the no-op server) in its own processes. Client and servers share the 2
cores, so every figure is a lower bound of the server's capacity; the ratio is the point.

    .venv/bin/python benchmarks/load.py            # writes benchmarks/results/load.{md,json,png}
    .venv/bin/python benchmarks/load.py --quick    # shorter; writes benchmarks/scratch/
    .venv/bin/python benchmarks/load.py report     # redraws load.md and load.png from load.json
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import gc
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
BATCH = 32  # decisions per message in the batch scenario
ADULT = {"age": 30, "country": "FR", "segment": "gold", "cart_total": 120.5}
CONTEXT = {"page": "cart", "device": "desktop"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the no-op server ----------------------------------------------------------------------

def noop_server(port: int, workers: int, response_b64: str, loop: str, burn_us: float = 0.0) -> None:
    """DecisionService answering every call with one fixed, real-shaped response: the same
    grpc.aio settings and worker model as offerd serve, and no work (or, for the calibration,
    `burn_us` of CPU spun in Python per Decide)."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                from offerd.server.app import use_event_loop

                use_event_loop(loop)  # the same event loop as ours
                asyncio.run(_noop(port, base64.b64decode(response_b64), burn_us / 1e6))
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum, frame):  # stop the workers too, or they outlive the benchmark's scenario
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    for pid in children:
        os.waitpid(pid, 0)


async def _noop(port: int, response: bytes, burn: float) -> None:
    import signal

    import grpc

    from offerd.server.app import MAX_MESSAGE
    from offerd.v1 import offerd_pb2 as pb
    from offerd.v1 import offerd_pb2_grpc as rpc

    fixed = pb.DecideResponse.FromString(response)
    reply = pb.StreamReply(decision=fixed)
    recorded = pb.RecordResponse(changed=True)

    class Noop(rpc.DecisionServiceServicer):
        async def Decide(self, request, context):
            if burn:  # a tight loop: it runs from the CPU's caches, whatever ran before it
                end = time.thread_time() + burn
                while time.thread_time() < end:
                    pass
            return fixed

        async def DecideStream(self, requests, context):
            async for _ in requests:
                yield reply

        async def Record(self, request, context):
            return recorded

        async def DecideBatchStream(self, batches, context):
            async for b in batches:
                yield batch_reply(len(b.requests))

    sized: dict[int, object] = {}

    def batch_reply(n: int):
        if n not in sized:
            sized[n] = pb.DecideBatchResponse(replies=[reply] * n)
        return sized[n]

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 1)])
    rpc.add_DecisionServiceServicer_to_server(Noop(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


# --- the client ----------------------------------------------------------------------------

def client(target: str, scenario: str, inflight: int, connections: int, warmup: float, seconds: float,
           contacts: int, space: str, server_pids: list[int]) -> dict:
    return asyncio.run(_client(target, scenario, inflight, connections, warmup, seconds, contacts, space,
                               server_pids))


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used so far, from /proc (a process gone counts 0)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total / tick


async def _client(target, scenario, inflight, connections, warmup, seconds, contacts, space, server_pids) -> dict:
    import grpc
    from hdrh.histogram import HdrHistogram

    from offerd.client import decide_request
    from offerd.v1 import offerd_pb2 as pb
    from offerd.v1 import offerd_pb2_grpc as rpc

    channels = [grpc.aio.insecure_channel(target, options=[("offerd.load.connection", i)]) for i in range(connections)]
    stubs = [rpc.DecisionServiceStub(ch) for ch in channels]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 30)
    dry = scenario in ("decide_dry", "batch_dry")
    # no request_id: each of these is sent many times, and with one the copies would be safe
    # retries of the first (answered again, not decided)
    requests = [decide_request([space], f"c{i}", attributes=ADULT, context=CONTEXT, dry_run=dry)
                for i in range(contacts)]
    hist = HdrHistogram(1, 60_000_000, 3)
    state = {"measure": False, "stop": False, "done": 0, "records": 0, "errors": 0}
    perf = time.perf_counter

    async def unary(k: int):
        stub, i = stubs[k % connections], k
        while not state["stop"]:
            req = requests[i % contacts]
            i += inflight
            t = perf()
            try:
                d = await stub.Decide(req)
                if scenario == "mixed" and d.spaces and d.spaces[0].propositions:
                    await stub.Record(pb.RecordRequest(proposition=d.spaces[0].propositions[0].id, status="presented"))
                    if state["measure"]:
                        state["records"] += 1
            except grpc.RpcError:
                state["errors"] += 1
                continue
            if state["measure"]:
                hist.record_value(max(1, int((perf() - t) * 1e6)))
                state["done"] += 1

    async def stream(k: int, depth: int):
        """One stream with `depth` messages in flight (a request, or a batch of BATCH
        requests); answers come back in order. Latency is per message; `done` counts
        decisions."""
        sent: asyncio.Queue = asyncio.Queue()
        window = asyncio.Semaphore(depth)
        batched = scenario in ("batch", "batch_dry")

        async def gen():
            i = k
            while not state["stop"]:
                await window.acquire()
                await sent.put(perf())
                if batched:
                    yield pb.DecideBatchRequest(requests=[requests[(i + j) % contacts] for j in range(BATCH)])
                    i += connections * BATCH
                else:
                    yield requests[i % contacts]
                    i += connections

        stub = stubs[k % connections]
        call = stub.DecideBatchStream(gen()) if batched else stub.DecideStream(gen())
        try:
            async for reply in call:
                t = await sent.get()
                window.release()
                if state["measure"]:
                    hist.record_value(max(1, int((perf() - t) * 1e6)))
                    state["done"] += len(reply.replies) if batched else 1
                if state["stop"]:
                    break
        except grpc.RpcError:
            state["errors"] += 1
        call.cancel()

    if scenario in ("stream", "batch", "batch_dry"):
        per = max(1, inflight // connections)
        tasks = [asyncio.create_task(stream(k, per)) for k in range(connections)]
    else:
        tasks = [asyncio.create_task(unary(k)) for k in range(inflight)]
    await asyncio.sleep(warmup)
    state["measure"], t0, cpu0, server0 = True, perf(), time.process_time(), cpu_seconds(server_pids)
    await asyncio.sleep(seconds)
    state["measure"], elapsed, cpu = False, perf() - t0, time.process_time() - cpu0
    server_cpu = cpu_seconds(server_pids) - server0
    state["stop"] = True
    await asyncio.wait(tasks, timeout=10)
    for ch in channels:
        await ch.close()
    n = state["done"]
    return {"calls": n, "per_s": n / elapsed, "records": state["records"], "errors": state["errors"],
            "p50_ms": hist.get_value_at_percentile(50) / 1e3, "p99_ms": hist.get_value_at_percentile(99) / 1e3,
            "p999_ms": hist.get_value_at_percentile(99.9) / 1e3, "client_cpu": cpu / elapsed,
            "server_cpu_us": server_cpu / n * 1e6 if n else None}  # per decision, every server process


def sample_response(target: str, space: str) -> str:
    """One real answer of ours, for the no-op server to send back (same shape, same size)."""
    import grpc

    from offerd.client import decide_request
    from offerd.v1 import offerd_pb2_grpc as rpc

    with grpc.insecure_channel(target) as ch:
        d = rpc.DecisionServiceStub(ch).Decide(decide_request([space], "sample", attributes=ADULT, context=CONTEXT,
                                                             dry_run=True))
    return base64.b64encode(d.SerializeToString()).decode()


# --- orchestration -------------------------------------------------------------------------

class Server:
    def __init__(self, args: list[str], port: int):
        self.port = port
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    time.sleep(0.5)  # every worker listening
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def pids(self) -> list[int]:
        """The server's processes: the supervisor and its workers."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [self.proc.pid] + [int(p) for p in f.read().split()]
        except OSError:
            return [self.proc.pid]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


LOOP = "uvloop"  # both servers' event loop (--loop)


def ours(data: str, catalog: str | None, workers: int) -> Server:
    port = free_port()
    args = [PY, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
            "--workers", str(workers), "--loop", LOOP] + (["--catalog", catalog] if catalog else [])
    return Server(args, port)


def noop(response: str, workers: int, burn_us: float = 0.0) -> Server:
    port = free_port()
    return Server([PY, __file__, "noop-server", str(port), str(workers), response, LOOP, str(burn_us)], port)


def raw_commit_ms(folder: str, n: int = 300) -> float:
    """p50 ms of a raw synced LMDB commit of one small record, on the disk the servers use:
    what a recorded decision cannot do without."""
    import lmdb

    env = lmdb.open(os.path.join(folder, "raw-commit"), map_size=1 << 26, sync=True, metasync=True)
    times = []
    try:
        for i in range(n):
            t = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), b"x" * 100)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        env.close()
    return sorted(times)[len(times) // 2]


def calibration(tmp: str, workers: int, common: dict, burns=(0, 50, 100, 200)) -> list[dict]:
    """The no-op server doing `burn` µs of CPU in Python per call, in a tight loop: how server
    CPU per call grows with a handler's own CPU when that handler runs from warm caches."""
    data = tempfile.mkdtemp(dir=tmp)
    srv = ours(data, None, workers)
    try:
        response = subprocess.run([PY, __file__, "sample", f"127.0.0.1:{srv.port}", "web_home"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    finally:
        srv.stop()
    out = []
    for burn in burns:
        ref = noop(response, workers, burn)
        try:
            got = run_client(ref.port, scenario="decide_dry", space="web_home", inflight=16, server_pids=ref.pids(),
                             **common)
        finally:
            ref.stop()
        out.append({"burn_us": burn, "per_s": got["per_s"], "server_cpu_us": got["server_cpu_us"]})
        print(f"  no-op + {burn:3d} µs of Python per call: {got['per_s']:8,.0f}/s, "
              f"{got['server_cpu_us']:,.0f} µs of server CPU per call", flush=True)
    return out


def run_client(port: int, **kw) -> dict:
    out = subprocess.run([PY, __file__, "client", json.dumps({"target": f"127.0.0.1:{port}", **kw})],
                         capture_output=True, text=True, timeout=kw["seconds"] + kw["warmup"] + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout)


def populate(data: str, n: int, seed: int) -> str:
    """A generated catalog of n offers in space `s`, and 2,000 contacts with profiles and 50
    history events each (benchmarks/decide.py's population); returns the catalog folder."""
    sys.path.insert(0, HERE)
    import decide as D
    from rules import generate_catalog

    from offerd.lang import check
    from offerd.store import Store

    files, offers = generate_catalog(n, seed, datetime.date.today())
    folder = os.path.join(data, "catalog")
    os.makedirs(folder)
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    store = Store(os.path.join(data, "db"))
    D.populate(store, check(files), offers, time.time(), seed)
    store.close()
    return folder


def scenario_pair(tmp: str, name: str, scenario: str, space: str, workers: int, common: dict,
                  catalog_offers: int | None = None, inflight: int = 16) -> dict:
    data = tempfile.mkdtemp(dir=tmp)
    catalog = populate(data, catalog_offers, 5) if catalog_offers else None
    srv = ours(data, catalog, workers)
    try:
        response = subprocess.run([PY, __file__, "sample", f"127.0.0.1:{srv.port}", space], capture_output=True,
                                  text=True, check=True).stdout.strip()
        mine = run_client(srv.port, scenario=scenario, space=space, inflight=inflight, server_pids=srv.pids(), **common)
    finally:
        srv.stop()
    ref = noop(response, workers)
    try:
        base = run_client(ref.port, scenario=scenario, space=space, inflight=inflight, server_pids=ref.pids(), **common)
    finally:
        ref.stop()
    shutil.rmtree(data, ignore_errors=True)
    row = {"name": name, "scenario": scenario, "inflight": inflight, "workers": workers, "ours": mine, "noop": base,
           "throughput_ratio": mine["per_s"] / base["per_s"] if base["per_s"] else None,
           "p99_diff_ms": mine["p99_ms"] - base["p99_ms"]}
    print(f"  {name:40s} ours {mine['per_s']:8,.0f}/s p99 {mine['p99_ms']:6.2f} ms | no-op {base['per_s']:8,.0f}/s "
          f"p99 {base['p99_ms']:6.2f} ms | {row['throughput_ratio']:.0%}", flush=True)
    return row


def offer_growth(sizes, seed: int) -> list[dict]:
    """In-process cost of a dry decision as offers per space grow (rules.py's generated
    catalogs; no store: the contact has no profile nor history, its attributes come with
    the request). instructions.py's `dry 1000` counts the same with a stored contact."""
    sys.path.insert(0, HERE)
    from rules import catalog_contexts, generate_catalog

    from offerd.engine import Engine, Request
    from offerd.lang import check

    out = []
    for n in sizes:
        files, _ = generate_catalog(n, seed, datetime.date.today())
        catalog = check(files)
        engine = Engine(None, catalog)
        ctx = catalog_contexts(300, seed, catalog)
        when = datetime.datetime.now(datetime.timezone.utc)
        reqs = [Request(("s",), None, attributes=c[0], context=c[1], time=when, dry_run=True) for c in ctx]
        for r in reqs[:20]:
            engine.decide(r)
        gc.collect()
        gc.freeze()  # as the server does once a catalog is loaded (offerd.server.app.Live)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for r in reqs:
                engine.decide(r)
            times.append((time.perf_counter() - t) / len(reqs) * 1e6)
        gc.unfreeze()
        out.append({"offers": n, "us_per_decision": sorted(times)[1]})
        print(f"  {n:6,} offers: {out[-1]['us_per_decision']:,.0f} µs per dry decision", flush=True)
    return out


def _server_cpu(mine: dict, base: dict) -> str:
    if mine.get("server_cpu_us") is None or base.get("server_cpu_us") is None:
        return ""  # a result from before the figure was taken
    return f"{mine['server_cpu_us']:,.0f} / {base['server_cpu_us']:,.0f}"


def tables(result: dict) -> str:
    out = ["| scenario | in flight | ours decisions/s | no-op decisions/s | ours / no-op | ours p50 ms | ours p99 ms | "
           "no-op p99 ms | p99 diff ms | client CPU | server CPU µs per decision, ours / no-op |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["scenarios"] + result["sweep"]:
        m, b = r["ours"], r["noop"]
        out.append(f"| {r['name']} | {r['inflight']} | {m['per_s']:,.0f} | {b['per_s']:,.0f} | "
                   f"{r['throughput_ratio']:.0%} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {b['p99_ms']:.2f} | "
                   f"{r['p99_diff_ms']:+.2f} | {m['client_cpu']:.0%} | {_server_cpu(m, b)} |")
    out += ["", "| offers per space | µs per dry decision (in-process) | x the 20-offer cost |", "|---:|---:|---:|"]
    base = next((g["us_per_decision"] for g in result["growth"] if g["offers"] == 20), None)
    for g in result["growth"]:
        x = f"{g['us_per_decision'] / base:.1f}x" if base else ""
        out.append(f"| {g['offers']:,} | {g['us_per_decision']:,.0f} | {x} |")
    if result.get("calibration"):
        out += ["", "| the no-op server, plus µs of Python per call (tight loop) | calls/s | server CPU µs per call |",
                "|---:|---:|---:|"]
        out += [f"| {c['burn_us']:g} | {c['per_s']:,.0f} | {c['server_cpu_us']:,.0f} |" for c in result["calibration"]]
    return "\n".join(out)


def goals(result: dict) -> list[str]:
    """The issue's goals, each MET or MISSED, from this run's figures."""
    by = {r["name"]: r for r in result["scenarios"] + result["sweep"]}
    out = []

    def line(text: str, ok: bool | None, *rows: dict) -> None:
        failed = sum(r[who].get("errors", 0) for r in rows for who in ("ours", "noop"))
        out.append(f"- {text}: " + ("MET" if ok and not failed else "MISSED") + (f" ({failed} calls failed)" if failed else ""))

    for name, goal in (("Decide, dry run", 0.85), ("Decide, recorded (sync)", 0.70), ("DecideStream, recorded", 0.60)):
        if name in by:
            r = by[name]
            line(f"{name}: {r['throughput_ratio']:.0%} of the no-op's throughput (goal ≥ {goal:.0%})",
                 r["throughput_ratio"] >= goal, r)
    if "Decide, dry run, 1 in flight" in by:
        r = by["Decide, dry run, 1 in flight"]
        diff = r["ours"]["p50_ms"] - r["noop"]["p50_ms"]
        line(f"dry Decide at 1 call in flight: p50 {r['ours']['p50_ms']:.2f} ms, the no-op's {r['noop']['p50_ms']:.2f} ms, "
             f"{diff:+.2f} ms (goal: within +0.05 ms)", diff <= 0.05, r)
    if "sweep, 1 in flight" in by and result.get("raw_commit_ms") is not None:
        r, raw = by["sweep, 1 in flight"], result["raw_commit_ms"]
        diff = r["ours"]["p50_ms"] - raw
        line(f"recorded Decide at 1 call in flight: p50 {r['ours']['p50_ms']:.2f} ms, a raw synced LMDB commit's "
             f"{raw:.2f} ms, {diff:+.2f} ms (goal: within +0.1 ms; the no-op's own round trip is "
             f"{r['noop']['p50_ms']:.2f} ms)", diff <= 0.1, r)
    elif "sweep, 1 in flight" in by:  # a run from before the raw commit was timed
        r = by["sweep, 1 in flight"]
        out.append(f"- recorded Decide at 1 call in flight: p50 {r['ours']['p50_ms']:.2f} ms (goal: within +0.1 ms of "
                   "a raw synced LMDB commit; not timed in this run)")
    for name, r in by.items():
        if name.startswith("DecideBatchStream"):
            goal = 50_000 if "dry" in name else 25_000
            line(f"{name}: {r['ours']['per_s']:,.0f} decisions/s, client included (goal ≥ {goal:,})",
                 r["ours"]["per_s"] >= goal, r)
    g = {x["offers"]: x["us_per_decision"] for x in result["growth"]}
    if 20 in g and 1000 in g:
        line(f"a decision at 1,000 offers costs {g[1000] / g[20]:.1f}x one at 20 (goal ≤ 3x)", g[1000] / g[20] <= 3)
    return out


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    sweep = result["sweep"]
    for who in ("ours", "noop"):
        a.plot([r["ours" if who == "ours" else "noop"]["per_s"] for r in sweep],
               [r[who]["p99_ms"] for r in sweep], marker="o", label="offerd" if who == "ours" else "no-op server")
        for r in sweep:
            a.annotate(str(r["inflight"]), (r[who]["per_s"], r[who]["p99_ms"]), fontsize=8)
    a.set_xlabel("calls/s (recorded Decide)")
    a.set_ylabel("p99 ms")
    a.set_title("latency vs load (labels: calls in flight)")
    a.legend()
    g = result["growth"]
    b.loglog([x["offers"] for x in g], [x["us_per_decision"] for x in g], marker="o")
    b.set_xlabel("offers per space")
    b.set_ylabel("µs per dry decision")
    b.set_title("cost of a decision as offers grow")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "noop-server":
        return noop_server(int(argv[1]), int(argv[2]), argv[3], argv[4], float(argv[5]) if len(argv) > 5 else 0.0)
    if argv and argv[0] == "client":
        print(json.dumps(client(**json.loads(argv[1]))))
        return None
    if argv and argv[0] == "sample":
        print(sample_response(argv[1], argv[2]))
        return None
    if argv and argv[0] == "report":
        return report(argv[1] if len(argv) > 1 else os.path.join(HERE, "results"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args(argv)
    global LOOP
    LOOP = args.loop
    seconds, warmup = (2.0, 0.5) if args.quick else (5.0, 1.0)
    common = {"connections": 8, "warmup": warmup, "seconds": seconds, "contacts": 2000}
    os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="load-", dir=os.path.join(HERE, "scratch"))
    load0 = os.getloadavg()
    result: dict = {"scenarios": [], "sweep": [], "growth": []}
    w = args.workers
    try:
        print("scenarios (bundled catalog, space web_home):", flush=True)
        for name, scenario in (("Decide, dry run", "decide_dry"), ("Decide, recorded (sync)", "decide"),
                               ("DecideStream, recorded", "stream"), ("Decide + Record (gateway mix)", "mixed"),
                               (f"DecideBatchStream, recorded, {BATCH} per message", "batch"),
                               (f"DecideBatchStream, dry run, {BATCH} per message", "batch_dry")):
            result["scenarios"].append(scenario_pair(tmp, name, scenario, "web_home", w, common))
        print("generated catalogs, contacts with 50 history events:", flush=True)
        for n in ((20,) if args.quick else (20, 1000)):
            result["scenarios"].append(scenario_pair(tmp, f"Decide, recorded, {n} offers", "decide", "s", w, common,
                                                     catalog_offers=n))
        result["scenarios"].append(scenario_pair(tmp, "Decide, dry run, 1 in flight", "decide_dry", "web_home", w,
                                                 dict(common, connections=1), inflight=1))
        result["raw_commit_ms"] = raw_commit_ms(tmp)
        print(f"raw synced LMDB commit: p50 {result['raw_commit_ms']:.3f} ms", flush=True)
        print("calibration (the no-op server with a fixed amount of work per call):", flush=True)
        result["calibration"] = calibration(tmp, w, common)
        print("latency vs load (recorded Decide, bundled catalog):", flush=True)
        for inflight in (1, 4, 16, 64):
            result["sweep"].append(scenario_pair(tmp, f"sweep, {inflight} in flight", "decide", "web_home", w,
                                                 dict(common, connections=min(8, inflight)), inflight=inflight))
        print("cost as offers grow (in-process):", flush=True)
        result["growth"] = offer_growth((10, 20, 100, 1000) if args.quick else (10, 20, 100, 1000, 10000), 5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "workers": w, "loop": LOOP, "load_before": load0, "load_after": os.getloadavg()}
    out_dir = os.path.join(HERE, "scratch" if args.quick else "results")
    with open(os.path.join(out_dir, "load.json"), "w") as f:
        json.dump({"machine": machine, "seconds": seconds, "warmup": warmup, "common": common, **result}, f, indent=2)
    report(out_dir)
    return None


def report(out_dir: str) -> None:
    """load.md and load.png from load.json (`load.py report [DIR]` redraws them)."""
    with open(os.path.join(out_dir, "load.json")) as f:
        saved = json.load(f)
    machine, common = saved["machine"], saved["common"]
    text = tables(saved) + "\n\n## Goals\n\n" + "\n".join(goals(saved))
    print("\n" + text)
    with open(os.path.join(out_dir, "load.md"), "w") as f:
        f.write(f"# Load benchmark\n\nGenerated by `benchmarks/load.py` on {machine['platform']}, {machine['cpus']} CPUs, "
                f"Python {machine['python']}; {machine['workers']} server workers on {machine['loop']}; the client is "
                f"one Python process (asyncio, {common['connections']} connections) sharing the cores; "
                f"{saved['warmup']:g} s warm-up, {saved['seconds']:g} s measured per run; load "
                f"{machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after.\n\n" + text
                + "\n\n![latency vs load; cost vs offers](load.png)\n")
    plot(saved, os.path.join(out_dir, "load.png"))


if __name__ == "__main__":
    main()
