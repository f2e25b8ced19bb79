"""The client against peers that misbehave on purpose, which golemd cannot be
made to do: replies out of order or for unknown ids, garbage, silence, a
dropped connection; plus connect diagnostics. How the client works with a
real golemd is tested in tests/integration/test_cli.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import msgpack
import pytest

from golemctl import ops
from golemctl.aio import AsyncClient
from golemctl.client import Client
from golemctl.paths import default_socket_path
from golemd.model.errors import Code, GolemError


@pytest.fixture
def sock_path():
    d = tempfile.mkdtemp(dir="/tmp", prefix="gcli-")
    yield os.path.join(d, "s.sock")
    shutil.rmtree(d, ignore_errors=True)


def run_async(fn):
    """No pytest asyncio plugin here: run the coroutine test in a fresh loop."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 10))

    return wrapper


async def serve_unix(handler, path: str) -> asyncio.Server:
    """A Unix server whose connection transports are closed when handlers end,
    even when asyncio.run cancels them at the end of the test."""

    async def closing(reader, writer):
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    return await asyncio.start_unix_server(closing, path)


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


async def read_requests(reader: asyncio.StreamReader, n: int) -> list[dict]:
    up = msgpack.Unpacker(raw=False)
    out: list[dict] = []
    while len(out) < n:
        data = await reader.read(65536)
        if not data:
            break
        up.feed(data)
        out.extend(up)
    return out


# --- AsyncClient -------------------------------------------------------------------


@run_async
async def test_out_of_order_replies_are_matched_by_id(sock_path):
    async def serve(reader, writer):
        reqs = await read_requests(reader, 5)
        assert len({r["id"] for r in reqs}) == 5 and all(r["v"] == 1 for r in reqs)
        for r in reversed(reqs):  # newest first, interleaved with events
            writer.write(pack({"id": r["id"], "event": {"type": "output", "line": f"for {r['args'][0]}"}}))
        for r in reversed(reqs):
            writer.write(pack({"id": r["id"], "idempotency_key": "k", "result": r["args"][0] * 10}))
        await writer.drain()
        await reader.read()

    server = await serve_unix(serve, sock_path)
    async with server, await AsyncClient.connect(sock_path) as c:
        seen: dict[int, list[str]] = {i: [] for i in range(5)}
        results = await asyncio.gather(*(
            c.invoke("A()", "m", [i], stream=True, on_event=lambda ev, i=i: seen[i].append(ev["line"]))
            for i in range(5)))
    assert [r["result"] for r in results] == [0, 10, 20, 30, 40]
    assert seen == {i: [f"for {i}"] for i in range(5)}


@run_async
async def test_connection_loss_fails_every_outstanding_request(sock_path):
    async def serve(reader, writer):
        await read_requests(reader, 3)
        writer.close()

    server = await serve_unix(serve, sock_path)
    async with server, await AsyncClient.connect(sock_path) as c:
        outcomes = await asyncio.gather(*(c.status() for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, GolemError) and o.code == Code.DAEMON_UNREACHABLE for o in outcomes)
        assert sock_path in str(outcomes[0])
        with pytest.raises(GolemError) as later:
            await c.status()
        assert later.value.code == Code.DAEMON_UNREACHABLE


@run_async
async def test_nil_id_error_fails_pending(sock_path):
    async def serve(reader, writer):
        await read_requests(reader, 2)
        writer.write(pack({"id": None, "error": {"code": "TOO_LARGE", "message": "over 64 MiB"}}))
        await writer.drain()
        writer.close()

    server = await serve_unix(serve, sock_path)
    async with server, await AsyncClient.connect(sock_path) as c:
        outcomes = await asyncio.gather(c.types(), c.status(), return_exceptions=True)
    assert [o.code for o in outcomes] == [Code.TOO_LARGE, Code.TOO_LARGE]


