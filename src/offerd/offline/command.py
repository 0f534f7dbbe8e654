"""`offerd simulate` from its parsed arguments: the inputs named as the report states them,
bad input as one line and exit status 2, the report printed and written (JSON, HTML)."""
from __future__ import annotations

import json
import os
import sys


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
        with open(args.population, "rb") as f:
            total = sum(1 for _ in f) - (1 if args.population.endswith(".csv") else 0)
        context = by_schema(args.context, "context", catalog.context, "--context")  # ArgError is a ValueError
        report = run.simulate(catalog, args.space, args.population, at, workers=args.workers or None,
                              caps=not args.no_caps, context=context, total=max(total, 0),
                              progress=None if args.quiet else progress_bar(), compare=other, by=args.by,
                              label=os.path.abspath(args.catalog), seed=args.seed,
                              compare_label=os.path.abspath(args.compare) if args.compare else "")
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
