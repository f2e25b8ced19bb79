"""Two (or more) checkouts of golemd, measured in turns: W1's or W2's shape.

    python -m bench.turns ROUNDS w1|w2 CALLS LABEL=ROOT:SYSTEM[:SPIN_US] ...
    python -m bench.turns 5 w1 3000 floor=.:floor before=/tmp/old:golemd:0 after=.:golemd:0

A VM's speed can move by a third between quarter-hours, so one version
measured now and another in ten minutes compares the minutes, not the
versions. Here each round starts every variant once, one after another, on a
fresh server from its own checkout (ROOT: a git worktree, say), and the
figures are the medians over the rounds, each round's figure shown. w1: one
warm agent, CALLS sequential awaited calls, p50 in microseconds; w2: 100 warm
agents, CALLS pipelined calls (1,000 in flight), calls per second. Beside
each, the CPU per call of the daemon and of its workers (schedstat), and the
VM's steal time over the whole comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import bench.systems as systems
from bench.client import RawClient, counter_id
from bench.noise import ForeignCPU
from bench.schedcpu import tree_cpu


@dataclass(frozen=True)
class Variant:
    label: str
    root: Path
    system: str  # floor or golemd
    spin_us: float | None

    @classmethod
    def parse(cls, spec: str) -> Variant:
        label, _, rest = spec.partition("=")
        parts = rest.split(":")
        if not label or len(parts) not in (2, 3) or parts[1] not in ("floor", "golemd"):
            raise argparse.ArgumentTypeError(f"{spec!r}: want LABEL=ROOT:floor|golemd[:SPIN_US]")
        return cls(label, Path(parts[0]).resolve(), parts[1], float(parts[2]) if len(parts) == 3 else None)


def measure(v: Variant, shape: str, calls: int) -> tuple[float, float, float]:
    """(figure, daemon CPU us per call, workers' CPU us per call) on a fresh server of `v`."""
    systems.ROOT = v.root  # the server runs from its own checkout (its cwd and its bench/agents.py)
    server = systems.Server(v.system, spin_us=v.spin_us)
    server.start()
    try:
        names = [counter_id("turns-0")] if shape == "w1" else [counter_id(f"w2-{i}") for i in range(100)]
        with RawClient(server.socket) as c:
            c.pipeline(names, window=len(names))
            if shape == "w1":
                c.timed_invokes(names[0], 300)
            else:
                c.pipeline([names[i % 100] for i in range(5000)], window=1000)
            before = tree_cpu(server.pid)
            t0 = time.perf_counter()
            if shape == "w1":
                figure = statistics.median(c.timed_invokes(names[0], calls)) * 1e6
            else:
                c.pipeline([names[i % 100] for i in range(calls)], window=1000)
                figure = calls / (time.perf_counter() - t0)
            daemon, workers = tree_cpu(server.pid, before)
        return figure, daemon / calls * 1e6, workers / calls * 1e6
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rounds", type=int)
    p.add_argument("shape", choices=("w1", "w2"))
    p.add_argument("calls", type=int)
    p.add_argument("variants", nargs="+", type=Variant.parse)
    args = p.parse_args()
    noise = ForeignCPU()
    runs: dict[str, list[tuple[float, float, float]]] = {v.label: [] for v in args.variants}
    for _ in range(args.rounds):
        for v in args.variants:
            runs[v.label].append(measure(v, args.shape, args.calls))
    unit = "p50 us" if args.shape == "w1" else "calls/s"
    for v in args.variants:
        figs, daemon, workers = zip(*runs[v.label], strict=True)
        print(f"{v.label:12s} {unit} {statistics.median(figs):9.1f} ({', '.join(f'{f:.0f}' for f in figs)})  "
              f"CPU per call: daemon {statistics.median(daemon):6.1f} us, workers {statistics.median(workers):6.1f} us")
    print(f"noise: other processes {noise.percent():.0f}% of a core, the VM's steal {noise.steal_percent():.0f}% "
          f"of a core (python -m bench.turns, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
