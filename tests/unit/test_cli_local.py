"""golemctl without a daemon: usage errors (the daemon is never contacted),
unreachable sockets, help, start-up imports. Output shapes against a real
golemd are in tests/integration/test_cli.py.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any

import pytest
from click.testing import CliRunner

from golemctl.cli import cli

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


@pytest.mark.parametrize(("text", "value"), [("5", 5), ('"yes"', "yes"), ("[1, None]", [1, None]),
                                             ("true", True), ("null", None), ('{"a": false}', {"a": False}),
                                             ("approved", "approved"), ("-2.5", -2.5)])
def test_promise_values_are_literals_then_json_then_a_bare_word(text, value):
    from golemctl.promises import _promise_value

    assert _promise_value(text) == value


@pytest.mark.parametrize("value", ["{1, 2}", "__import__('os')", "", "[1,", "'open"])
def test_promise_value_must_be_a_literal(listener, value):
    r = run("promise", "complete", "p-1", value)
    assert_usage(r)
    assert "VALUE" in r.stderr


def test_promise_complete_needs_a_value(listener):
    assert_usage(run("promise", "complete", "p-1"))


def test_promise_list_bad_agent_id(listener):
    assert_usage(run("promise", "list", "Shop("), "INVALID_AGENT_ID")


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


def test_missing_socket_says_how_to_start_golemd(short_dir):
    path = os.path.join(short_dir, "nothing.sock")
    r = run("--socket", path, "daemon", "status")
    assert r.exit_code == 3
    assert f"error: DAEMON_UNREACHABLE: no socket at {path}: golemd is not running there. " in r.stderr
    assert f"Start it: `golemd --socket {path} --app YOUR_APP`" in r.stderr
    assert "point --socket / GOLEMD_SOCKET at" in r.stderr


def test_missing_socket_names_where_the_path_came_from(short_dir, monkeypatch):
    path = os.path.join(short_dir, "env.sock")
    r = run("agent", "list", env={"GOLEMD_SOCKET": path})
    assert r.exit_code == 3
    assert f"no socket at {path}: golemd is not running there (the path in GOLEMD_SOCKET)" in r.stderr
    assert "`golemd --app YOUR_APP`, or from a golemd checkout `make run`" in r.stderr
    # The default path, where the systemd units listen: they are named too.
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_dir)
    monkeypatch.delenv("GOLEMD_SOCKET", raising=False)
    r = run("agent", "list")
    from golemctl.paths import default_socket_path

    assert f"no socket at {default_socket_path()}: golemd is not running there (golemctl's default" in r.stderr
    unit = "systemctl start golemd.socket" if os.getuid() == 0 else "systemctl --user start golemd.socket"
    assert unit in r.stderr


def test_stale_socket_says_what_it_is_and_how_to_clean_up(short_dir):
    path = os.path.join(short_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    r = run("--socket", path, "agent", "get", AGENT)
    assert r.exit_code == 3
    assert f"socket {path} exists but no daemon accepts connections on it: a stale socket" in r.stderr
    assert f"Starting golemd replaces it: `golemd --socket {path} --app YOUR_APP`" in r.stderr
    assert f"`rm {path}`" in r.stderr


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run golemctl as another user")


def _socket_for_others(short_dir: str, mode: int, gid: int) -> tuple[socket.socket, str]:
    os.chmod(short_dir, 0o755)
    path = os.path.join(short_dir, "g.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    os.chown(path, 0, gid)
    os.chmod(path, mode)
    run("--socket", path + ".none", "daemon", "status")  # loads what the command imports
    return s, path


@root_only
def test_permission_denied_names_the_group_and_usermod(short_dir):
    from tests.helpers import golemctl_as

    adm = grp.getgrnam("adm").gr_gid  # a group nobody is not in
    s, path = _socket_for_others(short_dir, 0o660, adm)
    with s:
        r = golemctl_as(65534, 65534, ["--socket", path, "daemon", "status"])
    assert r["exit_code"] == 3, r
    assert f"permission denied on {path} (mode 0660, owner 0:{adm} root/adm" in r["stderr"]
    assert "only members of group adm may use it: ask an administrator to run " \
           "`usermod -aG adm nobody`, then log in again (or run `newgrp adm`)" in r["stderr"]


@root_only
def test_permission_denied_after_usermod_says_log_in_again(short_dir, monkeypatch):
    from golemctl import unreachable
    from tests.helpers import golemctl_as

    adm = grp.getgrnam("adm").gr_gid
    # As if `usermod -aG adm nobody` had run after nobody's session began.
    monkeypatch.setattr(unreachable, "_members", lambda gid: ["nobody"] if gid == adm else [])
    s, path = _socket_for_others(short_dir, 0o660, adm)
    with s:
        r = golemctl_as(65534, 65534, ["--socket", path, "daemon", "status"])
    assert r["exit_code"] == 3, r
    assert "you were added to group adm after this session began: log in again" in r["stderr"]


@root_only
def test_permission_denied_on_a_private_socket_names_socket_group(short_dir):
    from tests.helpers import golemctl_as

    s, path = _socket_for_others(short_dir, 0o600, 0)
    with s:
        r = golemctl_as(65534, 65534, ["--socket", path, "agent", "list"])
    assert r["exit_code"] == 3, r
    assert "golemd lets only its own user (root) connect to it" in r["stderr"]
    assert '`socket_group = "GROUP"`' in r["stderr"] and "--socket-group GROUP" in r["stderr"]
    assert "`usermod -aG GROUP nobody`" in r["stderr"]


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
            ["agent", "oplog"], ["agent", "invocations"], ["promise"], ["promise", "complete"],
            ["promise", "get"], ["promise", "list"], ["types"], ["daemon"],
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


def test_promise_complete_help_says_how_value_is_parsed():
    out = " ".join(run("promise", "complete", "--help").stdout.split())
    assert "VALUE is a Python literal" in out and "ARGS of `agent invoke`" in out
    assert "ALREADY_COMPLETED" in out


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


