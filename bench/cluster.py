"""The cluster's throughput (issue 15): W2's pipelined awaited calls on one
PostgreSQL (fsync and synchronous_commit on, as a real one runs), through 1,
2 and 3 nodes on this machine, and the single-node PostgreSQL store against
SQLite. Each node's client calls agents that node owns (placed there by
its first call), so the figure is the cluster's capacity; `--forwarded`
adds a run where every call goes to a node that does not own its agent
(one forwarding hop per call). CPU per call from /proc/PID/schedstat over
the daemons, their workers and PostgreSQL.

This machine has 2 cores: three nodes and PostgreSQL share them, so the
figures say what the extra work per call costs, not how a cluster of real
machines scales (docs/cluster.md extrapolates).

    python -m bench.cluster [--calls 20000] [--agents 60] [--forwarded]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.client import RawClient, counter_id  # noqa: E402
from bench.schedcpu import tree_cpu  # noqa: E402
from bench.systems import Server  # noqa: E402
from golemd.testing_pg import PgCluster  # noqa: E402

# A real server's durability: fsync and synchronous_commit as PostgreSQL ships them.
DURABLE = ("max_connections=100", "shared_buffers=128MB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nodes(url: str, count: int, base: str) -> list[Server]:
    secret = os.path.join(base, "secret")
    with open(secret, "w") as f:
        f.write(secrets.token_urlsafe(32))
    servers = []
    for i in range(count):
        extra = ("--store", url, "--node", f"n{i}", "--node-listen", f"127.0.0.1:{free_port()}",
                 "--cluster-secret-file", secret)
        s = Server(f"golemd-node{i}", extra=extra)
        s.start()
        servers.append(s)
    return servers


def pg_pids(pg: PgCluster) -> list[int]:
    """The postmaster of this cluster, whose children are its backends."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        return [int(f.readline())]


def run(servers: list[Server], pg_root: int | None, agents: int, calls: int, forwarded: bool,
        tag: str) -> dict[str, Any]:
    n = len(servers)
    names = [[counter_id(f"{tag}-n{i}-{j}") for j in range(agents)] for i in range(n)]
    for i, s in enumerate(servers):  # place each node's agents on it
        with RawClient(s.socket) as c:
            c.pipeline(names[i], window=agents)
    per_node = calls // n
    roots = [s.pid for s in servers] + ([pg_root] if pg_root else [])
    before = [tree_cpu(r) for r in roots]
    walls: list[float] = [0.0] * n

    def drive(i: int) -> None:
        target = names[(i + 1) % n] if forwarded and n > 1 else names[i]
        with RawClient(servers[i].socket) as c:
            walls[i] = c.pipeline([target[k % agents] for k in range(per_node)], window=500)

    began = time.perf_counter()
    threads = [threading.Thread(target=drive, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    spent = sum(sum(tree_cpu(r, b)) for r, b in zip(roots, before, strict=True))
    return {"calls_s": per_node * n / wall, "cpu_us": spent / (per_node * n) * 1e6}


def sqlite_w2(agents: int, calls: int) -> dict[str, Any]:
    s = Server("golemd-sqlite")
    s.start()
    try:
        names = [counter_id(f"sq-{j}") for j in range(agents)]
        with RawClient(s.socket) as c:
            c.pipeline(names, window=agents)
            before = tree_cpu(s.pid)
            wall = c.pipeline([names[k % agents] for k in range(calls)], window=500)
            spent = sum(tree_cpu(s.pid, before))
        return {"calls_s": calls / wall, "cpu_us": spent / calls * 1e6}
    finally:
        s.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--agents", type=int, default=60)
    p.add_argument("--forwarded", action="store_true")
    args = p.parse_args()
    rows = [("SQLite, one daemon", sqlite_w2(args.agents, args.calls))]
    base = tempfile.mkdtemp(prefix="gbc-")
    with PgCluster(settings=DURABLE) as pg:
        pg_root = pg_pids(pg)[0]
        for count in (1, 2, 3):
            url = pg.create_database()
            servers = start_nodes(url, count, base)
            try:
                rows.append((f"PostgreSQL, {count} node{'s' if count > 1 else ''}",
                             run(servers, pg_root, args.agents, args.calls, False, f"c{count}")))
                if args.forwarded and count > 1:
                    rows.append((f"PostgreSQL, {count} nodes, every call forwarded",
                                 run(servers, pg_root, args.agents, args.calls, True, f"f{count}")))
            finally:
                for s in servers:
                    s.stop()
    shutil.rmtree(base, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    print(f"\n{platform.node()}, {cpu}, {psutil.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; "
          f"{args.calls} pipelined awaited calls over {args.agents} agents per node:")
    print("| store, nodes | calls/s | CPU per call (us, daemons + workers + PostgreSQL) |")
    print("|---|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['calls_s']:,.0f} | {r['cpu_us']:.0f} |")


if __name__ == "__main__":
    main()
