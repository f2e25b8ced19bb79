"""The counter agent every system runs: golemd and the floor load this class,
Ray wraps it as an actor class, Restate keeps its fields as object state.

    golemd --app bench/agents.py
"""

from __future__ import annotations

import time

from golemd import agent


@agent
class BenchCounter:
    """A counter: the smallest agent with state."""

    def __init__(self, name: str):
        self.name = name
        self.value = 0

    def increment(self) -> int:
        self.value += 1
        return self.value


@agent
class BenchCaller:
    """Durable execution's costs, measured inside the agent (bench/durable.py)."""

    def __init__(self, name: str):
        self.name = name

    def noop(self) -> int:
        return 0

    def calls(self, target: str, n: int) -> list[float]:
        """n awaited calls to `target`'s increment, each timed."""
        from golemd import remote

        callee = remote(target)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            callee.increment()
            out.append(time.perf_counter() - t0)
        return out

    def steps(self, n: int) -> list[float]:
        from golemd import step

        out = []
        for i in range(n):
            t0 = time.perf_counter()
            step(abs, i)
            out.append(time.perf_counter() - t0)
        return out

    def approval(self) -> object:
        from golemd import promise, step

        p = promise()
        step(_note, p.id)
        return p.wait()


def _note(text: str) -> str:
    return text
