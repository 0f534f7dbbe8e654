"""The server's settings (no gRPC import: read before the workers fork)."""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.retries import DEFAULT_WINDOW
from ..store import DEFAULT_MAP_SIZE
from ..store.recent import DEFAULT_SIZE as RECENT_SIZE


@dataclass
class Config:
    listen: str = "127.0.0.1:50051"
    data: str = "var"
    catalog: str | None = None  # .offer files deployed at start (workers.run); None: keep the live one
    durability: str = "sync"
    admin_token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # with it, clients must present a certificate it signed (mTLS)
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint; None: none
    loop: str = "uvloop"  # or "asyncio"
    poll_seconds: float = 0.5  # how often a worker looks for a catalog deployed through another
    map_size: int = DEFAULT_MAP_SIZE  # bytes of address space for LMDB; the file grows with the data
    retain: float = 30 * 86400  # seconds of history kept at least (late reports, propensity's 30 days)
    prune_every: float = 3600  # seconds between prunes; 0: never
    recent: int = RECENT_SIZE  # contacts each worker remembers (decoded profile, history index); 0: none
    pruner: bool = True  # this process prunes (with several workers, only the first)
    drain: float = 3.0  # seconds of NOT_SERVING health, calls still served, before a stop
    retry_window: float = DEFAULT_WINDOW  # seconds a recorded decision's first answer is kept for retries; 0: none
    worker: bool = False  # one of several worker processes under a supervisor (workers.run)
    grace: float = 10.0  # seconds the calls in flight get to finish when the server stops
    cluster: object = None  # a cluster.topology.Topology: this server is one shard of it; None: alone
    trace: bool = False  # OpenTelemetry spans per call and stage (tracing.py)
    trace_provider: object = None  # a TracerProvider to use rather than one set up from OTEL_* variables (tests)
    access_log: bool = False  # a log line per call (observe.py)
