"""/metrics: the daemon's counters in Prometheus' text format (prometheus_client).

Counters and histograms move with what the engine tells its observer
(golemd.engine.observer); gauges are read from the supervisor when scraped,
so that between scrapes they cost nothing. Labels are bounded by the code
loaded (agent type, method) and by fixed sets (outcome, status, kind):
never an agent ID or an idempotency key. docs/operations.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from golemd.model.invocation import Invocation

if TYPE_CHECKING:
    from golemd.driver.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Invocations take from under a millisecond (a warm call) to minutes.
RUN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
               0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COMMIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1, 0.25, 1.0)


class Metrics:
    """The registry, and the engine's observer that keeps its counters."""

    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series: a second series per counter nobody reads
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.invocations = Counter(
            "golemd_invocations", "Invocations whose outcome was committed, by outcome "
            "(completed, failed, canceled).", ["agent_type", "method", "outcome"], registry=r)
        self.run_seconds = Histogram(
            "golemd_invocation_run_seconds", "From an invocation's first start to its outcome.",
            ["agent_type", "method"], buckets=RUN_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "golemd_invocation_queue_wait_seconds", "From an invocation's enqueue (or its "
            "scheduled time) to its first start.", ["agent_type"], buckets=RUN_BUCKETS, registry=r)
        self.worker_starts = Counter(
            "golemd_worker_starts", "Worker processes started.", ["agent_type"], registry=r)
        self.worker_deaths = Counter(
            "golemd_worker_deaths", "Worker processes that died without golemd asking them to stop.",
            ["agent_type"], registry=r)
        self.retries = Counter(
            "golemd_invocation_retries", "Invocations retried after their worker died.",
            ["agent_type"], registry=r)
        self.commit_seconds = Histogram(
            "golemd_store_commit_seconds", "How long each store commit took.",
            buckets=COMMIT_BUCKETS, registry=r)
        self.connections = Counter(
            "golemd_connections", "Connections accepted, by kind (socket: the Unix socket; http).",
            ["kind"], registry=r)
        self.http_requests = Counter(
            "golemd_http_requests", "HTTP requests answered, by route and status code.",
            ["route", "code"], registry=r)
        # label children, made once: .labels() takes a lock and builds a key each time
        self._children: dict[tuple[str, ...], Any] = {}
        self.socket_connection = self.connections.labels("socket").inc
        self.http_connection = self.connections.labels("http").inc

    def watch(self, supervisor: Supervisor, open_connections: Callable[[], dict[str, int]],
              calls_in_flight: Callable[[], int]) -> None:
        """Gauges read from the daemon at each scrape."""
        self.registry.register(_Gauges(supervisor, open_connections, calls_in_flight))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def commit_timer(self, nanoseconds: int) -> None:
        self.commit_seconds.observe(nanoseconds / 1e9)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- golemd.engine.observer.Observer --------------------------------------------

    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        assert inv.started_at is not None
        since = max(inv.created_at, inv.schedule_at or 0.0)
        self._child(self.queue_wait, type_name).observe(max(0.0, inv.started_at - since))

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        self._child(self.invocations, type_name, inv.method, outcome).inc()
        if inv.started_at is not None:
            self._child(self.run_seconds, type_name, inv.method).observe(
                max(0.0, finished_at - inv.started_at))

    def worker_started(self, type_name: str) -> None:
        self._child(self.worker_starts, type_name).inc()

    def worker_died(self, type_name: str) -> None:
        self._child(self.worker_deaths, type_name).inc()

    def retried(self, type_name: str) -> None:
        self._child(self.retries, type_name).inc()

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any],
                    error: str | None) -> None:
        pass  # no metric counts effects (the oplog and the traces show each one)


class _Gauges(Collector):
    def __init__(self, sup: Supervisor, open_connections: Callable[[], dict[str, int]],
                 calls_in_flight: Callable[[], int]) -> None:
        self.sup = sup
        self.open_connections = open_connections
        self.calls_in_flight = calls_in_flight

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected fresh each time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        agents = self.sup.agents.values()
        by_status = GaugeMetricFamily("golemd_agents", "Agents by status.", labels=["status"])
        counts: dict[str, int] = {}
        pending: dict[str, int] = {}
        live = 0
        for a in agents:
            status = a.status.value
            counts[status] = counts.get(status, 0) + 1
            n = a.engine.pending_count
            if n:
                pending[a.id.type] = pending.get(a.id.type, 0) + n
            if a.worker is not None and a.worker.alive:
                live += 1
        for status, n in sorted(counts.items()):
            by_status.add_metric([status], n)
        yield by_status
        queued = GaugeMetricFamily("golemd_pending_invocations",
                                   "Invocations pending or scheduled (not running), by agent type.",
                                   labels=["agent_type"])
        for type_name in sorted(set(pending) | set(self.sup.types)):
            queued.add_metric([type_name], pending.get(type_name, 0))
        yield queued
        yield GaugeMetricFamily("golemd_live_workers", "Worker processes alive.", value=live)
        yield GaugeMetricFamily("golemd_calls_in_flight",
                                "Calls sent to workers and not answered yet.", value=self.calls_in_flight())
        conns = GaugeMetricFamily("golemd_open_connections", "Connections open now, by kind.",
                                  labels=["kind"])
        for kind, n in sorted(self.open_connections().items()):
            conns.add_metric([kind], n)
        yield conns
