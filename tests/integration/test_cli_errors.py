"""Errors that say what to do, through the real golemctl against a real golemd:
a user the daemon refuses, a daemon that goes away in the middle of a call,
an awaited call queued on an interrupted agent. (Connect errors without a
daemon: tests/unit/test_cli_local.py.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import IO, Any

import pytest
from click.testing import CliRunner

from golemctl.cli import cli
from tests.helpers import ROOT, DaemonProc, RawConn, golemctl_as, running

GOLEMCTL = [sys.executable, "-m", "golemctl"]


def _popen(sock: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*GOLEMCTL, "--socket", sock, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))


def _read_until(stream: IO[str], text: str, timeout: float = 30.0) -> tuple[list[str], str]:
    """golemctl's stderr, line by line, up to the line holding `text`, and
    what was read after it; an AssertionError if it has not come within
    `timeout` seconds."""
    import select

    # From the file descriptor, not the buffered stream: a readline() may
    # take in the next lines too, and select() would then wait for more.
    fd = stream.fileno()
    lines: list[str] = []
    pending = ""
    deadline = time.monotonic() + timeout
    while True:
        while "\n" in pending:
            line, pending = pending.split("\n", 1)
            lines.append(line + "\n")
            if text in line:
                return lines, pending
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{text!r} did not come within {timeout:g}s; got {lines}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"{text!r} never came; got {lines + [pending]}")
        pending += chunk.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run golemctl as another user")
def test_unauthorized_names_the_settings_that_allow_a_user():
    with running() as d:
        os.chmod(d.base, 0o755)
        os.chmod(d.socket, 0o666)  # only the daemon's own check stands in the way
        args = ["--socket", d.socket, "daemon", "status"]
        assert CliRunner().invoke(cli, args).exit_code == 0  # loads what the command imports
        r = golemctl_as(65534, 65534, args)
        assert r["exit_code"] == 1, r
        err = r["stderr"]
        assert err.startswith("error: UNAUTHORIZED: uid 65534 (nobody) may not use this golemd, "
                              "which runs as uid 0 (root)"), err
        assert "`allow_uids = [65534]`" in err and "`allow_groups`" in err and "`socket_group`" in err
        assert "restarts golemd" in err


def test_daemon_gone_mid_call_names_the_key_and_the_command_that_gets_the_outcome():
    d = DaemonProc().start()
    try:
        agent = 'SlowAgent("lost")'
        p = _popen(d.socket, "agent", "invoke", "-i", "k-lost", agent, "work", "3", '"lost"')
        assert p.stderr is not None
        _lines, rest = _read_until(p.stderr, "lost: working for 3")  # the agent runs it now
        d.kill9()
        out, err = p.communicate(timeout=30)
        err = rest + err
        assert p.returncode == 3, err
        assert out == ""
        assert "DAEMON_UNREACHABLE" in err and "closed the connection before answering" in err
        assert "The invocation may have been accepted under idempotency key k-lost" in err
        m = re.search(r"once golemd is back, `([^`]*)` gets its outcome", err)
        assert m, err
        words = shlex.split(m.group(1))
        assert words == ["golemctl", "--socket", d.socket, "agent", "invoke", "-i", "k-lost",
                         agent, "work", "3", '"lost"']
        d.assert_no_strays()
        d.start()
        again = subprocess.run([*GOLEMCTL, *words[1:]], capture_output=True, text=True,
                               timeout=60, cwd=str(ROOT))
        assert again.returncode == 0, again.stderr
        assert again.stdout == "'lost'\n"
        history = subprocess.run([*GOLEMCTL, "--socket", d.socket, "agent", "invoke", agent,
                                  "history"], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
        assert history.stdout == "['lost']\n", history.stderr  # accepted once, run to the end once
    finally:
        if d.proc is not None and d.proc.poll() is None:
            assert d.stop() == 0
        d.assert_no_strays()


def test_awaited_invoke_on_an_interrupted_agent_says_it_waits_for_resume(daemon: DaemonProc):
    agent = 'SlowAgent("held")'
    c = daemon.conn()
    c.ok("invoke", agent=agent, method="history")
    assert c.ok("interrupt", agent=agent)["agent"]["status"] == "Interrupted"
    p = _popen(daemon.socket, "agent", "invoke", agent, "work", "0", '"h"')
    assert p.stderr is not None
    lines, rest = _read_until(p.stderr, "is interrupted")
    assert lines[-1] == (f"{agent} is interrupted: this invocation waits in its queue until "
                         f"`golemctl agent resume '{agent}'`\n")
    assert p.poll() is None  # still waiting
    c.ok("resume", agent=agent)
    out, err = p.communicate(timeout=30)
    err = rest + err
    assert p.returncode == 0, err
    assert out == "'h'\n" and "is interrupted" not in err  # said once
    c.close()


class Mail:
    """Every message of one connection, by request id (replies come out of order)."""

    def __init__(self, conn: RawConn):
        self.conn = conn
        self.got: dict[int | None, list[dict[str, Any]]] = defaultdict(list)

    def send(self, **fields: Any) -> int:
        return self.conn.send(**fields)

    def wait(self, rid: int, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            for msg in self.got[rid]:
                if pred(msg):
                    return msg
            msg = self.conn.recv()
            self.got[msg.get("id")].append(msg)

    def reply(self, rid: int) -> dict[str, Any]:
        return self.wait(rid, lambda m: "event" not in m)

    def events(self, rid: int) -> list[dict[str, Any]]:
        return [m["event"] for m in self.got[rid] if "event" in m]


HELD = {"type": "held", "reason": "interrupted"}


def test_held_event_on_the_wire(daemon: DaemonProc):
    """An awaited, streaming invoke enqueued on an interrupted agent gets
    {"type": "held"} at once; so do those queued when the agent is interrupted."""
    agent = 'SlowAgent("wire")'
    m = Mail(daemon.conn())
    first = m.send(op="invoke", agent=agent, method="work", args=[2, "long"], stream=True)
    m.wait(first, lambda msg: msg.get("event", {}).get("type") == "started")
    queued = m.send(op="invoke", agent=agent, method="work", args=[0, "next"], stream=True,
                    idempotency_key="next")
    quiet = m.send(op="invoke", agent=agent, method="work", args=[0, "quiet"])  # no stream: no events
    m.wait(queued, lambda msg: msg.get("event") == {"type": "queued", "ahead": 1})
    assert "error" not in m.reply(m.send(op="interrupt", agent=agent))
    assert m.reply(first)["error"]["code"] == "INTERRUPTED"
    m.wait(queued, lambda msg: msg.get("event") == HELD)  # queued when the agent was interrupted
    # A new streaming call is told at once; so is one that attaches to a queued key.
    late = m.send(op="invoke", agent=agent, method="history", stream=True)
    again = m.send(op="invoke", agent=agent, method="work", args=[0, "next"], stream=True,
                   idempotency_key="next")
    m.wait(late, lambda msg: msg.get("event") == HELD)
    m.wait(again, lambda msg: msg.get("event") == HELD)
    assert "error" not in m.reply(m.send(op="resume", agent=agent))
    assert m.reply(queued)["result"] == "next"
    assert m.reply(again)["result"] == "next"
    assert m.reply(quiet)["result"] == "quiet"
    assert m.reply(late)["result"] == ["long", "next", "quiet"]
    assert m.events(quiet) == []
    assert m.events(queued).count(HELD) == 1 and m.events(late).count(HELD) == 1
    m.conn.close()
