"""How much CPU other processes on the machine used while a system was measured.

The machine is shared (test suites, other builds): a figure taken while
something else burns a core is not worth much. Processes that are not ours
(not this process or its descendants) are sampled at the start and the end;
the difference is reported as a percentage of one core. Short-lived foreign
processes that start and end in between are missed, so it is a lower bound.
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


class ForeignCPU:
    """Start it before a system's run; `percent()` after it."""

    def __init__(self) -> None:
        self.start = _snapshot()
        self.t0 = time.monotonic()

    def percent(self) -> float:
        end = _snapshot()
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        used = sum(max(0.0, cpu - self.start.get(key, 0.0)) for key, cpu in end.items())
        return used / elapsed * 100
