"""golemd.tracing fed with Invocation objects as the engine and durable
execution tell it, exported to the SDK's own InMemorySpanExporter: span names,
parentage, times, kinds, attributes and status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from golemd.model.effects import derived_key
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation
from golemd.model.states import InvocationStatus
from golemd.model.tracecontext import callee_traceparent, context_of, parse_traceparent, span_id
from golemd.tracing import Tracing, ns, traces_url

T0 = 1_700_000_000.25
AGENT = 'Shop("s1")'


@pytest.fixture
def traced() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), "0.1.0")
    yield tracing, exporter
    tracing.shutdown()


def invocation(key: str = "k1", method: str = "order", started: float | None = T0 + 1.0,
               **kw: Any) -> Invocation:
    return Invocation(key=key, method=method, args=[], args_packed=b"", seq=0, created_at=T0,
                      status=InvocationStatus.COMPLETED, started_at=started, **kw)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    out = {s.name: s for s in spans}
    assert len(out) == len(spans), [s.name for s in spans]
    return out


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_completed_invocation_is_a_span_with_its_queue_run_and_commit(traced: Any) -> None:
    tracing, exporter = traced
    inv = invocation()
    tracing.ended(AGENT, "Shop", inv, "completed", T0 + 3.0, T0 + 3.5)
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"invoke order", "queue", "run", "commit"}
    root = spans["invoke order"]
    trace_id, own, _ = context_of(AGENT, inv)
    assert root.context is not None and root.context.trace_id == trace_id and root.context.span_id == own
    assert root.parent is None and root.kind == SpanKind.SERVER
    assert (root.start_time, root.end_time) == (ns(T0), ns(T0 + 3.5))
    assert dict(root.attributes or {}) == {
        "golemd.agent_id": AGENT, "golemd.agent_type": "Shop", "golemd.method": "order",
        "golemd.idempotency_key": "k1", "golemd.outcome": "completed", "golemd.attempts": 1}
    assert root.status.status_code == StatusCode.UNSET
    assert root.resource.attributes["service.name"] == "golemd"
    for name, (start, end) in {"queue": (T0, T0 + 1.0), "run": (T0 + 1.0, T0 + 3.0),
                               "commit": (T0 + 3.0, T0 + 3.5)}.items():
        s = spans[name]
        assert s.context is not None and s.context.trace_id == trace_id, name
        assert parent_of(s) == own and s.kind == SpanKind.INTERNAL, name
        assert (s.start_time, s.end_time) == (ns(start), ns(end)), name
    run = spans["run"].context
    assert run is not None and run.span_id == span_id(AGENT, inv, "run")


def test_a_scheduled_invocation_queues_from_its_scheduled_time(traced: Any) -> None:
    tracing, exporter = traced
    tracing.ended(AGENT, "Shop", invocation(schedule_at=T0 + 0.75), "completed", T0 + 3.0, T0 + 3.5)
    spans = by_name(exporter.get_finished_spans())
    assert (spans["queue"].start_time, spans["queue"].end_time) == (ns(T0 + 0.75), ns(T0 + 1.0))
    assert spans["invoke order"].start_time == ns(T0)


def test_a_failed_invocation_has_error_status_and_its_exception(traced: Any) -> None:
    tracing, exporter = traced
    inv = invocation(error=GolemError(Code.INVOCATION_FAILED, "ValueError: no hat left", details={
        "type": "ValueError", "message": "no hat left", "traceback": "Traceback ...\nValueError: no hat left"}))
    tracing.ended(AGENT, "Shop", inv, "failed", T0 + 2.0, T0 + 2.1)
    spans = by_name(exporter.get_finished_spans())
    root = spans["invoke order"]
    assert root.status.status_code == StatusCode.ERROR and root.status.description == "INVOCATION_FAILED"
    assert (root.attributes or {})["golemd.outcome"] == "failed"
    assert (root.attributes or {})["golemd.error_code"] == "INVOCATION_FAILED"
    [event] = root.events
    assert event.name == "exception" and event.timestamp == ns(T0 + 2.0)
    assert dict(event.attributes or {}) == {"exception.type": "ValueError", "exception.message": "no hat left",
                                            "exception.stacktrace": "Traceback ...\nValueError: no hat left"}
    assert set(spans) == {"invoke order", "queue", "run", "commit"}


def test_attempts_count_the_runs(traced: Any) -> None:
    tracing, exporter = traced
    # died once, then completed: two runs
    tracing.ended(AGENT, "Shop", invocation("a", attempts=1), "completed", T0 + 2.0, T0 + 2.0)
    # died in each of its 3 runs
    tracing.ended(AGENT, "Shop", invocation("b", attempts=3, error=GolemError(Code.AGENT_DIED, "died")),
                  "failed", T0 + 2.0, T0 + 2.0)
    # failed without a run (its agent had failed)
    tracing.ended(AGENT, "Shop", invocation("c", started=None, error=GolemError(Code.AGENT_FAILED, "x")),
                  "failed", T0 + 2.0, T0 + 2.5)
    roots = {(s.attributes or {})["golemd.idempotency_key"]: s for s in exporter.get_finished_spans()
             if s.name.startswith("invoke")}
    assert {k: (s.attributes or {})["golemd.attempts"] for k, s in roots.items()} == {"a": 2, "b": 3, "c": 0}
    # "c" queued until it failed, then its outcome was committed: no run
    c_spans = [s for s in exporter.get_finished_spans() if s.context is not None and roots["c"].context is not None
               and s.context.trace_id == roots["c"].context.trace_id]
    assert sorted((s.name, s.start_time, s.end_time) for s in c_spans) == [
        ("commit", ns(T0 + 2.0), ns(T0 + 2.5)), ("invoke order", ns(T0), ns(T0 + 2.5)),
        ("queue", ns(T0), ns(T0 + 2.0))]


def test_a_canceled_invocation_has_only_its_queue(traced: Any) -> None:
    tracing, exporter = traced
    tracing.ended(AGENT, "Shop", invocation(started=None), "canceled", T0 + 4.0, T0 + 4.0)
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"invoke order", "queue"}
    assert (spans["queue"].start_time, spans["queue"].end_time) == (ns(T0), ns(T0 + 4.0))
    assert (spans["invoke order"].attributes or {})["golemd.outcome"] == "canceled"
    assert (spans["invoke order"].attributes or {})["golemd.attempts"] == 0


def test_effects_are_spans_under_the_run_made_later(traced: Any) -> None:
    tracing, exporter = traced
    inv = invocation()
    tracing.effect_done(AGENT, "Shop", inv, 0, "step", T0 + 1.2, T0 + 1.3, {"fn": "make_token"}, None)
    tracing.effect_done(AGENT, "Shop", inv, 1, "call", T0 + 1.3, T0 + 2.0,
                        {"agent": 'Inventory("main")', "method": "reserve", "args": ["hat"]}, None)
    tracing.effect_done(AGENT, "Shop", inv, 2, "wait", T0 + 2.0, T0 + 2.5, {"promise": "p-1", "timeout": 1},
                        "TIMEOUT")
    assert len(exporter.get_finished_spans()) == 3  # exported as they happen, before their parent
    tracing.ended(AGENT, "Shop", inv, "completed", T0 + 3.0, T0 + 3.5)
    spans = by_name(exporter.get_finished_spans())
    run = spans["run"].context
    assert run is not None
    step, call, wait = spans["effect step"], spans["effect call"], spans["effect wait"]
    for s in (step, call, wait):
        assert parent_of(s) == run.span_id and s.context is not None and s.context.trace_id == run.trace_id
    assert (call.start_time, call.end_time) == (ns(T0 + 1.3), ns(T0 + 2.0))
    assert call.kind == SpanKind.CLIENT and step.kind == SpanKind.INTERNAL
    assert call.context is not None and call.context.span_id == span_id(AGENT, inv, "effect 1")
    assert dict(call.attributes or {}) == {
        "golemd.effect.seq": 1, "golemd.effect.detail": "call Inventory(\"main\").reserve('hat')",
        "golemd.effect.target": 'Inventory("main")',
        "golemd.effect.idempotency_key": derived_key(AGENT, "k1", 1)}
    assert (step.attributes or {})["golemd.effect.detail"] == "step make_token"
    assert wait.status.status_code == StatusCode.ERROR and wait.status.description == "TIMEOUT"
    assert step.status.status_code == StatusCode.UNSET


def test_a_callee_is_a_child_of_its_callers_call_effect(traced: Any) -> None:
    tracing, exporter = traced
    caller = invocation()
    callee = invocation("call-abc-1", method="reserve", started=T0 + 1.5,
                        trace_parent=parse_traceparent(callee_traceparent(AGENT, caller, 1)))
    # the callee ends first: its parent's span is exported after it
    tracing.ended('Inventory("main")', "Inventory", callee, "completed", T0 + 1.8, T0 + 1.9)
    tracing.effect_done(AGENT, "Shop", caller, 1, "call", T0 + 1.3, T0 + 2.0,
                        {"agent": 'Inventory("main")', "method": "reserve", "args": ["hat"]}, None)
    tracing.ended(AGENT, "Shop", caller, "completed", T0 + 3.0, T0 + 3.5)
    spans = {(s.name, (s.attributes or {}).get("golemd.agent_type")): s for s in exporter.get_finished_spans()}
    served, effect = spans[("invoke reserve", "Inventory")], spans[("effect call", None)]
    assert served.context is not None and effect.context is not None
    assert served.context.trace_id == effect.context.trace_id == context_of(AGENT, caller)[0]
    assert parent_of(served) == effect.context.span_id
    assert served.parent is not None and served.parent.is_remote
    assert parent_of(effect) == span_id(AGENT, caller, "run")


def test_an_outside_parent_that_is_not_sampled_is_respected(traced: Any) -> None:
    tracing, exporter = traced
    sampled = invocation("s", trace_parent=(0xAB, 0xCD, 1))
    quiet = invocation("q", trace_parent=(0xAB, 0xCE, 0))
    tracing.ended(AGENT, "Shop", sampled, "completed", T0 + 2.0, T0 + 2.0)
    tracing.ended(AGENT, "Shop", quiet, "completed", T0 + 2.0, T0 + 2.0)
    tracing.effect_done(AGENT, "Shop", quiet, 0, "step", T0 + 1.2, T0 + 1.3, {"fn": "f"}, None)
    spans = exporter.get_finished_spans()
    assert {(s.attributes or {}).get("golemd.idempotency_key") for s in spans if s.name.startswith("invoke")} == {"s"}
    assert len(spans) == 4  # s's four; none of q's
    root = next(s for s in spans if s.name == "invoke order")
    assert root.context is not None and root.context.trace_id == 0xAB and parent_of(root) == 0xCD


def test_a_span_that_cannot_be_made_is_dropped_not_raised(traced: Any, caplog: Any) -> None:
    tracing, exporter = traced
    broken = invocation()
    broken.created_at = float("nan")  # not a time: no nanoseconds for it
    tracing.ended(AGENT, "Shop", broken, "completed", T0 + 2.0, T0 + 2.0)
    tracing.effect_done(AGENT, "Shop", broken, 0, "sleep", float("nan"), T0, {"seconds": 1}, None)
    assert tracing.failures == 2
    assert "a trace span could not be made" in caplog.text
    tracing.ended(AGENT, "Shop", invocation(), "completed", T0 + 2.0, T0 + 2.0)
    assert "invoke order" in {s.name for s in exporter.get_finished_spans()}


def test_traces_url() -> None:
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://127.0.0.1:4318/") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("https://otel.example/custom/traces") == "https://otel.example/custom/traces"


def test_every_invocation_is_sampled_whatever_the_environment_says(monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    tracing.ended(AGENT, "Shop", invocation(), "completed", T0 + 2.0, T0 + 2.0)
    tracing.shutdown()
    assert {s.name for s in exporter.get_finished_spans()} == {"invoke order", "queue", "run", "commit"}
