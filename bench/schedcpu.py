"""CPU time of a server and its descendants, from /proc/PID/schedstat (the
scheduler's nanoseconds: psutil's cpu_times count 10 ms ticks, which over
100 short-lived workers hides most of their time)."""

from __future__ import annotations

from typing import overload

import psutil


def schedstat(pid: int) -> tuple[float, int]:
    """(CPU seconds, runs): how long it was on a CPU, and how many times the
    scheduler put it there (its wake-ups and its preemptions)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            fields = f.read().split()
    except FileNotFoundError:
        raise psutil.NoSuchProcess(pid) from None
    return int(fields[0]) / 1e9, int(fields[2])


def cpu_seconds(pid: int) -> float:
    return schedstat(pid)[0]


@overload
def tree_cpu(root: int) -> dict[int, float]: ...
@overload
def tree_cpu(root: int, before: dict[int, float]) -> tuple[float, float]: ...


def tree_cpu(root: int, before: dict[int, float] | None = None) -> dict[int, float] | tuple[float, float]:
    """Without `before`: each process's CPU seconds now (the root and its
    descendants). With it: (the root's, its descendants') CPU since, over the
    processes that were there then."""
    if before is None:
        procs = [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
        out = {}
        for pid in procs:
            try:
                out[pid] = cpu_seconds(pid)
            except psutil.NoSuchProcess:
                pass
        return out
    server = workers = 0.0
    for pid, t0 in before.items():
        try:
            spent = cpu_seconds(pid) - t0
        except psutil.NoSuchProcess:
            continue
        if pid == root:
            server += spent
        else:
            workers += spent
    return server, workers
