"""The server's settings (no gRPC import: read before the workers fork)."""
from __future__ import annotations

from dataclasses import dataclass


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
