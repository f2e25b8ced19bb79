"""Single-node throughput on SQLite and on PostgreSQL: W2's pipelined awaited
calls (bench.workloads.w2: round-robin over warm agents, one connection),
against golemd on each store, side by side. Run by hand, never in CI.

    python -m bench.pgstore [--calls 20000] [--agents 100] [--window 1000] [--repeat 3]

The systems, each a fresh golemd (bench.systems.Server):

  sqlite            the default: golemd.db, WAL, synchronous=NORMAL (survives a
                    crash of the daemon, not of the machine)
  sqlite-full       synchronous=FULL (an fsync per group commit: survives power loss)
  postgresql        a PostgreSQL of its own on this machine (golemd.testing_pg,
                    fsync on), synchronous_commit=on: survives power loss
  postgresql-async  the same with synchronous_commit=off: survives a crash of the
                    daemon; a crash of PostgreSQL may lose its last commits

Over the Unix socket of the cluster (--tcp: 127.0.0.1). Each repeat goes
round all of them, and the table shows each one's median run: calls/s, and
CPU per call of the daemon, of its workers and of PostgreSQL's processes.
The machine should be quiet: on two cores PostgreSQL competes with the
daemon and its workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.schedcpu import tree_cpu  # noqa: E402
from bench.systems import Server  # noqa: E402
from bench.workloads import w2  # noqa: E402
from golemd.testing_pg import PgCluster  # noqa: E402

# A server for measuring, not the tests' throwaway one: fsync as in production.
BENCH_SETTINGS = ("max_connections=20", "shared_buffers=128MB", "autovacuum=on")
SYSTEMS = ("sqlite", "sqlite-full", "postgresql", "postgresql-async")


def golemd_args(name: str, pg: PgCluster, tcp: bool) -> tuple[str, ...]:
    """The options that put a golemd on this system's store (a fresh database each run)."""
    if name == "sqlite":
        return ()
    if name == "sqlite-full":
        return ("--synchronous", "FULL")
    url = pg.create_database(unix=not tcp)
    if name == "postgresql-async":
        url += ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"
    return ("--store", url)


def one_run(name: str, pg: PgCluster, args: argparse.Namespace) -> dict[str, Any]:
    server = Server("golemd", extra=golemd_args(name, pg, args.tcp))
    server.start()
    try:
        postmaster = int(Path(pg.data, "postmaster.pid").read_text().split()[0])
        before = tree_cpu(postmaster)
        figures = w2(server, agents=args.agents, calls=args.calls, window=args.window)
        pg_server, pg_backends = tree_cpu(postmaster, before)
        if name.startswith("postgresql"):
            figures["w2_cpu_pg_us"] = (pg_server + pg_backends) * 1e6 / args.calls
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="a comma-separated subset of " + ", ".join(SYSTEMS))
    parser.add_argument("--tcp", action="store_true", help="reach PostgreSQL over 127.0.0.1, not its Unix socket")
    args = parser.parse_args()
    names = [n for n in args.systems.split(",") if n]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with PgCluster(settings=BENCH_SETTINGS) as pg:
        for r in range(args.repeat):
            for i in range(len(names)):
                name = names[(r + i) % len(names)]  # each repeat starts with another system
                figures = one_run(name, pg, args)
                runs[name].append(figures)
                print(f"run {r + 1} {name:17s} {figures['w2_calls_s']:9,.0f} calls/s", flush=True)
    print(f"\nW2: {args.calls:,} awaited calls over {args.agents} agents, window {args.window}; "
          f"median of {args.repeat}")
    print(f"{'store':17s} {'calls/s':>9s} {'daemon us':>10s} {'workers us':>11s} {'postgres us':>12s}")
    for name in names:
        ranked = sorted(runs[name], key=lambda f: f["w2_calls_s"])
        median = ranked[(len(ranked) - 1) // 2]
        pg_us = f"{median['w2_cpu_pg_us']:12.1f}" if "w2_cpu_pg_us" in median else f"{'-':>12s}"
        print(f"{name:17s} {median['w2_calls_s']:9,.0f} {median['w2_cpu_server_us']:10.1f} "
              f"{median['w2_cpu_workers_us']:11.1f} {pg_us}")


if __name__ == "__main__":
    main()
