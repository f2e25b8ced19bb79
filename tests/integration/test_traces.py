"""Traces from a real golemd (--otel-endpoint), received by a small OTLP/HTTP
collector in the test (POST /v1/traces, decoded with opentelemetry-proto):
an invocation completed, failed and canceled, durable calls and triggers
between two agents (the callee in its caller's trace, under the effect's
span), a traceparent from outside, metrics fed at the same time, the spans
of the last invocations flushed at shutdown, and the start-up error when
the extra is missing."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from golemd.config import Config
from tests.helpers import DURABLE_AGENTS, EXAMPLES, TEST_AGENTS, DaemonProc, running, wait_for
from tests.http_helpers import base_of, golemctl_dashboard

OUTSIDE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OUTSIDE_SPAN = "00f067aa0ba902b7"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str  # "" for a root
    start: int
    end: int
    kind: str
    status: str
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[str] = field(default_factory=list)


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


class Collector:
    """An OTLP/HTTP trace receiver on a free loopback port."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector.receive(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def receive(self, req: ExportTraceServiceRequest) -> None:
        got = []
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(Span(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent=s.parent_span_id.hex(), start=s.start_time_unix_nano,
                        end=s.end_time_unix_nano, kind=s.SpanKind.Name(s.kind),
                        status=s.status.StatusCode.Name(s.status.code), status_message=s.status.message,
                        attributes={kv.key: _value(kv.value) for kv in s.attributes},
                        resource=resource, events=[e.name for e in s.events]))
        with self.lock:
            self.requests += 1
            self.spans.extend(got)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


@contextmanager
def traced_daemon(c: Collector, delay_ms: int = 50, args: tuple[str, ...] = ()) -> Iterator[DaemonProc]:
    # The batch processor exports every delay_ms: the test waits for spans, not for a flush.
    with running(args=("--otel-endpoint", c.url, *args), apps=(EXAMPLES, TEST_AGENTS, DURABLE_AGENTS),
                 env={"OTEL_BSP_SCHEDULE_DELAY": str(delay_ms)}) as d:
        yield d


def roots(spans: list[Span]) -> dict[str, Span]:
    """The invocation spans by idempotency key."""
    return {s.attributes["golemd.idempotency_key"]: s for s in spans if s.name.startswith("invoke ")}


def children(spans: list[Span], parent: Span) -> dict[str, Span]:
    out = {s.name: s for s in spans if s.parent == parent.span_id}
    assert len(out) == len([s for s in spans if s.parent == parent.span_id]), out
    assert all(s.trace_id == parent.trace_id for s in out.values())
    return out


def wait_spans(c: Collector, done: Callable[[list[Span]], bool], what: str, timeout: float = 20.0) -> list[Span]:
    return list(wait_for(lambda: (lambda s: s if done(s) else None)(c.snapshot()), timeout, interval=0.05,
                         what=what))


def scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        return str(r.read().decode())


