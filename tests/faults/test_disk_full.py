"""RELIABILITY #6: the disk fills while journaling (a 2 MiB tmpfs as the state directory)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import DaemonProc

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


def _fill(path: str) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.fixture
def small_disk() -> Iterator[DaemonProc]:
    """A daemon whose state directory is a 2 MiB tmpfs."""
    d = DaemonProc()
    os.makedirs(d.state_dir)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d.state_dir]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        d.start()
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        subprocess.run(["umount", "-l", d.state_dir])
        d.assert_no_strays()


def test_disk_full_refuses_new_work_keeps_answering_and_recovers(small_disk: DaemonProc):
    d = small_disk
    c = d.conn()
    a = 'Journal("full")'
    c.ok("invoke", agent=a, method="slow_append", args=["busy", 30.0], mode="trigger", idempotency_key="busy")
    c.ok("invoke", agent=a, method="append", args=["queued"], mode="trigger", idempotency_key="queued")
    filler = os.path.join(d.state_dir, "filler")
    _fill(filler)
    codes = []
    for i in range(20):
        r = c.call("invoke", agent=a, method="append", args=["x" * 50_000], mode="trigger",
                   idempotency_key=f"big{i}")
        codes.append(r.get("error", {}).get("code", "ok"))
        if codes[-1] == "STORAGE_FULL":
            break
    assert codes[-1] == "STORAGE_FULL", codes
    refused = f"big{len(codes) - 1}"
    # Nothing unwritten is reported as accepted: the refused key is unknown.
    keys = [i["idempotency_key"] for i in c.ok("invocations", agent=a)["invocations"]]
    assert refused not in keys
    assert c.err("cancel", agent=a, idempotency_key=refused) == "NOT_FOUND"
    # Reads keep working; so does a new agent's refusal, without a trace.
    assert c.ok("status")["agents"] >= 1
    assert c.ok("get", agent=a)["agent"]["pending_invocation_count"] >= 1
    assert c.err("invoke", agent='Journal("new")', method="append", args=["y" * 50_000]) == "STORAGE_FULL"
    assert c.err("get", agent='Journal("new")') == "AGENT_NOT_FOUND"
    # A cancel answers: done, or refused because it cannot be written.
    r = c.call("cancel", agent=a, idempotency_key="queued")
    assert "canceled" in r or r["error"]["code"] == "STORAGE_FULL"
    os.unlink(filler)
    # Space is back: accepted again.
    assert c.ok("invoke", agent=a, method="append", args=["after"], mode="trigger",
                idempotency_key="after")["status"] == "pending"
    assert c.ok("invoke", agent='Journal("new")', method="append", args=["y"])["result"] == 1
    c.close()


def test_disk_full_refuses_a_warm_agents_call_without_a_trace(small_disk: DaemonProc):
    """An awaited call to an idle warm agent goes to its worker while its
    enqueue commits; when that commit fails, the call is refused all the
    same: its caller gets STORAGE_FULL, the store has no trace of it, and
    the state it left in the worker is dropped with the worker."""
    d = small_disk
    c = d.conn()
    a = 'Journal("warm")'
    assert c.ok("invoke", agent=a, method="append", args=["first"])["result"] == 1
    worker = c.ok("get", agent=a)["agent"]["pid"]
    filler = os.path.join(d.state_dir, "filler")
    _fill(filler)
    marks = 0
    for i in range(40):
        r = c.call("invoke", agent=a, method="mark", args=["x" * 50_000], idempotency_key=f"m{i}")
        if "error" in r:
            break
        marks += 1
    assert r["error"]["code"] == "STORAGE_FULL", r
    os.unlink(filler)
    assert c.err("cancel", agent=a, idempotency_key=f"m{marks}") == "NOT_FOUND"
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first"] + ["mark"] * marks
    assert c.ok("get", agent=a)["agent"]["pid"] != worker  # the refused call's worker was stopped
    c.close()
