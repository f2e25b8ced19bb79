"""golemd.wire.worker: the schema of the daemon/template/worker control
messages, against hand-made messages, against what golemd.host.runtime
builds, and against everything a real template and worker exchange with
golemd.host.workers (no daemon)."""

from __future__ import annotations

import asyncio
import typing
from typing import Any

import msgpack
import pytest

from golemd.sdk import AgentSpec
from golemd.wire import worker as w
from golemd.wire.worker import DAEMON, TEMPLATE, WORKER, WorkerProtocolError, check_worker_message
from tests.helpers import EXAMPLES, TEST_AGENTS

ERR = {"type": "ValueError", "message": "bad", "traceback": "Traceback...\n"}

VALID: list[tuple[str, dict[str, Any]]] = [
    (DAEMON, {"op": "spawn", "req": 1, "type": "CounterAgent", "memory_limit": 0}),
    (TEMPLATE, {"op": "ready", "types": {"CounterAgent": {"name": "CounterAgent", "methods": []}}}),
    (TEMPLATE, {"op": "ready", "types": {}}),
    (TEMPLATE, {"op": "load_failed", "error": "Traceback...\nImportError: x\n"}),
    (TEMPLATE, {"op": "spawned", "req": 1, "pid": 1234}),
    (TEMPLATE, {"op": "spawn_failed", "req": 1, "error": "type 'X' is not loaded"}),
    (TEMPLATE, {"op": "exited", "pid": 1234, "code": -9}),
    (TEMPLATE, {"op": "assign", "type": "CounterAgent", "memory_limit": 512 << 20}),
    (DAEMON, {"op": "init", "args": ["c1"], "snapshot": None, "spin_us": 200.0}),
    (DAEMON, {"op": "init", "args": [], "snapshot": b"\x80\x04", "spin_us": 0}),
    (DAEMON, {"op": "init", "args": []}),
    (DAEMON, {"op": "init", "args": ["c1"], "title": 'golemd: CounterAgent("c1")'}),
    (DAEMON, {"op": "call", "id": 1, "method": "increment", "args": []}),
    (DAEMON, {"op": "drop", "id": 2}),
    (DAEMON, {"op": "call", "id": 3, "method": "order", "args": ["hat"],
              "journal": [["step", b"\x80", b"\x81\xa5value\x01"], ["sleep", b"\x80", None]]}),
    (WORKER, {"op": "effect", "id": 3, "seq": 0, "kind": "call", "req": b"\x80"}),
    (WORKER, {"op": "effect", "id": 3, "seq": 1, "kind": "step", "req": b"\x80", "res": b"\x80"}),
    (DAEMON, {"op": "effect_result", "id": 3, "seq": 1, "res": b"\x80"}),
    (WORKER, {"op": "dropped", "id": 2}),
    (WORKER, {"op": "init", "ok": True}),
    (WORKER, {"op": "init", "ok": False, "error": ERR}),
    (WORKER, {"op": "result", "id": 1, "ok": True, "snapshot": None, "result": 1}),
    (WORKER, {"op": "result", "id": 1, "ok": True, "snapshot": b"s", "result": None}),
    (WORKER, {"op": "result", "id": 2, "ok": False, "code": "INVOCATION_FAILED", "error": ERR}),
]

INVALID: list[tuple[str, Any, str]] = [
    (WORKER, [1, 2], "map"),
    (WORKER, {"id": 1, "ok": True}, "op"),
    (WORKER, {"op": "spawn", "req": 1, "type": "A", "memory_limit": 0}, "it sends"),  # not the worker's
    (DAEMON, {"op": "result", "id": 1, "ok": True, "result": 1}, "it sends"),
    (TEMPLATE, {"op": "init", "ok": True}, "it sends"),
    (WORKER, {"op": 7}, "it sends"),
    (WORKER, {"op": "result", "id": "1", "ok": True, "result": 1}, "'id'"),
    (WORKER, {"op": "result", "id": True, "ok": True, "result": 1}, "'id'"),  # a bool is not an id
    (WORKER, {"op": "result", "id": 1, "ok": 1, "result": 1}, "'ok'"),
    (WORKER, {"op": "result", "id": 1, "ok": True}, "'result'"),
    (WORKER, {"op": "result", "ok": True, "result": 1}, "'id'"),
    (WORKER, {"op": "result", "id": 1, "ok": True, "result": 1, "snapshot": "s"}, "'snapshot'"),
    (WORKER, {"op": "result", "id": 1, "ok": True, "result": 1, "code": "X"}, "'code'"),
    (WORKER, {"op": "result", "id": 1, "ok": False, "error": ERR}, "'code'"),
    (WORKER, {"op": "result", "id": 1, "ok": False, "code": "X", "error": "boom"}, "'error'"),
    (WORKER, {"op": "result", "id": 1, "ok": False, "code": "X", "error": {"type": "E"}}, "'message'"),
    (WORKER, {"op": "result", "id": 1, "ok": False, "code": "X", "error": ERR, "result": 1}, "'result'"),
    (WORKER, {"op": "result", "id": 1, "ok": True, "result": 1, "extra": 0}, "'extra'"),
    (WORKER, {"op": "init", "ok": False}, "'error'"),
    (WORKER, {"op": "init", "ok": True, "error": ERR}, "'error'"),
    (DAEMON, {"op": "init", "snapshot": None}, "'args'"),
    (DAEMON, {"op": "init", "args": [], "spin_us": "200"}, "'spin_us'"),
    (DAEMON, {"op": "call", "id": 1, "method": "m", "args": (1,)}, "'args'"),
    (DAEMON, {"op": "call", "id": 1, "args": []}, "'method'"),
    (DAEMON, {"op": "spawn", "req": 1, "type": "A", "memory_limit": None}, "'memory_limit'"),
    (TEMPLATE, {"op": "ready", "types": {"A": "not a description"}}, "'types'"),
    (TEMPLATE, {"op": "exited", "pid": 1}, "'code'"),
    (TEMPLATE, {"op": "assign", "type": "A"}, "'memory_limit'"),
    (WORKER, {"op": "effect", "id": 3, "seq": 0, "kind": "call"}, "'req'"),
    (WORKER, {"op": "effect", "id": 3, "seq": "0", "kind": "call", "req": b""}, "'seq'"),
    (WORKER, {"op": "effect", "id": 3, "seq": 0, "kind": "call", "req": {"agent": "A()"}}, "'req'"),
    (DAEMON, {"op": "effect_result", "id": 3, "seq": 0}, "'res'"),
    (DAEMON, {"op": "call", "id": 1, "method": "m", "args": [], "journal": {}}, "'journal'"),
]


