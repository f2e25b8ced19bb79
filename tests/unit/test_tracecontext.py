"""golemd.model.tracecontext: W3C traceparents read and written, and the span
IDs an invocation's spans get (the same for the same invocation, after a
restart too; another for another invocation); the observers' fan-out."""

from __future__ import annotations

from typing import Any

import pytest

from golemd.engine.observer import Fanout, combine
from golemd.model.invocation import Invocation
from golemd.model.states import InvocationStatus
from golemd.model.tracecontext import (
    SAMPLED,
    callee_traceparent,
    context_of,
    format_traceparent,
    parse_traceparent,
    span_id,
)
from tests.engine.test_observer import Recorder

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def inv(key: str = "k", created_at: float = 1700000000.123456, **kw: Any) -> Invocation:
    return Invocation(key=key, method="m", args=[], args_packed=b"", seq=0, created_at=created_at,
                      status=InvocationStatus.PENDING, **kw)


def test_a_traceparent_is_read_as_w3c_trace_context_says() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == (int(TRACE, 16), int(SPAN, 16), 1)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == (int(TRACE, 16), int(SPAN, 16), 0)
    # a later version is read as 00, whatever it appends
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-what-comes") == (int(TRACE, 16), int(SPAN, 16), 1)


@pytest.mark.parametrize("text", [
    "", "00", f"00-{TRACE}-{SPAN}", f"00-{TRACE.upper()}-{SPAN}-01", f"ff-{TRACE}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{SPAN}-01-extra",
    f"00-{TRACE[:-1]}-{SPAN}-01", f" 00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01\n",
    f"01-{TRACE}-{SPAN}-01-" + "x" * 600,
])
def test_what_is_not_a_traceparent_is_none(text: str) -> None:
    assert parse_traceparent(text) is None


def test_written_as_read() -> None:
    assert format_traceparent(int(TRACE, 16), int(SPAN, 16)) == f"00-{TRACE}-{SPAN}-01"
    assert parse_traceparent(format_traceparent(5, 7, 0)) == (5, 7, 0)


def test_span_ids_are_derived_from_the_invocation() -> None:
    a, again = inv(), inv()  # the same invocation, as recovery rebuilds it from its row
    assert context_of("A()", a) == context_of("A()", again)
    assert span_id("A()", a, "run") == span_id("A()", again, "run")
    ids = {span_id("A()", a), span_id("A()", a, "run"), span_id("A()", a, "effect 0"),
           span_id("A()", a, "effect 1"), span_id("B()", a), span_id("A()", inv("k2")),
           span_id("A()", inv(created_at=1700000000.123457))}  # a key used again after its row went
    assert len(ids) == 7 and all(0 < i < 1 << 64 for i in ids)
    trace_id, own, flags = context_of("A()", a)
    assert 0 < trace_id < 1 << 128 and own == span_id("A()", a) and flags == SAMPLED


def test_a_callee_is_in_its_callers_trace_under_the_call_effect() -> None:
    caller = inv()
    trace_id, _, _ = context_of("Shop()", caller)
    parent = parse_traceparent(callee_traceparent("Shop()", caller, 2))
    assert parent == (trace_id, span_id("Shop()", caller, "effect 2"), SAMPLED)
    callee = inv("call-x-2", trace_parent=parent)
    assert context_of("Inv()", callee) == (trace_id, span_id("Inv()", callee), SAMPLED)
    # and its own callee in the same trace still
    grand = parse_traceparent(callee_traceparent("Inv()", callee, 0))
    assert grand is not None and grand[0] == trace_id
    # an outside parent's flags (not sampled) go down the chain
    quiet = inv(trace_parent=(9, 10, 0))
    assert parse_traceparent(callee_traceparent("A()", quiet, 0)) == (9, span_id("A()", quiet, "effect 0"), 0)


class Told(Recorder):
    """The engine tests' recorder, told of effects too."""

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any], error: str | None) -> None:
        self.seen.append(("effect_done", inv.key, seq, kind, error))


def test_combine_sets_none_one_or_a_fanout_of_all() -> None:
    assert combine() is None and combine(None, None) is None
    one = Told()
    assert combine(None, one) is one
    a, b = Told(), Told()
    both = combine(a, None, b)
    assert isinstance(both, Fanout)
    i = inv(started_at=1.0)
    both.started("A()", "A", i)
    both.ended("A()", "A", i, "completed", 1.0, 2.0)
    both.worker_started("A")
    both.worker_died("A")
    both.retried("A")
    both.effect_done("A()", "A", i, 0, "step", 1.0, 1.5, {"fn": "f"}, None)
    want = [("started", "A", "k"), ("ended", "A", "k", "completed"), ("worker_started", "A"),
            ("worker_died", "A"), ("retried", "A"), ("effect_done", "k", 0, "step", None)]
    assert a.seen == want and b.seen == want
