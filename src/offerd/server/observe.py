"""Every call of every service observed: its time and status code counted (offerd_rpc_*),
and, when asked for, a span (tracing.py) and an access log line.

Each servicer's methods are wrapped once, before the servicer is added to the server: a
call costs one more coroutine (or async generator) and a few additions in memory, flushed
to the metrics every second, rather than a grpc.aio interceptor's handler lookup and
wrapping per call (benchmarks/results/
observability.md). Which wrapper a method gets is chosen here, at start: with tracing and
the access log off, nothing of theirs runs per call.

A unary request that is not its method's message (guard.py) is refused inside these
wrappers, so it is counted, logged and traced like any call; the wrappers never touch a
call's context after its handler returned or was left: a stream the client abandoned is
closed later by the event loop, when gRPC's call is gone."""
from __future__ import annotations

import asyncio
import functools
from bisect import bisect_left
import inspect
import logging
import re
import secrets
import time

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError

from .guard import refusing
from .metrics import RPC_CALLS, RPC_MESSAGES, RPC_SECONDS

access = logging.getLogger("offerd.access")
log = logging.getLogger("offerd.server")
_perf = time.perf_counter
FLUSH_SECONDS = 1.0  # how often the calls counted in memory reach the metrics (and a scrape)
FLUSH_ERRORS_EVERY = 60.0  # seconds: the most one line per this long about flushes that failed


