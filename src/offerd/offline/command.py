"""`offerd simulate`, and `offerd batch --server`, from their parsed arguments: the inputs
named as the report states them, the engine that runs the parts (this machine's processes
or a Dask cluster), bad input as one line and exit status 2, the report printed and written
(JSON, HTML), the batch's output."""
from __future__ import annotations

import argparse
import json
import os
import sys


def part_size(text: str) -> int:
    """`16M`, `256K` or a number of bytes, from 4K to 1G."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)
    except (ValueError, OverflowError):
        value = 0
    if not 4096 <= value <= 1 << 30:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size from 4K to 1G, such as 16M")
    return value


def engine_options(p, env: bool = True) -> None:
    """Where the parts run: --dask, --part-size (simulate and batch; a batch's --dask has no
    variable: set for simulations, it would refuse a batch into --data)."""
    p.add_argument("--dask", metavar="SCHEDULER", env="OFFERD_DASK" if env else None,
                   help="run the parts on a Dask cluster: its scheduler's address (tcp://HOST:8786), or `local` "
                        "for one of --workers processes here (pip install 'offerd[dask]')")
    p.add_argument("--part-size", type=part_size, default="16M", metavar="SIZE",
                   help="bytes of a JSON Lines file per part (a CSV file is one part, a Parquet row group one)")


def server_options(p) -> None:
    """`offerd batch --server`: the server or cluster that decides and records."""
    from ..cli.options import address, positive, seconds  # here: offerd.cli imports this module
    p.add_argument("--server", type=address, metavar="HOST:PORT",
                   help="decide and record on this server or cluster (its balancer), not in --data")
    p.add_argument("--shards", type=positive, default=1,
                   help="with --server: the cluster's shards; each call then carries one shard's contacts")
    p.add_argument("--retry-for", type=seconds, default="60s",
                   help="with --server: how long rows whose shard is down are sent again before the batch stops")
    # no OFFERD_TLS_* here: set for the other client commands, they would refuse a batch into --data
    p.add_argument("--tls-ca", metavar="PEM", help="with --server: TLS, the server verified by this CA certificate")
    p.add_argument("--tls-cert", metavar="PEM", help="with --server: a client certificate (mTLS); with --tls-key")
    p.add_argument("--tls-key", metavar="PEM", help="with --server: the client certificate's key")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="with --server: the name the server's certificate must carry")


def engine(args):
    """The engine the command's parts run on: a Dask cluster, or None (this machine's processes)."""
    if not args.dask:
        return None
    from .engines import Dask

    return Dask(args.dask, args.workers or 0)


def _lines(path: str) -> int | None:
    """A single file's rows, for the progress line (None: estimated as the run goes)."""
    if not os.path.isfile(path) or path.endswith((".parquet", ".pq")):
        return None
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - (1 if path.endswith(".csv") else 0), 0)


def simulate(args, load, when, print_bad) -> int:
    """The command; `load`, `when` and `print_bad` are the CLI's own helpers."""
    from ..decide_args import by_schema
    from . import simulate as run
    from .progress import progress_bar
    from .report_text import text

    catalog = load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    at = when(args.at)
    other = None
    if args.compare:
        other = load(args.compare, sys.stderr)
        if other is None:
            return 1
    try:
        if len(set(args.space)) != len(args.space):
            raise ValueError(f"a space is named twice: {', '.join(args.space)}")
        for out in (args.json, args.html):  # refused now, not after the whole run
            if out:
                with open(out, "a", encoding="utf-8"):
                    pass
        total = _lines(args.population)
        context = by_schema(args.context, "context", catalog.context, "--context")  # ArgError is a ValueError
        runner = engine(args)
        try:
            report = run.simulate(catalog, args.space, args.population, at, workers=args.workers or None,
                                  caps=not args.no_caps, context=context, total=total,
                                  progress=None if args.quiet else progress_bar(), compare=other, by=args.by,
                                  label=os.path.abspath(args.catalog), seed=args.seed,
                                  compare_label=os.path.abspath(args.compare) if args.compare else "",
                                  engine=runner, part_bytes=args.part_size)
        finally:
            if runner is not None:
                runner.close()
    except (OSError, ValueError) as e:
        print(f"offerd: {e}", file=sys.stderr)
        return 2
    print_bad(args.population, report.bad_rows, report.bad_count)
    data = report.to_json()
    sys.stdout.write(text(data).encode("utf-8", "backslashreplace").decode("utf-8") + "\n")  # lone surrogates shown, not fatal
    if args.json:
        with open(args.json, "w", encoding="utf-8", errors="backslashreplace") as f:
            json.dump(data, f, indent=2)
    if args.html:
        from .report_html import page

        with open(args.html, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(page(data))
    return 0


def remote_batch(args, catalog, at, context, print_bad) -> int:
    """`offerd batch --server`: the rows decided and recorded on the server's shards."""
    from .engines import Local
    from .progress import progress_bar
    from .remote_batch import BatchError, run

    tls = {k: v for k, v in (("tls_ca", args.tls_ca), ("tls_cert", args.tls_cert), ("tls_key", args.tls_key),
                             ("tls_server_name", args.tls_server_name)) if v}
    try:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together (a client certificate and its key)")
        runner = engine(args) or Local(args.workers or os.cpu_count() or 1)
        try:
            result = run(args.server, catalog, args.space, [args.population], at, args.out, runner, context=context,
                         progress=None if args.quiet else progress_bar(label="batch"), shards=args.shards, tls=tls,
                         retry_for=args.retry_for, part_bytes=args.part_size)
        finally:
            if hasattr(runner, "close"):
                runner.close()
    except (OSError, ValueError, BatchError) as e:
        print(f"offerd: {e}", file=sys.stderr)
        return 2
    batch_summary(args, result, print_bad)
    return 0


def batch_summary(args, result, print_bad) -> None:
    """A batch's bad rows and its last line (here or on a server: the same)."""
    print_bad(args.population, result.bad, len(result.bad))
    print(f"{args.out}: {result.decided + result.resumed:,} contacts decided ({result.resumed:,} by an earlier "
          f"run of this batch), {result.propositions:,} propositions recorded, {len(result.bad):,} bad rows "
          f"skipped, {result.seconds:.1f} s")
