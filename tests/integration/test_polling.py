"""spin_us: the daemon and its workers poll before they sleep, and stop when calls stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.helpers import ROOT, RawConn, running, toml_text, wait_for


def _cpu_seconds(pid: int) -> float:
    """Time on a CPU, in ns from the scheduler (psutil's ticks are too coarse for 1 s)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _check_config(tmp_path: Path, spin: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "golemd.toml"
    path.write_text(toml_text({"spin_us": spin}))
    return subprocess.run([sys.executable, "-m", "golemd.cli", "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))


def test_spin_us_is_validated(tmp_path: Path):
    bad = _check_config(tmp_path, -1.0)
    assert bad.returncode == 2
    assert "spin_us must not be negative" in bad.stderr
    off = _check_config(tmp_path, 0)
    assert off.returncode == 0, off.stderr
    assert "spin_us = 0.0" in off.stdout


def test_warm_calls_without_polling():
    with running({"spin_us": 0}) as d:
        c = d.conn()
        agent = 'CounterAgent("nopoll")'
        assert [c.ok("invoke", agent=agent, method="increment")["result"] for _ in range(50)] == list(range(1, 51))


def test_polling_stops_when_the_calls_stop():
    """After a run of warm calls (which the daemon and the worker poll
    between), neither keeps a CPU busy once nobody calls."""
    with running() as d:
        c = d.conn()
        agent = 'CounterAgent("poll")'
        for i in range(1, 301):
            assert c.ok("invoke", agent=agent, method="increment")["result"] == i
        worker = c.ok("get", agent=agent)["agent"]["pid"]
        assert c.ok("status")["calls_in_flight"] == 0  # every reply came: the daemon may poll again
        pids = [d.proc.pid, worker]
        assert all(psutil.pid_exists(p) for p in pids)
        time.sleep(0.2)  # the last waits end their polls
        before = [_cpu_seconds(p) for p in pids]
        t0 = time.monotonic()
        time.sleep(1.0)
        elapsed = time.monotonic() - t0
        used = [(_cpu_seconds(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]
        # A poll that kept going would use most of a core; idle is near 0.
        assert max(used) < 0.05, f"CPU share after the calls stopped: daemon {used[0]:.1%}, worker {used[1]:.1%}"
        assert c.ok("invoke", agent=agent, method="increment")["result"] == 301


def test_calls_in_flight_counts_the_busy_workers():
    """The daemon polls only while fewer calls are out with workers than there
    are CPUs; the count is in `status`, and it must come back to 0."""
    with running() as d:
        c = d.conn()
        slow = [RawConn(d.socket) for _ in range(3)]
        ids = [s.send(op="invoke", agent=f'SlowAgent("f{i}")', method="work", args=[2.0]) for i, s in enumerate(slow)]
        wait_for(lambda: c.ok("status")["calls_in_flight"] == 3, what="three calls out")
        for s, rid in zip(slow, ids, strict=True):
            assert "result" in s.reply(rid)
            s.close()
        assert c.ok("status")["calls_in_flight"] == 0
        cut = RawConn(d.socket)
        rid = cut.send(op="invoke", agent='SlowAgent("f0")', method="work", args=[30.0])
        wait_for(lambda: c.ok("status")["calls_in_flight"] == 1, what="one call out")
        c.ok("interrupt", agent='SlowAgent("f0")')  # its worker is killed mid-call
        assert cut.reply(rid)["error"]["code"] == "INTERRUPTED"
        wait_for(lambda: c.ok("status")["calls_in_flight"] == 0, what="the death to answer what was out")
        cut.close()
