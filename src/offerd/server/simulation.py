"""AdminService.Simulate: a catalog version run over a population sent in the call, in a
thread of this worker, its progress and then its report streamed back."""
from __future__ import annotations

import asyncio
import json
import threading

import grpc

from .. import lang
from ..engine import BadRequest, NoCatalog
from ..lang.diagnostics import CatalogError
from ..lang.values import InputError, check_attributes
from ..store import Store
from ..v1 import offerd_pb2 as pb
from . import convert
from .status import code_of, fit, version_hash


class _Stopped(Exception):
    """The client went away: the simulation stops at its next progress report."""


def _simulation_inputs(store: Store, request):
    """(catalog, rows, total, time, context, label) of a SimulateRequest; BadRequest or NotFound."""
    import datetime

    from ..offline.population import parse_json_line

    if request.hash:
        files = store.version(store.resolve(version_hash(request.hash)))
    else:
        live = store.live()
        if live is None:
            raise NoCatalog("no catalog is live: deploy one, or name a saved version")
        files = live[1]
    catalog = lang.check(files)
    label = next((v["label"] for v in store.versions() if v["hash"] == catalog.hash), "")  # as deployed
    if not request.spaces:
        raise BadRequest("a simulation names at least one space")
    try:
        text = request.population.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the population is not UTF-8: {e.reason} at byte {e.start}") from None
    lines = text.split("\n")  # as files are read: U+2028 and the like may sit inside a JSON string
    if lines and lines[-1] == "":
        lines.pop()
    rows = (r for r in (parse_json_line(i, line, catalog.contact, catalog.domains, catalog.context)
                        for i, line in enumerate(lines, 1)) if r is not None)
    try:
        ctx = json.loads(request.context_json) if request.context_json else {}
        if not isinstance(ctx, dict):
            raise BadRequest("context_json must be a JSON object")
        ctx = check_attributes(catalog.context, ctx, "context", catalog.domains)
    except (ValueError, InputError) as e:
        raise BadRequest(f"context_json: {e}") from None
    at = convert.time_of(request.time_us) or datetime.datetime.now(datetime.timezone.utc)
    return catalog, rows, len(lines), at, ctx, label


async def simulate_rpc(store: Store, request, context):
    """AdminService.Simulate: the simulation runs in a thread of this worker (one process:
    a server does not fork), progress goes out about twice a second, then the report."""
    from ..offline.simulate import simulate

    try:
        catalog, rows, total, at, ctx, label = await asyncio.to_thread(_simulation_inputs, store, request)
    except CatalogError as e:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(str(e)))
    except Exception as e:
        await context.abort(code_of(e), fit(str(e)))
    loop, queue, stop, last = asyncio.get_running_loop(), asyncio.Queue(), threading.Event(), [None]

    def progress(done, total_, seconds):
        if stop.is_set():
            raise _Stopped()
        if last[0] is None or seconds - last[0] >= 0.5 or done >= (total_ or 0):  # the first, then twice a second
            last[0] = seconds
            loop.call_soon_threadsafe(queue.put_nowait, pb.SimulateReply(progress=pb.SimulateProgress(
                done=done, total=total_ or 0, seconds=seconds)))

    def work():
        try:
            report = simulate(catalog, list(request.spaces), rows, at, workers=1, caps=not request.ignore_caps,
                              context=ctx, total=total, progress=progress, label=label)
            item = pb.SimulateReply(report_json=json.dumps(report.to_json()))
        except Exception as e:  # a bad space, or the client gone
            item = e
        loop.call_soon_threadsafe(queue.put_nowait, item)

    loop.run_in_executor(None, work)  # it ends by itself: with the report, or at `stop`
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Stopped):
                return
            if isinstance(item, Exception):
                code = grpc.StatusCode.INVALID_ARGUMENT if isinstance(item, ValueError) else code_of(item)
                await context.abort(code, fit(str(item)))
            yield item
            if item.HasField("report_json"):
                return
    finally:
        stop.set()  # the client cancelled, or it is over: the thread stops at its next report
