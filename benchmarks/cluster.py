"""A 3-shard cluster on this machine: calls/s through the balancer (HAProxy, then nginx)
against the same shards called directly (each call sent to its owner), in interleaved
rounds of one run; and what the shared count of a total cap costs a recorded decision.

    python benchmarks/cluster.py [--seconds 3] [--rounds 3] [--json benchmarks/results/cluster.json]

Clients are threads of this process, each with its own channel, `--inflight` calls at a
time. The machine has 2 cores for the shards, the balancer and the client: the figures
are ratios within one run, not a cluster's capacity."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from offerd.client import decide_request, route  # noqa: E402
from offerd.cluster import balancer  # noqa: E402
from offerd.cluster.local import LocalCluster, _healthy, free_port  # noqa: E402
from offerd.cluster.routing import shard_of  # noqa: E402
from offerd.v1 import offerd_pb2_grpc as rpc  # noqa: E402

CATALOG = """schema contact { }
schema context { }
space web { limit 1 }
offer capped { spaces web  weight 10  cap 1000000000 total per 1d }
offer plain { spaces web  weight 1 }
"""
UNCAPPED = CATALOG.replace("  cap 1000000000 total per 1d", "")


TICK = os.sysconf("SC_CLK_TCK")


def cpu(group) -> float:
    """CPU seconds (user + system) of the live processes of a process group (or several)."""
    if isinstance(group, (list, tuple)):
        return sum(cpu(g) for g in group)
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # pgrp
                total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def load(targets: list[str], seconds: float, threads: int, dry: bool, pick, groups: dict) -> tuple[float, dict]:
    """Calls/s of unary Decide over `threads` threads, each call sent to pick(contact), and
    the CPU µs per call of each process group in `groups` (name → pgid)."""
    done, stop = [0] * threads, threading.Event()
    channels = {t: [grpc.insecure_channel(t) for _ in range(threads)] for t in targets}

    def work(k):
        stubs = {t: rpc.DecisionServiceStub(chs[k]) for t, chs in channels.items()}
        i = 0
        while not stop.is_set():
            who = f"c{k}-{i}"
            i += 1
            stubs[pick(who)].Decide(decide_request(["web"], who, dry_run=dry), metadata=route(who), timeout=10)
            done[k] += 1
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    time.sleep(0.5)
    spent = {name: cpu(g) for name, g in groups.items()}
    before, t0 = sum(done), time.perf_counter()
    time.sleep(seconds)
    n, dt = sum(done) - before, time.perf_counter() - t0
    spent = {name: round((cpu(g) - spent[name]) * 1e6 / max(n, 1), 1) for name, g in groups.items()}
    stop.set()
    for t in pool:
        t.join()
    for chs in channels.values():
        for ch in chs:
            ch.close()
    return n / dt, spent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="offerd-cluster-bench-")
    cluster = LocalCluster(folder, 3, f"127.0.0.1:{free_port()}", extra=("--drain", "0"))
    cluster.start()
    nginx_port = free_port()
    conf = os.path.join(folder, "nginx.conf")
    with open(conf, "w") as f:
        f.write(balancer.nginx(f"127.0.0.1:{nginx_port}", cluster.shards).replace(
            "events {}", f"pid {folder}/nginx.pid;\nerror_log {folder}/nginx.log;\nevents {{}}"))
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"], start_new_session=True)
    ng = f"127.0.0.1:{nginx_port}"
    if not _healthy(ng, 20, nginx):
        cluster.stop(drain=False)
        raise SystemExit(f"nginx did not start: see {folder}/nginx.log")
    results = {"rounds": [], "threads": args.threads, "seconds": args.seconds}
    try:
        from offerd.client import Client
        shards = cluster.shards
        owner = lambda who: shards[shard_of(who, 3)]  # noqa: E731
        groups = {"shards": [cluster.procs[f"shard-{i}"].pid for i in range(3)],
                  "haproxy": cluster.procs["haproxy"].pid, "nginx": nginx.pid, "redis": cluster.procs["redis"].pid}
        for mode, catalog in (("uncapped", UNCAPPED), ("capped", CATALOG)):
            with Client(cluster.listen) as c:
                c.deploy({"a.offer": catalog})
            time.sleep(1.5)  # each shard puts its part of the shared count into Redis
            for r in range(args.rounds):
                row = {"catalog": mode, "round": r}
                for name, targets, pick in (("direct", shards, owner),
                                            ("haproxy", [cluster.listen], lambda w: cluster.listen),
                                            ("nginx", [ng], lambda w: ng)):
                    for dry in ((True, False) if mode == "uncapped" else (False,)):
                        key = f"{name}_{'dry' if dry else 'recorded'}"
                        rate, spent = load(targets, args.seconds, args.threads, dry, pick, groups)
                        row[key] = round(rate)
                        row[key + "_cpu_us"] = spent
                results["rounds"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        os.killpg(nginx.pid, 15)
        nginx.wait()
        cluster.stop(drain=False)

    def mean(catalog, key):
        xs = [r[key] for r in results["rounds"] if r["catalog"] == catalog and key in r]
        return sum(xs) / len(xs)
    summary = {}
    for b in ("haproxy", "nginx"):
        for m in ("dry", "recorded"):
            summary[f"{b}_{m}_vs_direct"] = round(mean("uncapped", f"{b}_{m}") / mean("uncapped", f"direct_{m}"), 3)
    summary["direct_recorded_capped_vs_uncapped"] = round(mean("capped", "direct_recorded") /
                                                          mean("uncapped", "direct_recorded"), 3)

    def cpu_mean(catalog, key, part):
        xs = [r[key + "_cpu_us"][part] for r in results["rounds"] if r["catalog"] == catalog and key in r]
        return round(sum(xs) / len(xs), 1)
    for catalog, keys in (("uncapped", ("direct_dry", "haproxy_dry", "nginx_dry", "direct_recorded",
                                        "haproxy_recorded", "nginx_recorded")),
                          ("capped", ("direct_recorded", "haproxy_recorded"))):
        for key in keys:
            summary[f"cpu_us_per_call_{catalog}_{key}"] = {part: cpu_mean(catalog, key, part)
                                                           for part in ("shards", "haproxy", "nginx", "redis")}
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
