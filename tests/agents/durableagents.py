"""Agents for the durable-execution tests (DESIGN.md §5).

Side effects are counted in files named by the caller (`ledger`): a line
per run of a step, so a test sees how often each effect really ran, across
process deaths and daemon restarts. `die` files make a call die (SIGKILL
of its own process) at a named point, once per line they hold.
"""

from __future__ import annotations

import os
import signal

from golemd import RemoteError, agent, complete_promise, promise, remote, sleep, step


def record(ledger: str, what: str) -> str:
    with open(ledger, "a") as f:
        f.write(what + "\n")
    return what


def die_at(ledger: str, point: str) -> None:
    """SIGKILL ourselves at `point` if `ledger`.die names it (once per mention)."""
    path = ledger + ".die"
    try:
        points = open(path).read().split()
    except OSError:
        return
    if point in points:
        points.remove(point)
        with open(path, "w") as f:
            f.write("\n".join(points))
        os.kill(os.getpid(), signal.SIGKILL)


@agent
class Inventory:
    def __init__(self, name: str):
        self.name = name
        self.stock: dict[str, int] = {}

    def add(self, item: str, n: int) -> int:
        self.stock[item] = self.stock.get(item, 0) + n
        return self.stock[item]

    def reserve(self, item: str) -> int:
        left = self.stock.get(item, 0)
        if left <= 0:
            raise ValueError(f"no {item} left")
        self.stock[item] = left - 1
        return self.stock[item]

    def count(self, item: str) -> int:
        return self.stock.get(item, 0)

    def call_back(self, caller: str) -> int:
        """Calls its caller back: a cycle of length 2."""
        return remote(caller).count("x")


@agent
class Shop:
    def __init__(self, name: str):
        self.name = name
        self.orders = 0

    def three(self, ledger: str, inventory: str, item: str) -> dict:
        """Three effects (a step, a call, a step) with a crash point around each."""
        die_at(ledger, "before-1")
        a = step(record, ledger, "step-1")
        die_at(ledger, "between-1-2")
        left = remote(inventory).reserve(item)
        die_at(ledger, "between-2-3")
        c = step(record, ledger, f"step-3:{left}")
        die_at(ledger, "after-3")
        self.orders += 1
        return {"a": a, "left": left, "c": c, "orders": self.orders}

    def call(self, target: str, method: str, args: list) -> object:
        try:
            return remote(target).__getattr__(method)(*args)
        except RemoteError as err:
            return {"error": err.code, "message": err.message}

    def trigger(self, target: str, method: str, args: list) -> str:
        return getattr(remote(target).trigger, method)(*args)

    def count(self, item: str) -> int:
        return self.orders

    def orders_made(self) -> int:
        return self.orders

    def nap(self, seconds: float, ledger: str) -> str:
        step(record, ledger, "before-sleep")
        sleep(seconds)
        return step(record, ledger, "after-sleep")

    def approval(self, ledger: str, timeout: float | None = None) -> object:
        p = promise()
        step(record, ledger, f"promise {p.id}")
        try:
            value = p.wait(timeout)
        except TimeoutError:
            return "timed out"
        self.orders += 1
        return {"value": value, "id": p.id}

    def wait_for_promise(self, promise_id: str) -> object:
        from golemd import Promise

        try:
            return Promise(promise_id).wait()
        except RemoteError as err:
            return err.code

    def complete(self, promise_id: str, value: object) -> object:
        try:
            complete_promise(promise_id, value)
            return "ok"
        except RemoteError as err:
            return err.code

    def failing_step(self, ledger: str) -> str:
        def boom() -> None:
            record(ledger, "boom")
            raise KeyError("nope")

        try:
            step(boom)
        except KeyError as exc:
            return f"KeyError {exc}"
        return "no error"

    def unsaved_step(self, ledger: str, flag: str) -> str:
        """Makes the commit of its first step fail (GOLEMD_FAIL_COMMIT=flag), once."""
        if not os.path.exists(ledger + ".flagged"):
            open(ledger + ".flagged", "w").close()
            open(flag, "w").close()
        got = step(record, ledger, "step")
        self.orders += 1
        return got

    def nondet(self, ledger: str) -> str:
        """Its first effect depends on how often it ran: a re-run differs."""
        runs = len(open(ledger).read().split()) if os.path.exists(ledger) else 0
        with open(ledger, "a") as f:
            f.write("run\n")
        if runs == 0:
            step(record, ledger + ".steps", "first")
            os.kill(os.getpid(), signal.SIGKILL)
        sleep(0.01 * runs)
        self.orders += 1
        return "ran"


@agent
class Node:
    """Calls along a path of agents: cycles and diamonds."""

    def __init__(self, name: str):
        self.name = name
        self.visits = 0

    def chain(self, path: list) -> list:
        self.visits += 1
        if not path:
            return [self.name]
        try:
            return [self.name, *remote(path[0]).chain(path[1:])]
        except RemoteError as err:
            if err.code == "CALL_CYCLE":
                return [self.name, "CALL_CYCLE"]
            raise

    def fan(self, middles: list, bottom: str) -> list:
        self.visits += 1
        return [remote(m).chain([bottom]) for m in middles]

    def visited(self) -> int:
        return self.visits
