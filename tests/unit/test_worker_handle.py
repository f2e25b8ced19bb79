"""The supervisor's handle on a worker, against a fake worker: the other end
of its control socketpair and its output pipes, driven by the test. How it
works with real workers is tested in tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys

import msgpack
import pytest

import golemd
from golemd.host import template, worker_handle, workers
from golemd.host.template import agent_environment, template_environment
from golemd.host.worker_handle import MAX_LINE, Worker, WorkerDied, describe_exit


def run_async(fn):
    """No pytest asyncio plugin here: run the coroutine test in a fresh loop."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 10))

    return wrapper


class FakeWorker:
    """A Worker handle attached to a socketpair and two pipes that the test holds."""

    def __init__(self, pid: int = 0):
        self.peer, ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.peer.settimeout(5)
        out_r, self.out_w = os.pipe()
        err_r, self.err_w = os.pipe()
        self.fds = (out_r, err_r)
        self.lines: list[tuple[str, str, bool]] = []
        self.exit_fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.forgotten = 0
        self.worker = Worker(pid or os.getpid(), ctl, self.exit_fut, self._forget)
        self.unpacker = msgpack.Unpacker(raw=False)

    def _forget(self) -> None:
        self.forgotten += 1

    async def attach(self) -> None:
        await self.worker.attach(*self.fds, lambda *line: self.lines.append(line))

    async def receive(self) -> dict:
        loop = asyncio.get_running_loop()
        while True:
            for msg in self.unpacker:
                return msg
            self.unpacker.feed(await loop.run_in_executor(None, self.peer.recv, 1 << 16))

    def reply(self, msg: dict) -> None:
        self.peer.sendall(msgpack.packb(msg, use_bin_type=True))

    def end_output(self) -> None:
        """The worker's side of its pipes closes (once: the numbers may be reused)."""
        for fd in (self.out_w, self.err_w):
            if fd >= 0:
                os.close(fd)
        self.out_w = self.err_w = -1

    def close(self) -> None:
        self.peer.close()
        self.end_output()


@contextlib.asynccontextmanager
async def attached(pid: int = 0):
    fake = FakeWorker(pid)
    try:
        await fake.attach()
        yield fake, fake.worker
    finally:
        fake.close()


async def until(predicate, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_module_names_what_the_driver_and_server_import():
    """golemd/driver and golemd/server import these from golemd.host.workers: the same objects."""
    assert workers.Template is template.Template
    assert workers.TemplateError is template.TemplateError
    assert workers.sweep_orphans is template.sweep_orphans
    assert workers.Worker is worker_handle.Worker
    assert workers.WorkerDied is worker_handle.WorkerDied
    assert workers.describe_exit is worker_handle.describe_exit


@run_async
async def test_a_reply_resolves_its_call_and_in_flight_goes_back():
    async with attached() as (fake, worker):
        before = Worker.in_flight
        fut = worker.call("add", [1, 2])
        assert Worker.in_flight == before + 1
        sent = await fake.receive()
        assert sent == {"op": "call", "id": sent["id"], "method": "add", "args": [1, 2]}
        fake.reply({"op": "result", "id": sent["id"], "ok": True, "result": 3})
        assert (await fut)["result"] == 3
        assert Worker.in_flight == before


@run_async
async def test_call_then_is_answered_from_the_read_and_told_of_a_death():
    async with attached() as (fake, worker):
        before = Worker.in_flight
        heard: list[tuple[object, object]] = []
        dead: list[Worker] = []
        worker.on_dead = dead.append
        worker.call_then("get", [], lambda reply, died: heard.append((reply, died)))
        sent = await fake.receive()
        fake.reply({"op": "result", "id": sent["id"], "ok": True, "result": "x"})
        await until(lambda: heard, "the reply")
        assert heard[0][0]["result"] == "x" and heard[0][1] is None

        worker.call_then("get", [], lambda reply, died: heard.append((reply, died)))
        await fake.receive()
        fake.peer.close()  # the worker dies with a call out
        await until(lambda: len(heard) == 2, "the death")
        reply, died = heard[1]
        assert reply is None and isinstance(died, WorkerDied)
        assert not worker.alive and dead == [worker] and Worker.in_flight == before
        # Once it is dead, a call is refused at once.
        worker.call_then("get", [], lambda reply, died: heard.append((reply, died)))
        assert isinstance(heard[2][1], WorkerDied)
        with pytest.raises(WorkerDied):
            await worker.call("get", [])


@run_async
async def test_a_reply_nobody_asked_for_kills_the_worker_as_a_protocol_error():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            start_new_session=True)
    try:
        async with attached(proc.pid) as (fake, worker):
            fake.reply({"op": "result", "id": 99, "ok": True})
            await until(lambda: not worker.alive, "the channel to close")
            assert worker.protocol_error and worker.killed
            assert "unexpected control message" in (worker.death_reason or "")
            assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@run_async
async def test_output_is_cut_into_lines_and_drained_before_the_loop_reads_it():
    async with attached() as (fake, worker):
        os.write(fake.out_w, b"one\ntwo\npart")
        os.write(fake.err_w, b"oops\n")
        worker.drain_output()  # at once, as the driver does before it answers a streaming caller
        assert fake.lines == [("stdout", "one", False), ("stdout", "two", False), ("stderr", "oops", False)]
        for size in (MAX_LINE // 2, MAX_LINE // 2 + 10):  # each fits the pipe's buffer
            os.write(fake.out_w, b"x" * size)
            worker.drain_output()
        assert fake.lines[-1] == ("stdout", "part" + "x" * (MAX_LINE - 4), True)
        fake.end_output()
        # The reaped worker's output is read to its end: the rest of the line comes then.
        fake.exit_fut.set_result(0)
        assert await worker.wait() == 0
        assert fake.lines[-1] == ("stdout", "x" * 14, False) and fake.forgotten == 1


def test_describe_exit():
    assert describe_exit(None) == "it died (exit status unknown)"
    assert describe_exit(3) == "it exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "it was killed by SIGKILL"
    assert describe_exit(-200) == "it was killed by signal 200"


def test_agents_get_the_owner_marker_and_not_systemds_variables(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("GOLEMD_TEST_KEEP", "yes")
    env = agent_environment("/var/lib/golemd")
    assert env["GOLEMD_OWNER"] == "/var/lib/golemd" and env["GOLEMD_TEST_KEEP"] == "yes"
    assert "NOTIFY_SOCKET" not in env and "LISTEN_FDS" not in env


def test_the_template_imports_golemd_from_where_we_did(monkeypatch):
    """Regression: after the move to golemd/host/ the template got golemd/ itself
    on its PYTHONPATH, not the directory holding golemd, so it found golemd
    only if it was installed, and agents could import golemd's modules as
    top-level ones (`import systemd` got golemd/systemd.py)."""
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    first, *rest = template_environment("x")["PYTHONPATH"].split(os.pathsep)
    assert first == os.path.dirname(os.path.dirname(os.path.abspath(golemd.__file__)))
    assert rest == ["/elsewhere"]
