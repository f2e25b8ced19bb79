"""W1-W3 on Ray actors: the same counter (bench.agents.BenchCounter) as a Ray actor class.

    PYTHONPATH=REPO  RAY_PYTHON -m bench.ray_bench --only W1,W2,W3 [--w3-count N]

Runs in whatever interpreter has `ray` (usually a throwaway venv, never the
project's). golemd must be importable (PYTHONPATH) only because
bench.agents imports its @agent decorator. Prints one JSON object of
figures on its last stdout line, as bench.run expects.

Actors take num_cpus=0, or a 2-core machine could hold two of them.
W2 keeps up to 1,000 calls in flight with ray.wait; W3 creates a new actor
(a new worker process) and awaits its first call, then kills it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(only: set[str], w1_calls: int, w2_agents: int, w2_calls: int, window: int,
        w3_count: int) -> dict[str, Any]:
    import ray

    from bench.agents import BenchCounter

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             configure_logging=True)
    Counter = ray.remote(num_cpus=0)(BenchCounter)
    figures: dict[str, Any] = {"ready_s": time.perf_counter() - t0, "version": ray.__version__}
    if "W1" in only:
        a = Counter.remote("w1")
        ray.get(a.increment.remote())
        lat = []
        for _ in range(w1_calls):
            t = time.perf_counter()
            ray.get(a.increment.remote())
            lat.append(time.perf_counter() - t)
        figures["w1_p50_us"] = statistics.median(lat) * 1e6
        figures["w1_p99_us"] = _quantile(lat, 0.99) * 1e6
        ray.kill(a)
    if "W2" in only:
        actors = [Counter.remote(f"w2-{i}") for i in range(w2_agents)]
        ray.get([a.increment.remote() for a in actors])
        t = time.perf_counter()
        pending: list[Any] = []
        sent = done = 0
        while done < w2_calls:
            while sent < w2_calls and len(pending) < window:
                pending.append(actors[sent % w2_agents].increment.remote())
                sent += 1
            ready, pending = ray.wait(pending, num_returns=min(len(pending), max(1, window // 10)))
            ray.get(ready)
            done += len(ready)
        figures["w2_calls_s"] = w2_calls / (time.perf_counter() - t)
        figures["w2_note"] = f"{w2_agents} actors, {w2_calls} calls"
        for a in actors:
            ray.kill(a)
    if "W3" in only:
        times = []
        for i in range(w3_count):
            t = time.perf_counter()
            a = Counter.remote(f"w3-{i}")
            ray.get(a.increment.remote())
            times.append(time.perf_counter() - t)
            ray.kill(a)
        figures["w3_median_ms"] = statistics.median(times) * 1e3
        figures["w3_p90_ms"] = _quantile(times, 0.9) * 1e3
        figures["w3_note"] = f"{w3_count} new actors"
    ray.shutdown()
    return figures


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ray_bench")
    p.add_argument("--only", default="W1,W2,W3")
    p.add_argument("--w1-calls", type=int, default=2000)
    p.add_argument("--w2-agents", type=int, default=100)
    p.add_argument("--w2-calls", type=int, default=20000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--w3-count", type=int, default=200)
    a = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    figures = run(set(a.only.upper().split(",")), a.w1_calls, a.w2_agents, a.w2_calls, a.window,
                  a.w3_count)
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
