#!/usr/bin/env python3
"""Profile codec benchmark: offerd.store's profile codec against JSON and pickle.

Decode and encode time (ns per profile, median of several repeats) and encoded size for a
realistic 8-attribute profile (string, int, float, bool, date, set of 3 strings, ...) and a
40-attribute one. JSON's figures include the conversions needed to get the same typed values
back (date from an ISO string, frozenset from a list, tuple from a list), driven by the
schema, which is the cheapest way JSON can do it. pickle (protocol 5) is a reference point
only: unpickling runs arbitrary code, so it is unsafe for stored data.

    .venv/bin/python benchmarks/codec.py            # writes benchmarks/results/codec.{md,json}
    .venv/bin/python benchmarks/codec.py --quick    # fewer loops; writes benchmarks/scratch/
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pickle
import platform
import random
import statistics
import sys
import time

from offerd.store.decode import decode_attrs
from offerd.store.encode import encode_attrs

HERE = os.path.dirname(os.path.abspath(__file__))
perf_ns = time.perf_counter_ns


def profile_8() -> dict:
    return {"first_name": "Zoë", "age": 42, "cart_total": 123.45, "vip": True,
            "signup_date": datetime.date(2019, 5, 17),
            "interests": frozenset({"sports", "travel", "premium"}),
            "country": "FR", "churn_score": 0.0731}


def profile_40(seed: int = 1) -> dict:
    rnd = random.Random(seed)
    words = ["FR", "premium", "Zoë Martin", "mobile", "ios-17.2", "newsletter", "Lyon",
             "fr-FR", "gold", "checkout"]
    p: dict = {}
    for i in range(12):
        p[f"str_attr_{i:02d}"] = rnd.choice(words)
    for i in range(10):
        p[f"int_attr_{i:02d}"] = rnd.randint(0, 100_000)
    for i in range(7):
        p[f"float_attr_{i:02d}"] = round(rnd.uniform(0, 1000), 2)
    for i in range(5):
        p[f"flag_{i:02d}"] = rnd.random() < 0.5
    for i in range(3):
        p[f"date_{i:02d}"] = datetime.date(2020, 1, 1) + datetime.timedelta(rnd.randint(0, 2000))
    for i in range(2):
        p[f"tags_{i:02d}"] = frozenset(rnd.sample(["sports", "travel", "premium", "news", "kids",
                                                   "music", "food"], 3))
    p["recent_orders"] = (rnd.randint(0, 999), rnd.randint(0, 999), rnd.randint(0, 999))
    assert len(p) == 40
    return p


# --- JSON, with the schema-driven conversions back to the codec's types ---------------------

def json_codec(profile: dict):
    """encode and decode functions for JSON: dates as ISO strings, sets (sorted) and tuples as
    lists; decode converts back using the keys' types, as a schema would give them."""
    date_keys = [k for k, v in profile.items() if type(v) is datetime.date]
    set_keys = [k for k, v in profile.items() if type(v) is frozenset]
    tuple_keys = [k for k, v in profile.items() if type(v) is tuple]
    assert not any(type(x) is datetime.date for v in profile.values() if type(v) is tuple
                   for x in v)
    fromiso = datetime.date.fromisoformat
    loads = json.loads

    def default(v):
        if type(v) is datetime.date:
            return v.isoformat()
        if type(v) is frozenset:
            return sorted(v)
        raise TypeError(type(v).__name__)

    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=default).encode

    def encode(p: dict) -> bytes:
        return enc(p).encode("utf-8")

    def decode(b: bytes) -> dict:
        d = loads(b)
        for k in date_keys:
            v = d.get(k)
            if v is not None:
                d[k] = fromiso(v)
        for k in set_keys:
            v = d.get(k)
            if v is not None:
                d[k] = frozenset(v)
        for k in tuple_keys:
            v = d.get(k)
            if v is not None:
                d[k] = tuple(v)
        return d

    return encode, decode


def pickle_codec():
    dumps, loads = pickle.dumps, pickle.loads
    return (lambda p: dumps(p, 5)), loads


