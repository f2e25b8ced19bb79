"""Runs inside a worker process: build one agent, run its calls one at a time.

Control frames (msgpack maps) come and go on a private socket; stdout and
stderr are the agent's own and go to the supervisor as its log. A call that
raises leaves the agent as it was before the call: the instance is rebuilt
from the last good snapshot (or from its constructor when it has none).
"""

from __future__ import annotations

import inspect
import os
import pickle
import select
import socket
import sys
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from golemd.host.cpulimit import CpuLimit
from golemd.host.effects import EffectContext
from golemd.host.proctitle import set_title
from golemd.perf.spin import Window
from golemd.perf.spin import recv as polled_recv
from golemd.sdk import spec_of
from golemd.wire.codec import make_unpacker, pack
from golemd.wire.worker import CALL, DROP, DROPPED, EFFECT, EFFECT_RESULT, INIT, MAX_WORKER_MESSAGE

if TYPE_CHECKING:
    import asyncio


# Results that are never awaitable: inspect.isawaitable asks an ABC, which
# costs more than the rest of a small call's bookkeeping.
_PLAIN = frozenset({int, float, str, bool, bytes, list, dict, tuple, type(None)})

_FACTS: dict[type, tuple[bool, float | None, bool]] = {}


def class_facts(cls: type) -> tuple[bool, float | None, bool]:
    """(durable, CPU limit, its own snapshots) of an agent class: worked out
    once, in the template before it forks (golemd.host.zygote), so that a new
    worker only reads them (each page it touches it copies)."""
    facts = _FACTS.get(cls)
    if facts is None:
        spec = spec_of(cls)
        custom = callable(getattr(cls, "save_snapshot", None)) and callable(getattr(cls, "load_snapshot", None))
        facts = _FACTS[cls] = (spec.durable, spec.cpu_limit, custom)
    return facts


# What a MemoryError without a message says: the limit it hit and where that
# is set (init's `oom`, golemd.driver.limits). RLIMIT_AS raises it bare.
out_of_memory = "out of memory"


def error_info(exc: BaseException, skip_frames: int = 0) -> dict[str, Any]:
    """Type, message and traceback; `skip_frames` drops our own frames from its top."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    exc = exc.with_traceback(tb)
    message = str(exc)
    if not message and isinstance(exc, MemoryError):
        message = out_of_memory
    return {
        "type": type(exc).__qualname__ if type(exc).__module__ == "builtins"
        else f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": message,
        "traceback": "".join(traceback.format_exception(exc)),
    }


class AgentHost:
    """One agent instance and its last good snapshot."""

    def __init__(self, cls: type, args: list[Any]) -> None:
        self.cls = cls
        self.args = args
        self.durable, cpu_limit, self.custom = class_facts(cls)
        self.cpu = CpuLimit(cpu_limit) if cpu_limit else None
        self.snapshot: bytes | None = None
        self.instance: Any = None
        self.fresh = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def build(self, snapshot: bytes | None) -> None:
        self.snapshot = snapshot if self.durable else None
        self.instance = self._restore(self.snapshot)
        self.fresh = True

    def _restore(self, snapshot: bytes | None) -> Any:
        if snapshot is None:
            return self.cls(*self.args)
        if self.custom:
            instance = self.cls(*self.args)
            instance.load_snapshot(snapshot)
            return instance
        return pickle.loads(snapshot)

    def _take_snapshot(self) -> bytes:
        if self.custom:
            data = self.instance.save_snapshot()
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"save_snapshot() returned {type(data).__name__}, not bytes")
            return bytes(data)
        return pickle.dumps(self.instance, protocol=pickle.HIGHEST_PROTOCOL)

    def call(self, method: str, args: list[Any], effects: EffectContext | None = None) -> dict[str, Any]:
        if effects is None:
            effects = EffectContext(_Offline(), 0, None)
        if not self.durable and not self.fresh:
            self.instance = self.cls(*self.args)
        self.fresh = False
        cpu = self.cpu
        try:
            if cpu is not None:
                cpu.arm()
            try:
                with effects:
                    result = getattr(self.instance, method)(*args)
                    if result.__class__ not in _PLAIN and inspect.isawaitable(result):
                        result = self._await(result)
            finally:
                if cpu is not None:
                    cpu.disarm()
        except BaseException as exc:  # noqa: B036 - SystemExit in agent code is an error too
            self._rollback()
            info = error_info(exc, skip_frames=1)
            return _imposed(effects, cpu, info) or {"ok": False, "code": "INVOCATION_FAILED", "error": info}
        # The agent may have caught what nondeterminism or the CPU limit raised
        # into it: the call fails all the same.
        imposed = _imposed(effects, cpu, {"type": "golemd.CpuLimitExceeded", "traceback": ""})
        if imposed is not None:
            self._rollback()
            return imposed
        try:
            packed_result = pack(result)
        except Exception as exc:
            self._rollback()
            return {"ok": False, "code": "SNAPSHOT_FAILED",
                    "error": {**error_info(exc), "message":
                              f"the result of {method}() cannot be sent: {exc}"}}
        snapshot = None
        if self.durable:
            try:
                snapshot = self._take_snapshot()
            except Exception as exc:
                self._rollback()
                return {"ok": False, "code": "SNAPSHOT_FAILED",
                        "error": {**error_info(exc), "message":
                                  f"the agent's state cannot be saved after {method}(): {exc}"}}
            if snapshot == self.snapshot:
                snapshot = None  # unchanged (a read-only call): nothing to save
            else:
                self.snapshot = snapshot
        return {"ok": True, "packed_result": packed_result, "snapshot": snapshot}

    def _await(self, awaitable: Awaitable[Any]) -> Any:
        """Run an `async def` method to completion on the worker's own loop, kept
        between calls so that the agent's asyncio objects stay usable."""
        import asyncio

        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(awaitable)

    def _rollback(self) -> None:
        if self.durable:
            self.instance = self._restore(self.snapshot)


