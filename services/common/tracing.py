"""Traces across every hop: the gateway's HTTP span, the scheduler's queue wait and decision, the
worker's engine run and the aggregator's merge are joined into one trace by a W3C `traceparent`
carried in NATS message headers (request → assignment → terminal result chunk).

Off by default: spans are recorded and exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with the `otlp` extra installed. A client's own
`traceparent` is carried through either way, so its trace continues in a collector that has the
rest."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("modalmesh")  # follows whichever provider is set, now or later
OTLP_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def setup_tracing(service: str) -> bool:
    """Record this process's spans as `service` and export them over OTLP, when an endpoint is
    configured. Returns whether tracing is on."""
    if not any(os.environ.get(name) for name in OTLP_ENV):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.error("%s is set but the OTLP exporter is missing: pip install 'modalmesh[otlp]'", OTLP_ENV[0])
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing on: spans go to %s", next(os.environ[n] for n in OTLP_ENV if os.environ.get(n)))
    return True


def inject(headers: Mapping[str, str] | None = None, context: Context | None = None) -> dict[str, str]:
    """`headers` plus the trace context (the current one, or `context`) as `traceparent`."""
    carrier = dict(headers or {})
    propagate.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message or HTTP request carries (an empty one when it carries none)."""
    return propagate.extract(dict(headers or {}))
