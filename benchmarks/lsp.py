#!/usr/bin/env python3
"""`offerd lsp` latency: how long after a keystroke an editor has the diagnostics, for a
generated 1,000-offer catalog (benchmarks/rules.py's generator), measured over LSP.

Starts `offerd lsp`, opens one offers file (the first check of the whole folder, every file
parsed), then sends one-character edits one at a time (a digit typed into a weight and deleted,
an attribute misspelt and put back) and times each from the didChange to the publishDiagnostics
of that version; then the same for keystrokes in other files: a category's cap (offers read
categories by name: none is checked again) and a let (every offer is checked again). Beside it, in process: a full `lang.check` of the folder and the server's
check after one file changed (the other files' parses reused). Goals: diagnostics within
100 ms of a keystroke, a full check within 1 s. Writes benchmarks/results/lsp.json (a --quick
run: benchmarks/scratch/).

    .venv/bin/python benchmarks/lsp.py [--offers 1000] [--edits 200] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

from lsp_client import Client  # noqa: E402
from rules import generate_catalog, machine  # noqa: E402

from offerd import lang  # noqa: E402
from offerd.authoring.lsp.folder import Folder  # noqa: E402

EDITED = "10_offers_0005.offer"  # a file of 100 offers, in the middle of the catalog


def summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"count": len(ms), "median_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1)}


def edits(text: str, count: int):
    """(range, new text, whether the catalog then has an error) one character at a time, each
    undone by the next: a digit typed after a weight's number and deleted, `contact.age`
    misspelt as `contact.agx` and put back."""
    lines = text.split("\n")
    weights = [(i, m.end()) for i, line in enumerate(lines) if (m := re.match(r"  weight \d+", line))]
    ages = [(i, line.index("contact.age") + len("contact.ag")) for i, line in enumerate(lines)
            if "contact.age" in line]
    out = []
    for k in range(count // 2):
        if k % 2 == 0:
            line, col = weights[(k // 2) % len(weights)]
            out.append(((line, col, line, col), "7", False))
            out.append(((line, col, line, col + 1), "", False))
        else:
            line, col = ages[(k // 2) % len(ages)]
            out.append(((line, col, line, col + 1), "x", True))
            out.append(((line, col, line, col + 1), "e", False))
    return out


def over_lsp(folder: str, count: int) -> dict:
    client = Client()
    client.initialize(folder)
    started = time.perf_counter()
    doc = client.open(os.path.join(folder, EDITED))
    assert client.wait_diagnostics(doc, 1, timeout=120) == []
    first = (time.perf_counter() - started) * 1000
    text = open(os.path.join(folder, EDITED)).read()
    ms, version = [], 1
    for (l1, c1, l2, c2), new, error in edits(text, count):
        version += 1
        change = {"range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}},
                  "text": new}
        sent = time.perf_counter()
        client.notify("textDocument/didChange", {"textDocument": {"uri": doc, "version": version},
                                                 "contentChanges": [change]})
        got = client.wait_diagnostics(doc, version, timeout=60)
        ms.append((time.perf_counter() - sent) * 1000)
        assert bool(got) == error, (version, got)
    # a category's cap: offers read categories by name, so none is checked again; a let: every
    # offer may read it, so every offer is checked again
    category = _digits(client, folder, "05_categories.offer", r"\bcap \d+", count // 2)
    let = _digits(client, folder, "00_schema.offer", r"^let big_cart = .* > \d+", count // 2)
    requests = {}
    lines = text.split("\n")
    spot = next((i, line.index("proposed(o") + len("proposed(o")) for i, line in enumerate(lines) if "proposed(o" in line)
    attr = next((i, line.index("contact.") + len("contact.")) for i, line in enumerate(lines) if "contact." in line)
    for method, (line, col), extra in (
            ("textDocument/hover", spot, {}), ("textDocument/definition", spot, {}),
            ("textDocument/references", spot, {"context": {"includeDeclaration": True}}),
            ("textDocument/completion", attr, {}), ("textDocument/documentSymbol", (None, None), {})):
        params = {"textDocument": {"uri": doc}, **extra}
        if line is not None:
            params["position"] = {"line": line, "character": col}
        times = []
        for _ in range(10):
            sent = time.perf_counter()
            assert client.request(method, params) is not None, method
            times.append((time.perf_counter() - sent) * 1000)
        requests[method.split("/")[1]] = summary(times)
    assert client.stop() == 0
    return {"open_first_check_ms": round(first, 1), "keystroke": summary(ms),
            "keystroke_in_a_category": category, "keystroke_in_a_let": let, "requests": requests}


def _digits(client, folder: str, name: str, pattern: str, count: int) -> dict:
    """Keystrokes in another file: a digit typed after each number `pattern` ends at, and
    deleted, each timed to its publishDiagnostics."""
    doc = client.open(os.path.join(folder, name))
    client.wait_diagnostics(doc, 1, timeout=60)
    lines = open(os.path.join(folder, name)).read().split("\n")
    spots = [(i, m.end()) for i, line in enumerate(lines) if (m := re.search(pattern, line))]
    ms, version = [], 1
    for k in range(count):
        line, col = spots[(k // 2) % len(spots)]
        end = col if k % 2 == 0 else col + 1
        version += 1
        sent = time.perf_counter()
        client.notify("textDocument/didChange", {"textDocument": {"uri": doc, "version": version}, "contentChanges": [
            {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": end}},
             "text": "7" if k % 2 == 0 else ""}]})
        assert client.wait_diagnostics(doc, version, timeout=60) == []
        ms.append((time.perf_counter() - sent) * 1000)
    return summary(ms)


def in_process(files: dict[str, str], folder: str, rounds: int) -> dict:
    full, incremental = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        lang.check(lang.read_dir(folder))
        full.append((time.perf_counter() - started) * 1000)
    f = Folder(folder)
    f.check({})
    text = files[EDITED]
    for k in range(rounds):
        changed = text.replace("weight ", "weight 1", 1) if k % 2 == 0 else text
        started = time.perf_counter()
        f.check({EDITED: changed})
        incremental.append((time.perf_counter() - started) * 1000)
    return {"full_check": summary(full), "one_file_changed": summary(incremental)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--offers", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20 edits; results to benchmarks/scratch/")
    args = ap.parse_args()
    count = 20 if args.quick else args.edits
    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        files, _ = generate_catalog(args.offers, 1, datetime.date.today())
        for name, text in files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        lsp = over_lsp(folder, count)
        local = in_process(files, folder, 10 if args.quick else 20)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {"offers": args.offers, "files": len(files), "bytes": sum(len(t) for t in files.values()),
              "edited_file": EDITED, "lsp": lsp, "in_process": local, "machine": info,
              "goals": {"keystroke_p90_under_100ms": lsp["keystroke"]["p90_ms"] < 100,
                        "full_check_under_1s": local["full_check"]["median_ms"] < 1000}}
    out = os.path.join(HERE, "scratch" if args.quick else "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "lsp.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    k, full = lsp["keystroke"], local["full_check"]
    print(f"{args.offers} offers in {len(files)} files; {k['count']} edits of {EDITED}")
    print(f"keystroke → diagnostics over LSP: median {k['median_ms']} ms, p90 {k['p90_ms']} ms, max {k['max_ms']} ms")
    for what, key in (("in a category's cap", "keystroke_in_a_category"), ("in a let", "keystroke_in_a_let")):
        o = lsp[key]
        print(f"a keystroke {what}: median {o['median_ms']} ms, p90 {o['p90_ms']} ms, max {o['max_ms']} ms")
    print(f"first check on open (every file parsed): {lsp['open_first_check_ms']} ms")
    print("requests, median ms:", {k: v["median_ms"] for k, v in lsp["requests"].items()})
    print(f"in process: full check median {full['median_ms']} ms; one file changed median "
          f"{local['one_file_changed']['median_ms']} ms")
    print("goals:", report["goals"])


if __name__ == "__main__":
    main()
