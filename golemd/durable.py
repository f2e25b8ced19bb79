"""Durable execution inside an invocation (DESIGN.md §5): what agent code calls.

    from golemd import remote, step, sleep, promise, complete_promise, RemoteError

Each of these is a *durable effect*: numbered in its invocation, journaled
by the daemon with its result before the agent sees that result. When the
invocation runs again (its process died, the daemon restarted, it was
interrupted and resumed, it was suspended while waiting), the agent's state
is back at its last snapshot and the method runs from the top; each effect
already journaled returns its recorded result without running again, and the
first that is not runs live. So code between effects may run more than once;
effects run once. A re-run that makes another effect at the same number
fails the invocation with NONDETERMINISM (golemd.host.effects).

Outside an invocation (a unit test calling a method directly) each of these
raises RuntimeError.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable
from typing import Any

from golemd.host import effects as _effects


class RemoteError(Exception):
    """An awaited call to another agent failed, or a promise could not be
    completed: `code` is the error code (INVOCATION_FAILED, TIMEOUT,
    CALL_CYCLE, ALREADY_COMPLETED, NOT_FOUND...), `message` says why,
    `details` what the callee's exception was, when it raised one."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class StepError(Exception):
    """A step raised an exception whose type cannot be rebuilt on a re-run
    (not importable, or not built from one message): `type` names it."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type = type_name
        self.message = message


def _result(res: dict[str, Any]) -> Any:
    err = res.get("error")
    if err is None:
        return res.get("value")
    raise RemoteError(str(err.get("code", "INTERNAL")), str(err.get("message", "")), err.get("details"))


class _Methods:
    def __init__(self, agent_id: str, kind: str) -> None:
        self._agent_id = agent_id
        self._kind = kind

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def invoke(*args: Any) -> Any:
            req = {"agent": self._agent_id, "method": method, "args": list(args)}
            return _result(_effects.current().effect(self._kind, req))

        invoke.__name__ = method
        return invoke


class Remote(_Methods):
    """Another agent: `remote(id).method(*args)` is an awaited call, and
    `remote(id).trigger.method(*args)` enqueues one and returns its key."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id, "call")
        self.trigger = _Methods(agent_id, "trigger")

    def __repr__(self) -> str:
        return f"remote({self._agent_id!r})"


def remote(agent_id: str) -> Remote:
    """Name another agent: `[ENV/]Type(args)`; without ENV, the caller's own environment."""
    if not isinstance(agent_id, str):
        raise TypeError("remote() takes an agent ID string, such as 'Inventory(\"main\")'")
    return Remote(agent_id)


def step(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) once: its result (a msgpack value) or its exception is
    journaled, and a re-run gets it back without calling fn. If the process
    dies after fn ran and before its result was journaled, fn runs again:
    make it idempotent where that matters (at least once, recorded once)."""
    if not callable(fn):
        raise TypeError("step() takes a function and its arguments")
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    res = _effects.current().effect("step", {"fn": name, "args": _plain(args)}, run=lambda: fn(*args))
    err = res.get("error")
    if err is None:
        return res.get("value")
    raise _rebuilt(err)


def _plain(args: tuple[Any, ...]) -> Any:
    """The step's arguments as journaled for the re-run's comparison: as they
    are when msgpack can pack them, else their repr."""
    from golemd.wire.codec import pack

    try:
        pack(list(args))
        return list(args)
    except Exception:
        return repr(args)


def _rebuilt(err: dict[str, Any]) -> BaseException:
    """The step's exception again: its type and message, where they can be had."""
    type_name, message = str(err.get("type", "Exception")), str(err.get("message", ""))
    module, _, qualname = type_name.rpartition(".")
    try:
        owner: Any = importlib.import_module(module) if module else builtins
        cls = owner
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(message)
    except Exception:
        pass
    return StepError(type_name, message)


def sleep(seconds: float) -> None:
    """Wait `seconds`, durably: the wake-up time is journaled first, so after
    a crash or a restart the invocation waits only for what is left. The
    agent's queue waits meanwhile."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds >= 0:
        raise ValueError("sleep() takes a number of seconds, 0 or more")
    _result(_effects.current().effect("sleep", {"seconds": float(seconds)}))


class Promise:
    """A durable promise made by promise(): completed once, by anyone who
    knows its `id` (complete_promise, the wire op promise_complete,
    `golemctl promise complete`)."""

    def __init__(self, promise_id: str) -> None:
        self.id = promise_id

    def wait(self, timeout: float | None = None) -> Any:
        """The value it is completed with. With `timeout` (seconds, journaled
        as a deadline like a sleep's): TimeoutError if it is not completed by then."""
        if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout >= 0):
            raise ValueError("timeout must be a number of seconds, 0 or more")
        res = _effects.current().effect("wait", {"promise": self.id, "timeout": timeout})
        err = res.get("error")
        if err is not None and err.get("code") == "TIMEOUT":
            raise TimeoutError(err.get("message", f"promise {self.id} was not completed in time"))
        return _result(res)

    def __repr__(self) -> str:
        return f"Promise({self.id!r})"


def promise() -> Promise:
    """A new promise owned by this invocation; a re-run gets the same one."""
    return Promise(_result(_effects.current().effect("promise", {})))


def complete_promise(promise_id: str, value: Any = None) -> None:
    """Complete a promise with `value` (a msgpack value). The first completion
    wins: a later one raises RemoteError ALREADY_COMPLETED, an unknown ID
    RemoteError NOT_FOUND."""
    if not isinstance(promise_id, str):
        raise TypeError("complete_promise() takes the promise's ID string")
    _result(_effects.current().effect("complete", {"promise": promise_id, "value": value}))
