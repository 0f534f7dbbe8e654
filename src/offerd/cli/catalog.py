"""The commands that work on a catalog folder on this machine, with no server: check,
compile, gen-population, simulate and batch."""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from ..offline.command import batch_summary, engine_options, server_options
from .options import count, when

if TYPE_CHECKING:  # the language stage is imported when a command needs it: usage errors answer at once
    from .. import lang


def folder_error(e: lang.CatalogError) -> str | None:
    """One line for a catalog folder that could not be read at all (missing, empty, a file
    in it unreadable); None for errors in its files, which are shown with their lines."""
    if all(d.span.line == 0 for d in e.errors):
        return "; ".join(d.message for d in e.errors)
    return None


def load(path: str, out) -> lang.Catalog | None:
    """The checked catalog, its warnings written to `out`; None (every error written) if
    it does not check."""
    from .. import lang

    try:
        files = lang.read_dir(path)
    except lang.CatalogError as e:
        if folder_error(e):
            out.write(f"offerd: {folder_error(e)}\n")
            return None
        out.write(e.render() + "\n")
        out.write(f"{len(e.errors)} error{'s' if len(e.errors) != 1 else ''}\n")
        return None
    try:
        catalog = lang.check(files)
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
    catalog = load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    warnings = len(catalog.diagnostics)
    print(f"{args.catalog}: ok — {len(catalog.offers)} offers, {len(catalog.spaces)} spaces, "
          f"{len(catalog.categories)} categories, {len(catalog.groups)} groups, {len(catalog.lets)} lets, "
          f"{warnings} warning{'s' if warnings != 1 else ''} "
          f"({(time.perf_counter() - started) * 1000:.0f} ms; catalog {catalog.hash[:12]})")
    return 0


def cmd_compile(args) -> int:
    from .. import lang
    from ..compiler import SpaceCache

    catalog = load(args.catalog, sys.stderr)
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


def cmd_gen_population(args) -> int:
    import json

    from ..offline.population import generate

    catalog = load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    try:
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    except OSError as e:
        print(f"offerd: cannot write {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        for row in generate(catalog, args.count, args.seed):
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
    finally:
        if args.out:
            out.close()
    return 0


def cmd_simulate(args) -> int:
    from ..offline.command import simulate

    return simulate(args, load, when, print_bad)


def cmd_batch(args) -> int:
    from ..decide_args import by_schema
    from ..offline import batch
    from ..offline.progress import progress_bar
    from ..store import StoreError

    catalog = load(args.catalog, sys.stderr)
    if catalog is None:
        return 1
    at = when(args.at)
    if args.server:
        from ..offline.command import remote_batch

        try:
            context = by_schema(args.context, "context", catalog.context, "--context")
        except ValueError as e:
            print(f"offerd: {e}", file=sys.stderr)
            return 2
        return remote_batch(args, catalog, at, context, print_bad)
    tls = [f for f, v in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                          ("--tls-server-name", args.tls_server_name)) if v]
    if tls:
        print(f"offerd: {tls[0]} is for a batch on a server: give --server HOST:PORT too", file=sys.stderr)
        return 2
    if args.dask or not os.path.isfile(args.population):
        print("offerd: a batch on Dask, or over a folder of files, decides on a server: give --server HOST:PORT"
              if args.dask or os.path.isdir(args.population) else f"offerd: {args.population}: no such file",
              file=sys.stderr)
        return 2
    try:
        result = batch.run(args.data, catalog, args.space, args.population, at, args.out,
                           context=by_schema(args.context, "context", catalog.context, "--context"),
                           workers=args.workers or os.cpu_count() or 1,
                           durability=args.durability, progress=None if args.quiet else progress_bar(label="batch"))
    except (OSError, ValueError, StoreError) as e:
        print(f"offerd: {e}", file=sys.stderr)
        return 2
    batch_summary(args, result, print_bad)
    return 0


def print_bad(path: str, examples: list[str], count: int) -> None:
    """The first 20 bad rows of a population, and how many more there were."""
    for bad in examples[:20]:
        print(f"{path}: {bad}", file=sys.stderr)
    if count > 20:
        print(f"{path}: ... {count - 20:,} more bad rows", file=sys.stderr)


def add_commands(sub) -> None:
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

    p = sub.add_parser("gen-population", help="write a seeded population for a catalog's schema (JSON Lines)")
    p.add_argument("catalog", help="folder of *.offer files (its contact schema and rules)")
    p.add_argument("count", type=count, help="how many contacts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(fn=cmd_gen_population)

    p = sub.add_parser("simulate", help="decide a population in a catalog's spaces, recording nothing; report")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--space", action="append", required=True, help="a space (repeatable, decided in this order)")
    p.add_argument("--population", required=True,
                   help="contacts: a .jsonl, .csv or .parquet file, or a folder or glob of them read in name order; "
                        "an `id` and attributes")
    p.add_argument("--at", help="decision time, ISO with a timezone (default: now)")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                   help="context for every contact (its own context.NAME values win)")
    p.add_argument("--by", action="append", default=[], metavar="ATTRIBUTE",
                   help="also the figures per value of this contact attribute or context.NAME (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample of contacts whose weights are shown")
    p.add_argument("--workers", type=count, default=0, help="processes (default: one per core)")
    p.add_argument("--no-caps", action="store_true", help="ignore total caps filling up during the run")
    engine_options(p)
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--html", help="also write the report as a self-contained HTML page with charts")
    p.add_argument("--compare", metavar="OTHER_CATALOG",
                   help="also decide with this catalog folder: who changes offers, why")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("batch", help="decide and record for a whole population (outbound); resumable")
    p.add_argument("catalog", help="folder of *.offer files")
    p.add_argument("--data", default="var", env="OFFERD_DATA", help="data folder (the LMDB store)")
    p.add_argument("--space", action="append", required=True, help="a space (repeatable, decided in this order)")
    p.add_argument("--population", required=True,
                   help="contacts: a .jsonl or .csv file (with --server also .parquet, or a folder or glob of files)")
    p.add_argument("--out", required=True, help="propositions, as JSON Lines in the population's order")
    p.add_argument("--at", required=True,
                   help="decision time, ISO with a timezone: the same batch, resumed, is the same file, catalog, "
                        "spaces, context and --at")
    p.add_argument("--context", action="append", default=[], metavar="NAME=VALUE", help="context for every contact")
    p.add_argument("--durability", choices=("sync", "fast"), default="fast",
                   help="fast (default): the store is synced once, before the output is written")
    p.add_argument("--workers", type=count, default=0, help="processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    engine_options(p, env=False)
    server_options(p)
    p.set_defaults(fn=cmd_batch)