def test_invocations_are_traced_across_agents(tmp_path: Any) -> None:
    with collector() as c, traced_daemon(c, args=("--http", "127.0.0.1:0")) as d:
        conn = d.conn()
        t0 = time.time()
        assert conn.ok("invoke", agent='CounterAgent("tr")', method="increment", idempotency_key="inc")["result"] == 1
        assert conn.err("invoke", agent='CounterAgent("tr")', method="fail_after_add", args=[1],
                        idempotency_key="bad") == "INVOCATION_FAILED"
        # a cancel: queued behind a running one, canceled, never run
        conn.ok("invoke", agent='SlowAgent("tr")', method="work", args=[30, "busy"], mode="trigger",
                idempotency_key="busy")
        wait_for(lambda: conn.meta('SlowAgent("tr")').get("current_invocation"), what="busy to start")
        conn.ok("invoke", agent='SlowAgent("tr")', method="work", args=[0.1, "q"], mode="trigger",
                idempotency_key="q")
        conn.ok("cancel", agent='SlowAgent("tr")', idempotency_key="q")
        conn.ok("interrupt", agent='SlowAgent("tr")')
        # a worker death and its retry: two runs
        marker = str(tmp_path / "marker")
        with open(marker + ".die", "w") as f:
            f.write("1")
        conn.ok("invoke", agent='Crashy("tr")', method="add_then_die", args=[5, marker], idempotency_key="crash")
        # an awaited call and a trigger from one agent to another (durable effects)
        assert conn.ok("invoke", agent='Shop("tr")', method="call", args=['Inventory("tr")', "add", ["hat", 2]],
                       idempotency_key="order")["result"] == 2
        trig = conn.ok("invoke", agent='Shop("tr")', method="trigger", args=['Inventory("tr")', "add", ["cap", 1]],
                       idempotency_key="kick")["result"]
        # a parent from outside
        conn.ok("invoke", agent='CounterAgent("tr")', method="increment", idempotency_key="outside",
                traceparent=f"00-{OUTSIDE_TRACE}-{OUTSIDE_SPAN}-01")
        want = {"inc", "bad", "q", "crash", "order", "kick", trig, "outside"}
        spans = wait_spans(c, lambda s: want <= set(roots(s)) and any(x.name == "effect trigger" for x in s)
                           and sum(x.name == "effect call" for x in s) >= 1, "the spans of every invocation")
        # both observers were told: metrics counted the same outcomes
        metrics = scrape(base_of(golemctl_dashboard(d)))
        conn.close()
    assert 'golemd_invocations_total{agent_type="CounterAgent",method="increment",outcome="completed"} 2.0' in metrics

    r = roots(spans)
    now = time.time()
    inc = r["inc"]
    assert inc.name == "invoke increment" and inc.parent == "" and inc.kind == "SPAN_KIND_SERVER"
    assert inc.attributes == {"golemd.agent_id": 'CounterAgent("tr")', "golemd.agent_type": "CounterAgent",
                              "golemd.method": "increment", "golemd.idempotency_key": "inc",
                              "golemd.outcome": "completed", "golemd.attempts": 1}
    assert inc.resource["service.name"] == "golemd"
    assert t0 * 1e9 - 1e9 < inc.start <= inc.end < now * 1e9
    parts = children(spans, inc)
    assert set(parts) == {"queue", "run", "commit"}
    # queue, run and commit follow one another inside the invocation
    assert inc.start <= parts["queue"].start <= parts["queue"].end == parts["run"].start
    assert parts["run"].end == parts["commit"].start <= parts["commit"].end <= inc.end

    bad = r["bad"]
    assert bad.status == "STATUS_CODE_ERROR" and bad.status_message == "INVOCATION_FAILED"
    assert bad.attributes["golemd.outcome"] == "failed" and bad.attributes["golemd.error_code"] == "INVOCATION_FAILED"
    assert bad.events == ["exception"]
    assert set(children(spans, bad)) == {"queue", "run", "commit"}

    q = r["q"]
    assert q.attributes["golemd.outcome"] == "canceled" and set(children(spans, q)) == {"queue"}
    assert q.attributes["golemd.attempts"] == 0
    crash = r["crash"]
    assert crash.attributes["golemd.outcome"] == "completed" and crash.attributes["golemd.attempts"] == 2

    # the awaited call: Shop's run has an 'effect call' span, and Inventory's
    # invocation is its child, in Shop's trace
    order = r["order"]
    run = children(spans, order)["run"]
    call = children(spans, run)["effect call"]
    assert call.kind == "SPAN_KIND_CLIENT" and call.attributes["golemd.effect.target"] == 'Inventory("tr")'
    assert run.start <= call.start <= call.end <= run.end
    callee = r[call.attributes["golemd.effect.idempotency_key"]]
    assert callee.name == "invoke add" and callee.attributes["golemd.agent_id"] == 'Inventory("tr")'
    assert callee.trace_id == order.trace_id and callee.parent == call.span_id
    assert call.start <= callee.start and callee.end <= call.end
    # the trigger: the enqueued callee is in the caller's trace too, under the trigger effect
    kick_run = children(spans, r["kick"])["run"]
    trigger = children(spans, kick_run)["effect trigger"]
    assert trigger.kind == "SPAN_KIND_PRODUCER"
    assert r[trig].trace_id == r["kick"].trace_id and r[trig].parent == trigger.span_id
    # a traceparent from outside
    assert r["outside"].trace_id == OUTSIDE_TRACE and r["outside"].parent == OUTSIDE_SPAN


