"""Traces (the golemd[otel] extra): an engine observer that makes the spans
of each invocation once its outcome is committed, and exports them over
OTLP/HTTP. docs/operations.md, "Traces", says what they hold.

The spans are built after the fact, with the times the engine journals
(created_at, schedule_at, started_at, finished_at, the commit's time), so
nothing is kept per invocation while it runs. Their IDs are derived
(golemd.model.tracecontext), which is how a callee admitted long before its
caller's spans are exported can name one of them as its parent; the SDK
draws IDs through _PlannedIds, told each derived ID just before the span it
is for is started.

Only golemd.daemon imports this module, and only when otel_endpoint is set.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from golemd.model.effects import derived_key, describe_request
from golemd.model.invocation import Invocation
from golemd.model.tracecontext import context_of, span_id

log = logging.getLogger("golemd.tracing")

_EFFECT_KINDS = {"call": SpanKind.CLIENT, "trigger": SpanKind.PRODUCER}


def ns(seconds: float) -> int:
    """The engine's wall-clock seconds as OpenTelemetry's nanoseconds."""
    return int(seconds * 1e9)


class _PlannedIds(IdGenerator):
    """The next span's IDs when they are planned (derived), random otherwise:
    the tracer asks for a trace ID (of a span without a parent) and then a
    span ID, once each, inside start_span."""

    def __init__(self) -> None:
        self.random = RandomIdGenerator()
        self.trace_id = 0
        self.span_id = 0

    def plan(self, trace_id: int, span_id: int) -> None:
        self.trace_id, self.span_id = trace_id, span_id

    def generate_trace_id(self) -> int:
        planned, self.trace_id = self.trace_id, 0
        return planned or self.random.generate_trace_id()

    def generate_span_id(self) -> int:
        planned, self.span_id = self.span_id, 0
        return planned or self.random.generate_span_id()


def traces_url(endpoint: str) -> str:
    """A collector's base URL (http://HOST:4318) gets OTLP's path for traces;
    a URL with a path of its own is used as it is."""
    return endpoint.rstrip("/") + "/v1/traces" if urlsplit(endpoint).path in ("", "/") else endpoint


class Tracing:
    """The observer (golemd.engine.observer.Observer) that makes the spans,
    and their provider. Never raises into the engine: a span that cannot be
    made is logged and dropped."""

    def __init__(self, processor: SpanProcessor, version: str = "") -> None:
        self.ids = _PlannedIds()
        resource = Resource.create({SERVICE_NAME: "golemd", SERVICE_VERSION: version})
        # Every invocation, whatever OTEL_TRACES_SAMPLER says: a callee's parent
        # is named (sampled) before its caller's span exists, so a sampler that
        # dropped the caller at its end would leave the callee without it. An
        # outside parent's sampled flag is followed down the chain.
        self.provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=resource,
                                       id_generator=self.ids, shutdown_on_exit=False)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("golemd", version)
        self.failures = 0

    @classmethod
    def to_endpoint(cls, endpoint: str, version: str = "") -> Tracing:
        """Batched (the SDK's worker thread exports, off the daemon's loop) to
        an OTLP/HTTP collector; OTEL_BSP_* and OTEL_EXPORTER_OTLP_* apply."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return cls(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))), version)

    def shutdown(self) -> None:
        """Export what is left and stop the exporter (at the daemon's exit)."""
        self.provider.shutdown()

    # -- golemd.engine.observer.Observer -------------------------------------------

    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        pass  # its queue wait is made from inv.started_at at the end

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        try:
            self._invocation(agent, type_name, inv, outcome, finished_at, committed_at)
        except Exception:
            self._failed()

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any],
                    error: str | None) -> None:
        try:
            self._effect(agent, inv, seq, kind, started_at, ended_at, request, error)
        except Exception:
            self._failed()

    def worker_started(self, type_name: str) -> None:
        pass

    def worker_died(self, type_name: str) -> None:
        pass

    def retried(self, type_name: str) -> None:
        pass

    # -- the spans -------------------------------------------------------------------

    def _invocation(self, agent: str, type_name: str, inv: Invocation, outcome: str,
                    finished_at: float, committed_at: float) -> None:
        trace_id, own, _flags = context_of(agent, inv)
        parent = inv.trace_parent
        # An explicit empty context for a root: never the loop's current one.
        context = Context() if parent is None else _remote(parent[0], parent[1], parent[2])
        started = inv.started_at if outcome != "canceled" else None
        attempts = 0
        if started is not None:
            # inv.attempts counts the runs its worker died in; the last run
            # counts unless it died in it too (the invocation failed AGENT_DIED).
            died_last = inv.error is not None and inv.error.to_wire()["code"] == "AGENT_DIED"
            attempts = inv.attempts + (0 if died_last and inv.attempts else 1)
        attributes: dict[str, Any] = {
            "golemd.agent_id": agent, "golemd.agent_type": type_name, "golemd.method": inv.method,
            "golemd.idempotency_key": inv.key, "golemd.outcome": outcome, "golemd.attempts": attempts,
        }
        self.ids.plan(trace_id if parent is None else 0, own)
        root = self.tracer.start_span(f"invoke {inv.method}", context=context, kind=SpanKind.SERVER,
                                      attributes=attributes, start_time=ns(inv.created_at))
        if outcome == "failed" and inv.error is not None:
            err = inv.error.to_wire()
            root.set_attribute("golemd.error_code", err["code"])
            root.set_status(Status(StatusCode.ERROR, err["code"]))
            details = err.get("details") or {}
            root.add_event("exception", {
                "exception.type": str(details.get("type") or err["code"]),
                "exception.message": str(details.get("message") or err["message"]),
                "exception.stacktrace": str(details.get("traceback") or ""),
            }, timestamp=ns(finished_at))
        inside = trace.set_span_in_context(root, Context())
        since = max(inv.created_at, inv.schedule_at or 0.0)
        queue_end = started if started is not None else (committed_at if outcome == "canceled" else finished_at)
        self._child("queue", inside, since, queue_end)
        if started is not None:
            self.ids.plan(0, span_id(agent, inv, "run"))
            self._child("run", inside, started, finished_at)
        if outcome != "canceled":
            self._child("commit", inside, finished_at, committed_at)
        root.end(end_time=ns(max(committed_at, inv.created_at)))

    def _child(self, name: str, context: Context, start: float, end: float) -> None:
        span = self.tracer.start_span(name, context=context, start_time=ns(start))
        span.end(end_time=ns(max(start, end)))

    def _effect(self, agent: str, inv: Invocation, seq: int, kind: str, started_at: float,
                ended_at: float, request: dict[str, Any], error: str | None) -> None:
        trace_id, _own, flags = context_of(agent, inv)
        attributes: dict[str, Any] = {"golemd.effect.seq": seq,
                                      "golemd.effect.detail": describe_request(kind, request)}
        if kind in _EFFECT_KINDS:
            attributes["golemd.effect.target"] = str(request.get("agent"))
            attributes["golemd.effect.idempotency_key"] = derived_key(agent, inv.key, seq)
        # Under the invocation's run span, which is made (with this ID) at its end.
        self.ids.plan(0, span_id(agent, inv, f"effect {seq}"))
        span = self.tracer.start_span(f"effect {kind}", context=_remote(trace_id, span_id(agent, inv, "run"), flags),
                                      kind=_EFFECT_KINDS.get(kind, SpanKind.INTERNAL),
                                      attributes=attributes, start_time=ns(started_at))
        if error is not None:
            span.set_attribute("golemd.error_code", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=ns(max(started_at, ended_at)))

    def _failed(self) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.exception("a trace span could not be made (%d so far); traces go on without it",
                          self.failures)


def _remote(trace_id: int, parent_span: int, flags: int) -> Context:
    """A context whose span is `parent_span`, made elsewhere or later."""
    parent = SpanContext(trace_id, parent_span, is_remote=True, trace_flags=TraceFlags(flags & 0xFF))
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())
