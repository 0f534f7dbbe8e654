"""The commands that run or keep a server on this machine: serve, cluster local and backup.
Nothing here imports gRPC at load: `offerd serve` forks its workers before gRPC is loaded."""
from __future__ import annotations

import os
import sys
import time

from ..server import audit, telemetry
from .catalog import folder_error
from .options import count, positive, seconds, size


def cmd_serve(args) -> int:
    from .. import lang
    from ..server.config import Config
    from ..server.logs import setup
    from ..server.workers import run

    setup(json_lines=args.log_json)
    cluster = None
    if args.cluster:
        from ..cluster.topology import TopologyError, load
        if args.shard is None:
            print("offerd serve: --cluster needs --shard I, which shard of the cluster file this server is",
                  file=sys.stderr)
            return 2
        try:
            cluster = load(args.cluster, args.shard)
        except TopologyError as e:
            print(f"offerd serve: {e}", file=sys.stderr)
            return 2
    elif args.shard is not None:
        print("offerd serve: --shard needs --cluster FILE", file=sys.stderr)
        return 2
    try:
        return run(Config(listen=args.listen, data=args.data, catalog=args.catalog, durability=args.durability,
                          admin_token=args.admin_token, tls_cert=args.tls_cert, tls_key=args.tls_key,
                          client_ca=args.client_ca, metrics=args.metrics, loop=args.loop, map_size=args.map_size,
                          retain=args.retain, prune_every=args.prune_every, recent=args.recent_contacts,
                          drain=args.drain, grace=args.grace, retry_window=args.retry_window, cluster=cluster,
                          **telemetry.fields(args)),
                   args.workers or os.cpu_count() or 1)
    except lang.CatalogError as e:
        print(f"offerd serve: --catalog {folder_error(e)}" if folder_error(e) else e, file=sys.stderr)
        return 1


def cmd_cluster(args) -> int:
    from ..cluster.local import run
    from ..server.logs import setup

    if args.catalog and not os.path.isdir(args.catalog):  # before Redis, HAProxy and the shards start
        print(f"offerd cluster local: --catalog {args.catalog} is not a folder", file=sys.stderr)
        return 2
    setup(json_lines=False)
    return run(args.dir, args.shards, args.listen, args.catalog, args.workers, args.serve_args)


def cmd_backup(args) -> int:
    from ..store import StoreError, copy_store

    t = time.monotonic()
    try:
        size = copy_store(os.path.join(args.data, "db"), args.dest)
    except StoreError as e:
        print(f"offerd backup: {e}", file=sys.stderr)
        return 1
    print(f"copied {size:,} bytes to {os.path.join(args.dest, 'data.mdb')} in {time.monotonic() - t:.2f} s")
    return 0


def serve_options(p) -> None:
    """`offerd serve`'s options, one call each (add a new one here)."""
    p.add_argument("--listen", default="127.0.0.1:50051", env="OFFERD_LISTEN", help="HOST:PORT")
    p.add_argument("--data", default="var", env="OFFERD_DATA", help="data folder (the LMDB store)")
    p.add_argument("--catalog", env="OFFERD_CATALOG",
                   help="a folder of *.offer files to deploy at start (default: keep the live version, "
                        "or the bundled example if there is none)")
    p.add_argument("--durability", choices=("sync", "fast"), default="sync", env="OFFERD_DURABILITY")
    p.add_argument("--map-size", type=size, default="1T", env="OFFERD_MAP_SIZE",
                   help="LMDB's map: the most the store may hold (the file grows only with the data)")
    p.add_argument("--retain", type=seconds, default="30d", env="OFFERD_RETAIN",
                   help="history kept at least this long, and longer if a rule's window needs it")
    p.add_argument("--prune-every", type=seconds, default="1h", env="OFFERD_PRUNE_EVERY",
                   help="how often older history is deleted (0: never)")
    p.add_argument("--recent-contacts", type=count, default="10000", env="OFFERD_RECENT_CONTACTS",
                   help="contacts each worker keeps decoded in memory (profile, history index), reused while "
                        "unchanged; about 5.5 KiB each with 50 propositions (0: none)")
    p.add_argument("--workers", type=count, default="0", env="OFFERD_WORKERS",
                   help="processes sharing the port (default 0: one per core)")
    p.add_argument("--drain", type=seconds, default="3s", env="OFFERD_DRAIN",
                   help="on SIGTERM or SIGINT, health says NOT_SERVING at once and calls are still served "
                        "this long, for load balancers to take the server out (0: none)")
    p.add_argument("--grace", type=seconds, default="10s", env="OFFERD_GRACE",
                   help="then the calls in flight get this long to finish")
    p.add_argument("--cluster", env="OFFERD_CLUSTER",
                   help="a cluster file (JSON: the shards' addresses in order, and Redis): serve as one shard "
                        "of it (docs/cluster.md)")
    p.add_argument("--shard", type=count, env="OFFERD_SHARD",
                   help="with --cluster, which shard this server is (from 0)")
    p.add_argument("--retry-window", type=seconds, default="10m", env="OFFERD_RETRY_WINDOW",
                   help="a recorded Decide sent again (same request and request_id, same contact) within this "
                        "long gets its first answer back and counts once (0: never)")
    p.add_argument("--admin-token", env="OFFERD_ADMIN_TOKEN",
                   help="required on AdminService calls as `authorization: Bearer TOKEN`")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", env="OFFERD_LOOP",
                   help="the event loop")
    p.add_argument("--log-json", action="store_true", env="OFFERD_LOG_JSON",
                   help="one JSON object per log line (time, level, worker, logger, message)")
    p.add_argument("--metrics", env="OFFERD_METRICS", help="HOST:PORT for Prometheus metrics over HTTP (/metrics)")
    p.add_argument("--tls-cert", env="OFFERD_TLS_CERT", help="the server's certificate (PEM): serve TLS")
    p.add_argument("--tls-key", env="OFFERD_TLS_KEY", help="its private key (PEM)")
    p.add_argument("--client-ca", env="OFFERD_CLIENT_CA", help="require client certificates this CA signed (mTLS)")
    audit.add_flag(p)
    telemetry.add_options(p)  # --trace, --access-log


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="run the gRPC server")
    serve_options(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("cluster", help="a cluster on this machine, for trying and testing (docs/cluster.md)")
    csub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = csub.add_parser("local", help="start N shards, Redis and HAProxy on loopback; Ctrl-C stops them all")
    p.add_argument("--shards", type=positive, default=3)
    p.add_argument("--dir", default="var/cluster", help="data and logs, a folder per shard")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT the balancer listens on, for gateways")
    p.add_argument("--catalog", help="a folder of *.offer files every shard deploys at start")
    p.add_argument("--workers", type=positive, default=1, help="processes per shard")
    p.add_argument("serve_args", nargs="*", help="after --: more `offerd serve` options for every shard")
    p.set_defaults(fn=cmd_cluster)

    p = sub.add_parser("backup", help="copy a store, consistent, while servers use it (docs/operations.md)")
    p.add_argument("--data", default="var", env="OFFERD_DATA", help="the server's data folder")
    p.add_argument("dest", help="a new or empty folder for the copy")
    p.set_defaults(fn=cmd_backup)
