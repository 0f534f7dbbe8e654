"""OpenTelemetry tracing (`--trace`): a span per call, parented by the caller's W3C
traceparent, and spans for a decision's stages. Imported only with tracing on.

Spans carry the method, the status code and the request id; no attribute values, contact
ids or offers: a trace store is rarely held to the rules the profile store is."""
from __future__ import annotations

import os
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import telemetry


def start(config):
    """(provider, tracer): the config's own provider (tests), or one exporting as the
    standard OTEL_* variables say (checked at start by telemetry.check)."""
    provider = config.trace_provider
    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # the SDK reads OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and OTEL_BSP_* itself
        provider = TracerProvider(resource=Resource.create(
            {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "offerd"}))
        name = telemetry.exporter_name()
        if name == "otlp":
            import importlib

            provider.add_span_processor(BatchSpanProcessor(importlib.import_module(
                telemetry.otlp_module()).OTLPSpanExporter()))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        # none: spans are made and dropped (what tracing costs without its export)
    return provider, provider.get_tracer("offerd")


def begin(tracer, name: str, metadata, request_id: str):
    """The call's span, parented by a traceparent in the call's `metadata`; not made current
    here: `attach` does, around each step of the call in the task that runs it."""
    carrier = {}  # gRPC's metadata keys are lower case, as the propagator looks them up
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            carrier[key] = value
    service, _, method = name.rpartition("/")
    return tracer.start_span(name, context=extract(carrier) if carrier else None, kind=SpanKind.SERVER,
                             attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                                         "offerd.request_id": request_id})


def attach(span):
    """Make `span` current; give the token to `detach` in the same task, before any yield (a
    stream the client left is closed in another task, whose context never had it)."""
    return otel_context.attach(trace.set_span_in_context(span))


detach = otel_context.detach


def end(span, code: str) -> None:
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", _NUMBERS[code])
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
    span.end()


def _numbers() -> dict[str, int]:
    import grpc

    return {c.name: c.value[0] for c in grpc.StatusCode}


_NUMBERS = _numbers()


def stages(tracer, engine, store, decisions) -> None:
    """Spans for a decision's stages, by wrapping this server's engine, store and decision
    service (their instances, not their classes: an untraced server beside it pays nothing):
    offerd.convert_request, offerd.decide (profile and history read, rules, arbitration,
    content), offerd.store_write (the write, until its group commit), offerd.convert_response.
    A call whose span is not sampled makes none: one check each."""
    from . import convert
    from .metrics import LATENCY
    from .services import _decide, counted

    span, current = tracer.start_as_current_span, trace.get_current_span
    prepare = engine._prepare

    def traced_prepare(*args, **kw):
        if not current().is_recording():
            return prepare(*args, **kw)
        with span("offerd.decide"):
            return prepare(*args, **kw)

    engine._prepare = traced_prepare
    for method in ("record_decision_async", "report_async", "put_profiles_async"):
        setattr(store, method, _write(span, current, getattr(store, method)))

    async def decide(engine, request):
        if not current().is_recording():
            return await _decide(engine, request)
        t = time.perf_counter()
        with span("offerd.convert_request"):
            req = convert.request(request)
        d = await engine.decide_async(req)
        LATENCY.observe(time.perf_counter() - t)
        counted(req, d)
        with span("offerd.convert_response"):
            return convert.response(d, request.request_id)

    decisions.decide_one = decide


def _write(span, current, fn):
    async def write(*args, **kw):
        if not current().is_recording():
            return await fn(*args, **kw)
        with span("offerd.store_write"):
            return await fn(*args, **kw)
    return write