@run_async
async def test_reply_timeout(sock_path):
    async def serve(reader, writer):
        await reader.read()

    server = await serve_unix(serve, sock_path)
    async with server, await AsyncClient.connect(sock_path) as c:
        with pytest.raises(GolemError) as e:
            await c.request("status", reply_timeout=0.05)
    assert e.value.code == Code.DAEMON_UNREACHABLE and "0.05" in e.value.message


@run_async
async def test_async_connect_missing(sock_path):
    with pytest.raises(GolemError) as e:
        await AsyncClient.connect(sock_path)
    assert e.value.code == Code.DAEMON_UNREACHABLE and sock_path in e.value.message


# --- Client (blocking) ---------------------------------------------------------------


def peer(script):
    """A Client on one end of a socketpair; `script(sock, request)` answers on the other."""
    a, b = socket.socketpair()

    def run():
        up = msgpack.Unpacker(raw=False)
        with b:
            while data := b.recv(65536):
                up.feed(data)
                for req in up:
                    script(b, req)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return Client(a, "/test.sock")


def test_request_fields_on_the_wire():
    seen = []

    def script(s, req):
        seen.append(req)
        s.sendall(pack({"id": req["id"], "idempotency_key": "k", "status": "pending"}))

    with peer(script) as c:
        c.invoke("A()", "m", (1, "x"), idempotency_key="k", mode="trigger", schedule_at=5.0)
        c.request("invoke", agent="A()", method="m")
    assert seen[0] == {"v": 1, "id": 1, "op": "invoke", "agent": "A()", "method": "m",
                       "args": [1, "x"], "idempotency_key": "k", "mode": "trigger", "schedule_at": 5.0}
    assert seen[1] == {"v": 1, "id": 2, "op": "invoke", "agent": "A()", "method": "m"}


def test_reply_timeout_closes_connection():
    with peer(lambda s, req: None) as c:
        with pytest.raises(GolemError) as e:
            c.request("status", reply_timeout=0.05)
        assert e.value.code == Code.DAEMON_UNREACHABLE and "/test.sock" in e.value.message
        with pytest.raises(GolemError) as e:
            c.status()
        assert e.value.code == Code.DAEMON_UNREACHABLE


def test_reply_for_another_id_is_a_protocol_error():
    with peer(lambda s, req: s.sendall(pack({"id": req["id"] + 7, "ok": True}))) as c:
        with pytest.raises(GolemError) as e:
            c.stop()
    assert e.value.code == Code.PROTOCOL_ERROR


def test_peer_closing_is_unreachable():
    def script(s, req):
        s.shutdown(socket.SHUT_WR)

    with peer(script) as c, pytest.raises(GolemError) as e:
        c.status()
    assert e.value.code == Code.DAEMON_UNREACHABLE and "closed the connection" in e.value.message


def test_an_error_written_before_the_hang_up_is_what_the_client_reports():
    """golemd answers UNAUTHORIZED and hangs up as it accepts, before it reads a
    request: a request sent after that fails (EPIPE), and the client reports
    the daemon's error rather than a lost connection."""
    a, b = socket.socketpair()
    b.sendall(pack({"id": None, "error": {"code": "UNAUTHORIZED", "message": "uid 7 may not"}}))
    b.close()
    with Client(a, "/test.sock") as c, pytest.raises(GolemError) as e:
        c.request("status", padding="x" * (1 << 20))  # too big to fit the dead socket's buffer
    assert e.value.code == Code.UNAUTHORIZED and e.value.message == "uid 7 may not"


def test_garbage_is_a_protocol_error():
    with peer(lambda s, req: s.sendall(b"\xc1")) as c, pytest.raises(GolemError) as e:
        c.status()
    assert e.value.code == Code.PROTOCOL_ERROR


def test_unencodable_request_is_refused_locally():
    with peer(lambda s, req: None) as c, pytest.raises(GolemError) as e:
        c.invoke("A()", "m", [{1, 2}])
    assert e.value.code == Code.BAD_REQUEST


