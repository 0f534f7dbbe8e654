"""offerd's command line: check and compile catalogs, serve them, talk to a server."""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

from . import lang
from .domain import DURATION_UNITS
from .compiler import SpaceCache
from .server import telemetry


def _load(path: str, out) -> lang.Catalog | None:
    try:
        catalog = lang.load(path)
    except lang.CatalogError as e:
        out.write(e.render() + "\n")
        errors = len(e.errors)
        out.write(f"{errors} error{'s' if errors != 1 else ''}\n")
        return None
    for d in catalog.diagnostics:
        out.write(d.render(catalog.sources) + "\n")
    return catalog


def cmd_check(args) -> int:
    started = time.perf_counter()
    catalog = _load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    warnings = len(catalog.diagnostics)
    print(f"{args.catalog}: ok — {len(catalog.offers)} offers, {len(catalog.spaces)} spaces, "
          f"{len(catalog.categories)} categories, {len(catalog.groups)} groups, {len(catalog.lets)} lets, "
          f"{warnings} warning{'s' if warnings != 1 else ''} "
          f"({(time.perf_counter() - started) * 1000:.0f} ms; catalog {catalog.hash[:12]})")
    return 0


def cmd_compile(args) -> int:
    catalog = _load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    spaces = args.space or sorted(catalog.spaces)
    unknown = [s for s in spaces if s not in catalog.spaces]
    if unknown:
        hint = lang.diagnostics.did_you_mean(unknown[0], catalog.spaces)
        print(f"error: unknown space {unknown[0]}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 2
    cache = SpaceCache()
    for name in spaces:
        started = time.perf_counter()
        space = cache.get(catalog, name)
        ms = (time.perf_counter() - started) * 1000
        if args.show_source:
            print(space.source)
            if args.explain:
                print(space.source_of("explain"))
            if args.content:
                print(space.source_of("render"))
        print(f"# space {name}: {len(space.offers)} offers, {len(space.rules)} rules, "
              f"{len(space.source.splitlines())} lines, compiled in {ms:.1f} ms",
              file=sys.stderr if args.show_source else sys.stdout)
    return 0


def _server_options(p) -> None:
    p.add_argument("--server", default=os.environ.get("OFFERD_SERVER", "127.0.0.1:50051"), help="HOST:PORT")
    p.add_argument("--admin-token", default=os.environ.get("OFFERD_ADMIN_TOKEN"))


def _typed(text: str):
    """NAME=VALUE from the command line: an int, a float, true/false, a date (YYYY-MM-DD),
    a list (a,b,c), else a string."""
    name, _, value = text.partition("=")
    if not name or not _:
        raise SystemExit(f"offerd: expected NAME=VALUE, got {text!r}")
    for parse in (int, float):
        try:
            return name, parse(value)
        except ValueError:
            pass
    if value in ("true", "false"):
        return name, value == "true"
    try:
        return name, datetime.date.fromisoformat(value)
    except ValueError:
        pass
    return name, value.split(",") if "," in value else value


def _rpc(fn):
    """Run a client call; a gRPC error is printed as `CODE: message`, exit status 1."""
    def run(args) -> int:
        import grpc  # only here: `offerd serve` forks its workers before gRPC is loaded

        try:
            return fn(args)
        except grpc.RpcError as e:
            print(f"offerd: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return run


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    """`64M`, `2G`, `1T` or a number of bytes."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        value = int(float(t[:-1] if t[-1:] in _UNITS else t) * _UNITS.get(t[-1:], 1))
    except (ValueError, OverflowError):
        value = 0
    if not 1 << 20 <= value <= 1 << 50:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size from 1M to 1024T, such as 64G or 1T")
    return value


def _count(text: str) -> int:
    """A whole number from 0 to 10 million."""
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 0 to 10000000")
    return value


def _seconds(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d` or a number of seconds."""
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * DURATION_UNITS[t[-1]] if t[-1:] in DURATION_UNITS else float(t)
    except ValueError:
        value = -1
    if not 0 <= value < 1e10:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 90s, 15m, 12h or 30d")
    return value


def cmd_serve(args) -> int:

    from .server.config import Config
    from .server.workers import run

    from .server.logs import setup

    setup(json_lines=args.log_json)
    cluster = None
    if args.cluster:
        from .cluster.topology import TopologyError, load
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
        print(e, file=sys.stderr)
        return 1


def cmd_cluster(args) -> int:
    from .cluster.local import run
    from .server.logs import setup

    setup(json_lines=False)
    return run(args.dir, args.shards, args.listen, args.catalog, args.workers, args.serve_args)


def cmd_backup(args) -> int:
    from .store import StoreError, copy_store

    t = time.monotonic()
    try:
        size = copy_store(os.path.join(args.data, "db"), args.dest)
    except StoreError as e:
        print(f"offerd backup: {e}", file=sys.stderr)
        return 1
    print(f"copied {size:,} bytes to {os.path.join(args.dest, 'data.mdb')} in {time.monotonic() - t:.2f} s")
    return 0


@_rpc
def cmd_decide(args) -> int:
    from google.protobuf import json_format

    from .client import Client
    from .decide_args import ArgError, inputs
    from .decide_view import render

    with Client(args.server) as c:
        try:
            attributes, context = inputs(c, args.attr, args.context, by_shape=_typed)
        except ArgError as e:
            print(f"offerd: {e}", file=sys.stderr)
            return 2
        d = c.decide(args.spaces.split(","), args.contact, anonymous=args.anonymous, attributes=attributes,
                     context=context, max_offers=args.max, dry_run=args.dry_run,
                     explain=args.explain or args.explain_all, explain_all=args.explain_all)
    sys.stdout.write(json_format.MessageToJson(d, indent=2) + "\n" if args.json else render(d))
    return 0


@_rpc
def cmd_record(args) -> int:
    from .client import Client

    with Client(args.server) as c:
        changed = c.record(args.proposition, args.status)
    print("recorded" if changed else "already recorded")
    return 0


@_rpc
def cmd_deploy(args) -> int:
    from .client import Client

    files = lang.read_dir(args.catalog)
    with Client(args.server, admin_token=args.admin_token) as c:
        reply = c.deploy(files, args.label or os.path.abspath(args.catalog))
    for d in reply.diagnostics:
        print(d.rendered, file=sys.stderr)
    print(f"live: {reply.hash}")
    return 0


@_rpc
def cmd_versions(args) -> int:
    from .client import Client

    with Client(args.server, admin_token=args.admin_token) as c:
        for v in c.versions():
            when = datetime.datetime.fromtimestamp(v.created_us / 1e6, datetime.timezone.utc)
            print(f"{'*' if v.live else ' '} {v.hash[:16]}  {when:%Y-%m-%d %H:%M:%S}Z  {len(v.files)} files  {v.label}")
    return 0


def cmd_gen_population(args) -> int:
    import json

    from .offline.population import generate

    catalog = _load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for row in generate(catalog, args.count, args.seed):
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
    finally:
        if args.out:
            out.close()
    return 0


def cmd_simulate(args) -> int:
    from .offline.command import simulate

    return simulate(args, _load, _when, _print_bad)


def cmd_batch(args) -> int:
    from .decide_args import by_schema
    from .offline import batch
    from .offline.progress import progress_bar
    from .store import StoreError

    catalog = _load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    at = _when(args.at)
    try:
        result = batch.run(args.data, catalog, args.space, args.population, at, args.out,
                           context=by_schema(args.context, "context", catalog.context, "--context"),
                           workers=args.workers or os.cpu_count() or 1,
                           durability=args.durability, progress=None if args.quiet else progress_bar(label="batch"))
    except (OSError, ValueError, StoreError) as e:
        print(f"offerd: {e}", file=sys.stderr)
        return 2
    _print_bad(args.population, result.bad, len(result.bad))
    print(f"{args.out}: {result.decided + result.resumed:,} contacts decided ({result.resumed:,} by an earlier "
          f"run of this batch), {result.propositions:,} propositions recorded, {len(result.bad):,} bad rows "
          f"skipped, {result.seconds:.1f} s")
    return 0


def _print_bad(path: str, examples: list[str], count: int) -> None:
    """The first 20 bad rows of a population, and how many more there were."""
    for bad in examples[:20]:
        print(f"{path}: {bad}", file=sys.stderr)
    if count > 20:
        print(f"{path}: ... {count - 20:,} more bad rows", file=sys.stderr)


def _when(text: str | None) -> datetime.datetime:
    if not text:
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"offerd: --at {text!r} is not an ISO time (2026-11-23T10:00:00Z)") from None
    if when.tzinfo is None:
        raise SystemExit("offerd: --at needs a timezone (an offset or Z)")
    return when


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offerd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"offerd {__import__('offerd').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="check a catalog folder: every error, or a summary")
    p.add_argument("catalog", help="folder of *.offer files")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("compile", help="compile offer spaces; print the generated Python")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--space", action="append", help="a space to compile (repeatable; default all)")
    p.add_argument("--show-source", action="store_true", help="print the generated Python")
    p.add_argument("--explain", action="store_true", help="with --show-source, also the explain variant")
    p.add_argument("--content", action="store_true", help="with --show-source, also the content renderers")
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument("--listen", default=os.environ.get("OFFERD_LISTEN", "127.0.0.1:50051"), help="HOST:PORT")
    p.add_argument("--data", default=os.environ.get("OFFERD_DATA", "var"), help="data folder (the LMDB store)")
    p.add_argument("--catalog", default=os.environ.get("OFFERD_CATALOG"),
                   help="a folder of *.offer files to deploy at start (default: keep the live version, "
                        "or the bundled example if there is none)")
    p.add_argument("--durability", choices=("sync", "fast"), default=os.environ.get("OFFERD_DURABILITY", "sync"))
    p.add_argument("--map-size", type=_bytes, default=os.environ.get("OFFERD_MAP_SIZE", "1T"),
                   help="LMDB's map: the most the store may hold (default 1T; the file grows only with the data)")
    p.add_argument("--retain", type=_seconds, default=os.environ.get("OFFERD_RETAIN", "30d"),
                   help="history kept at least this long, and longer if a rule's window needs it (default 30d)")
    p.add_argument("--prune-every", type=_seconds, default=os.environ.get("OFFERD_PRUNE_EVERY", "1h"),
                   help="how often older history is deleted (default 1h; 0: never)")
    p.add_argument("--recent-contacts", type=_count, default=os.environ.get("OFFERD_RECENT_CONTACTS", "10000"),
                   help="contacts each worker keeps decoded in memory (profile, history index), reused while "
                        "unchanged; about 5.5 KiB each with 50 propositions (default 10000; 0: none)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("OFFERD_WORKERS", "0")),
                   help="processes sharing the port (default: one per core)")
    p.add_argument("--drain", type=_seconds, default=os.environ.get("OFFERD_DRAIN", "3s"),
                   help="on SIGTERM or SIGINT, health says NOT_SERVING at once and calls are still served "
                        "this long, for load balancers to take the server out (default 3s; 0: none)")
    p.add_argument("--grace", type=_seconds, default=os.environ.get("OFFERD_GRACE", "10s"),
                   help="then the calls in flight get this long to finish (default 10s)")
    p.add_argument("--cluster", default=os.environ.get("OFFERD_CLUSTER"),
                   help="a cluster file (JSON: the shards' addresses in order, and Redis): serve as one shard "
                        "of it (docs/cluster.md)")
    p.add_argument("--shard", type=int, default=int(os.environ["OFFERD_SHARD"]) if os.environ.get("OFFERD_SHARD")
                   else None, help="with --cluster, which shard this server is (from 0)")
    p.add_argument("--retry-window", type=_seconds, default=os.environ.get("OFFERD_RETRY_WINDOW", "10m"),
                   help="a recorded Decide sent again (same request and request_id, same contact) within this "
                        "long gets its first answer back and counts once (default 10m; 0: never)")
    p.add_argument("--admin-token", default=os.environ.get("OFFERD_ADMIN_TOKEN"),
                   help="required on AdminService calls as `authorization: Bearer TOKEN` (env OFFERD_ADMIN_TOKEN)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=os.environ.get("OFFERD_LOOP", "uvloop"),
                   help="the event loop (default uvloop)")
    p.add_argument("--log-json", action="store_true", default=os.environ.get("OFFERD_LOG_JSON") == "1",
                   help="one JSON object per log line (time, level, worker, logger, message)")
    p.add_argument("--metrics", default=os.environ.get("OFFERD_METRICS"),
                   help="HOST:PORT for Prometheus metrics over HTTP (/metrics)")
    p.add_argument("--tls-cert", default=os.environ.get("OFFERD_TLS_CERT"))
    p.add_argument("--tls-key", default=os.environ.get("OFFERD_TLS_KEY"))
    p.add_argument("--client-ca", default=os.environ.get("OFFERD_CLIENT_CA"), help="require client certificates (mTLS)")
    telemetry.add_options(p)  # --trace, --access-log
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("cluster", help="a cluster on this machine, for trying and testing (docs/cluster.md)")
    csub = p.add_subparsers(dest="what", required=True)
    p = csub.add_parser("local", help="start N shards, Redis and HAProxy on loopback; Ctrl-C stops them all")
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--dir", default="var/cluster", help="data and logs, a folder per shard (default var/cluster)")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT the balancer listens on, for gateways")
    p.add_argument("--catalog", help="a folder of *.offer files every shard deploys at start")
    p.add_argument("--workers", type=int, default=1, help="processes per shard (default 1)")
    p.add_argument("serve_args", nargs="*", help="after --: more `offerd serve` options for every shard")
    p.set_defaults(fn=cmd_cluster)

    p = sub.add_parser("backup", help="copy a store, consistent, while servers use it (docs/operations.md)")
    p.add_argument("--data", default=os.environ.get("OFFERD_DATA", "var"), help="the server's data folder")
    p.add_argument("dest", help="a new or empty folder for the copy")
    p.set_defaults(fn=cmd_backup)

    p = sub.add_parser("decide", help="ask a running server for a decision")
    p.add_argument("spaces", help="space[,space...]")
    p.add_argument("contact", nargs="?", default=None, help="contact id (none: an unknown contact)")
    p.add_argument("--anonymous", action="store_true", help="the id is a visitor id")
    p.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                   help="contact attribute, typed by the live schema (a set or list: a,b,c)")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE", help="context value, likewise")
    p.add_argument("--max", type=int, default=0)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--explain", action="store_true",
                   help="every offer's outcome, and for one a rule removed: the rule, its clause not true, "
                        "the values it read, a cap's count")
    p.add_argument("--explain-all", action="store_true", help="--explain, with every rule that removed an offer")
    p.add_argument("--json", action="store_true", help="the answer as protobuf JSON, not a table")
    _server_options(p)
    p.set_defaults(fn=cmd_decide)

    p = sub.add_parser("record", help="report a proposition's status to a running server")
    p.add_argument("proposition")
    p.add_argument("status", choices=("presented", "accepted", "rejected"))
    _server_options(p)
    p.set_defaults(fn=cmd_record)

    p = sub.add_parser("deploy", help="check a catalog folder and make it live on a running server")
    p.add_argument("catalog")
    p.add_argument("--label", default="")
    _server_options(p)
    p.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("versions", help="list a running server's catalog versions")
    _server_options(p)
    p.set_defaults(fn=cmd_versions)

    p = sub.add_parser("gen-population", help="write a seeded population for a catalog's schema (JSON Lines)")
    p.add_argument("catalog", help="folder of *.offer files (its contact schema and rules)")
    p.add_argument("count", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(fn=cmd_gen_population)

    p = sub.add_parser("simulate", help="decide a population in a catalog's spaces, recording nothing; report")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--space", action="append", required=True, help="a space (repeatable, decided in this order)")
    p.add_argument("--population", required=True, help="contacts: .jsonl or .csv, an `id` column and attributes")
    p.add_argument("--at", help="decision time, ISO with a timezone (default: now)")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                   help="context for every contact (its own context.NAME values win)")
    p.add_argument("--by", action="append", default=[], metavar="ATTRIBUTE",
                   help="also the figures per value of this contact attribute or context.NAME (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample of contacts whose weights are shown")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--no-caps", action="store_true", help="ignore total caps filling up during the run")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--html", help="also write the report as a self-contained HTML page with charts")
    p.add_argument("--compare", metavar="OTHER_CATALOG", help="also decide with this catalog folder: who changes offers, why")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("batch", help="decide and record for a whole population (outbound); resumable")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--data", default=os.environ.get("OFFERD_DATA", "var"), help="data folder (the LMDB store)")
    p.add_argument("--space", action="append", required=True, help="a space (repeatable, decided in this order)")
    p.add_argument("--population", required=True, help="contacts: .jsonl or .csv, an `id` column and attributes")
    p.add_argument("--out", required=True, help="propositions, as JSON Lines in the population's order")
    p.add_argument("--at", required=True,
                   help="decision time, ISO with a timezone: the same batch, resumed, is the same file, catalog, "
                        "spaces, context and --at")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE", help="context for every contact")
    p.add_argument("--durability", choices=("sync", "fast"), default="fast",
                   help="fast (default): the store is synced once, before the output is written")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_batch)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `offerd compile ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
