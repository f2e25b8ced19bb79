"""How big the store gets: 200,000 invocations over 20 agents, pipelined,
under the default retention and under a tight one.

    python -m bench.dbsize [--invocations N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import EXAMPLES, RawConn, running  # noqa: E402

AGENTS = 20
WINDOW = 2000


def run(n: int, config: dict[str, Any] | None, label: str) -> dict[str, float]:
    with running(config, args=("--log-level", "WARNING"), apps=(EXAMPLES,)) as d:
        c = RawConn(d.socket, timeout=120)
        start = time.perf_counter()
        sent = done = 0
        inflight: set[int] = set()
        while done < n:
            while sent < n and len(inflight) < WINDOW:
                inflight.add(c.send(op="invoke", agent=f'CounterAgent("db{sent % AGENTS}")',
                                    method="increment", mode="trigger"))
                sent += 1
            msg = c.recv()
            if msg.get("id") in inflight:
                assert "error" not in msg, msg
                inflight.discard(msg["id"])
                done += 1
        # Wait until every triggered invocation has run.
        while sum(c.ok("get", agent=f'CounterAgent("db{i}")')["agent"]["completed_count"]
                  for i in range(AGENTS)) < n:
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        c.close()
        d.stop()  # a clean stop folds the WAL into the database: measure that
        files = [Path(d.state_dir, f) for f in os.listdir(d.state_dir) if f.startswith("golemd.db")]
        size = sum(f.stat().st_size for f in files)
    print(f"{label:55s} {n:>8,} invocations in {elapsed:6.1f} s ({n / elapsed:,.0f}/s): "
          f"store {size / 2**20:6.1f} MiB")
    return {"invocations": n, "seconds": elapsed, "db_mib": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=200_000)
    n = parser.parse_args().invocations
    run(n, None, "default retention (newest 10,000/agent, >= 24 h)")
    run(n, {"retention_count": 1000, "retention_seconds": 0.0}, "retention_count = 1000, retention_seconds = 0")


if __name__ == "__main__":
    main()
