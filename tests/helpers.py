"""A real golemd for the tests: started as a subprocess, ready when it says
READY=1 on a notify socket (as systemd would see it), stopped with signals,
and checked for stray processes afterwards."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import psutil

from tests import pg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = str(ROOT / "examples" / "agents.py")
TEST_AGENTS = str(ROOT / "tests" / "agents" / "testagents.py")
HOSTILE = str(ROOT / "tests" / "agents" / "hostile.py")
DURABLE_AGENTS = str(ROOT / "tests" / "agents" / "durableagents.py")
MARKER_VAR = "GOLEMD_TEST_MARKER"
MiB = 1 << 20


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RawConn:
    """A client written from docs/protocol.md alone: msgpack maps on a socket."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.next_id = 0
        self.inbox: list[dict[str, Any]] = []

    def send(self, **fields: Any) -> int:
        self.next_id += 1
        self.sock.sendall(msgpack.packb({"v": 1, "id": self.next_id, **fields}, use_bin_type=True))
        return self.next_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> dict[str, Any]:
        while True:
            for msg in self.unpacker:
                return msg
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the daemon closed the connection")
            self.unpacker.feed(data)

    def reply(self, rid: int, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The final reply for `rid`; its events go to `events`; others wait in the inbox."""
        for i, msg in enumerate(self.inbox):
            if msg.get("id") == rid and "event" not in msg:
                return self.inbox.pop(i)
        while True:
            msg = self.recv()
            if msg.get("id") == rid:
                if "event" in msg:
                    if events is not None:
                        events.append(msg["event"])
                    continue
                return msg
            self.inbox.append(msg)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.reply(self.send(op=op, **fields))

    def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        r = self.call(op, **fields)
        assert "error" not in r, r
        return r

    def meta(self, agent: str) -> dict[str, Any]:
        """The agent's metadata, or {} while it does not exist (yet)."""
        r = self.call("get", agent=agent)
        return r.get("agent") or {}

    def worker_pid(self, agent: str) -> int:
        """The pid of the agent's worker, once it has one: it is nil while
        the fork server answers, even when the agent already shows Running."""
        return int(wait_for(lambda: self.meta(agent).get("pid"), what=f"a worker for {agent}"))

    def fence(self, agent: str, method: str, args: list[Any] | None = None) -> None:
        """Return once every write the daemon made before this call is
        committed: a trigger is acknowledged after its enqueue commits, and
        commits go in order. Before a kill -9 that must find them journaled."""
        self.ok("invoke", agent=agent, method=method, args=args or [], mode="trigger")

    def err(self, op: str, **fields: Any) -> str:
        r = self.call(op, **fields)
        assert "error" in r, r
        return str(r["error"]["code"])

    def close(self) -> None:
        self.sock.close()


class DaemonProc:
    def __init__(self, apps: tuple[str, ...] = (EXAMPLES, TEST_AGENTS), args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, base: str | None = None):
        self.base = base or tempfile.mkdtemp(prefix="gd", dir="/tmp")
        self.socket = os.path.join(self.base, "golemd.sock")
        self.state_dir = os.path.join(self.base, "state")
        self.log_path = os.path.join(self.base, "golemd.log")
        self.apps = apps
        self.args = args
        self.marker = uuid.uuid4().hex
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None
        self.notes: list[str] = []
        # GOLEMD_TEST_STORE=postgresql: a database of its own, kept across restarts (tests/pg.py)
        self.store_url = pg.daemon_database()

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "golemd.cli", "--socket", self.socket, "--state-dir", self.state_dir,
               "--log-level", "DEBUG", "--drain-timeout", "2"]
        if self.store_url is not None:
            cmd += ["--store", self.store_url]
        for app in self.apps:
            cmd += ["--app", app]
        return cmd + list(self.args)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLEMD_", "LISTEN_", "NOTIFY_"))}
        env[MARKER_VAR] = self.marker
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0, new_session: bool = False) -> DaemonProc:
        """Start golemd and wait for READY=1. `new_session`: in a process group
        of its own, as a shell starts a job (for signals sent to the group)."""
        notify_path = os.path.join(self.base, "notify")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        if self.notify is not None:
            self.notify.close()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.notes = []
        env = self.env()
        env["NOTIFY_SOCKET"] = notify_path
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=new_session)
        log.close()
        try:
            self.wait_note("READY=1", timeout)
        except AssertionError:
            if self.proc.poll() is not None:
                raise AssertionError(f"golemd exited with {self.proc.returncode}:\n{self.log()}") from None
            raise AssertionError(f"golemd did not become ready in {timeout}s:\n{self.log()}") from None
        return self

    def wait_note(self, text: str, timeout: float = 10.0) -> str:
        """Wait until golemd sends an sd_notify datagram containing `text`; return it."""
        assert self.notify is not None
        deadline = time.monotonic() + timeout
        while True:
            for note in self.notes:
                if text in note:
                    return note
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} from golemd in {timeout}s; got {self.notes}")
            self.notify.settimeout(min(left, 0.2))
            try:
                self.notes.append(self.notify.recv(4096).decode())
            except TimeoutError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"golemd exited before sending {text!r}; got {self.notes}") from None

    def open_store(self) -> Any:
        """The store this daemon keeps (SQLite, or PostgreSQL under
        GOLEMD_TEST_STORE), opened as it does: while it is not running."""
        if self.store_url is not None:
            from golemd.storage.postgres import PostgresStore

            return PostgresStore(self.store_url)
        from golemd.storage.sqlite import SqliteStore

        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        return SqliteStore(os.path.join(self.state_dir, "golemd.db"))

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def conn(self) -> RawConn:
        return RawConn(self.socket)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"golemd did not stop within {timeout}s:\n{self.log()}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def strays(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["environ", "status"]):
            try:
                if (p.info["environ"] or {}).get(MARKER_VAR) == self.marker:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def assert_no_strays(self, timeout: float = 5.0) -> None:
        """Every process of this daemon (workers, template, grandchildren) is gone."""
        try:
            wait_for(lambda: not self.strays(), timeout, what="the daemon's processes to exit")
        except AssertionError:
            survivors = self.strays()
            for p in survivors:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            raise AssertionError(f"stray processes: {[(p.pid, p.info.get('status')) for p in survivors]}") from None


