"""A 3-shard cluster on this machine: calls/s through the balancer (HAProxy, then nginx)
against the same shards called directly (each call sent to its owner), in interleaved
rounds of one run; what the shared count of a total cap costs a recorded decision; and a
stream of many contacts split by the client (one stream per shard) against streams of mixed
contacts whose shards pass on what they do not own, both through HAProxy.

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


def streams(plan: list[tuple[str, list[str]]], groups: dict) -> tuple[float, dict]:
    """Messages/s of dry DecideStream: one stream per (target, contacts) at once, each
    message a contact, and the CPU µs per message of each process group."""
    done = [0] * len(plan)

    def one(k, target, names):
        with grpc.insecure_channel(target) as ch:
            stub = rpc.DecisionServiceStub(ch)
            requests = (decide_request(["web"], n, dry_run=True) for n in names)
            for reply in stub.DecideStream(requests, metadata=route(names[0])):
                assert reply.WhichOneof("reply") == "decision", reply
                done[k] += 1
    spent = {name: cpu(g) for name, g in groups.items()}
    t0 = time.perf_counter()
    pool = [threading.Thread(target=one, args=(k, t, names)) for k, (t, names) in enumerate(plan)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    n, dt = sum(done), time.perf_counter() - t0
    return n / dt, {name: round((cpu(g) - spent[name]) * 1e6 / n, 1) for name, g in groups.items()}


def markdown(results: dict) -> str:
    rows, s = results["rounds"], results["summary"]

    def cell(catalog, key):
        return " / ".join(f"{x[key]:,}" for x in rows if x["catalog"] == catalog and key in x)

    def cpu_row(label, catalog, key):
        c = s[f"cpu_us_per_call_{catalog}_{key}"]
        return f"| {label} | {c['shards']} | {c['haproxy']} | {c['nginx']} | {c['redis']} |"
    n = sum(1 for x in rows if x["catalog"] == "uncapped")
    return "\n".join([
        "# A 3-shard cluster on one 2-core machine (benchmarks/cluster.py)",
        "",
        "3 shards (`offerd serve --cluster`, 1 worker each), Redis, the balancer and 8 client threads",
        "(unary Decide, each call sent with its routing key) share 2 cores; "
        f"{n} interleaved rounds of {results['seconds']:g} s",
        "per cell, calls/s, and the CPU each part spent per call (read from /proc; cluster.json has",
        "every round):",
        "",
        "| catalog | mode | direct to the owner | HAProxy 2.6 | nginx 1.22 |",
        "|---|---|---:|---:|---:|",
        f"| no total cap | dry | {cell('uncapped', 'direct_dry')} | {cell('uncapped', 'haproxy_dry')} "
        f"(**{s['haproxy_dry_vs_direct']}**) | {cell('uncapped', 'nginx_dry')} ({s['nginx_dry_vs_direct']}) |",
        f"| no total cap | recorded | {cell('uncapped', 'direct_recorded')} | {cell('uncapped', 'haproxy_recorded')} "
        f"(**{s['haproxy_recorded_vs_direct']}**) | {cell('uncapped', 'nginx_recorded')} "
        f"({s['nginx_recorded_vs_direct']}) |",
        f"| `cap 1000000000 total per 1d` (Redis check-and-add) | recorded | {cell('capped', 'direct_recorded')} "
        f"({s['direct_recorded_capped_vs_uncapped']} of no cap) | {cell('capped', 'haproxy_recorded')} | "
        f"{cell('capped', 'nginx_recorded')} |",
        "",
        "Streams of 6,000 dry decisions of distinct contacts, 3 at once, through HAProxy, messages/s:",
        "",
        "| split by the client (a stream per shard) | mixed contacts, passed on by the shards |",
        "|---:|---:|",
        f"| {cell('uncapped', 'stream_split_haproxy')} | {cell('uncapped', 'stream_forwarded_haproxy')} "
        f"(**{s['stream_forwarded_vs_split']}**) |",
        "",
        "CPU µs per call or message:",
        "",
        "| | shards | HAProxy | nginx | Redis |",
        "|---|---:|---:|---:|---:|",
        cpu_row("dry, direct", "uncapped", "direct_dry"),
        cpu_row("dry, through HAProxy", "uncapped", "haproxy_dry"),
        cpu_row("dry, through nginx", "uncapped", "nginx_dry"),
        cpu_row("recorded, direct", "uncapped", "direct_recorded"),
        cpu_row("recorded, through HAProxy", "uncapped", "haproxy_recorded"),
        cpu_row("recorded, through nginx", "uncapped", "nginx_recorded"),
        cpu_row("recorded with a total cap, direct", "capped", "direct_recorded"),
        cpu_row("recorded with a total cap, through HAProxy", "capped", "haproxy_recorded"),
        cpu_row("stream message, split by the client", "uncapped", "stream_split_haproxy"),
        cpu_row("stream message, passed on by the shards", "uncapped", "stream_forwarded_haproxy"),
        "",
        "The shards' CPU per call is several times what a decision costs alone: 3 shards, two",
        "balancers, Redis and the client on 2 cores share caches and switch all the time; the",
        "ratios are what carry over. The balancer's CPU is taken from the shards' 2 cores here,",
        "which is the whole gap to the direct calls; on cores of its own it would take nothing",
        "from them. HAProxy is the one `offerd cluster local` runs: as fast as nginx or faster,",
        "and it computes the shard itself (`use-server`), where nginx's `hash` only happens to",
        "match.",
        "",
    ])


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
                if mode == "uncapped":  # many contacts in a stream: the client splits, or the shard forwards
                    names = [f"st{r}-{i}" for i in range(6000)]
                    # the client splits (AsyncClient.decide_stream(shards=3)): each stream's contacts are one
                    # shard's, so its routing key takes it there; or three streams of mixed contacts
                    split = [(cluster.listen, [n for n in names if shard_of(n, 3) == k]) for k in range(3)]
                    mixed = [(cluster.listen, names[k::3]) for k in range(3)]
                    for key, plan in (("stream_split_haproxy", split), ("stream_forwarded_haproxy", mixed)):
                        rate, spent = streams(plan, groups)
                        row[key], row[key + "_cpu_us"] = round(rate), spent
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
    summary["stream_forwarded_vs_split"] = round(mean("uncapped", "stream_forwarded_haproxy") /
                                                 mean("uncapped", "stream_split_haproxy"), 3)
    summary["direct_recorded_capped_vs_uncapped"] = round(mean("capped", "direct_recorded") /
                                                          mean("uncapped", "direct_recorded"), 3)

    def cpu_mean(catalog, key, part):
        xs = [r[key + "_cpu_us"][part] for r in results["rounds"] if r["catalog"] == catalog and key in r]
        return round(sum(xs) / len(xs), 1)
    for catalog, keys in (("uncapped", ("direct_dry", "haproxy_dry", "nginx_dry", "direct_recorded",
                                        "haproxy_recorded", "nginx_recorded")),
                          ("capped", ("direct_recorded", "haproxy_recorded")),
                          ("uncapped", ("stream_split_haproxy", "stream_forwarded_haproxy"))):
        for key in keys:
            summary[f"cpu_us_per_call_{catalog}_{key}"] = {part: cpu_mean(catalog, key, part)
                                                           for part in ("shards", "haproxy", "nginx", "redis")}
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.splitext(args.json)[0] + ".md", "w") as f:
            f.write(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