def test_a_callee_recovered_after_a_restart_stays_in_its_callers_trace(tmp_path: Any) -> None:
    ledger = str(tmp_path / "ledger")
    outer = ("invoke", 'Shop("caller")', "call", ['Shop("callee")', "approval", [ledger]])
    with collector() as c, traced_daemon(c) as d:
        conn = d.conn()
        conn.ok(outer[0], agent=outer[1], method=outer[2], args=outer[3], mode="trigger", idempotency_key="outer")

        def promise_made() -> str | None:
            made = [line.split()[1] for line in open(ledger).readlines()
                    if line.startswith("promise ")] if os.path.exists(ledger) else []
            return made[0] if made else None

        pid = wait_for(promise_made, what="the callee's promise")
        wait_for(lambda: conn.meta('Shop("callee")').get("waiting_for"), what="the callee to wait")
        conn.fence('Inventory("fence")', "count", ["x"])
        conn.close()
        # Both wait (the caller on its call, the callee on its promise) when the daemon dies.
        killed = time.time()
        d.kill9()
        d.start()
        conn = d.conn()
        conn.ok("promise_complete", promise_id=pid, value="yes")
        got = conn.ok(outer[0], agent=outer[1], method=outer[2], args=outer[3], idempotency_key="outer")
        assert got["result"] == {"value": "yes", "id": pid}
        conn.close()
        spans = wait_spans(c, lambda s: "outer" in roots(s) and any(x.name == "invoke approval" for x in s),
                           "the caller's and the callee's spans")
    r = roots(spans)
    call = children(spans, children(spans, r["outer"])["run"])["effect call"]
    callee = r[call.attributes["golemd.effect.idempotency_key"]]
    # recovered without its parent, the callee took it back when its caller waited on it again
    assert callee.trace_id == r["outer"].trace_id and callee.parent == call.span_id
    # the waits journaled before the crash keep their start
    wait = children(spans, children(spans, callee)["run"])["effect wait"]
    assert call.start < killed * 1e9 < call.end and wait.start < killed * 1e9 < wait.end


def test_the_last_spans_are_flushed_at_shutdown() -> None:
    with collector() as c:
        # an export schedule far beyond the test: only the shutdown's flush sends them
        with traced_daemon(c, delay_ms=600_000) as d:
            conn = d.conn()
            conn.ok("invoke", agent='CounterAgent("fl")', method="increment", idempotency_key="last")
            conn.close()
            time.sleep(0.3)
            assert "last" not in roots(c.snapshot())
        # running() stopped it with SIGTERM and checked it exited 0
        assert set(children(c.snapshot(), roots(c.snapshot())["last"])) == {"queue", "run", "commit"}


def test_without_the_extra_golemd_says_what_to_install(tmp_path: Any) -> None:
    # opentelemetry made unimportable, as when golemd[otel] is not installed
    code = ("import sys; sys.modules['opentelemetry'] = None; from golemd.cli import main; "
            "main(prog_name='golemd')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLEMD_", "NOTIFY_", "LISTEN_"))}
    out = subprocess.run([sys.executable, "-c", code, "--socket", str(tmp_path / "s.sock"), "--state-dir",
                          str(tmp_path / "state"), "--app", EXAMPLES, "--otel-endpoint", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "pip install 'golemd[otel]'" in out.stderr and "opentelemetry" in out.stderr
    assert not (tmp_path / "s.sock").exists()


def test_an_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="otel_endpoint must be an http"):
        Config(otel_endpoint="127.0.0.1:4318").validate()
    assert Config(otel_endpoint="https://collector.example:4318").validate().otel_endpoint
