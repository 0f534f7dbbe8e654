"""Prometheus metrics: what the workers count, and the HTTP endpoint (`--metrics HOST:PORT`)
that serves them at /metrics only.

With several workers, each records into files under a per-run directory (prometheus_client's
multiprocess mode, set up by workers.run before the fork and before this module is imported)
and the supervisor serves their sum, with what it reads itself at scrape time (collectors.py)."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

DECISIONS = Counter("offerd_decisions", "Decisions answered", ["mode"])  # mode: recorded, dry_run or replayed (a retry)
LATENCY = Histogram("offerd_decision_seconds", "Server time per decision, from request to answer",
                    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
ERRORS = Counter("offerd_errors", "Calls refused or failed, by method and gRPC status code", ["method", "code"])
PROPOSED = Counter("offerd_offers_proposed", "Offers proposed, by space", ["space"])
REPORTS = Counter("offerd_status_reports", "Status reports recorded (changed something)", ["status"])
SHARED = Counter("offerd_shared_caps_closed", "Total caps closed in a cluster: Redis unavailable, or rebuilding "
                 "its counts", ["why"])
# every call of every service (observe.py); a stream's time is the whole stream's
RPC_SECONDS = Histogram("offerd_rpc_seconds", "Server time per call, from the handler's start to its end",
                        ["service", "method"],
                        buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5, 1, 2.5, 10, 60))
RPC_CALLS = Counter("offerd_rpc_calls", "Calls ended, by gRPC status code", ["service", "method", "code"])
RPC_MESSAGES = Counter("offerd_rpc_messages", "Messages of streaming calls, received or sent",
                       ["service", "method", "direction"])


class _Handler(BaseHTTPRequestHandler):
    registry = None  # set on the subclass made per endpoint

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        if path == "/metrics":
            from prometheus_client.exposition import choose_encoder

            encode, kind = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encode(self.registry), kind)
        elif path == "/":
            self._send(200, b"offerd: Prometheus metrics are at /metrics\n", "text/plain; charset=utf-8")
        else:
            self._send(404, f"no {path} here: offerd serves its metrics at /metrics\n".encode(),
                       "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # scrapes are not server events
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def bind_http(address: str) -> ThreadingHTTPServer:
    """The metrics endpoint bound to HOST:PORT (not serving yet): called before any worker
    starts, so a port in use or a bad address stops the start with one line."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise SystemExit(f"offerd: --metrics {address}: give HOST:PORT, the port 0-65535") from None
    try:
        family = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)[0][0]
        kind = type("Server", (_Server,), {"address_family": family})
        return kind((host, number), type("Handler", (_Handler,), {}))
    except (OSError, UnicodeError) as e:
        raise SystemExit(f"offerd: cannot serve metrics on {address}: {getattr(e, 'strerror', None) or e}") from None


def serve_http(server: ThreadingHTTPServer, registry) -> int:
    """Serve `registry` at /metrics from a thread; returns the port."""
    server.RequestHandlerClass.registry = registry
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server.server_address[1]
