"""The observability settings of `offerd serve`: tracing and the access log, as flags and
environment variables, checked before any worker starts (no gRPC or OpenTelemetry import
here: the supervisor reads them before it forks)."""
from __future__ import annotations

import os

OTLP = {"grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter"}


def add_options(p) -> None:
    """The serve parser's flags for tracing and the access log (`p` is offerd.cli's parser,
    whose options take `env=`)."""
    p.add_argument("--trace", action="store_true", env="OFFERD_TRACE",
                   help="OpenTelemetry spans for every call and its stages, parented by the caller's W3C "
                        "traceparent; exported as OTEL_TRACES_EXPORTER says (otlp, console or none) "
                        "(docs/observability.md)")
    p.add_argument("--access-log", action="store_true", env="OFFERD_ACCESS_LOG",
                   help="a log line per call: method, peer, request id, status code, duration")


def fields(args) -> dict:
    """The Config fields these flags set."""
    return {"trace": args.trace, "access_log": args.access_log}


def exporter_name() -> str:
    return (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()


def otlp_module() -> str:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc").strip().lower()
    if protocol not in OTLP:
        raise SystemExit(f"offerd: OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: offerd exports over grpc or http/protobuf")
    return OTLP[protocol]


def check(config) -> None:
    """With tracing on, what it needs is installed and the exporter is one offerd knows: one
    line and no start otherwise."""
    if not config.trace or config.trace_provider is not None:
        return
    import importlib

    try:
        importlib.import_module("opentelemetry.sdk.trace")
    except ImportError:
        raise SystemExit("offerd: --trace needs the OpenTelemetry SDK: pip install 'offerd[trace]'") from None
    name = exporter_name()
    if name == "otlp":
        module = otlp_module()
        try:
            importlib.import_module(module)
        except ImportError:
            package = module.rpartition(".trace_exporter")[0].replace(".", "-")
            raise SystemExit(f"offerd: --trace exports over OTLP (OTEL_TRACES_EXPORTER=otlp, the default), which "
                             f"needs {package}: pip install 'offerd[otlp]', or set OTEL_TRACES_EXPORTER to "
                             f"console or none") from None
    elif name not in ("console", "none"):
        raise SystemExit(f"offerd: OTEL_TRACES_EXPORTER={name}: offerd exports spans with otlp, console or none")
