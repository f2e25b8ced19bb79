"""A worker's own cost per call, without the daemon: its loop on a socketpair.

    python -m bench.workerloop [--calls N] [--batch K]

Forks one worker of BenchCounter (golemd.host.runtime, as the template
would), sends it `init`, then N calls in writes of K (K = 1: one call at a
time, so every call is a wake-up), reads the replies, and prints the
worker's CPU per call from /proc/PID/schedstat. No daemon, no journal: what
the worker's Python does per call, and what a wake-up adds to it.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import msgpack

from bench.agents import BenchCounter
from bench.schedcpu import cpu_seconds
from golemd.host import runtime
from golemd.wire.codec import pack


def measure(calls: int, batch: int) -> tuple[float, float]:
    """(calls per second, worker CPU us per call)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker
        ours.close()
        runtime.run(theirs.detach(), BenchCounter)
    theirs.close()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def read(n: int) -> None:
        while n:
            unpacker.feed(ours.recv(1 << 16))
            n -= sum(1 for _ in unpacker)

    ours.sendall(pack({"op": "init", "args": ["w"], "spin_us": 0}))
    read(1)
    cpu0, t0, sent = cpu_seconds(pid), time.perf_counter(), 0
    while sent < calls:
        k = min(batch, calls - sent)
        ours.sendall(b"".join(pack({"op": "call", "id": sent + i + 1, "method": "increment", "args": []})
                              for i in range(k)))
        sent += k
        read(k)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    ours.close()
    os.waitpid(pid, 0)
    return calls / wall, cpu / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=10)
    a = p.parse_args()
    rate, us = measure(a.calls, a.batch)
    print(f"worker alone, batches of {a.batch}: {rate:,.0f} calls/s, {us:.1f} us of its CPU per call")


if __name__ == "__main__":
    main()
