"""Prometheus metrics, served over HTTP on their own port (`--metrics HOST:PORT`).

With several workers, each records into files under a per-run directory (prometheus_client's
multiprocess mode, set up by workers.run before the fork and before this module is imported)
and the parent process serves their sum."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISIONS = Counter("offerd_decisions", "Decisions answered", ["mode"])  # mode: recorded, dry_run or replayed (a retry)
LATENCY = Histogram("offerd_decision_seconds", "Server time per decision, from request to answer",
                    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
ERRORS = Counter("offerd_errors", "Calls refused or failed, by method and gRPC status code", ["method", "code"])
PROPOSED = Counter("offerd_offers_proposed", "Offers proposed, by space", ["space"])
REPORTS = Counter("offerd_status_reports", "Status reports recorded (changed something)", ["status"])
SHARED = Counter("offerd_shared_caps_closed", "Total caps closed in a cluster: Redis unavailable, or rebuilding "
                 "its counts", ["why"])


def serve_http(address: str, multiprocess: bool) -> int:
    """Start the HTTP endpoint (/metrics) in a thread; returns its port."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client import multiprocess as mp

    host, _, port = address.rpartition(":")
    registry = None
    if multiprocess:
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1",
                                        **({"registry": registry} if registry else {}))
    return server.server_port
