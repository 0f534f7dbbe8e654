#!/usr/bin/env python3
"""What observability costs per call: this checkout against a base checkout (tracing and the
access log off), and tracing and the access log on, two ways.

- `calls`: instructions per Decide call through the real gRPC server, counted by callgrind
  (an in-process server and a grpc.aio client on one event loop; N and 4N dry-run calls,
  the difference over 3N): exact on a busy machine. Variants: the base checkout, the base
  with a grpc.aio ServerInterceptor timing and counting every call (the mechanism not
  taken), this checkout, each also with prometheus_client's multiprocess mode (as with
  --workers > 1 and --metrics), and this checkout with tracing on (spans dropped; spans
  exported by a batch processor) and with the access log on.
- `load`: benchmarks/load.py's client against `offerd serve --workers 2` of each variant,
  in interleaved rounds (base, this, base, this, ...; odd rounds in reverse order), server
  CPU per decision and calls/s; on a shared machine only the ratios of one round count.

    PYTHONPATH=src .venv/bin/python benchmarks/observability.py --base ../obs-base
    ... --rounds 3 --seconds 5 --only calls|load --variant base --variant new

Writes benchmarks/results/observability.{json,md}."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
ADULT = {"age": 30, "country": "FR", "segment": "gold", "cart_total": 120.5}
CONTEXT = {"page": "cart", "device": "desktop"}
CALLS = 200  # the first callgrind run's calls; the second makes 4x as many

# name → (tree: "base" or "new", in-process settings for `calls`, serve flags and env for `load`)
VARIANTS = {
    "base": ("base", {}, ([], {})),
    "base + interceptor": ("base", {"interceptor": True}, None),
    "new": ("new", {}, ([], {})),
    "base, multiprocess metrics": ("base", {"multiprocess": True}, None),
    "new, multiprocess metrics": ("new", {"multiprocess": True}, None),
    "new, tracing on, spans dropped": ("new", {"trace": "none"}, (["--trace"], {"OTEL_TRACES_EXPORTER": "none"})),
    "new, tracing on, batch export": ("new", {"trace": "batch"},
                                      (["--trace"], {"OTEL_TRACES_EXPORTER": "console"})),
    "new, tracing on, 1% sampled": ("new", {"trace": "sampled"},
                                    (["--trace"], {"OTEL_TRACES_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "traceidratio",
                                                   "OTEL_TRACES_SAMPLER_ARG": "0.01"})),
    "new, access log on": ("new", {"access_log": True}, (["--access-log"], {})),
}

REFERENCE = {"base + interceptor": "base", "new": "base", "new, multiprocess metrics": "base, multiprocess metrics",
             "new, tracing on, spans dropped": "new", "new, tracing on, batch export": "new",
             "new, tracing on, 1% sampled": "new", "new, access log on": "new"}

# --- instructions per call (callgrind) -------------------------------------------------------

def _interceptor():
    """A grpc.aio ServerInterceptor doing what observe.py's wrapper does for metrics."""
    import grpc
    from prometheus_client import Counter, Histogram

    seconds = Histogram("bench_rpc_seconds", "", ["method"])
    calls = Counter("bench_rpc_calls", "", ["method", "code"])

    class Timing(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if handler is None or handler.unary_unary is None:
                return handler
            inner, method = handler.unary_unary, details.method

            async def call(request, context):
                t, code = time.perf_counter(), "OK"
                try:
                    return await inner(request, context)
                except BaseException:
                    code = "ERROR"
                    raise
                finally:
                    seconds.labels(method).observe(time.perf_counter() - t)
                    calls.labels(method, code).inc()
            return grpc.unary_unary_rpc_method_handler(call, handler.request_deserializer,
                                                       handler.response_serializer)
    return Timing()


def _inner(calls: int, settings: dict) -> None:
    if settings.get("multiprocess"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    import grpc

    if settings.get("interceptor"):
        made = grpc.aio.server
        grpc.aio.server = lambda *a, **kw: made(*a, interceptors=[_interceptor()], **kw)
    from offerd.client import decide_request
    from offerd.server.app import Config, create_server, stop_server
    from offerd.server.workers import start_catalog
    from offerd.store import Store
    from offerd.v1 import offerd_pb2_grpc as rpc

    extra = {}
    if settings.get("trace"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        if settings["trace"] == "sampled":
            from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

            provider = TracerProvider(sampler=TraceIdRatioBased(0.01))
        else:
            provider = TracerProvider()
        if settings["trace"] == "batch":
            provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        extra = {"trace": True, "trace_provider": provider}
    if settings.get("access_log"):
        import logging

        from offerd.server import logs

        logs.setup()
        logging.getLogger().handlers[0].stream = open(os.devnull, "w")
        extra["access_log"] = True

    async def run():
        with tempfile.TemporaryDirectory() as data:
            store = Store(os.path.join(data, "db"), durability="fast", map_size=1 << 30)  # valgrind: no 1 TiB map
            start_catalog(store, None)
            config = Config(listen="127.0.0.1:0", data=data, durability="fast", map_size=1 << 30, pruner=False,
                            poll_seconds=1e6, **extra)
            server, port = await create_server(config.listen, config, store)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = rpc.DecisionServiceStub(ch)
                request = decide_request(["web_home"], "c1", attributes=ADULT, context=CONTEXT, dry_run=True)
                for _ in range(20):  # compiled, connected, caches warm: outside the difference
                    await stub.Decide(request)
                for _ in range(calls):
                    await stub.Decide(request)
            await stop_server(server, 1)
    asyncio.run(run())


def _count(tree: str, calls: int, settings: dict) -> int:
    with tempfile.TemporaryDirectory() as out:
        got = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg", PY, os.path.abspath(__file__),
             "--inner", str(calls), json.dumps(settings)],
            capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": os.path.join(tree, "src")})
    found = re.search(r"Collected : (\d+)", got.stderr)
    if got.returncode != 0 or not found:
        sys.exit(f"observability.py: {settings} in {tree} failed:\n{got.stderr[-3000:]}")
    return int(found.group(1))


def instructions(trees: dict[str, str], only: list[str]) -> dict[str, float]:
    out = {}
    for name, (tree, settings, _) in VARIANTS.items():
        if only and name not in only:
            continue
        n = CALLS
        out[name] = (_count(trees[tree], 4 * n, settings) - _count(trees[tree], n, settings)) / (3 * n)
        print(f"  {name:40s} {out[name]:10,.0f} instructions per call", flush=True)
    return out


# --- interleaved load rounds -----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tree: str, data: str, flags: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = open(os.path.join(data, "serve.log"), "w")  # the access log and console spans go here, read by no one
    proc = subprocess.Popen([PY, "-m", "offerd.cli", "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
                             "--workers", "2", "--durability", "fast", "--drain", "0", *flags],
                            stdout=log, stderr=log, env={**os.environ, **env, "PYTHONPATH": os.path.join(tree, "src")})
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(1.0)  # both workers listening and warm
                return proc, port
        if proc.poll() is not None:
            raise RuntimeError(open(os.path.join(data, "serve.log")).read()[-2000:])
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def _pids(proc) -> list[int]:
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        return [proc.pid] + [int(p) for p in f.read().split()]


def load(trees: dict[str, str], rounds: int, seconds: float, scenarios: list[str], tmp: str,
         only: list[str]) -> list[dict]:
    rows = []
    for r in range(rounds):
        for scenario in scenarios:
            names = [n for n in VARIANTS if not only or n in only]
            for name in names if r % 2 == 0 else names[::-1]:  # odd rounds in reverse: order effects cancel
                tree, _, serve = VARIANTS[name]
                if serve is None:
                    continue
                flags, env = serve
                for with_metrics in ((False, True) if name in ("base", "new") else (False,)):
                    data = tempfile.mkdtemp(dir=tmp)
                    extra = ["--metrics", f"127.0.0.1:{_free_port()}"] if with_metrics else []
                    proc, port = _serve(trees[tree], data, flags + extra, env)
                    try:
                        got = subprocess.run(
                            [PY, os.path.join(HERE, "load.py"), "client", json.dumps({
                                "target": f"127.0.0.1:{port}", "scenario": scenario, "inflight": 16,
                                "connections": 8, "warmup": 1.0, "seconds": seconds, "contacts": 2000,
                                "space": "web_home", "server_pids": _pids(proc)})],
                            capture_output=True, text=True, timeout=seconds + 120)
                        if got.returncode != 0:
                            raise RuntimeError(got.stderr[-3000:])
                        res = json.loads(got.stdout)
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait(60)
                        shutil.rmtree(data, ignore_errors=True)
                    row = {"round": r, "scenario": scenario, "variant": name, "metrics": with_metrics, **res}
                    rows.append(row)
                    print(f"  round {r} {scenario:10s} {name:32s} metrics {'on ' if with_metrics else 'off'} "
                          f"{res['per_s']:8,.0f}/s  {res['server_cpu_us']:6,.0f} µs server CPU per decision  "
                          f"p99 {res['p99_ms']:.2f} ms", flush=True)
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Per round, scenario and metrics setting: each variant over `base` of the same round."""
    out = []
    for row in rows:
        if row["variant"] == "base":
            continue
        base = next(b for b in rows if b["variant"] == "base" and b["round"] == row["round"]
                    and b["scenario"] == row["scenario"] and b["metrics"] == row["metrics"])
        out.append({"round": row["round"], "scenario": row["scenario"], "variant": row["variant"],
                    "metrics": row["metrics"], "cpu_ratio": row["server_cpu_us"] / base["server_cpu_us"],
                    "throughput_ratio": row["per_s"] / base["per_s"]})
    return out


def report(result: dict) -> str:
    lines = ["# Observability: what it costs per call", "",
             f"Base: {result['trees']['base']} (commit {result.get('base_commit', '?')}); this: "
             f"{result['trees']['new']}. Machine: {result['machine']}.", ""]
    if result.get("instructions"):
        got = result["instructions"]
        lines += ["## Instructions per dry-run Decide through the gRPC server (callgrind)", "",
                  "| variant | instructions per call | compared with | difference |", "|---|---:|---|---:|"]
        for name, n in got.items():
            ref = REFERENCE.get(name)
            cells = f"{ref} | {n / got[ref] - 1:+.1%}" if ref in got else " | "
            lines.append(f"| {name} | {n:,.0f} | {cells} |")
        lines.append("")
    if result.get("load"):
        lines += ["## Load, interleaved rounds (`offerd serve --workers 2 --durability fast`)", "",
                  "Median over rounds of each variant's ratio to the base run of the same round.", "",
                  "| scenario | --metrics | variant | server CPU per decision | calls/s |", "|---|---|---|---:|---:|"]
        groups: dict = {}
        for r in result["ratios"]:
            groups.setdefault((r["scenario"], r["metrics"], r["variant"]), []).append(r)
        for (scenario, metrics, variant), rs in groups.items():
            cpu = sorted(x["cpu_ratio"] for x in rs)[len(rs) // 2]
            tput = sorted(x["throughput_ratio"] for x in rs)[len(rs) // 2]
            lines.append(f"| {scenario} | {'on' if metrics else 'off'} | {variant} | {cpu - 1:+.1%} | {tput - 1:+.1%} |")
        lines.append("")
    lines += result.get("notes", [])
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=False, help="the base checkout (its src/ is used)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--only", choices=("calls", "load"))
    ap.add_argument("--scenario", action="append", help="load.py scenarios (default decide_dry, stream)")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: all")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--inner", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        return _inner(int(args.inner[0]), json.loads(args.inner[1]))
    if not args.base:
        ap.error("--base DIR: the checkout to compare with")
    trees = {"base": os.path.abspath(args.base), "new": ROOT}
    commit = subprocess.run(["git", "-C", trees["base"], "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"trees": trees, "base_commit": commit,
              "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start"}
    path = os.path.join(args.out, "observability.json")
    if os.path.exists(path):  # a run of one part keeps the other's figures
        with open(path) as f:
            result = {**json.load(f), **result}
    if args.only in (None, "calls"):
        print("instructions per call (callgrind):", flush=True)
        result["instructions"] = {**result.get("instructions", {}), **instructions(trees, args.variant)}
    if args.only in (None, "load"):
        print("load, interleaved rounds:", flush=True)
        os.makedirs(os.path.join(HERE, "scratch"), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="obs-", dir=os.path.join(HERE, "scratch"))
        try:
            result["load"] = load(trees, args.rounds, args.seconds, args.scenario or ["decide_dry", "stream"], tmp,
                                  args.variant)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result["ratios"] = ratios(result["load"])
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "observability.md"), "w") as f:
        f.write(report(result))
    print(report(result))
    return None


if __name__ == "__main__":
    main()
