"""Agents that misbehave on purpose, for the tests."""

from __future__ import annotations

import os
import signal
import time

from golemd import agent


@agent
class Journal:
    """Appends each entry to its state: the audit of exactly-once, in order."""

    def __init__(self, name: str):
        self.name = name
        self.entries: list[str] = []

    def append(self, entry: str) -> int:
        self.entries.append(entry)
        return len(self.entries)

    def slow_append(self, entry: str, seconds: float) -> int:
        time.sleep(seconds)
        self.entries.append(entry)
        return len(self.entries)

    def mark(self, payload: str) -> int:
        """A short entry, whatever the payload: a large enqueue with a small outcome."""
        self.entries.append("mark")
        return len(self.entries)

    def all(self) -> list[str]:
        return list(self.entries)


@agent
class Crashy:
    """Dies in the middle of a call, a given number of times."""

    def __init__(self, name: str):
        self.name = name
        self.value = 0

    def add_then_die(self, n: int, marker: str) -> int:
        # The marker file counts attempts across process deaths.
        with open(marker, "a") as f:
            f.write("x")
        attempts = len(open(marker).read())
        self.value += n
        if attempts <= self.die_times(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.value

    @staticmethod
    def die_times(marker: str) -> int:
        try:
            return int(open(marker + ".die").read())
        except OSError:
            return 0

    def always_die(self) -> None:
        os._exit(3)

    def value_now(self) -> int:
        return self.value

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def pid(self) -> int:
        return os.getpid()


@agent
class BadInit:
    def __init__(self, why: str):
        raise RuntimeError(f"cannot start: {why}")

    def hello(self) -> str:
        return "hello"


@agent(name="Snap")
class CustomSnapshot:
    """Keeps its state with its own snapshot hooks."""

    def __init__(self, name: str):
        self.items: list[str] = []
        self.loaded = 0

    def add(self, item: str) -> list[str]:
        self.items.append(item)
        return self.items

    def loads(self) -> int:
        return self.loaded

    def save_snapshot(self) -> bytes:
        return "\n".join(self.items).encode()

    def load_snapshot(self, data: bytes) -> None:
        self.items = data.decode().split("\n") if data else []
        self.loaded += 1


@agent
class Unpicklable:
    def __init__(self) -> None:
        self.ok = 1

    def grab_lock(self) -> str:
        import threading

        self.lock = threading.Lock()
        return "locked"

    def ok_value(self) -> int:
        return self.ok

    def bad_result(self) -> object:
        return {1, 2}


@agent
class Printer:
    def __init__(self) -> None:
        pass

    def say(self, text: str, times: int = 1) -> int:
        for i in range(times):
            print(f"{text} {i}", flush=True)
        return times


@agent
class AsyncAgent:
    """`async def` methods run to completion on the worker's own event loop."""

    def __init__(self) -> None:
        self.total = 0

    async def add_later(self, n: int) -> int:
        import asyncio

        await asyncio.sleep(0.01)
        self.total += n
        return self.total

    async def fail_later(self) -> None:
        import asyncio

        await asyncio.sleep(0)
        self.total += 1000
        raise KeyError("async failure")


@agent
class EnvReader:
    """Reads its process's environment (agent new --env)."""

    def __init__(self, name: str):
        self.name = name
        self.at_construction = os.environ.get("GREETING")

    def read(self, name: str) -> str | None:
        return os.environ.get(name)

    def constructed_with(self) -> str | None:
        return self.at_construction


@agent(cpu_limit=1)
class Spinner:
    """Burns CPU: @agent(cpu_limit=1) stops it after a second of CPU time."""

    def __init__(self, name: str):
        self.name = name
        self.spins = 0

    def spin(self, seconds: float) -> int:
        self.spins += 1
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass
        return self.spins

    def spin_and_catch(self, seconds: float) -> str:
        try:
            self.spin(seconds)
        except BaseException:  # noqa: B036 - on purpose: the limit holds all the same
            return "caught"
        return "done"

    def count(self) -> int:
        return self.spins


@agent
class Poisonable:
    """A state that, once set to "poison", cannot be loaded: the agent is Failed at its next start."""

    def __init__(self, name: str):
        self.value = ""

    def set(self, value: str) -> str:
        self.value = value
        return value

    def get(self) -> str:
        return self.value

    def save_snapshot(self) -> bytes:
        return self.value.encode()

    def load_snapshot(self, data: bytes) -> None:
        if data == b"poison":
            raise ValueError("poisoned state")
        self.value = data.decode()
