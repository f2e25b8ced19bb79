"""golemctl without a daemon: usage errors, unreachable sockets, output shapes.

Commands run in-process with CliRunner. Where a reply is needed, the Client
is replaced by a stub that records the request; talking to a real golemd is
the integration suite's job.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from golemctl import client as client_mod
from golemctl.cli import cli
from golemd.errors import GolemError

AGENT = 'CounterAgent("c1")'


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="golemctl", env=env)


@pytest.fixture
def short_dir():
    # AF_UNIX paths must stay under 108 bytes; pytest's tmp_path may not.
    d = tempfile.mkdtemp(dir="/tmp", prefix="gctl-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def listener(short_dir, monkeypatch):
    """A socket that listens but never accepts: proves golemctl did not connect."""
    path = os.path.join(short_dir, "d.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    s.setblocking(False)
    monkeypatch.setenv("GOLEMD_SOCKET", path)
    yield s
    with pytest.raises(BlockingIOError):
        s.accept()  # no connection is waiting: the daemon was never contacted
    s.close()


def assert_usage(result: Any, code: str = "USAGE") -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert f"error: {code}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)


# --- usage errors: exit 2, nothing sent -----------------------------------------


def test_bad_agent_id(listener):
    r = run("agent", "invoke", "CounterAgent(", "increment")
    assert_usage(r, "INVALID_AGENT_ID")
    assert "CounterAgent(" in r.stderr


@pytest.mark.parametrize("cmd", [["agent", "get"], ["agent", "delete"], ["agent", "oplog"],
                                 ["agent", "interrupt"], ["agent", "stream"]])
def test_bad_agent_id_on_every_agent_command(listener, cmd):
    assert_usage(run(*cmd, "not an id"), "INVALID_AGENT_ID")


def test_code_literal_is_not_run(listener, short_dir):
    marker = os.path.join(short_dir, "pwned")
    r = run("agent", "invoke", AGENT, "add", f"__import__('os').system('touch {marker}')")
    assert_usage(r)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("literal", [
    "9" * 5000,
    "[" * 100_000,
    "[" * 100_000 + "]" * 100_000,
    '"' + "a" * 10_000_000 + '"',
    "{1, 2}",
    "2**64",
    "x",
    "",
])
def test_hostile_literals(listener, literal):
    assert_usage(run("agent", "invoke", AGENT, "add", literal))


def test_naive_schedule_at(listener):
    assert_usage(run("agent", "invoke", "-t", "--schedule-at", "2026-11-25T10:00:00", AGENT, "add", "1"))


def test_schedule_at_without_trigger(listener):
    r = run("agent", "invoke", "--schedule-at", "2026-11-25T10:00:00Z", AGENT, "add", "1")
    assert_usage(r)
    assert "--trigger" in r.stderr


def test_schedule_at_garbage(listener):
    assert_usage(run("agent", "invoke", "-t", "--schedule-at", "next tuesday", AGENT, "add"))


def test_empty_idempotency_key(listener):
    assert_usage(run("agent", "invoke", "-i", "", AGENT, "add", "1"))


def test_bad_status_filter(listener):
    assert_usage(run("agent", "list", "--status", "Sleeping"))


@pytest.mark.parametrize("args", [
    ["agent", "invoke", AGENT],  # missing METHOD
    ["agent", "bogus"],
    ["--format", "yaml", "types"],
    ["agent", "invoke", "--timeout", "0", AGENT, "m"],
    ["agent", "get", AGENT, "--frobnicate"],
])
def test_click_usage_errors_exit_2(listener, args):
    assert_usage(run(*args))


def test_usage_error_json_document(listener):
    r = run("--format", "json", "agent", "invoke", AGENT)
    assert_usage(r)
    assert json.loads(r.stdout)["error"]["code"] == "USAGE"


# --- daemon unreachable: exit 3, the path and the cause named ------------------------


def test_missing_socket(short_dir):
    path = os.path.join(short_dir, "nothing.sock")
    r = run("--socket", path, "daemon", "status")
    assert r.exit_code == 3
    assert f"error: DAEMON_UNREACHABLE: no socket at {path}" in r.stderr
    assert "not running" in r.stderr


def test_stale_socket(short_dir):
    path = os.path.join(short_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    r = run("--socket", path, "agent", "get", AGENT)
    assert r.exit_code == 3
    assert path in r.stderr and "stale" in r.stderr


def test_unreachable_json_shape(short_dir):
    path = os.path.join(short_dir, "nothing.sock")
    r = run("--format", "json", "--socket", path, "agent", "invoke", AGENT, "increment")
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert set(doc) == {"error"}
    assert doc["error"]["code"] == "DAEMON_UNREACHABLE"
    assert path in doc["error"]["message"]


def test_socket_from_env_and_after_command(short_dir):
    env_path = os.path.join(short_dir, "env.sock")
    r = run("types", env={"GOLEMD_SOCKET": env_path})
    assert r.exit_code == 3 and env_path in r.stderr
    late = os.path.join(short_dir, "late.sock")
    r = run("agent", "list", "--socket", late, "--format", "json", env={"GOLEMD_SOCKET": env_path})
    assert r.exit_code == 3 and late in json.loads(r.stdout)["error"]["message"]


def test_socket_path_too_long(short_dir):
    path = os.path.join(short_dir, "x" * 120 + ".sock")
    r = run("--socket", path, "daemon", "status")
    assert r.exit_code == 3 and "108" in r.stderr


# --- help and completion ------------------------------------------------------------------

COMMANDS = [[], ["agent"], ["agent", "invoke"], ["agent", "get"], ["agent", "list"],
            ["agent", "cancel-invocation"], ["agent", "interrupt"], ["agent", "resume"],
            ["agent", "simulate-crash"], ["agent", "delete"], ["agent", "stream"],
            ["agent", "oplog"], ["agent", "invocations"], ["types"], ["daemon"],
            ["daemon", "status"], ["daemon", "stop"], ["daemon", "reload"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "golemctl")
def test_help(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"Usage: {' '.join(['golemctl', *cmd])}")


def test_invoke_help_documents_contract_options():
    out = run("agent", "invoke", "--help").stdout
    for opt in ("-t, --trigger", "-i, --idempotency-key", "--schedule-at", "--timeout", "--no-stream"):
        assert opt in out


def test_bash_completion_script():
    r = run(env={"_GOLEMCTL_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "_golemctl_completion" in r.stdout


def test_import_stays_light():
    # golemctl runs once per command: its start-up must not pay for these.
    code = ("import sys, golemctl.cli; "
            "print(sorted(m for m in ('asyncio', 'msgpack', 'psutil', 'golemd', 'socket') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- output shapes, with the client stubbed ------------------------------------------------


class StubClient:
    """Records calls; answers like golemd would."""

    calls: list[tuple[str, tuple, dict]] = []
    reply: Any = None
    events: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __getattr__(self, op):
        def call(*args, **kwargs):
            StubClient.calls.append((op, args, kwargs))
            on_event = kwargs.get("on_event")
            if on_event is None and op == "stream":
                on_event = args[1]
            for ev in StubClient.events:
                on_event(ev)
            if isinstance(StubClient.reply, Exception):
                raise StubClient.reply
            if callable(StubClient.reply):
                return StubClient.reply(*args, **kwargs)
            return StubClient.reply
        return call


@pytest.fixture
def stub(monkeypatch):
    StubClient.calls, StubClient.reply, StubClient.events = [], None, []
    monkeypatch.setattr(client_mod.Client, "connect", classmethod(lambda cls, path=None: StubClient()))
    return StubClient


def echo_invoke(agent, method, args, idempotency_key=None, mode="await", **kw):
    if mode == "trigger":
        return {"idempotency_key": idempotency_key, "status": "pending"}
    return {"idempotency_key": idempotency_key, "result": args}


def test_awaited_result_alone_on_last_line(stub):
    stub.reply = echo_invoke
    stub.events = [{"type": "output", "stream": "stdout", "line": "working\n", "ts": 1.0}]
    r = run("agent", "invoke", "-i", "k1", "CounterAgent( 'c1' )", "add", "-5", "-1.5", "'x'", "[1, -2]")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "[-5, -1.5, 'x', [1, -2]]\n"
    assert "idempotency key: k1" in r.stderr
    assert "working\n" in r.stderr
    op, args, kw = stub.calls[0]
    assert (op, args[0], args[1]) == ("invoke", AGENT, "add")  # canonical agent ID sent
    assert kw["idempotency_key"] == "k1" and kw["stream"] is True


def test_double_dash_before_args(stub):
    stub.reply = echo_invoke
    r = run("agent", "invoke", AGENT, "add", "--", "-5")
    assert r.exit_code == 0 and r.stdout == "[-5]\n"


def test_no_stream(stub):
    stub.reply = echo_invoke
    run("agent", "invoke", "--no-stream", AGENT, "get")
    assert stub.calls[0][2]["stream"] is False and stub.calls[0][2]["on_event"] is None


def test_generated_key_is_a_uuid(stub):
    stub.reply = echo_invoke
    r = run("agent", "invoke", "-t", "-i", "-", AGENT, "increment")
    assert r.exit_code == 0
    uuid.UUID(r.stdout.strip())
    assert stub.calls[0][2]["idempotency_key"] == r.stdout.strip()
    run("agent", "invoke", AGENT, "increment")
    assert uuid.UUID(stub.calls[1][2]["idempotency_key"])


def test_triggered_text_and_json(stub):
    stub.reply = echo_invoke
    r = run("agent", "invoke", "-t", "-i", "job-1", AGENT, "increment")
    assert r.stdout == "job-1\n"
    r = run("--format", "json", "agent", "invoke", "-t", "-i", "job-1", AGENT, "increment")
    assert json.loads(r.stdout) == {"idempotency_key": "job-1", "status": "pending"}


def test_schedule_at_sent_as_unix_seconds(stub):
    stub.reply = echo_invoke
    r = run("agent", "invoke", "-t", "--schedule-at", "2026-11-25T10:00:00+01:00", AGENT, "add", "1")
    assert r.exit_code == 0, r.stderr
    assert stub.calls[0][2]["schedule_at"] == 1795597200.0
    assert stub.calls[0][2]["mode"] == "trigger"


def test_awaited_json_with_bytes_as_base64(stub):
    stub.reply = {"idempotency_key": "k", "result": {1: b"\x00\xff", "s": [b"a"]}}
    r = run("agent", "invoke", "--format", "json", AGENT, "dump")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"idempotency_key": "k", "result": {"1": "AP8=", "s": ["YQ=="]}}
    assert "idempotency key" not in r.stderr


def test_invocation_failed_prints_traceback_then_error(stub):
    stub.reply = GolemError("INVOCATION_FAILED", "ValueError: no",
                            {"type": "ValueError", "message": "no",
                             "traceback": "Traceback (most recent call last):\nValueError: no\n"})
    r = run("--format", "json", "agent", "invoke", AGENT, "boom")
    assert r.exit_code == 1
    assert r.stderr.index("Traceback") < r.stderr.index("error: INVOCATION_FAILED: ValueError: no")
    doc = json.loads(r.stdout)
    assert doc["error"]["code"] == "INVOCATION_FAILED" and doc["error"]["details"]["type"] == "ValueError"


@pytest.mark.parametrize("code", ["AGENT_NOT_FOUND", "TOO_LATE", "CANCELED", "INTERNAL"])
def test_daemon_errors_exit_1(stub, code):
    stub.reply = GolemError(code, "nope")
    r = run("agent", "get", AGENT)
    assert r.exit_code == 1 and r.stderr == f"error: {code}: nope\n" and r.stdout == ""


META = {"agent_id": AGENT, "type": "CounterAgent", "env": "default", "args": ["c1"],
        "status": "Idle", "pending_invocation_count": 0, "current_invocation": None, "pid": 7,
        "created_at": 1.0, "last_active_at": 2.0, "completed_count": 1, "failed_count": 0,
        "retry_count": 0, "last_error": None, "memory_rss_bytes": 1024, "cpu_seconds": 0.5}


@pytest.mark.parametrize("cmd,reply,doc", [
    (["agent", "get", AGENT], META, META),
    (["agent", "list"], [META], [META]),
    (["agent", "interrupt", AGENT], META, META),
    (["agent", "interrupt", "--recover", AGENT], META, META),
    (["agent", "resume", AGENT], META, META),
    (["agent", "simulate-crash", AGENT], META, META),
    (["agent", "delete", AGENT], META, META),
    (["agent", "cancel-invocation", AGENT, "k"], {"idempotency_key": "k", "canceled": True},
     {"idempotency_key": "k", "canceled": True}),
    (["agent", "invocations", AGENT], [], []),
    (["agent", "oplog", AGENT, "--last", "3"], [{"index": 1, "ts": 1.0, "kind": "created"}],
     [{"index": 1, "ts": 1.0, "kind": "created"}]),
    (["types"], [], []),
    (["daemon", "status"], {"version": "0.1.0", "pid": 1, "uptime": 3.0, "agents": 0,
                            "live_workers": 0}, None),
    (["daemon", "stop"], {"ok": True}, {"ok": True}),
    (["daemon", "reload"], {"ok": True}, {"ok": True}),
])
def test_json_documents_and_text(stub, cmd, reply, doc):
    stub.reply = reply
    r = run("--format", "json", *cmd)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == (reply if doc is None else doc)
    r = run(*cmd)
    assert r.exit_code == 0 and r.stdout.strip(), r.stderr


def test_interrupt_recover_flag_sent(stub):
    stub.reply = META
    run("agent", "interrupt", "--recover", AGENT)
    assert stub.calls[0][0] == "interrupt" and stub.calls[0][2] == {"recover": True}


def test_list_filters(stub):
    stub.reply = []
    r = run("agent", "list", "--env", "dev", "--type", "CounterAgent", "--status", "idle")
    assert r.exit_code == 0
    assert stub.calls[0][2] == {"env": "dev", "type": "CounterAgent", "status": "Idle"}


def test_stream_json_lines(stub):
    stub.reply = {"ended": "done"}
    stub.events = [{"type": "output", "stream": "stdout", "line": f"l{i}", "ts": 1.0} for i in range(3)]
    r = run("--format", "json", "agent", "stream", AGENT)
    assert [json.loads(line)["line"] for line in r.stdout.splitlines()] == ["l0", "l1", "l2"]
    r = run("agent", "stream", AGENT, "--follow")
    assert r.stdout.count("stdout") == 3 and stub.calls[-1][2]["follow"] is True


def test_text_views_for_people(stub):
    stub.reply = META
    out = run("agent", "get", AGENT).stdout
    assert f"Agent ID:            {AGENT}" in out and "Status:              Idle" in out
    assert 'Arguments:           "c1"' in out and "Memory (RSS):        1.0 KiB" in out
    stub.reply = [META]
    lines = run("agent", "list").stdout.splitlines()
    assert lines[0].split() == ["AGENT", "ID", "STATUS", "PENDING", "CURRENT", "PID", "LAST", "ACTIVE"]
    assert lines[1].startswith(AGENT) and "Idle" in lines[1]
    stub.reply = META
    assert run("agent", "interrupt", AGENT).stdout == f"interrupted {AGENT} (status: Idle)\n"
