"""What durable execution costs (issue 12's goals), on golemd with its defaults:

- an awaited call between two warm agents, timed inside the caller, against
  a warm call from a client (golemctl's client library) on the same daemon:
  p50 latency and CPU per call (daemon and workers, /proc/PID/schedstat);
- a step, timed inside the agent: one journal row, group-committed;
- memory: N agents each waiting on a promise once suspended, against N
  agents suspended idle (total PSS of golemd and its processes, and the
  daemon's RSS).

    python -m bench.durable [--calls 2000] [--agents 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.schedcpu import tree_cpu  # noqa: E402
from tests.helpers import RawConn, running  # noqa: E402

APPS = (str(ROOT / "bench" / "agents.py"),)
TARGET = 'BenchCounter("t")'
CALLER = 'BenchCaller("c")'


def p50(values: list[float]) -> float:
    return statistics.median(values)


def pss_total(pid: int) -> float:
    """PSS of the daemon and every process below it, in MiB."""
    total = 0
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def calls(n: int, spin_us: float | None) -> dict[str, float]:
    extra = ("--spin-us", str(spin_us)) if spin_us is not None else ()
    with running(args=("--log-level", "WARNING", *extra), apps=APPS) as d:
        c = RawConn(d.socket, timeout=300)
        c.ok("invoke", agent=TARGET, method="increment")
        c.ok("invoke", agent=CALLER, method="noop")
        pid = d.proc.pid
        # a warm call from a client, one at a time
        lat = []
        before = tree_cpu(pid)
        for _ in range(n):
            t0 = time.perf_counter()
            c.ok("invoke", agent=TARGET, method="increment")
            lat.append(time.perf_counter() - t0)
        srv, wrk = tree_cpu(pid, before)
        client_cpu = (srv + wrk) / n
        # the same number of awaited calls from the caller agent
        c.ok("invoke", agent=CALLER, method="calls", args=[TARGET, 50])  # warm-up
        before = tree_cpu(pid)
        remote = c.ok("invoke", agent=CALLER, method="calls", args=[TARGET, n])["result"]
        srv, wrk = tree_cpu(pid, before)
        remote_cpu = (srv + wrk) / n
        steps = c.ok("invoke", agent=CALLER, method="steps", args=[n])["result"]
        c.close()
    out = {"client_p50_us": p50(lat) * 1e6, "client_cpu_us": client_cpu * 1e6,
           "remote_p50_us": p50(remote) * 1e6, "remote_cpu_us": remote_cpu * 1e6,
           "step_p50_us": p50(steps) * 1e6}
    out["remote_over_client"] = out["remote_p50_us"] / out["client_p50_us"]
    return out


def memory(n: int, waiting: bool) -> dict[str, float]:
    config = {"max_live_workers": 64, "suspend_after": 0.5, "idle_timeout": 0.5}
    with running(config, args=("--log-level", "WARNING"), apps=APPS) as d:
        c = RawConn(d.socket, timeout=300)
        method = "approval" if waiting else "noop"
        rids = [c.send(op="invoke", agent=f'BenchCaller("m{i}")', method=method, mode="trigger")
                for i in range(n)]
        for rid in rids:
            r = c.reply(rid)
            assert "error" not in r, r
        deadline = time.monotonic() + 600
        while True:
            status = c.ok("status")
            done = int(status["agents_by_status"].get("Suspended", 0))
            if (done >= n and status["live_workers"] == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        pid = d.proc.pid
        out = {"agents": n, "suspended": done, "pss_mib": pss_total(pid),
               "daemon_rss_mib": psutil.Process(pid).memory_info().rss / 2**20,
               "processes": len(psutil.Process(pid).children(recursive=True)) + 1}
        c.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args()
    for spin in (None, 0.0):
        r = calls(args.calls, spin)
        how = "polling on (default spin_us)" if spin is None else "spin_us = 0 (no polling: CPU is the work)"
        print(f"-- {how}")
        print(f"warm call from a client:        p50 {r['client_p50_us']:8.1f} us, "
              f"CPU {r['client_cpu_us']:7.1f} us/call")
        print(f"awaited call agent -> agent:    p50 {r['remote_p50_us']:8.1f} us, "
              f"CPU {r['remote_cpu_us']:7.1f} us/call  ({r['remote_over_client']:.2f}x the client's p50, "
              f"{r['remote_cpu_us'] / r['client_cpu_us']:.2f}x its CPU)")
        print(f"step:                           p50 {r['step_p50_us']:8.1f} us")
    for waiting in (False, True):
        m = memory(args.agents, waiting)
        what = "waiting on a promise" if waiting else "suspended idle"
        print(f"{m['agents']} agents {what:22s}: {m['suspended']} suspended, {m['processes']} processes, "
              f"PSS {m['pss_mib']:7.1f} MiB, daemon RSS {m['daemon_rss_mib']:6.1f} MiB")


if __name__ == "__main__":
    main()
