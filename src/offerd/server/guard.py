"""Requests that are not the message their method takes: refused INVALID_ARGUMENT with a
message naming the method, counted, and logged at most once a minute however many come.

grpc.aio parses a request before any of our code runs, and a DecodeError there becomes
UNKNOWN plus a traceback in the log: one connected client could fill the disk. `guarded`
wraps each method's request parser so that a failure becomes a `NotAMessage` value (a
unary request) which the wrapped method turns into the status; a streamed request's parser
still raises DecodeError, which our stream methods answer themselves (`streams_answered`)
or, for other services, a wrapper does. A handler that cannot be guarded (a sync one) is
refused at registration: none is left to answer UNKNOWN."""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time

import grpc
from google.protobuf.message import DecodeError

from .metrics import ERRORS
from .status import fit

log = logging.getLogger("offerd.server")
LOG_EVERY = 60.0  # seconds: the most one refusal line per this long, with a count of the others


class NotAMessage:
    """What a unary request's parser returns for bytes that are not the message."""
    __slots__ = ("method", "text")

    def __init__(self, method: str, text: str):
        self.method, self.text = method, text


class Refusals:
    """The first refusal is logged at once; those after it within `every` seconds are
    counted per method and logged as one line when the interval ends (and again each
    interval while they keep coming)."""

    def __init__(self, every: float = LOG_EVERY):
        self.every = every
        self.counts: collections.Counter = collections.Counter()
        self.quiet_until = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def note(self, method: str, text: str) -> None:
        now = time.monotonic()
        if now < self.quiet_until or self.counts:
            self.counts[method] += 1
            if now >= self.quiet_until:  # no timer ran (no event loop): flushed by the next one
                self.flush()
            return
        log.warning("refused: %s (more of these within %g s are counted, then logged as one line)",
                    text, self.every)
        self._quiet(now)

    def _quiet(self, now: float) -> None:
        self.quiet_until = now + self.every
        try:
            self.timer = asyncio.get_running_loop().call_later(self.every, self.flush)
        except RuntimeError:  # no loop (a sync server): the next refusal after the interval flushes
            self.timer = None

    def flush(self, again: bool = True) -> None:
        """Log what was counted since the last line: at each interval's end (`again`: and
        wait for another), and at a stop."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.counts:
            return
        total, counts = sum(self.counts.values()), self.counts
        self.counts = collections.Counter()
        log.warning("refused %d more requests that were not valid messages (%s)", total,
                    ", ".join(f"{m} {n}" for m, n in counts.most_common()))
        if again:
            self._quiet(time.monotonic())


def guarded(server, refusals: Refusals, streams_answered: bool = False):
    """A stand-in for `server` to give a generated `add_..._to_server` function: the method
    handlers it registers are guarded. `streams_answered`: the service's streaming methods
    catch DecodeError from their request iterator themselves (ours do, naming the message's
    position in the stream)."""
    return _Guarded(server, refusals, streams_answered)


class _Guarded:
    def __init__(self, server, refusals: Refusals, streams_answered: bool):
        self.server, self.refusals, self.streams_answered = server, refusals, streams_answered

    def guard(self, path: str, handler):
        if handler is None or handler.request_deserializer is None:
            return handler
        method = path.lstrip("/")
        parse = handler.request_deserializer
        name = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        name = name.name if name is not None else "request"
        refusals = self.refusals

        if not handler.request_streaming:
            def read(data: bytes):
                try:
                    return parse(data)
                except Exception as e:  # DecodeError; anything else a parser raises means the same
                    text = f"{method}: the request is not a valid {name} message: {e}"
                    refusals.note(method, text)
                    return NotAMessage(method, text)

            kind = "unary_stream" if handler.response_streaming else "unary_unary"
            behaviour = getattr(handler, kind)
            if not getattr(behaviour, "refuses_not_a_message", False):  # mapped's and observe's do, a frame less
                behaviour = refusing(behaviour, method)
            return handler._replace(request_deserializer=read, **{kind: behaviour})

        def read_streamed(data: bytes):
            try:
                return parse(data)
            except Exception as e:
                refusals.note(method, f"{method}: a message of the stream is not a valid {name} message: {e}")
                if isinstance(e, DecodeError):
                    raise
                raise DecodeError(str(e)) from e

        if self.streams_answered:
            return handler._replace(request_deserializer=read_streamed)
        kind = "stream_stream" if handler.response_streaming else "stream_unary"
        behaviour = _answering(getattr(handler, kind), method, name)
        return handler._replace(request_deserializer=read_streamed, **{kind: behaviour})

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.server.add_registered_method_handlers(
            service, {m: self.guard(f"/{service}/{m}", h) for m, h in handlers.items()})

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(tuple(_GuardedGeneric(self, h) for h in handlers))


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, guard: _Guarded, inner):
        self.guarded, self.inner, self.done = guard, inner, {}  # done: method → (handler, guarded)

    def service(self, details):
        handler = self.inner.service(details)
        if handler is None:
            return None
        done = self.done.get(details.method)
        if done is None or done[0] is not handler:  # one entry per method served (made-up ones get None above)
            done = self.done[details.method] = (handler, self.guarded.guard(details.method, handler))
        return done[1]


async def refuse(context, request: NotAMessage):
    """End the call INVALID_ARGUMENT: its request was not the method's message."""
    ERRORS.labels(request.method.rpartition("/")[2], "INVALID_ARGUMENT").inc()
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, fit(request.text))


def refusing(behaviour, method: str):
    """`behaviour` (a coroutine function, or an async generator function) with a NotAMessage
    request refused first. Health's Watch is a coroutine that writes its stream with
    context.write. TypeError for any other: a handler left unguarded would answer UNKNOWN."""
    if inspect.iscoroutinefunction(behaviour):
        async def unary(request, context):
            if request.__class__ is NotAMessage:
                await refuse(context, request)
            return await behaviour(request, context)
        return unary
    if inspect.isasyncgenfunction(behaviour):
        async def stream(request, context):
            if request.__class__ is NotAMessage:
                await refuse(context, request)
            inner = behaviour(request, context)
            try:
                async for reply in inner:
                    yield reply
            finally:  # closed at a yield (a client that left): the handler's own cleanup now
                await inner.aclose()
        return stream
    raise TypeError(f"{method}: its handler {behaviour!r} is neither a coroutine function nor an async "
                    "generator function, so requests that are not its message cannot be refused")


def _answering(behaviour, method: str, name: str):
    """A stream-stream `behaviour` (reflection's) whose DecodeError, from its request
    iterator, ends the call INVALID_ARGUMENT; TypeError for any other."""
    async def refuse_stream(context, e):
        await refuse(context, NotAMessage(method, f"{method}: a message of the stream is not a valid {name} "
                                                  f"message: {e}"))

    if inspect.isasyncgenfunction(behaviour):
        async def stream(requests, context):
            inner = behaviour(requests, context)
            try:
                async for reply in inner:
                    yield reply
            except DecodeError as e:
                await refuse_stream(context, e)
            finally:  # closed at a yield (a client that left): the handler's own cleanup now
                await inner.aclose()
        return stream
    raise TypeError(f"{method}: only an async generator function's streamed requests can be answered here; "
                    "its servicer must catch DecodeError itself (streams_answered)")
