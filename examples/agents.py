"""Example agents for the README tour and the tests.

    golemd --app examples/agents.py
"""

from __future__ import annotations

import os
import time
import uuid

from golemd import agent, promise, remote, sleep, step


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


# -- durable execution (docs/semantics.md, "Durable execution") ---------------------


@agent
class Stock:
    """Items on a shelf; Checkout calls it."""

    def __init__(self, name: str):
        self.name = name
        self.items: dict[str, int] = {}

    def add(self, item: str, n: int = 1) -> int:
        self.items[item] = self.items.get(item, 0) + n
        return self.items[item]

    def reserve(self, item: str) -> int:
        left = self.items.get(item, 0)
        if left <= 0:
            raise ValueError(f"no {item} left")
        self.items[item] = left - 1
        return left - 1

    def count(self, item: str) -> int:
        return self.items.get(item, 0)


def _order_number() -> str:
    return uuid.uuid4().hex[:8]


@agent
class Checkout:
    """Reserves an item on Stock("main"), waits for someone to approve the
    order (a durable promise), and sleeps a second before it confirms. Kill
    the daemon anywhere on the way: nothing is reserved twice."""

    def __init__(self, name: str):
        self.name = name
        self.orders = 0

    def order(self, item: str) -> dict:
        stock = remote('Stock("main")')
        left = stock.reserve(item)  # an awaited call: journaled, never made twice
        number = step(_order_number)  # any side effect: run once, its result recorded
        approval = promise()
        print(f"order {number}: {left} {item} left; approve with: "
              f"golemctl promise complete {approval.id} '\"yes\"'")
        decision = approval.wait()
        if decision != "yes":
            stock.add(item, 1)
            return {"order": number, "item": item, "decision": decision}
        sleep(1)  # durable: a restart waits only for what is left
        self.orders += 1
        return {"order": number, "item": item, "left": left, "decision": decision}
