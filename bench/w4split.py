"""Where a new agent's cost goes (W4's shape): the daemon, the template, the workers.

    python -m bench.w4split [--agents N]

N new agents, each invoked once, 200 in flight, on a fresh golemd; then the
CPU seconds of the daemon (schedstat), of the template (its own utime and
stime) and of the workers it reaped (the template's cutime and cstime, which
is where a dead worker's time goes), and the page faults of the template
and of the reaped workers, per agent. Kernel tick accounting splits user from
system time only roughly; the sums are what to compare.
"""

from __future__ import annotations

import argparse
import os

import psutil

from bench.client import RawClient, counter_id
from bench.schedcpu import cpu_seconds
from bench.systems import Server


def _times(pid: int) -> list[float]:
    """utime, stime, cutime, cstime (seconds), minflt, cminflt of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return [int(fields[i]) / tick for i in (11, 12, 13, 14)] + [float(fields[7]), float(fields[8])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5000)
    n = p.parse_args().agents
    server = Server("golemd")
    server.start()
    try:
        template = psutil.Process(server.pid).children()[0].pid
        before, daemon0 = _times(template), cpu_seconds(server.pid)
        with RawClient(server.socket, timeout=600) as c:
            wall = c.pipeline([counter_id(f"w4-{i}") for i in range(n)], window=200)
        after, daemon = _times(template), cpu_seconds(server.pid) - daemon0
    finally:
        server.stop()
    d = [b - a for a, b in zip(before, after, strict=True)]
    ms = 1000 / n
    print(f"{n:,} new agents in {wall:.2f} s ({n / wall:,.0f}/s); CPU per agent: daemon {daemon * ms:.2f} ms, "
          f"template {(d[0] + d[1]) * ms:.2f} ms, workers {(d[2] + d[3]) * ms:.2f} ms "
          f"(user {d[2] * ms:.2f}, system {d[3] * ms:.2f}); page faults per agent: template {d[4] / n:.0f}, "
          f"workers {d[5] / n:.0f}")


if __name__ == "__main__":
    main()