def _imposed(effects: EffectContext, cpu: CpuLimit | None, info: dict[str, Any]) -> dict[str, Any] | None:
    """The failure golemd imposes on a call whatever its code did, if any:
    nondeterminism of its effects, or its CPU limit (with `info` as details)."""
    if effects.failure is not None:
        return {"ok": False, "code": "NONDETERMINISM", "error": effects.failure}
    if cpu is not None and cpu.hit:
        return {"ok": False, "code": "CPU_LIMIT", "error": {**info, "message": cpu.message()}}
    return None


class _Offline:
    """The channel of a call run with no daemon (tests of agent code)."""

    def effect(self, call_id: int, seq: int, kind: str, req: bytes, res: bytes | None) -> bytes:
        raise RuntimeError("durable effects need golemd: this call runs without a daemon")


class _Session:
    """The worker's end of its control channel: the calls read and not yet
    started, and the effect results awaited (golemd.host.effects.Channel)."""

    def __init__(self, ctl: socket.socket, cls: type) -> None:
        self.ctl = ctl
        self.cls = cls
        # The daemon's own limit on what it takes from a worker: a snapshot saved
        # from one must fit the init message that restores it.
        self.unpacker = _premade_unpacker() or make_unpacker(MAX_WORKER_MESSAGE, strict_map_key=False)
        self.host: AgentHost | None = None
        self.window = Window(0)  # until init says how long to poll for the next call
        # Calls read and not started yet: the daemon may send several at once
        # (batch_calls), and may ask for one to be dropped while it waits here.
        self.calls: deque[dict[str, Any]] = deque()
        self.results: dict[tuple[int, int], bytes] = {}

    def take(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for msg in self.unpacker:
            op = msg.get("op")
            if op == CALL:
                self.calls.append(msg)
            elif op == EFFECT_RESULT:
                self.results[(msg["id"], msg["seq"])] = msg["res"]
            elif op == DROP:
                _drop(self.ctl, self.calls, msg.get("id"))
            elif op == INIT:
                self._init(msg)

    def _init(self, msg: dict[str, Any]) -> None:
        global out_of_memory
        out_of_memory = msg.get("oom") or out_of_memory
        if msg.get("title"):
            # Its agent's ID in ps, its type in top, before the constructor runs.
            set_title(msg["title"], spec_of(self.cls).name)
        self.window = Window(int(msg.get("spin_us", 0) * 1000))
        env = msg.get("env")
        if env:
            os.environ.update(env)  # the agent's own (agent new --env): before its constructor runs
        try:
            self.host = AgentHost(self.cls, msg["args"])
            self.host.build(msg.get("snapshot"))
            reply: dict[str, Any] = {"op": "init", "ok": True}
        except BaseException as exc:  # noqa: B036 - report anything the constructor raises
            reply = {"op": "init", "ok": False, "error": error_info(exc)}
        _flush_output()
        self.ctl.sendall(pack(reply))

    def effect(self, call_id: int, seq: int, kind: str, req: bytes, res: bytes | None) -> bytes:
        msg: dict[str, Any] = {"op": EFFECT, "id": call_id, "seq": seq, "kind": kind, "req": req}
        if res is not None:
            msg["res"] = res
        _flush_output()  # what the agent printed before the effect is logged before it
        self.ctl.sendall(pack(msg))
        want = (call_id, seq)
        while want not in self.results:
            data = self.ctl.recv(1 << 16)
            if not data:
                os._exit(0)
            self.take(data)
        return self.results.pop(want)

    def serve(self) -> NoReturn:
        ctl, calls = self.ctl, self.calls
        # Whether anything came meanwhile, asked between calls without a read
        # (a recv that finds nothing raises, which costs three times as much).
        waiting = select.poll()
        waiting.register(ctl, select.POLLIN)
        while True:
            host = self.host
            if not calls or host is None:
                data = polled_recv(ctl, self.window, readable=waiting)
                if not data:
                    os._exit(0)
                self.take(data)
                continue
            msg = calls.popleft()
            call_id = msg["id"]
            out = host.call(msg["method"], msg["args"], EffectContext(self, call_id, msg.get("journal")))
            _flush_output()
            packed = out.pop("packed_result", None)
            if packed is not None:
                # The result is already packed: splice it in rather than pack it twice.
                ctl.sendall(_reply_with_packed(call_id, out["snapshot"], packed))
            else:
                ctl.sendall(pack({"op": "result", "id": call_id, **out}))
            if calls and waiting.poll(0):
                # Between a reply and the next call, read what came meanwhile: the
                # daemon takes a call for dropped when its drop is written before
                # this reply could be read (golemd.driver.agent.Agent.cancel).
                _read_waiting(ctl, self.take)


# An unpacker the template makes before it forks (premake_unpacker), for the
# first session of each worker: one made in the worker costs it some 20 pages
# more (an Unpacker carries its 40 KB parsing stack inline), which fork gives
# it ready-made.
_PREMADE: list[Any] = []


def premake_unpacker() -> None:
    _PREMADE[:] = [make_unpacker(MAX_WORKER_MESSAGE, strict_map_key=False)]


def _premade_unpacker() -> Any:
    return _PREMADE.pop() if _PREMADE else None


def serve(ctl: socket.socket, cls: type) -> NoReturn:
    _Session(ctl, cls).serve()


def _read_waiting(ctl: socket.socket, take: Callable[[bytes], None]) -> None:
    while True:
        try:
            data = ctl.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            os._exit(0)
        take(data)


def _drop(ctl: socket.socket, calls: deque[dict[str, Any]], call_id: object) -> None:
    """Drop call `call_id` and those after it, if it has not started."""
    for i, msg in enumerate(calls):
        if msg["id"] == call_id:
            dropped = [calls.pop()["id"] for _ in range(len(calls) - i)]
            ctl.sendall(b"".join(pack({"op": DROPPED, "id": d}) for d in reversed(dropped)))
            return


# A successful call's reply, {"op": "result", "id": ID, "ok": true,
# "snapshot": S, "result": R}, put together from its packed parts.
_REPLY_HEAD = b"\x85" + pack("op") + pack("result") + pack("id")
_REPLY_OK = pack("ok") + pack(True) + pack("snapshot")
_REPLY_RESULT = pack("result")
_NIL = pack(None)


def _reply_with_packed(call_id: int, snapshot: bytes | None, packed_result: bytes) -> bytes:
    return b"".join((_REPLY_HEAD, pack(call_id), _REPLY_OK, _NIL if snapshot is None else pack(snapshot),
                     _REPLY_RESULT, packed_result))

def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def run(ctl_fd: int, cls: type) -> NoReturn:
    """Entry of a freshly forked worker; never returns."""
    ctl = socket.socket(fileno=ctl_fd)
    ctl.setblocking(True)
    try:
        serve(ctl, cls)
    except BaseException:  # noqa: B036 - a broken control channel ends the worker
        traceback.print_exc()
        _flush_output()
        os._exit(70)
