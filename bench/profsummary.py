"""Summarize a cProfile file per invocation: own time and call counts divided by N.

    python -m bench.profsummary /tmp/prof/golemd.prof 22101 [--top 30]

N is how many invocations the profiled run served (W1: calls + 1 warm-up;
W2: calls + agents warm-up). Own time ("tottime") per invocation is what each
function costs by itself; for builtins (socket send, sqlite execute) it is the
system call or C work. The profiler inflates Python-level costs (each call is
instrumented) and not C-level ones, so read the ranking, not the sum.
"""

from __future__ import annotations

import argparse
import pstats


def summarize(path: str, n: int, top: int = 30) -> list[str]:
    stats = pstats.Stats(path)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    lines = [f"{path}: {total:.2f} s of own time, {total / n * 1e6:.0f} us per invocation over {n}",
             f"{'own us/inv':>10} {'cum us/inv':>10} {'calls/inv':>9}  function"]
    ranked = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in ranked:
        where = f"{file.rsplit('/', 1)[-1]}:{line}({fn})" if file != "~" else fn
        lines.append(f"{tt / n * 1e6:10.1f} {ct / n * 1e6:10.1f} {nc / n:9.2f}  {where}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profsummary")
    p.add_argument("profile")
    p.add_argument("invocations", type=int)
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args()
    print("\n".join(summarize(a.profile, a.invocations, a.top)))


if __name__ == "__main__":
    main()