# --- timing ----------------------------------------------------------------------------------

def time_ns(fn, arg, loops: int, repeats: int) -> tuple[float, float]:
    """Median and minimum ns per call over `repeats` blocks of `loops` calls."""
    per = []
    for _ in range(repeats):
        gc.collect()
        t0 = perf_ns()
        for _ in range(loops):
            fn(arg)
        per.append((perf_ns() - t0) / loops)
    return statistics.median(per), min(per)


def run(loops: int, repeats: int) -> dict:
    results = {}
    for name, profile in (("8 attributes", profile_8()), ("40 attributes", profile_40())):
        codecs = {
            "offerd codec": (encode_attrs, decode_attrs),
            "json + conversions": json_codec(profile),
            "pickle 5 (unsafe, reference only)": pickle_codec(),
        }
        encoded = {}
        for cname, (enc, dec) in codecs.items():
            data = enc(profile)
            back = dec(data)
            assert back == profile, (cname, back)
            assert all(type(back[k]) is type(v) for k, v in profile.items()), cname
            encoded[cname] = data
        rows = {cname: {"bytes": len(encoded[cname])} for cname in codecs}
        # interleaved rounds: each round times every codec once, so noise hits all alike
        samples = {c: {"decode": [], "encode": []} for c in codecs}
        for _ in range(repeats):
            for cname, (enc, dec) in codecs.items():
                samples[cname]["decode"].append(time_ns(dec, encoded[cname], loops, 1)[0])
                samples[cname]["encode"].append(time_ns(enc, profile, loops, 1)[0])
        for cname in codecs:
            for op in ("decode", "encode"):
                s = samples[cname][op]
                rows[cname][f"{op}_ns"] = statistics.median(s)
                rows[cname][f"{op}_min_ns"] = min(s)
        base = rows["offerd codec"]
        for cname, r in rows.items():
            r["decode_vs_offerd"] = r["decode_ns"] / base["decode_ns"]
            r["encode_vs_offerd"] = r["encode_ns"] / base["encode_ns"]
            r["bytes_vs_offerd"] = r["bytes"] / base["bytes"]
        results[name] = rows
    return results


def table(results: dict) -> str:
    lines = []
    for name, rows in results.items():
        lines += [f"### {name}", "",
                  "| codec | decode ns | x offerd | encode ns | x offerd | bytes | x offerd |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for cname, r in rows.items():
            lines.append(f"| {cname} | {r['decode_ns']:,.0f} | {r['decode_vs_offerd']:.2f} | "
                         f"{r['encode_ns']:,.0f} | {r['encode_vs_offerd']:.2f} | {r['bytes']} | "
                         f"{r['bytes_vs_offerd']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer loops; writes to scratch/")
    ap.add_argument("--loops", type=int, default=None, help="calls per timed block")
    ap.add_argument("--repeats", type=int, default=None, help="timed blocks per figure")
    args = ap.parse_args(argv)
    loops = args.loops or (2_000 if args.quick else 20_000)
    repeats = args.repeats or (3 if args.quick else 9)
    load0 = os.getloadavg()
    results = run(loops, repeats)
    load1 = os.getloadavg()
    note = ("Times are the median ns per call over interleaved blocks of "
            f"{loops:,} calls ({repeats} blocks). JSON includes converting dates (ISO strings), "
            "sets and tuples (lists) back, by the schema. pickle is a reference point only: "
            "it is unsafe for stored data (unpickling runs arbitrary code).")
    md = "\n".join([
        "# Profile codec benchmark", "",
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end.",
        "", note, "", table(results)])
    print(md)
    out_dir = os.path.join(HERE, "scratch" if args.quick else "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "codec.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "codec.json"), "w") as f:
        json.dump({"python": sys.version, "machine": platform.machine(),
                   "cpus": os.cpu_count(), "loadavg": [load0, load1],
                   "loops": loops, "repeats": repeats, "note": note,
                   "results": results}, f, indent=2)
        f.write("\n")
    print(f"wrote {out_dir}/codec.md and codec.json")


if __name__ == "__main__":
    main()
