"""/metrics: the daemon's counters in Prometheus' text format (prometheus_client).

Counters and histograms move with what the engine tells its observer
(golemd.engine.observer); gauges are read from the supervisor when scraped,
so that between scrapes they cost nothing. Labels are bounded by the code
loaded (agent type, method) and by fixed sets (outcome, status, kind):
never an agent ID or an idempotency key. docs/operations.md lists them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from golemd.model.invocation import Invocation

if TYPE_CHECKING:
    from golemd.driver.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Invocations take from under a millisecond (a warm call) to minutes.
RUN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
               0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COMMIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1, 0.25, 1.0)


class _Counter:
    """A counter family kept as plain ints by label values: the daemon adds to
    it on every invocation, so it must cost next to nothing (prometheus_client's
    own takes a lock and builds its key per call); it is turned into
    prometheus_client's families only when scraped."""

    __slots__ = ("name", "doc", "labels", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0) + 1

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in sorted(self.values.items()):
            fam.add_metric(labels, value)
        return fam


class _Histogram:
    """A histogram family, as _Counter: per label values, a count per bucket and the sum."""

    __slots__ = ("name", "doc", "labels", "bounds", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.values: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, value: float, *labels: str) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        row[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' `le`
        row[-1] += value

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, row in sorted(self.values.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), row[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else floatToGoString(bound), cumulative))
            fam.add_metric(labels, buckets, sum_value=row[-1])
        return fam


class Metrics:
    """The registry, and the engine's observer that keeps its counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.invocations = _Counter(
            "golemd_invocations", "Invocations whose outcome was committed, by outcome "
            "(completed, failed, canceled).", ("agent_type", "method", "outcome"))
        self.run_seconds = _Histogram(
            "golemd_invocation_run_seconds", "From an invocation's first start to its outcome.",
            ("agent_type", "method"), RUN_BUCKETS)
        self.queue_wait = _Histogram(
            "golemd_invocation_queue_wait_seconds", "From an invocation's enqueue (or its "
            "scheduled time) to its first start.", ("agent_type",), RUN_BUCKETS)
        self.worker_starts = _Counter("golemd_worker_starts", "Worker processes started.", ("agent_type",))
        self.worker_deaths = _Counter(
            "golemd_worker_deaths", "Worker processes that died without golemd asking them to stop.",
            ("agent_type",))
        self.retries = _Counter("golemd_invocation_retries", "Invocations retried after their worker died.",
                                ("agent_type",))
        self.commit_seconds = _Histogram("golemd_store_commit_seconds", "How long each store commit took.",
                                         (), COMMIT_BUCKETS)
        self.connections = _Counter(
            "golemd_connections", "Connections accepted, by kind (socket: the Unix socket; http).", ("kind",))
        self.http_requests = _Counter("golemd_http_requests", "HTTP requests answered, by route and status code.",
                                      ("route", "code"))
        self.registry.register(_Families([self.invocations, self.run_seconds, self.queue_wait,
                                          self.worker_starts, self.worker_deaths, self.retries,
                                          self.commit_seconds, self.connections, self.http_requests]))

    def socket_connection(self) -> None:
        self.connections.inc("socket")

    def http_connection(self) -> None:
        self.connections.inc("http")

    def watch(self, supervisor: Supervisor, open_connections: Callable[[], dict[str, int]],
              calls_in_flight: Callable[[], int]) -> None:
        """Gauges read from the daemon at each scrape."""
        self.registry.register(_Gauges(supervisor, open_connections, calls_in_flight))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def commit_timer(self, nanoseconds: int) -> None:
        self.commit_seconds.observe(nanoseconds / 1e9)

    # -- golemd.engine.observer.Observer --------------------------------------------

    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        assert inv.started_at is not None
        since = max(inv.created_at, inv.schedule_at or 0.0)
        self.queue_wait.observe(max(0.0, inv.started_at - since), type_name)

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        self.invocations.inc(type_name, inv.method, outcome)
        if inv.started_at is not None:
            self.run_seconds.observe(max(0.0, finished_at - inv.started_at), type_name, inv.method)

    def worker_started(self, type_name: str) -> None:
        self.worker_starts.inc(type_name)

    def worker_died(self, type_name: str) -> None:
        self.worker_deaths.inc(type_name)

    def retried(self, type_name: str) -> None:
        self.retries.inc(type_name)

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any],
                    error: str | None) -> None:
        pass  # no metric counts effects (the oplog and the traces show each one)


class _Families(Collector):
    def __init__(self, families: list[_Counter | _Histogram]) -> None:
        self.families = families

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        for f in self.families:
            yield f.family()


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
