"""How much CPU other processes on the machine used while a system was measured.

The machine is shared (test suites, other builds): a figure taken while
something else burns a core is not worth much. Processes that are not ours
(not this process or its descendants) are sampled at the start and the end;
the difference is reported as a percentage of one core. Short-lived foreign
processes that start and end in between are missed, so it is a lower bound.

On a virtual machine the host may also run something else on our vCPUs:
the kernel counts that time as steal (/proc/stat). It is reported beside
the other processes' CPU: it slows every system down, and not alike (a
call that waits on two wake-ups loses more than one that computes).
"""

from __future__ import annotations

import os
import time

import psutil

Snapshot = dict[tuple[int, float], float]


def _ours() -> set[int]:
    me = psutil.Process(os.getpid())
    return {me.pid} | {p.pid for p in me.children(recursive=True)}


def _snapshot() -> Snapshot:
    mine = _ours()
    out: Snapshot = {}
    for p in psutil.process_iter(["pid", "create_time", "cpu_times"]):
        info = p.info
        if info["pid"] in mine or info["cpu_times"] is None:
            continue
        out[(info["pid"], info["create_time"])] = info["cpu_times"].user + info["cpu_times"].system
    return out


def _steal_s() -> float:
    """CPU time stolen from this machine by its host so far, over all CPUs (0 off a VM)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


class ForeignCPU:
    """Start it before a system's run; `percent()` and `steal_percent()` after it."""

    def __init__(self) -> None:
        self.start = _snapshot()
        self.steal0 = _steal_s()
        self.t0 = time.monotonic()

    def steal_percent(self) -> float:
        """The host's steal since the start, as a percentage of one core."""
        return (_steal_s() - self.steal0) / max(time.monotonic() - self.t0, 1e-9) * 100

    def percent(self) -> float:
        end = _snapshot()
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        used = sum(max(0.0, cpu - self.start.get(key, 0.0)) for key, cpu in end.items())
        return used / elapsed * 100
