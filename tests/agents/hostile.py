"""Agents that attack the daemon on purpose, for tests/faults.

Each misbehaviour is bounded in time or size, so that a daemon that fails
to stop it cannot take the machine down with it: the test fails instead.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import msgpack

from golemd import agent, timeout

# A worker's control channel is fd 3 (see golemd/zygote.py).
CONTROL_FD = 3

GARBAGE = {
    "c1": b"\xc1\xc1\xc1",                                   # a byte msgpack never uses
    "huge_array": b"\xdd\xff\xff\xff\xff",                   # an array header claiming 2^32 - 1 items
    "deep": b"\x91" * 10_000 + b"\x00",                      # 10k-deep nesting
    "unknown_id": msgpack.packb({"op": "result", "id": 999_999}),  # a reply to no call
    "not_a_map": msgpack.packb([1, 2, 3]),                   # valid msgpack, wrong schema
}


def _record(path: str, role: str) -> None:
    # One write with O_APPEND: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{role} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _linger(seconds: float = 300.0) -> None:
    """Stay alive (ignoring SIGTERM) until killed, or give up after `seconds`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


@agent(memory_limit_mb=200)
class MemHog:
    """Allocates (and touches) memory until something stops it."""

    def __init__(self) -> None:
        self.calls = 0

    def hog(self, step_mb: int = 16, cap_mb: int = 4096) -> int:
        chunks = []
        allocated = 0
        while allocated < cap_mb:  # a safety cap: past it, the limit did not hold
            chunks.append(b"\x01" * (step_mb << 20))
            allocated += step_mb
        return allocated

    def pid(self) -> int:
        return os.getpid()


@agent
class PlainHog:
    """The same without a type limit, for the daemon-wide memory_limit_mb."""

    def hog(self, step_mb: int = 16, cap_mb: int = 4096) -> int:
        chunks = []
        allocated = 0
        while allocated < cap_mb:
            chunks.append(b"\x01" * (step_mb << 20))
            allocated += step_mb
        return allocated

    def small(self) -> int:
        return len(b"\x01" * (1 << 20))


def _spin(seconds: float = 120.0) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


@agent
class Spinner:
    """Burns a CPU and ignores SIGTERM."""

    def __init__(self) -> None:
        self.done = 0

    def spin(self) -> None:
        _spin()

    @timeout(1)
    def spin_limited(self) -> None:
        _spin()

    def quick(self) -> int:
        self.done += 1
        return self.done

    def pid(self) -> int:
        return os.getpid()


@agent(timeout=1)
class LimitedSpinner:
    def spin(self) -> None:
        _spin()

    def quick(self) -> str:
        return "quick"


@agent
class Forker:
    """Leaves a process tree behind: a child, and under it a grandchild that
    calls setsid() and double-forks a daemon. All three ignore SIGTERM and
    keep the worker's fds (its control socket and output pipes) open."""

    def tree(self, path: str) -> list[int]:
        child = os.fork()
        if child == 0:
            try:
                grandchild = os.fork()
                if grandchild == 0:
                    os.setsid()
                    middle = os.fork()
                    if middle == 0:
                        if os.fork() == 0:
                            _record(path, "daemon")
                            _linger()
                        os._exit(0)
                    os.waitpid(middle, 0)
                    _record(path, "grandchild")
                    _linger()
                else:
                    _record(path, "child")
                    _linger()
            finally:
                os._exit(0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                lines = open(path).read().split()
            except OSError:
                lines = []
            if len(lines) >= 6:
                return [int(p) for p in lines[1::2]]
            time.sleep(0.01)
        raise RuntimeError(f"the process tree did not start: {path}")

    def tree_then_wait(self, path: str, seconds: float = 60.0) -> list[int]:
        """The same tree, then keep the invocation running."""
        pids = self.tree(path)
        time.sleep(seconds)
        return pids

    def pid(self) -> int:
        return os.getpid()


@agent
class FdCloser:
    def __init__(self, name: str):
        self.name = name

    def close_out(self) -> int:
        os.close(1)
        os.close(2)
        return 42

    def devnull_out(self) -> int:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        if null > 2:
            os.close(null)
        print("into the void", flush=True)
        print("into the void too", file=sys.stderr, flush=True)
        return 43

    def value(self) -> int:
        return 7

    def pid(self) -> int:
        return os.getpid()


@agent
class ControlGarbage:
    """Writes garbage on its control channel, then waits to be dealt with."""

    def garbage(self, kind: str, marker: str) -> str:
        _record(marker, kind)
        os.write(CONTROL_FD, GARBAGE[kind])
        time.sleep(30)
        return "not reached"

    def pid(self) -> int:
        return os.getpid()


@agent
class Spewer:
    def flood(self, mib: int) -> int:
        """`mib` MiB on stdout without a single newline."""
        chunk = b"x" * (1 << 20)
        for _ in range(mib):
            _write_all(1, chunk)
        return mib

    def burst(self, lines: int) -> int:
        for i in range(lines):
            print(f"burst {i}")
        return lines

    def hello(self, text: str) -> str:
        print(text, flush=True)
        return text


@agent
class CrashLoop:
    """Exits while being constructed, every time."""

    def __init__(self) -> None:
        os._exit(1)

    def hello(self) -> str:
        return "hello"


@agent
class Blob:
    def blob(self, n: int) -> str:
        return "x" * n
