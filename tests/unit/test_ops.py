"""Each op's definition in golemd/wire/ops/: its spec, its request fields as
validate_request checks them, its client half and its daemon half, checked
against each other and against docs/protocol.md.

A new op fails here until it is added to FULL and CLIENT below: that is its
unit test.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from golemd.model.errors import Code, GolemError
from golemd.wire import ops
from golemd.wire.ops import MAP, MAPS, Call
from golemd.wire.ops.registry import HANDLERS, MUTATING, OPS, REGISTRY, validate_request

ROOT = Path(__file__).resolve().parents[2]
OPS_DIR = ROOT / "golemd" / "wire" / "ops"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"

# Every op's request with every field set to a documented value.
FULL: dict[str, dict[str, Any]] = {
    "invoke": {"agent": 'A("x")', "method": "m", "args": [1, "a", None], "idempotency_key": "k",
               "mode": "trigger", "schedule_at": 1_700_000_000.5, "timeout": 2, "stream": False,
               "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    "get": {"agent": "A()"},
    "new": {"agent": 'A("x")', "env": {"MODE": "test"}},
    "list": {"env": "dev", "type": "A", "status": "Idle", "limit": 10, "after": 'A("a")',
             "filters": ["status = Idle", ["pending", ">", 0]]},
    "cancel": {"agent": "A()", "idempotency_key": "k"},
    "interrupt": {"agent": "A()", "recover": True},
    "simulate_crash": {"agent": "A()"},
    "resume": {"agent": "A()"},
    "delete": {"agent": "A()"},
    "revert": {"agent": "A()", "number_of_invocations": 2, "last_oplog_index": 3},
    "invocations": {"agent": "A()"},
    "oplog": {"agent": "A()", "last": 5, "from": 2, "query": "kind:failed -method:get"},
    "stream": {"agent": "A()", "follow": True, "last": 0},
    "promise_complete": {"promise_id": "p-1", "value": {"ok": [1, 2.5, b"x", True]}},
    "promise_get": {"promise_id": "p-1"},
    "promise_list": {"agent": 'Shop("s")', "all": True},
    "types": {},
    "status": {},
    "dashboard": {},
    "reload": {},
    "stop": {},
}

# op -> (positional, keyword arguments of its client method, the Call it must make).
CLIENT: dict[str, tuple[tuple[Any, ...], dict[str, Any], Call]] = {
    "invoke": (('A("x")', "m", (1, "a")), {"idempotency_key": "k", "mode": "trigger", "schedule_at": 5.0,
                                           "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"},
               Call("invoke", {"agent": 'A("x")', "method": "m", "args": [1, "a"], "idempotency_key": "k",
                               "mode": "trigger", "schedule_at": 5.0, "timeout": None, "stream": None,
                               "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"},
                    None, MAP)),
    "get": (("A()",), {}, Call("get", {"agent": "A()"}, "agent", MAP)),
    "new": (('A("x")',), {"env": {"MODE": "test"}},
            Call("new", {"agent": 'A("x")', "env": {"MODE": "test"}}, None, MAP)),
    "list": ((), {"env": "dev", "status": "Idle", "filters": ["pending > 0"]},
             Call("list", {"env": "dev", "type": None, "status": "Idle", "filters": ["pending > 0"],
                           "limit": 1000, "after": None}, None, MAP)),
    "cancel": (("A()", "k"), {}, Call("cancel", {"agent": "A()", "idempotency_key": "k"}, None, MAP)),
    "interrupt": (("A()",), {"recover": True},
                  Call("interrupt", {"agent": "A()", "recover": True}, "agent", MAP)),
    "simulate_crash": (("A()",), {}, Call("simulate_crash", {"agent": "A()"}, "agent", MAP)),
    "resume": (("A()",), {}, Call("resume", {"agent": "A()"}, "agent", MAP)),
    "delete": (("A()",), {}, Call("delete", {"agent": "A()"}, "agent", MAP)),
    "revert": (("A()",), {"last_oplog_index": 4},
               Call("revert", {"agent": "A()", "number_of_invocations": None, "last_oplog_index": 4}, None, MAP)),
    "invocations": (("A()",), {}, Call("invocations", {"agent": "A()"}, "invocations", MAPS)),
    "oplog": (("A()",), {"last": 3, "query": "hat"},
              Call("oplog", {"agent": "A()", "last": 3, "from": None, "query": "hat"}, "entries", MAPS)),
    "stream": (("A()", None), {"follow": True},
               Call("stream", {"agent": "A()", "follow": True, "last": None}, None, MAP)),
    "promise_complete": (("p-1", "yes"), {},
                         Call("promise_complete", {"promise_id": "p-1", "value": "yes"}, None, MAP)),
    "promise_get": (("p-1",), {}, Call("promise_get", {"promise_id": "p-1"}, "promise", MAP)),
    "promise_list": (('Shop("s")',), {"all": True},
                     Call("promise_list", {"agent": 'Shop("s")', "all": True}, "promises", MAPS)),
    "types": ((), {}, Call("types", {}, "types", MAPS)),
    "status": ((), {}, Call("status", {}, None, MAP)),
    "dashboard": ((), {}, Call("dashboard", {}, None, MAP)),
    "reload": ((), {}, Call("reload", {}, None, MAP)),
    "stop": ((), {}, Call("stop", {}, None, MAP)),
}

# Values of every msgpack type, to find the ones a field refuses.
SAMPLES = [1, -1, 1.5, True, False, "s", b"b", [1], {"k": 1}, None]


def req(op: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "id": 9, "op": op, **fields}


def minimal(op: str) -> dict[str, Any]:
    return {f: v for f, v in FULL[op].items() if OPS[op][f][1]}


def accepts(types: tuple[type, ...], value: Any) -> bool:
    return isinstance(value, types) and not (value.__class__ is bool and bool not in types)


def _op_sections() -> dict[str, str]:
    """op -> the text of its section under '## Ops' in docs/protocol.md."""
    text = PROTOCOL_MD.read_text().split("\n## Ops\n", 1)[1].split("\n## ", 1)[0]
    sections: dict[str, str] = {}
    for part in text.split("\n### ")[1:]:
        heading, _, body = part.partition("\n")
        for name in re.findall(r"`([a-z_]+)`", heading.split(":", 1)[0]):
            sections[name] = body
    return sections


def test_the_registry_is_every_module_of_the_package():
    files = {p.stem for p in OPS_DIR.glob("*.py")} - {"__init__", "context", "registry"}
    assert {n.rstrip("_") for n in files} == set(ops.NAMES) == set(REGISTRY) == set(OPS) == set(FULL)
    assert list(ops.NAMES) == sorted(ops.NAMES)
    assert set(HANDLERS) == set(ops.NAMES) - {"invoke"}


def test_docs_list_exactly_the_registry_ops():
    assert sorted(_op_sections()) == sorted(ops.NAMES)


def test_no_op_module_shadows_a_builtin_in_its_package():
    # Importing golemd.wire.ops.X binds X in the package: a module named `list`
    # would turn `list` into a module inside golemd/wire/ops/__init__.py.
    for op in REGISTRY.values():
        stem = op.__name__.rpartition(".")[2]
        assert not hasattr(builtins, stem), op.__name__


def test_mutating_ops_are_the_logged_ones():
    from golemd.server.access import MUTATING as LOGGED_BEFORE

    assert MUTATING == LOGGED_BEFORE
    assert MUTATING == {"invoke", "new", "cancel", "interrupt", "simulate_crash", "resume", "delete", "revert",
                        "promise_complete", "reload", "stop", "dashboard"}


# --- each op's definition ---------------------------------------------------------


@pytest.mark.parametrize("name", ops.NAMES)
def test_definition_is_complete(name):
    op = REGISTRY[name]
    doc = inspect.getdoc(op)
    assert doc and doc.startswith(f"`{name}`: "), f"{op.__name__} needs its spec as its docstring"
    assert isinstance(op.MUTATING, bool)
    for field, spec in op.FIELDS.items():
        types, required = spec
        assert isinstance(types, tuple) and all(isinstance(t, type) for t in types) and types
        assert isinstance(required, bool)
        assert field not in ("v", "id", "op")
    params = list(inspect.signature(op.client).parameters)
    assert params[0] == "self" and inspect.getdoc(op.client)
    if name == "invoke":
        assert op.handle is None
    else:
        assert inspect.iscoroutinefunction(op.handle)
        assert list(inspect.signature(op.handle).parameters) == ["d", "req", "emit"]


@pytest.mark.parametrize("name", ops.NAMES)
def test_spec_and_docs_name_every_field(name):
    op = REGISTRY[name]
    section = _op_sections()[name]
    for field in op.FIELDS:
        assert f"`{field}`" in op.__doc__, f"{op.__name__}'s docstring does not describe {field!r}"
        assert f"`{field}`" in section, f"docs/protocol.md's {name!r} does not describe {field!r}"
    named = set(re.findall(r"`([A-Z][A-Z_]{2,})`", op.__doc__))
    assert named <= set(Code.__members__), named - set(Code.__members__)


@pytest.mark.parametrize("name", ops.NAMES)
def test_documented_shapes_are_valid(name):
    assert set(FULL[name]) == set(OPS[name]), "FULL must set every field of the op"
    for fields in (FULL[name], minimal(name)):
        msg = req(name, **fields)
        assert validate_request(msg) == (9, name, msg)
    optional = {f: None for f, (_, required) in OPS[name].items() if not required}
    validate_request(req(name, **minimal(name), **optional))  # nil is absent


@pytest.mark.parametrize("name", ops.NAMES)
def test_wrong_types_are_refused(name):
    checked = 0
    for field, (types, required) in OPS[name].items():
        for value in SAMPLES:
            if accepts(types, value) or (value is None and not required):
                continue
            with pytest.raises(GolemError) as info:
                validate_request(req(name, **{**FULL[name], field: value}))
            assert info.value.code == Code.BAD_REQUEST
            assert repr(field) in info.value.message and info.value.request_id == 9
            checked += 1
    assert checked or not OPS[name]


@pytest.mark.parametrize("name", ops.NAMES)
def test_missing_and_unknown_fields_are_refused(name):
    for field in minimal(name):
        msg = req(name, **FULL[name])
        del msg[field]
        with pytest.raises(GolemError) as info:
            validate_request(msg)
        assert info.value.code == Code.BAD_REQUEST and repr(field) in info.value.message
    with pytest.raises(GolemError) as info:
        validate_request(req(name, **FULL[name], bogus=1))
    assert info.value.code == Code.BAD_REQUEST and "'bogus'" in info.value.message


class Recorder:
    """A Caller (golemd.wire.ops.context) that records Calls and answers `reply`."""

    def __init__(self, reply: Any):
        self.calls: list[tuple[Call, Any, Any]] = []
        self.reply = reply

    def call(self, c: Call, on_event: Any = None, reply_timeout: Any = ...) -> Any:
        self.calls.append((c, on_event, reply_timeout))
        return self.reply

    def run(self, steps: Any) -> Any:
        c = next(steps)
        while True:
            try:
                c = steps.send(self.call(c))
            except StopIteration as done:
                return done.value


@pytest.mark.parametrize("name", ops.NAMES)
def test_client_half_makes_a_request_the_daemon_accepts(name):
    args, kwargs, want = CLIENT[name]
    caller = Recorder({"agents": [{"agent_id": "A()"}], "next": None})
    REGISTRY[name].client(caller, *args, **kwargs)
    (call, _, _), = caller.calls
    assert call == want
    wire = {k: v for k, v in call.fields.items() if v is not None}  # as golemctl.ops.encode_request
    validate_request(req(name, **wire))


def test_list_client_follows_the_cursor():
    pages = iter([{"agents": [{"agent_id": "a"}], "next": "a"}, {"agents": [{"agent_id": "b"}], "next": None}])

    class Pages(Recorder):
        def call(self, c: Call, on_event: Any = None, reply_timeout: Any = ...) -> Any:
            self.calls.append((c, on_event, reply_timeout))
            return next(pages)

    caller = Pages(None)
    assert REGISTRY["list"].client(caller, type="T") == [{"agent_id": "a"}, {"agent_id": "b"}]
    assert [c.fields["after"] for c, _, _ in caller.calls] == [None, "a"]


def test_list_pages_stop_at_max_count_with_the_cursor_of_what_follows():
    replies = iter([{"agents": [{"agent_id": "a"}, {"agent_id": "b"}], "next": "b"},
                    {"agents": [{"agent_id": "c"}], "next": "c"}])

    class Pages(Recorder):
        def call(self, c: Call, on_event: Any = None, reply_timeout: Any = ...) -> Any:
            self.calls.append((c, on_event, reply_timeout))
            return next(replies)

    caller = Pages(None)
    steps = REGISTRY["list"].paged(None, None, None, ("pending > 0",), max_count=3, after="0", limit=2)
    agents, cursor = caller.run(steps)
    assert [a["agent_id"] for a in agents] == ["a", "b", "c"] and cursor == "c"
    assert [(c.fields["limit"], c.fields["after"], c.fields["filters"]) for c, _, _ in caller.calls] == \
        [(2, "0", ["pending > 0"]), (1, "b", ["pending > 0"])]


def test_no_reply_deadline():
    invoke, stream = REGISTRY["invoke"], REGISTRY["stream"]
    assert invoke.no_reply_deadline({}) and invoke.no_reply_deadline({"mode": "await"})
    assert not invoke.no_reply_deadline({"mode": "trigger"})
    assert stream.no_reply_deadline({"follow": True}) and not stream.no_reply_deadline({})
    assert [n for n, op in REGISTRY.items() if hasattr(op, "no_reply_deadline")] == ["invoke", "stream"]


def test_invoke_refuses_a_naive_schedule_at():
    from datetime import UTC, datetime

    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert REGISTRY["invoke"].unix_seconds(at) == at.timestamp()
    with pytest.raises(ValueError):
        REGISTRY["invoke"].unix_seconds(datetime(2030, 1, 1))


# --- what the op modules may import -------------------------------------------------

ALLOWED = ("golemd.model", "golemd.wire.ops")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING and function imports too
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(p.name for p in OPS_DIR.glob("*.py")))
def test_op_modules_import_only_model_and_ops(path):
    ours = {n for n in _imports(OPS_DIR / path) if n == "golemd" or n.startswith("golemd.")}
    bad = {n for n in ours if n != "golemd" and not n.startswith(ALLOWED)}
    assert not bad, f"{path} imports {bad}: golemctl imports it (and the server imports golemctl's wire)"


def test_golemctl_imports_only_wire_and_model():
    code = ("import sys, golemctl.client, golemctl.aio, golemctl.cli, golemctl.invoke, golemctl.render\n"
            "from golemd.wire import ops\n"
            "for n in ops.NAMES: ops.load(n)\n"
            "print(' '.join(m for m in sys.modules if m.startswith('golemd')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = out.stdout.split()
    assert "golemd.wire.ops.stream" in mods
    assert [m for m in mods if m != "golemd" and not m.startswith(("golemd.wire", "golemd.model"))] == []


def test_a_client_loads_only_the_op_it_uses():
    code = ("import sys; from golemctl.client import Client\n"
            "before = [m for m in sys.modules if m.startswith('golemd.wire.ops.')]\n"
            "Client.get\n"
            "print(before, [m for m in sys.modules if m.startswith('golemd.wire.ops.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] ['golemd.wire.ops.get']"


def test_handlers_do_not_import_asyncio_at_module_level():
    code = ("import sys\nfrom golemd.wire import ops\nfor n in ops.NAMES: ops.load(n)\n"
            "print('asyncio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_loads_without_the_daemon():
    code = ("import sys, golemd.wire.ops.registry\n"
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('golemd.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['model', 'wire']"

