#!/usr/bin/env python3
"""What server/guard.py adds to a valid call, in instructions counted by callgrind: a
DecideRequest parsed and handed to a Decide-shaped coroutine (services.mapped, as offerd's
unary methods are), as grpc.aio does it, plain (the generated handler) and guarded; and a
DecideStream-shaped call's parse per message.

Each variant runs twice under callgrind, with N and 4N calls after the same set-up; the
difference over 3N is one call's work, set-up and interpreter start cancelled out.

    .venv/bin/python benchmarks/guard.py [--json FILE]"""
from __future__ import annotations

import argparse
import json
import os
import sys

N = 2000
VARIANTS = ("unary plain", "unary guarded", "streamed parse plain", "streamed parse guarded")


def _inner(variant: str, calls: int) -> None:
    from offerd.server.guard import Refusals, guarded
    from offerd.server.services import mapped
    from offerd.v1 import offerd_pb2 as pb
    from offerd.v1 import offerd_pb2_grpc as rpc

    class Servicer(rpc.DecisionServiceServicer):
        @mapped  # as every offerd unary method: it refuses NotAMessage itself, the guard adds no frame
        async def Decide(self, request, context):
            return request.request_id

        DecideBatch = Record = Schema = Decide  # guard.py refuses to register the base class's sync stubs

    class Capture:  # takes what the generated add_..._to_server registers
        def add_generic_rpc_handlers(self, handlers):
            pass

        def add_registered_method_handlers(self, service, handlers):
            self.handlers = handlers

    plain = Capture()
    rpc.add_DecisionServiceServicer_to_server(Servicer(), plain)
    shield = Capture()
    rpc.add_DecisionServiceServicer_to_server(Servicer(), guarded(shield, Refusals(), streams_answered=True))
    handlers = (shield if variant.endswith("guarded") else plain).handlers
    request = pb.DecideRequest(spaces=["web_home"], contact=pb.Contact(id="c1"), dry_run=True, request_id="r",
                               attributes={"age": pb.Value(int_value=30)},
                               context={"page": pb.Value(string_value="home")}).SerializeToString()
    if variant.startswith("unary"):
        handler = handlers["Decide"]
        parse, behaviour = handler.request_deserializer, handler.unary_unary
        for _ in range(calls):
            coro = behaviour(parse(request), None)
            try:
                coro.send(None)
            except StopIteration:
                pass
    else:
        parse = handlers["DecideStream"].request_deserializer
        for _ in range(calls):
            parse(request)


def _count(variant: str, calls: int) -> int:
    from instructions import callgrind  # beside this file: the script's folder is on the path

    return callgrind([sys.executable, os.path.abspath(__file__), "--inner", variant, str(calls)],
                     f"guard.py: {variant}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE (JSON)")
    ap.add_argument("--inner", nargs=2, metavar=("VARIANT", "CALLS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        return _inner(args.inner[0], int(args.inner[1]))
    figures = {}
    for variant in VARIANTS:
        figures[variant] = round((_count(variant, 4 * N) - _count(variant, N)) / (3 * N))
        print(f"{variant:24} {figures[variant]:>8,} instructions per call", flush=True)
    for kind in ("unary", "streamed parse"):
        print(f"{kind}: the guard adds {figures[kind + ' guarded'] - figures[kind + ' plain']:,}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
