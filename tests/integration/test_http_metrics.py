"""/metrics moves by exactly what happened: invocations by outcome,
failures, cancels, worker starts, deaths and retries, parsed with
prometheus_client's own parser around a real run."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import DaemonProc, RawConn, wait_for
from tests.http_helpers import base_of, golemctl_dashboard, http_daemon

SAMPLE = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
def hd() -> Iterator[DaemonProc]:
    with http_daemon() as d:
        yield d


def scrape(base: str) -> dict[SAMPLE, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples: dict[SAMPLE, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def moved(before: dict[SAMPLE, float], after: dict[SAMPLE, float], name: str) -> dict[tuple, float]:
    """name's samples that changed, by labels: after - before."""
    out = {}
    for (n, labels), value in after.items():
        if n == name and value != before.get((n, labels), 0.0):
            out[labels] = value - before.get((n, labels), 0.0)
    return out


def labels(**kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kv.items()))


def test_counts_move_by_what_happened(hd: DaemonProc, tmp_path) -> None:
    base = base_of(golemctl_dashboard(hd))
    c = hd.conn()
    before = scrape(base)
    for _ in range(3):
        c.ok("invoke", agent='CounterAgent("m")', method="increment")
    assert c.err("invoke", agent='CounterAgent("m")', method="fail_after_add", args=[1]) == "INVOCATION_FAILED"
    # a cancel: queued behind a running one, canceled, never run
    c.ok("invoke", agent='SlowAgent("m")', method="work", args=[30, "busy"], mode="trigger",
         idempotency_key="busy")
    wait_for(lambda: c.meta('SlowAgent("m")').get("current_invocation"), what="busy to start")
    c.ok("invoke", agent='SlowAgent("m")', method="work", args=[0.1, "q"], mode="trigger", idempotency_key="q")
    c.ok("cancel", agent='SlowAgent("m")', idempotency_key="q")
    # a death and its retry: dies once, then succeeds
    marker = str(tmp_path / "marker")
    with open(marker + ".die", "w") as f:
        f.write("1")
    assert c.ok("invoke", agent='Crashy("m")', method="add_then_die", args=[5, marker])["result"] == 5
    after = scrape(base)
    c.close()

    assert moved(before, after, "golemd_invocations_total") == {
        labels(agent_type="CounterAgent", method="increment", outcome="completed"): 3,
        labels(agent_type="CounterAgent", method="fail_after_add", outcome="failed"): 1,
        labels(agent_type="SlowAgent", method="work", outcome="canceled"): 1,
        labels(agent_type="Crashy", method="add_then_die", outcome="completed"): 1,
    }
    assert moved(before, after, "golemd_worker_deaths_total") == {labels(agent_type="Crashy"): 1}
    assert moved(before, after, "golemd_invocation_retries_total") == {labels(agent_type="Crashy"): 1}
    assert moved(before, after, "golemd_worker_starts_total") == {
        labels(agent_type="CounterAgent"): 1, labels(agent_type="SlowAgent"): 1, labels(agent_type="Crashy"): 2}
    # run time: one observation per started invocation that ended (the canceled one never started)
    assert moved(before, after, "golemd_invocation_run_seconds_count") == {
        labels(agent_type="CounterAgent", method="increment"): 3,
        labels(agent_type="CounterAgent", method="fail_after_add"): 1,
        labels(agent_type="Crashy", method="add_then_die"): 1,
    }
    # queue wait: one per first start (busy is still running: started, not ended)
    assert moved(before, after, "golemd_invocation_queue_wait_seconds_count") == {
        labels(agent_type="CounterAgent"): 4, labels(agent_type="SlowAgent"): 1, labels(agent_type="Crashy"): 1}
    assert after[("golemd_store_commit_seconds_count", ())] > before.get(("golemd_store_commit_seconds_count", ()), 0)
    # gauges, read at the scrape
    assert after[("golemd_agents", labels(status="Running"))] == 1  # SlowAgent, busy
    assert after[("golemd_agents", labels(status="Idle"))] == 2
    assert after[("golemd_live_workers", ())] == 3
    assert after[("golemd_pending_invocations", labels(agent_type="SlowAgent"))] == 0
    # golemctl dashboard's connection and ours; two scrapes
    assert after[("golemd_connections_total", labels(kind="socket"))] == 2
    assert after[("golemd_connections_total", labels(kind="http"))] == 2
    assert after[("golemd_open_connections", labels(kind="socket"))] == 1


def test_pending_gauge_counts_the_queue(hd: DaemonProc) -> None:
    base = base_of(golemctl_dashboard(hd))
    c = hd.conn()
    c.ok("invoke", agent='SlowAgent("p")', method="work", args=[30, "busy"], mode="trigger", idempotency_key="b")
    wait_for(lambda: c.meta('SlowAgent("p")').get("current_invocation"), what="busy to start")
    for i in range(4):
        c.ok("invoke", agent='SlowAgent("p")', method="work", args=[0.1, str(i)], mode="trigger")
    assert scrape(base)[("golemd_pending_invocations", labels(agent_type="SlowAgent"))] == 4
    c.ok("interrupt", agent='SlowAgent("p")')
    wait_for(lambda: c.meta('SlowAgent("p")')["status"] == "Interrupted"
             and c.meta('SlowAgent("p")')["pending_invocation_count"] == 5, what="busy to go back to the queue")
    s = scrape(base)
    assert s[("golemd_pending_invocations", labels(agent_type="SlowAgent"))] == 5  # busy went back
    assert s[("golemd_agents", labels(status="Interrupted"))] == 1
    c.close()


def test_no_agent_id_is_a_label(hd: DaemonProc) -> None:
    base = base_of(golemctl_dashboard(hd))
    c: RawConn = hd.conn()
    for i in range(20):
        c.ok("invoke", agent=f'CounterAgent("n{i}")', method="increment")
    c.close()
    s = scrape(base)
    assert not [k for k in s if any("n1" in v for _, v in k[1])]
    assert s[("golemd_invocations_total", labels(agent_type="CounterAgent", method="increment",
                                                 outcome="completed"))] == 20


def test_metrics_are_off_without_http() -> None:
    from tests.helpers import running

    with running() as d:
        c = d.conn()
        assert c.err("dashboard") == "NOT_ENABLED"
        assert "--http" in c.call("dashboard")["error"]["message"]
        c.close()
        assert not [line for line in d.log().splitlines() if "dashboard and /metrics on" in line]
    assert os.environ.get("GOLEMD_HTTP") is None
