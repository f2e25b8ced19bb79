"""Where the CPU goes under pipelined load: the server, its workers, the client.

    python -m bench.cpusplit [golemd|floor] [--calls N] [--sequential]

W2's shape (100 warm agents, calls round-robin, 1,000 in flight on one
connection), with the CPU time (from /proc/PID/schedstat) of the server
process, of its descendants and of this client taken before and after. Per
call, so it shows which process is the bottleneck without a profiler's
distortion.
"""

from __future__ import annotations

import argparse
import os

import psutil

from bench.client import RawClient, counter_id
from bench.schedcpu import cpu_seconds, schedstat
from bench.systems import Server


def measure(name: str, calls: int, agents: int = 100, window: int = 1000,
            sequential: bool = False, pin: bool = False) -> dict[str, float]:
    """W2's shape, or with `sequential` W1's: one warm agent, one call at a time.
    `pin`: the server and this client on the first CPU, the workers on the
    second, so that the scheduler's placement does not change the work per
    call from one run to the next (for comparing two versions, not a figure)."""
    server = Server(name, spin_us=0.0 if name == "golemd-nopoll" else None,
                    batch_calls=0 if name == "golemd-nobatch" else None)
    server.start()
    try:
        names = [counter_id(f"w2-{i}") for i in range(agents)]
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[0]})
            os.sched_setaffinity(server.pid, {cpus[0]})
            for child in psutil.Process(server.pid).children():  # the template: the workers it forks inherit it
                os.sched_setaffinity(child.pid, {cpus[1]})
        with RawClient(server.socket) as c:
            c.pipeline(names, window=agents)  # every agent warm
            root = psutil.Process(server.pid)
            procs = [root, *root.children(recursive=True)]
            me = psutil.Process()
            before = {p.pid: schedstat(p.pid) for p in procs}
            mine = cpu_seconds(me.pid)
            if sequential:
                wall = sum(c.timed_invokes(names[0], calls))
            else:
                wall = c.pipeline([names[i % agents] for i in range(calls)], window=window)
            mine = cpu_seconds(me.pid) - mine
            spent: dict[int, float] = {}
            runs: dict[int, int] = {}
            for p in procs:
                try:
                    cpu, ran = schedstat(p.pid)
                    spent[p.pid] = cpu - before[p.pid][0]
                    runs[p.pid] = ran - before[p.pid][1]
                except psutil.NoSuchProcess:
                    pass
    finally:
        server.stop()
    us = 1e6 / calls
    server_runs = runs.pop(server.pid, 0)
    return {"calls_s": calls / wall, "server_us": spent.pop(server.pid, 0.0) * us,
            "workers_us": sum(spent.values()) * us, "client_us": mine * us,
            "server_runs": server_runs / calls, "workers_runs": sum(runs.values()) / calls}



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("system", nargs="?", default="golemd", choices=["golemd", "golemd-nopoll", "golemd-nobatch", "floor"])
    p.add_argument("--calls", type=int, default=40_000)
    p.add_argument("--sequential", action="store_true", help="W1's shape: one agent, one call at a time")
    p.add_argument("--pin", action="store_true",
                   help="server and client on one CPU, workers on another: steadier, for comparisons")
    args = p.parse_args()
    r = measure(args.system, args.calls, sequential=args.sequential, pin=args.pin)
    print(f"{args.system}: {r['calls_s']:,.0f} calls/s; CPU per call: server {r['server_us']:.1f} us, "
          f"its workers {r['workers_us']:.1f} us, this client {r['client_us']:.1f} us; "
          f"runs per call: server {r['server_runs']:.2f}, workers {r['workers_runs']:.2f}")


if __name__ == "__main__":
    main()