def _code(e: BaseException, context, deadline: float | None = None) -> str:
    """The status a call that raised `e` ends with (`deadline`: a stream's, on the monotonic
    clock, read at its start)."""
    if isinstance(e, grpc.aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else _by_number.get(code, "UNKNOWN")
    if isinstance(e, asyncio.CancelledError):  # the client cancelled, left, or its deadline passed
        remaining = context.time_remaining()  # (the call is still there: its task is being cancelled)
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    if isinstance(e, GeneratorExit):  # a stream the client left (or its deadline ended) while an answer
        # waited to be sent, closed later by the event loop, when the call is gone: its context untouched
        return "DEADLINE_EXCEEDED" if deadline is not None and time.monotonic() >= deadline else "CANCELLED"
    if isinstance(e, DecodeError):  # a streamed request not the message: guard.py answers INVALID_ARGUMENT
        return "INVALID_ARGUMENT"
    return "UNKNOWN"  # what grpc answers for an exception a handler let out


_by_number = {c.value[0]: c.name for c in grpc.StatusCode}


def _deadline(context) -> float | None:
    """A call's deadline on the monotonic clock; None: it has none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _ended(context) -> str:
    """The status of a call that streams requests or answers and whose handler returned: its
    deadline may have passed, which ends its request stream as if the client had closed it."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "OK"


# A caller's id goes into trailing metadata, log lines and spans: only 1-128 printable ASCII
# characters, no spaces (a newline would forge log lines; other bytes are illegal metadata,
# which gRPC would answer INTERNAL after the decision was made).
_USABLE_ID = re.compile(r"[!-~]{1,128}").fullmatch


def _request_id(metadata, request) -> str:
    """The call's x-request-id metadata, or the DecideRequest's request_id, if usable; else a
    new one. (A request that is not its message, guard.NotAMessage, has no request_id.)"""
    for key, value in metadata or ():
        if key == "x-request-id":
            if isinstance(value, str) and _USABLE_ID(value):
                return value
            break
    got = getattr(request, "request_id", None)
    return got if isinstance(got, str) and _USABLE_ID(got) else secrets.token_hex(8)


class Observer:
    """Wraps servicers' methods (`observer(servicer, "offerd.v1.DecisionService")` returns the
    servicer, its methods wrapped). With config.trace, also makes the decisions' stages spans
    (`stages`); `close()` flushes the spans at a stop."""

    def __init__(self, config):
        self.tracer = self.provider = None
        if config.trace:
            from . import tracing

            self.provider, self.tracer = tracing.start(config)
        self.log = access if config.access_log else None
        self.tallies: list[_Tally] = []
        self.flusher = asyncio.get_running_loop().create_task(self._flush_every(FLUSH_SECONDS))

    async def _flush_every(self, seconds: float) -> None:
        quiet_until = 0.0
        while True:
            await asyncio.sleep(seconds)
            try:
                self.flush()
            except Exception:  # a full disk under multiprocess files, say: counting goes on, and so do flushes
                now = time.monotonic()
                if now >= quiet_until:
                    quiet_until = now + FLUSH_ERRORS_EVERY
                    log.exception("metrics: cannot add the calls counted to the metrics (tried again every "
                                  "%g s; logged at most once every %g s)", seconds, FLUSH_ERRORS_EVERY)

    def flush(self) -> None:
        for tally in self.tallies:
            tally.flush()

    def stages(self, engine, store, decisions) -> None:
        if self.tracer is not None:
            from . import tracing

            tracing.stages(self.tracer, engine, store, decisions)

    def close(self) -> None:
        self.flusher.cancel()
        try:
            self.flush()
        except Exception:  # the stop goes on: the store is closed already, the spans still exported
            log.exception("metrics: cannot add the last calls counted to the metrics")
        if self.provider is not None:
            self.provider.shutdown()

    def __call__(self, servicer, service: str):
        short = service.rpartition(".")[2]
        for m in descriptor_pool.Default().FindServiceByName(service).methods:
            fn, name = getattr(servicer, m.name), f"{service}/{m.name}"
            refuses = not m.client_streaming  # a unary request may be a guard.NotAMessage
            if refuses and not getattr(fn, "refuses_not_a_message", False):
                fn = refusing(fn, name)  # inside: observed like any call; no wrapper below sees one
            full = self.tracer is not None or self.log is not None
            if m.server_streaming and not inspect.isasyncgenfunction(fn):
                wrap = _written  # Health's Watch: a coroutine writing its stream with context.write
            elif m.server_streaming:
                wrap = _full_stream if full else _stream
            elif m.client_streaming:
                wrap = _full_unary_in if full else _unary_in
            else:
                wrap = _full_unary if full else _unary
            self.tallies.append(_Tally(short, m.name))
            wrapped = wrap(fn, self, self.tallies[-1], name, m.client_streaming)
            if refuses:
                wrapped.refuses_not_a_message = True  # guard.py: wraps it no further
            setattr(servicer, m.name, wrapped)
        return servicer


class _Tally:
    """One method's calls since the last flush, counted in memory: in multiprocess mode
    (--workers > 1 with --metrics) every metric update is a locked write to a mapped file,
    three per call, which cost a dry-run Decide 4% more instructions; a flush a second
    writes only what changed. Only the event loop's thread touches it."""

    def __init__(self, service: str, method: str):
        self.service, self.method = service, method
        self.seconds = RPC_SECONDS.labels(service, method)
        self.bounds = tuple(self.seconds._upper_bounds)  # prometheus_client's own, +Inf last
        self.buckets = [0] * len(self.bounds)
        self.sum = 0.0
        self.codes: dict[str, int] = {}
        self.received = self.sent = 0
        RPC_CALLS.labels(service, method, "OK")  # the series exists, at 0, from the start

    def add(self, seconds: float, code: str) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds, as observe()
        self.sum += seconds
        self.codes[code] = self.codes.get(code, 0) + 1

    def flush(self) -> None:
        if not self.codes and not self.received and not self.sent:
            return
        buckets, codes, total = self.buckets, self.codes, self.sum
        self.buckets, self.codes, self.sum = [0] * len(self.bounds), {}, 0.0
        for i, n in enumerate(buckets):
            if n:
                self.seconds._buckets[i].inc(n)
        self.seconds._sum.inc(total)
        for code, n in codes.items():
            RPC_CALLS.labels(self.service, self.method, code).inc(n)
        for direction in ("received", "sent"):
            n = getattr(self, direction)
            if n:
                setattr(self, direction, 0)
                RPC_MESSAGES.labels(self.service, self.method, direction).inc(n)


async def _counted(requests, box: list):
    async for message in requests:
        box[0] += 1
        yield message


# --- metrics only ---------------------------------------------------------------------

def _unary(fn, _observer, tally, _name, _streams_in):
    add = tally.add

    @functools.wraps(fn)
    async def call(request, context):
        t = _perf()
        try:
            reply = await fn(request, context)
        except BaseException as e:
            add(_perf() - t, _code(e, context))
            raise
        add(_perf() - t, "OK")
        return reply
    return call


def _unary_in(fn, _observer, tally, _name, _streams_in):

    @functools.wraps(fn)
    async def call(requests, context):
        t, box, code = _perf(), [0], "OK"
        try:
            reply = await fn(_counted(requests, box), context)
            code = _ended(context)
            return reply
        except BaseException as e:
            code = _code(e, context)
            raise
        finally:
            tally.add(_perf() - t, code)
            tally.received += box[0]
    return call


def _stream(fn, _observer, tally, _name, streams_in):

    @functools.wraps(fn)
    async def call(request, context):
        t, box, sent, code = _perf(), [0], 0, "OK"
        deadline = _deadline(context)
        inner = fn(_counted(request, box) if streams_in else request, context)
        try:
            async for reply in inner:
                sent += 1
                yield reply
            code = _ended(context)
        except BaseException as e:
            code = _code(e, context, deadline)
            await inner.aclose()  # left at a yield (GeneratorExit): its own cleanup now, not at its collection
            raise
        finally:
            tally.add(_perf() - t, code)
            tally.received += box[0]
            tally.sent += sent
    return call


# --- with a span and/or an access log line ------------------------------------------------

class _Call:
    """What the full wrappers keep of a call between its start and its end: everything they
    need of its context is read at the start (a stream the client left ends after its call)."""

    __slots__ = ("t", "id", "peer", "span")

    def __init__(self, observer: Observer, name: str, request, context):
        self.t = _perf()
        metadata = context.invocation_metadata()
        self.id = _request_id(metadata, request)
        context.set_trailing_metadata((("x-request-id", self.id),))
        self.peer = context.peer() if observer.log is not None else ""
        self.span = None
        if observer.tracer is not None:
            from .tracing import begin

            self.span = begin(observer.tracer, name, metadata, self.id)

    def attach(self):
        """The span made current (None without one): detach it in the same task, before a yield."""
        if self.span is None:
            return None
        from .tracing import attach

        return attach(self.span)

    def end(self, observer: Observer, tally: _Tally, name: str, code: str, token=None) -> None:
        seconds = _perf() - self.t
        tally.add(seconds, code)
        if self.span is not None:
            from .tracing import detach, end

            if token is not None:
                detach(token)
            end(self.span, code)
        if observer.log is not None:
            observer.log.info("%s %s %.2f ms peer=%s request_id=%s", name, code, seconds * 1e3, self.peer,
                              self.id, extra={"access": {"method": name, "code": code, "ms": round(seconds * 1e3, 3),
                                                         "peer": self.peer, "request_id": self.id}})


def _full_unary(fn, observer, tally, name, _streams_in):

    @functools.wraps(fn)
    async def call(request, context):
        c, code = _Call(observer, name, request, context), "OK"
        token = c.attach()
        try:
            return await fn(request, context)
        except BaseException as e:
            code = _code(e, context)
            raise
        finally:
            c.end(observer, tally, name, code, token)
    return call


def _full_unary_in(fn, observer, tally, name, _streams_in):

    @functools.wraps(fn)
    async def call(requests, context):
        c, box, code = _Call(observer, name, None, context), [0], "OK"
        token = c.attach()
        try:
            reply = await fn(_counted(requests, box), context)
            code = _ended(context)
            return reply
        except BaseException as e:
            code = _code(e, context)
            raise
        finally:
            tally.received += box[0]
            c.end(observer, tally, name, code, token)
    return call


def _full_stream(fn, observer, tally, name, streams_in):

    @functools.wraps(fn)
    async def call(request, context):
        c = _Call(observer, name, None if streams_in else request, context)
        deadline = _deadline(context)
        box, sent, code = [0], 0, "OK"
        inner = fn(_counted(request, box) if streams_in else request, context)
        try:
            while True:
                token = c.attach()  # the span current while the handler runs, not across the yield
                try:
                    reply = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    if token is not None:
                        from .tracing import detach

                        detach(token)
                sent += 1
                yield reply
            code = _ended(context)
        except BaseException as e:
            code = _code(e, context, deadline)
            await inner.aclose()  # left at a yield (GeneratorExit): its own cleanup now, not at its collection
            raise
        finally:
            tally.received += box[0]
            tally.sent += sent
            c.end(observer, tally, name, code)
    return call


class _Writes:
    """A call's context whose write() counts the messages written (Health's Watch)."""

    __slots__ = ("context", "sent")

    def __init__(self, context):
        self.context, self.sent = context, 0

    async def write(self, message) -> None:
        await self.context.write(message)
        self.sent += 1

    def __getattr__(self, name: str):
        return getattr(self.context, name)


def _written(fn, observer, tally, name, _streams_in):
    """A server stream written with context.write (Health's Watch), in either mode: rare calls."""
    full = observer.tracer is not None or observer.log is not None

    @functools.wraps(fn)
    async def call(request, context):
        t, c, writes, code = _perf(), None, _Writes(context), "OK"
        if full:
            c = _Call(observer, name, request, context)
        token = c.attach() if c is not None else None
        try:
            return await fn(request, writes)
        except BaseException as e:
            code = _code(e, context)
            raise
        finally:
            tally.sent += writes.sent
            if c is not None:
                c.end(observer, tally, name, code, token)
            else:
                tally.add(_perf() - t, code)
    return call
