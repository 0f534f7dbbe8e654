"""`offerd test DIR`: the catalog tests beside a catalog's files (*.test.toml), run here with
no server, reported as pytest reports them."""
from __future__ import annotations

import os
import shutil
import sys
import time

from .catalog import load

BAD_INPUT = 2  # a catalog or test file that does not read or check, a bad option
NO_TESTS = 5  # as pytest: no test file, or no case selected


def cmd_test(args) -> int:
    from ..authoring.cases import CaseError, files_in, read
    from ..authoring.runner import Runner, junit, rule, shown, summary

    started = time.perf_counter()
    if args.junit and not os.path.isdir(os.path.dirname(os.path.abspath(args.junit))):
        print(f"offerd: --junit {args.junit}: its folder does not exist", file=sys.stderr)
        return BAD_INPUT
    catalog = load(args.catalog, sys.stderr)
    if catalog is None:
        return BAD_INPUT
    names = files_in(args.catalog)
    if not names:
        print(f"offerd: no *.test.toml files in {args.catalog}: write the catalog's tests beside its *.offer files",
              file=sys.stderr)
        return NO_TESTS
    try:
        cases = read(args.catalog, catalog, names)
    except CaseError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return BAD_INPUT
    pattern = (args.pattern or "").lower()
    chosen = [c for c in cases if pattern in c.id.lower()]
    if not chosen:
        print(f"offerd: no case matches -k {args.pattern!r} (of {len(cases)} cases)", file=sys.stderr)
        return NO_TESTS
    width = shutil.get_terminal_size((80, 24)).columns
    files = list(dict.fromkeys(c.file for c in chosen))
    print(f"offerd test {args.catalog}: {len(chosen)} case{'s' if len(chosen) != 1 else ''} in {len(files)} "
          f"file{'s' if len(files) != 1 else ''}, catalog {catalog.hash[:12]}")
    results = []
    with Runner(catalog) as runner:
        for name in files:
            if not args.verbose:
                print(name + " ", end="", flush=True)
            for case in (c for c in chosen if c.file == name):
                result = runner.run(case)
                results.append(result)
                if args.verbose:
                    print(f"{shown(case.id)} {result.outcome.upper()}", flush=True)
                else:
                    print(result.letter, end="", flush=True)
            if not args.verbose:
                print()
    bad = [r for r in results if r.outcome != "passed"]
    if bad:
        print("\n" + rule("FAILURES", width))
        for r in bad:
            print(rule(shown(r.case.id), width, "_"))
            print(r.text() + "\n")
    seconds = time.perf_counter() - started
    if args.junit:
        try:
            junit(args.junit, results, seconds)
        except OSError as e:
            print(f"offerd: cannot write {args.junit}: {e.strerror}", file=sys.stderr)
            return BAD_INPUT
    print(rule(summary(results, seconds, len(cases) - len(chosen)), width))
    return 1 if bad else 0


def add_commands(sub) -> None:
    p = sub.add_parser("test", help="run a catalog's tests (*.test.toml beside its files), here, with no server")
    p.add_argument("catalog", help="folder of *.offer files and their *.test.toml tests")
    p.add_argument("-k", dest="pattern", metavar="PATTERN",
                   help="run only the cases whose file::name holds this text (letter case ignored)")
    p.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML, for CI")
    p.add_argument("-v", "--verbose", action="store_true", help="a line per case, not a character")
    p.set_defaults(fn=cmd_test)