@pytest.mark.parametrize(("sender", "msg"), VALID)
def test_valid(sender, msg):
    assert check_worker_message(msg, sender) is msg


@pytest.mark.parametrize(("sender", "msg", "says"), INVALID)
def test_invalid(sender, msg, says):
    with pytest.raises(WorkerProtocolError) as info:
        check_worker_message(msg, sender)
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)  # the reader's `except ValueError` catches it


def test_unknown_sender_is_our_bug():
    with pytest.raises(ValueError, match="sender"):
        check_worker_message({"op": "init"}, "client")


def test_every_kind_is_tested_documented_and_typed():
    assert {(s, m["op"]) for s, m in VALID} == set(w.SCHEMA) == set(w.MESSAGES)
    for (sender, op), (spec, _) in w.SCHEMA.items():
        assert op in w.__doc__
        typed = w.MESSAGES[sender, op]
        assert typing.get_args(typing.get_type_hints(typed)["op"]) == (op,)
        assert set(typed.__annotations__) == {"op", *spec}, typed
        assert typed.__required_keys__ == {"op", *(f for f, (_, required) in spec.items() if required)}


# --- what golemd.host builds ------------------------------------------------------------


class Agentish:
    def __init__(self, n: int):
        self.n = n

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def fail(self) -> None:
        raise KeyError("no")

    def unsendable(self) -> object:
        return object()


# As @agent would mark it, without entering it in the process's registry.
Agentish.__golem_agent__ = AgentSpec("Agentish", True, None, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "args"), [("add", [2]), ("fail", []), ("unsendable", [])])
def test_the_runtime_replies_fit(method, args):
    from golemd.host import runtime

    host = runtime.AgentHost(Agentish, [1])
    host.build(None)
    out = host.call(method, args)
    packed = out.pop("packed_result", None)
    if packed is not None:
        reply = msgpack.unpackb(runtime._reply_with_packed(5, out["snapshot"], packed), raw=False)
    else:
        reply = {"op": "result", "id": 5, **out}
    check_worker_message(reply, WORKER)
    assert reply["ok"] == (method == "add")


def test_a_live_template_and_worker_speak_the_schema(monkeypatch):
    """Every message the daemon's side (golemd.host.template, worker_handle)
    sends or reads, with a real template process and real workers."""
    from golemd.host import template as template_mod
    from golemd.host import worker_handle

    seen: list[tuple[str, str]] = []

    def checked(msg: Any, sender: str) -> Any:
        check_worker_message(msg, sender)
        seen.append((sender, msg["op"]))
        return msg

    real_pack, real_unpackb = worker_handle.pack, msgpack.unpackb
    real_on_message = worker_handle.Worker._on_message

    def pack(obj: Any) -> bytes:
        if isinstance(obj, dict) and "op" in obj:
            checked(obj, DAEMON)
        return real_pack(obj)

    for module in (template_mod, worker_handle):
        monkeypatch.setattr(module, "pack", pack)
    monkeypatch.setattr(msgpack, "unpackb", lambda data, **kw: checked(real_unpackb(data, **kw), TEMPLATE))
    monkeypatch.setattr(worker_handle.Worker, "_on_message",
                        lambda self, msg: real_on_message(self, checked(msg, WORKER)))

    async def scenario() -> None:
        template = template_mod.Template([EXAMPLES, TEST_AGENTS], owner="test-worker-schema")
        await template.start()
        try:
            init = {"op": "init", "args": ["c1"], "snapshot": None, "spin_us": 0.0}
            worker = await template.spawn("CounterAgent", lambda *a: None, 0, init)
            assert (await worker.initialized)["ok"]
            assert (await worker.call("increment", []))["ok"]
            failing = await template.spawn("AsyncAgent", lambda *a: None, 0, {**init, "args": []})
            await failing.initialized
            assert not (await failing.call("fail_later", []))["ok"]
            bad = await template.spawn("BadInit", lambda *a: None, 0, {**init, "args": ["x"]})
            assert not (await bad.initialized)["ok"]
            for wk in (worker, failing, bad):
                wk.kill()
                await wk.wait()
            with pytest.raises(template_mod.TemplateError):
                await template.spawn("NoSuchType", lambda *a: None, 0, init)
        finally:
            template.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert set(seen) == {(DAEMON, "spawn"), (DAEMON, "init"), (DAEMON, "call"), (TEMPLATE, "ready"),
                         (TEMPLATE, "spawned"), (TEMPLATE, "spawn_failed"), (TEMPLATE, "exited"),
                         (WORKER, "init"), (WORKER, "result")}
