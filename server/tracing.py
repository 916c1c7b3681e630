"""OpenTelemetry tracing, configured only by the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` = ``otlp`` (OTLP over HTTP/protobuf to
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
``console`` (one JSON object per span and line on stdout), both (``otlp,console``)
or ``none``, the default. The SDK itself reads ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``.

Off, the cost is one module-global check per instrumented step (``span`` hands back a
shared no-op context manager; nothing of the SDK is imported). On, each request is a
server span whose parent is the caller's W3C ``traceparent`` (REST header or gRPC
metadata), with child spans for authorization, the WAL append and fsync wait, the
SQLite apply, index insert and search, embedding and object-store shipping.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

ENABLED = False
_tracer: Any = None
_NOOP = contextlib.nullcontext()
EXPORTERS = ("otlp", "console", "none")


class TracingConfigError(ValueError):
    """An ``OTEL_*`` setting this server cannot honour (the message says which)."""


def configure(env: Mapping[str, str] = os.environ) -> bool:
    """Install the tracer provider the environment asks for; False when tracing is off."""
    global ENABLED, _tracer
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",")
             if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r}; "
                                 f"use {', '.join(EXPORTERS)} (comma-separated)")
    names = [n for n in names if n != "none"]
    if not names:
        ENABLED, _tracer = False, None
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "akidb"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        if name == "console":
            # Batched like OTLP: encoding and writing happen off the request's thread
            # (OTEL_BSP_SCHEDULE_DELAY, default 5 s, says how soon spans appear).
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(
                out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")))
        else:
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                               env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
            if protocol != "http/protobuf":
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: this server exports OTLP over "
                    "http/protobuf (port 4318 on a collector)")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("akidb.server")
    ENABLED = True
    return True


def shutdown() -> None:
    """Flush what is buffered (at graceful stop)."""
    if ENABLED:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one (a no-op when tracing is off)."""
    if not ENABLED:
        return _NOOP
    return _tracer.start_as_current_span(name, attributes=attributes or None)


@contextlib.contextmanager
def server_span(name: str, carrier: Mapping[str, str], **attributes: Any) -> Iterator[Any]:
    """The span of one incoming request, child of the caller's ``traceparent``."""
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    with _tracer.start_as_current_span(name, context=extract(carrier),
                                       kind=trace.SpanKind.SERVER,
                                       attributes=attributes or None) as current:
        yield current


def trace_id() -> str | None:
    """The current trace id (32 hex digits) when a sampled trace is active."""
    if not ENABLED:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid and context.trace_flags.sampled \
        else None


def set_status(current: Any, ok: bool, **attributes: Any) -> None:
    """Mark a request span with its outcome (errors as StatusCode.ERROR)."""
    from opentelemetry.trace import Status, StatusCode

    for key, value in attributes.items():
        current.set_attribute(key, value)
    if not ok:
        current.set_status(Status(StatusCode.ERROR))
