"""The counter agent every system runs: golemd and the floor load this class,
Ray wraps it as an actor class, Restate keeps its fields as object state.

    golemd --app bench/agents.py
"""

from __future__ import annotations

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