def test_oversized_request_is_refused_locally(monkeypatch):
    monkeypatch.setattr(ops, "MAX_MESSAGE_BYTES", 100)
    with peer(lambda s, req: None) as c, pytest.raises(GolemError) as e:
        c.invoke("A()", "m", ["x" * 200])
    assert e.value.code == Code.TOO_LARGE


def test_default_reply_timeouts():
    assert ops.default_reply_timeout("invoke", {"mode": "await"}) is None
    assert ops.default_reply_timeout("invoke", {}) is None
    assert ops.default_reply_timeout("invoke", {"mode": "trigger"}) == ops.REPLY_TIMEOUT
    assert ops.default_reply_timeout("stream", {"follow": True}) is None
    assert ops.default_reply_timeout("get", {}) == ops.REPLY_TIMEOUT


# --- connecting ----------------------------------------------------------------------


def test_connect_missing(sock_path):
    with pytest.raises(GolemError) as e:
        Client.connect(sock_path)
    assert e.value.code == Code.DAEMON_UNREACHABLE
    assert e.value.message.startswith(f"no socket at {sock_path}: golemd is not running there")


def test_connect_stale(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    s.close()
    with pytest.raises(GolemError) as e:
        Client.connect(sock_path)
    assert f"socket {sock_path} exists but no daemon accepts connections" in e.value.message


def test_connect_regular_file(sock_path):
    open(sock_path, "w").close()
    with pytest.raises(GolemError) as e:
        Client.connect(sock_path)
    assert "regular file, not a socket" in e.value.message


def connect_as_nobody(path: str) -> str:
    """Client.connect(path) in a forked child running as uid/gid 65534; its error message."""
    import grp  # noqa: F401  (the child cannot read the interpreter's files to import them)
    import pwd  # noqa: F401

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            Client.connect(path)
            msg = "connected"
        except GolemError as e:
            msg = str(e)
        except BaseException as e:
            msg = repr(e)
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another uid")
def test_connect_permission_denied(sock_path):
    os.chmod(os.path.dirname(sock_path), 0o755)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    s.listen()
    os.chmod(sock_path, 0o660)
    with s:
        msg = connect_as_nobody(sock_path)
    assert msg.startswith(f"DAEMON_UNREACHABLE: permission denied on {sock_path} (mode 0660, owner 0:0")
    assert "you are uid 65534" in msg


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another uid")
def test_connect_permission_denied_on_directory(sock_path):
    d = os.path.dirname(sock_path)
    os.chmod(d, 0o700)
    msg = connect_as_nobody(sock_path)
    assert msg.startswith(f"DAEMON_UNREACHABLE: permission denied on {d} (mode 0700")


def test_default_socket_path(monkeypatch):
    monkeypatch.setenv("GOLEMD_SOCKET", "/x/y.sock")
    assert default_socket_path() == "/x/y.sock"
    monkeypatch.delenv("GOLEMD_SOCKET")
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == "/run/user/1000/golemd/golemd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == "/tmp/golemd-1000/golemd.sock"
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert default_socket_path() == "/run/golemd/golemd.sock"


def test_sync_client_does_not_import_asyncio():
    code = "import sys, golemctl.client; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the op methods (golemd/wire/ops/NAME.client) -----------------------------------

# Every public method of both clients as it was before the ops moved to
# golemd/wire/ops/: (parameter, kind, default) after self.
_P, _K = "POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"
_AGENT = [("agent", _P, "-")]
PUBLIC = {
    "call": [("c", _P, "-"), ("on_event", _P, None), ("reply_timeout", _P, ...)],
    "cancel": _AGENT + [("idempotency_key", _P, "-")],
    "close": [],
    "delete": _AGENT,
    "get": _AGENT,
    "interrupt": _AGENT + [("recover", _P, False)],
    "invocations": _AGENT,
    "invoke": _AGENT + [("method", _P, "-"), ("args", _P, ()), ("idempotency_key", _P, None),
                        ("mode", _P, "await"), ("schedule_at", _P, None), ("timeout", _P, None),
                        ("stream", _P, False), ("on_event", _P, None), ("reply_timeout", _P, ...),
                        ("traceparent", _P, None)],
    "list": [("env", _P, None), ("type", _P, None), ("status", _P, None), ("filters", _P, None)],
    "new": _AGENT + [("env", _P, None)],
    "revert": _AGENT + [("number_of_invocations", _P, None), ("last_oplog_index", _P, None)],
    "oplog": _AGENT + [("last", _P, None), ("from_index", _P, None), ("query", _P, None)],
    "dashboard": [],
    "promise_complete": [("promise_id", _P, "-"), ("value", _P, None)],
    "promise_get": [("promise_id", _P, "-")],
    "promise_list": [("agent", _P, None), ("all", _P, False)],
    "reload": [],
    "request": [("op", "POSITIONAL_ONLY", "-"), ("on_event", _K, None), ("reply_timeout", _K, ...),
                ("fields", "VAR_KEYWORD", "-")],
    "resume": _AGENT,
    "run": [("steps", _P, "-")],
    "simulate_crash": _AGENT,
    "status": [],
    "stop": [],
    "stream": _AGENT + [("on_event", _P, "-"), ("follow", _P, False), ("last", _P, None)],
    "types": [],
}


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_public_methods_keep_their_signatures(cls):
    import inspect

    from golemd.wire import ops as wire_ops

    names = {n for n in dir(cls) if not n.startswith("_") and n not in ("connect",)}
    assert names == set(PUBLIC)
    for name, want in PUBLIC.items():
        method = getattr(cls, name)
        params = list(inspect.signature(method).parameters.values())
        assert params[0].name == "self", name
        got = [(p.name, p.kind.name, "-" if p.default is p.empty else p.default) for p in params[1:]]
        assert got == want, name
        assert inspect.iscoroutinefunction(method) == (cls is AsyncClient), name
        if name in wire_ops.NAMES:
            assert inspect.getdoc(method), name


def test_every_op_is_a_method_of_both_clients():
    from golemd.wire import ops as wire_ops

    for name in wire_ops.NAMES:
        client_half = wire_ops.load(name).client
        assert getattr(Client, name) is client_half
        assert getattr(AsyncClient, name).__wrapped__ is client_half


def test_an_op_may_not_replace_a_client_method():
    class Odd:
        def get(self):
            pass

    with pytest.raises(TypeError, match="'get'"):
        ops.install_ops(Odd)


def test_list_fetches_every_page():
    seen = []

    def script(s, req):
        seen.append(req)
        page = {"agents": [{"agent_id": "A()"}], "next": "A()"} if "after" not in req else \
            {"agents": [{"agent_id": "B()"}], "next": None}
        s.sendall(pack({"id": req["id"], **page}))

    with peer(script) as c:
        assert c.list(env="dev") == [{"agent_id": "A()"}, {"agent_id": "B()"}]
    assert [r.get("after") for r in seen] == [None, "A()"]
    assert seen[0] == {"v": 1, "id": 1, "op": "list", "env": "dev", "limit": 1000}


def test_reply_of_the_wrong_shape_is_a_protocol_error():
    with peer(lambda s, req: s.sendall(pack({"id": req["id"], "agent": ["not", "a", "map"]}))) as c:
        with pytest.raises(GolemError) as e:
            c.get("A()")
    assert e.value.code == Code.PROTOCOL_ERROR and "'get'" in e.value.message


@run_async
async def test_async_op_methods_pipeline(sock_path):
    async def handler(reader, writer):
        for r in await read_requests(reader, 2):
            reply = {"id": r["id"], "entries": [{"index": 1}]} if r["op"] == "oplog" else \
                {"id": r["id"], "agents": [], "next": None}
            writer.write(pack(reply))
        await writer.drain()

    server = await serve_unix(handler, sock_path)
    async with server, await AsyncClient.connect(sock_path) as c:
        assert await asyncio.gather(c.oplog("A()", last=1), c.list()) == [[{"index": 1}], []]
