"""A one-line progress display for long offline runs (simulations, batches)."""
from __future__ import annotations

import sys


def progress_bar(out=sys.stderr, label: str = "simulate"):
    """A progress callback drawing one line: done, share, rate, ETA."""
    last = [None]

    def draw(done: int, total: int | None, seconds: float) -> None:
        if last[0] == (done, total):
            return  # the end, drawn already
        last[0] = (done, total)
        rate = done / seconds if seconds > 0 else 0.0
        if total:
            eta = (total - done) / rate if rate else 0.0
            line = f"{label}: {done:,}/{total:,} rows ({done / total:.0%}), {rate:,.0f}/s, ETA {eta:,.0f} s"
        else:
            line = f"{label}: {done:,} rows, {rate:,.0f}/s"
        out.write("\r" + line.ljust(78))
        if total and done >= total:
            out.write("\n")
        out.flush()
    return draw
