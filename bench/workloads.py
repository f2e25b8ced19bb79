"""The workloads, run through bench.client against the floor and golemd alike.

Each returns a dict of figures (keys as in bench.report.METRICS) and may add
human notes under "notes".
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

from bench.client import RawClient, counter_id
from bench.schedcpu import tree_cpu
from bench.systems import Server


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def w1(server: Server, calls: int = 2000) -> dict[str, Any]:
    """One warm agent: `calls` sequential awaited calls on one connection."""
    with RawClient(server.socket) as c:
        c.invoke(counter_id("w1"))  # warm: creates the agent and its process
        lat = c.timed_invokes(counter_id("w1"), calls)
    return {"w1_p50_us": statistics.median(lat) * 1e6, "w1_p99_us": quantile(lat, 0.99) * 1e6}


def w2(server: Server, agents: int = 100, calls: int = 20_000, window: int = 1000) -> dict[str, Any]:
    """`calls` awaited calls round-robin over `agents` warm agents, pipelined on one connection."""
    names = [counter_id(f"w2-{i}") for i in range(agents)]
    with RawClient(server.socket) as c:
        c.pipeline(names, window=agents)  # warm every agent
        before = tree_cpu(server.pid)
        wall = c.pipeline([names[i % agents] for i in range(calls)], window=window)
        spent = tree_cpu(server.pid, before)
    us = 1e6 / calls
    return {"w2_calls_s": calls / wall, "w2_cpu_us": (spent[0] + spent[1]) * us,
            "w2_cpu_server_us": spent[0] * us, "w2_cpu_workers_us": spent[1] * us}


def w3(server: Server, count: int = 200, tag: str = "") -> dict[str, Any]:
    """First call to a never-used agent, `count` new agents one after another."""
    times = []
    with RawClient(server.socket) as c:
        for i in range(count):
            name = counter_id(f"w3{tag}-{i}")
            t0 = time.perf_counter()
            c.invoke(name)
            times.append(time.perf_counter() - t0)
    return {"w3_median_ms": statistics.median(times) * 1e3, "w3_p90_ms": quantile(times, 0.9) * 1e3}


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_pss(pid: int) -> tuple[int, int]:
    """Total PSS of a process and all its descendants, and how many there are."""
    total = count = 0
    for p in tree(pid):
        try:
            total += p.memory_full_info().pss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, count


def w4(server: Server, agents: int = 10_000, window: int = 200) -> dict[str, Any]:
    """`agents` new agents, each invoked once, `window` in flight; then memory."""
    names = [counter_id(f"w4-{i}") for i in range(agents)]
    with RawClient(server.socket, timeout=600) as c:
        wall = c.pipeline(names, window=window)
        status = c.request("status")
    pss, procs = tree_pss(server.pid)
    rss = psutil.Process(server.pid).memory_info().rss
    out: dict[str, Any] = {"w4_agents": agents, "w4_wall_s": wall, "w4_agents_s": agents / wall,
                           "w4_pss_mb": pss / 2**20, "w4_daemon_rss_mb": rss / 2**20,
                           "w4_processes": procs}
    if "live_workers" in status:
        out["notes"] = [f"after W4: {status['agents']} agents, {status['live_workers']} live workers, "
                        f"by status {status.get('agents_by_status')}"]
    return out


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def idle(server: Server, seconds: float = 5.0, settle: float = 1.0) -> dict[str, Any]:
    """CPU of the server process (and of its whole tree) while nobody calls it."""
    time.sleep(settle)
    root = psutil.Process(server.pid)
    procs = tree(server.pid)
    own0, all0 = _cpu([root]), _cpu(procs)
    time.sleep(seconds)
    own1, all1 = _cpu([root]), _cpu(procs)
    out: dict[str, Any] = {"idle_cpu_pct": (own1 - own0) / seconds * 100,
                           "idle_cpu_tree_pct": (all1 - all0) / seconds * 100, "idle_processes": len(procs)}
    with RawClient(server.socket) as c:
        status = c.request("status")
    if "live_workers" in status:
        out["notes"] = [f"during IDLE: {status['agents']} agents, {status['live_workers']} live workers, "
                        f"{len(procs)} processes in the tree, by status {status.get('agents_by_status')}"]
    return out


def ensure_agents(server: Server, count: int) -> None:
    """Make sure `count` agents exist (IDLE run without W4)."""
    with RawClient(server.socket, timeout=600) as c:
        c.pipeline([counter_id(f"idle-{i}") for i in range(count)], window=200)


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return dt


def golemctl_path() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "golemctl")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "import sys; from golemctl.cli import main; sys.exit(main())"]


def cli(server: Server, runs: int = 20) -> dict[str, Any]:
    """`golemctl agent get` as a whole process vs `python -c "import click, msgpack"`."""
    with RawClient(server.socket) as c:
        c.invoke(counter_id("a1"))
    get = [*golemctl_path(), "--socket", server.socket, "agent", "get", counter_id("a1")]
    base = [sys.executable, "-c", "import click, msgpack"]
    # An installed golemctl has its bytecode compiled by pip; an editable one,
    # under PYTHONDONTWRITEBYTECODE, would recompile its modules on every run.
    import golemctl
    import golemd

    for pkg in (golemctl, golemd):
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(pkg.__file__)],
                       check=False)
    _wall(get)
    _wall(base)  # warm the page cache for both
    gets, bases = [], []
    for _ in range(runs):  # interleaved, so drift hits both alike
        bases.append(_wall(base))
        gets.append(_wall(get))
    return {"cli_ms": statistics.median(gets) * 1e3, "cli_base_ms": statistics.median(bases) * 1e3}
