"""offerd's command line: check and compile catalogs."""
from __future__ import annotations

import argparse
import sys
import time

from . import lang
from .compiler import SpaceCache


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
          f"{len(catalog.categories)} categories, {len(catalog.lets)} lets, "
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

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `offerd compile ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
