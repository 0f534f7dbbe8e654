"""The balancer's configuration for a cluster: HAProxy (the one `offerd cluster local`
runs) and nginx, both from Debian's packages, both sending a routing key where its shard
is (routing.shard_of) and a call without one to any shard that is up."""
from __future__ import annotations

from .routing import HEADER

def haproxy(listen: str, shards: list[str], *, check_every: float = 1.0, dns: bool = False) -> str:
    """HAProxy, speaking HTTP/2 both sides. The shard is computed from the routing key as
    `routing.shard_of` does. A shard whose port is closed (dead, or stopping after its
    drain) fails its check and is skipped: its contacts' calls then reach another shard,
    which passes them on to the owner and answers UNAVAILABLE until it is back. (HAProxy
    cannot send a gRPC health check: its check bodies are text, a gRPC frame starts with
    zero bytes.) `dns`: shards named by host names that may move (Kubernetes pods), looked
    up again every second from the resolvers of /etc/resolv.conf (full names: HAProxy does
    not apply search domains), and a shard not yet resolvable does not stop the start."""
    n = len(shards)
    inter = f"{int(check_every * 1000)}ms"
    lines = [
        "global",
        "  log stderr format raw local0 warning",
        "  maxconn 4000",
        "defaults",
        "  mode http",
        "  log global",
        "  timeout connect 1s",
        "  timeout client 1h",  # streams stay open
        "  timeout server 1h",
        "  retries 2",
        "  option redispatch",
    ]
    if dns:
        lines += ["resolvers dns", "  parse-resolv-conf", "  hold valid 1s"]
    lines += [
        "frontend offerd",
        f"  bind {listen} proto h2",
        "  default_backend shards",
        "backend shards",
        "  balance roundrobin",  # calls without a routing key: any shard that is up
        f"  http-request set-var(txn.shard) req.hdr({HEADER}),crc32,div(65536),and(32767),mod({n}) "
        f"if {{ req.hdr({HEADER}) -m found }}",
    ]
    lines += [f"  use-server s{i} if {{ var(txn.shard) -m int {i} }}" for i in range(n)]
    found = " resolvers dns init-addr none" if dns else ""
    lines += [f"  server s{i} {a} proto h2 check inter {inter} fall 1 rise 1{found}" for i, a in enumerate(shards)]
    return "\n".join(lines) + "\n"


def nginx(listen: str, shards: list[str]) -> str:
    """nginx (the http block of its configuration): `hash` without `consistent` is
    routing.shard_of over equal peers; a peer that fails is skipped (no gRPC health
    checks in open-source nginx: passive, max_fails)."""
    peers = "\n".join(f"        server {a} max_fails=1 fail_timeout=2s;" for a in shards)
    return f"""events {{}}
http {{
    access_log off;
    upstream shards {{
        hash $http_{HEADER.replace('-', '_')};
{peers}
        keepalive 64;
    }}
    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://shards;
            grpc_next_upstream error timeout;
            grpc_read_timeout 1h;
        }}
    }}
}}
"""