def toml_text(config: dict[str, Any]) -> str:
    """A golemd.toml for these options."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in config.items())


def _trim(path: str, keep: int) -> None:
    """Keep only the tail of a log a flood made huge."""
    try:
        size = os.path.getsize(path)
        if size > keep:
            with open(path, "rb") as f:
                f.seek(size - keep)
                tail = f.read()
            with open(path, "wb") as f:
                f.write(tail)
    except OSError:
        pass


@contextmanager
def running(config: dict[str, Any] | None = None, args: tuple[str, ...] = (),
            before_start: Callable[[DaemonProc], Any] | None = None,
            apps: tuple[str, ...] = (EXAMPLES, TEST_AGENTS),
            env: dict[str, str] | None = None, new_session: bool = False) -> Iterator[DaemonProc]:
    """A golemd with these apps and options, stopped with SIGTERM (exit 0 expected) and
    checked for strays afterwards; its temp dir is removed when the test passed.
    `new_session`: in a process group of its own (DaemonProc.start)."""
    d = DaemonProc(apps=apps, args=args, env=env)
    if config is not None:
        path = os.path.join(d.base, "golemd.toml")
        with open(path, "w") as f:
            f.write(toml_text(config))
        d.args = (*args, "--config", path)
    if before_start is not None:
        before_start(d)
    d.start(new_session=new_session)
    passed = False
    try:
        yield d
        passed = True
    finally:
        if d.proc is not None and d.proc.poll() is None:
            code = d.stop(signal.SIGTERM)
            assert code == 0, f"golemd exited {code} on SIGTERM:\n{d.log()}"
        d.assert_no_strays()
        if passed:
            shutil.rmtree(d.base, ignore_errors=True)
            if d.store_url is not None:
                pg.drop(d.store_url)
        else:
            _trim(d.log_path, 4 << 20)


def closed_by_peer(sock: socket.socket, timeout: float) -> float | None:
    """Read and drop whatever comes until the daemon hangs up; seconds it took,
    or None if it did not within `timeout`."""
    t0 = time.monotonic()
    while True:
        left = t0 + timeout - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        try:
            if not sock.recv(1 << 20):
                return time.monotonic() - t0
        except OSError:  # ECONNRESET: closed too
            return time.monotonic() - t0


def daemon_process(d: DaemonProc) -> psutil.Process:
    assert d.proc is not None
    return psutil.Process(d.proc.pid)


def daemon_rss(d: DaemonProc) -> int:
    return int(daemon_process(d).memory_info().rss)


def daemon_fds(d: DaemonProc) -> int:
    return int(daemon_process(d).num_fds())


def settled_fds(d: DaemonProc) -> int:
    """The daemon's fd count once it stops moving (right after READY the notify
    socket may still be open, for one)."""
    seen: list[int] = []

    def settled() -> int | None:
        seen.append(daemon_fds(d))
        return seen[-1] if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3] else None

    return int(wait_for(settled, 10, interval=0.05, what="the daemon's fd count to settle"))


def golemctl_as(uid: int, gid: int, args: list[str], timeout: float = 30.0) -> dict[str, Any]:
    """Run golemctl (its click command, in a forked child) as uid/gid with no
    supplementary groups: {"exit_code", "stdout", "stderr"}.

    In a child because the interpreter this runs on may be unreadable for that
    user (under /root): run the same command here first, so that every module
    it imports lazily is loaded before the fork."""
    import json
    import signal as signals

    from click.testing import CliRunner

    from golemctl.cli import cli

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            res = CliRunner().invoke(cli, args, prog_name="golemctl")
            out = {"exit_code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr}
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                out["exception"] = repr(res.exception)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:  # until the child exits and its end of the pipe closes
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise AssertionError(f"golemctl as uid {uid} did not finish in {timeout}s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        if not data:
            os.kill(pid, signals.SIGKILL)
        os.waitpid(pid, 0)
    assert data, "the child reported nothing"
    return json.loads(data)  # type: ignore[no-any-return]
