"""Example agents for the README tour and the tests.

    golemd --app examples/agents.py
"""

from __future__ import annotations

import os
import time

from golemd import agent


@agent
class CounterAgent:
    """A counter that keeps its value across invocations, crashes and restarts."""

    def __init__(self, name: str):
        self.name = name
        self.value = 0

    def increment(self) -> int:
        self.value += 1
        return self.value

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def busy(self, seconds: float = 30.0) -> int:
        """Keeps the agent busy, so that further invocations wait in its queue."""
        print(f"{self.name}: busy for {seconds}s", flush=True)
        time.sleep(seconds)
        return self.value

    def fail_after_add(self, n: int) -> int:
        """Adds n, then raises: the addition is rolled back."""
        self.value += n
        raise ValueError(f"refusing to keep +{n}")


@agent
class SlowAgent:
    """An agent with a slow method, for watching the pending queue."""

    def __init__(self, name: str):
        self.name = name
        self.done: list[str] = []

    def work(self, seconds: float = 10.0, label: str = "job") -> str:
        print(f"{label}: working for {seconds}s", flush=True)
        time.sleep(seconds)
        self.done.append(label)
        print(f"{label}: done", flush=True)
        return label

    def history(self) -> list[str]:
        return list(self.done)


@agent
class EchoAgent:
    """A singleton: EchoAgent()."""

    def echo(self, value: object = None) -> object:
        return value

    def pid(self) -> int:
        return os.getpid()


@agent(durable=False)
class StatelessAgent:
    """Ephemeral: a fresh instance for every invocation."""

    def __init__(self) -> None:
        self.calls = 0

    def call(self) -> int:
        self.calls += 1
        return self.calls
