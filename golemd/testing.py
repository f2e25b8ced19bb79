"""Testing utilities for agent code: the crash matrix.

Durable execution promises that each effect of an invocation (a remote
call, a trigger, a step, a sleep, a promise) runs once however the
invocation's process or the daemon dies. `crash_matrix` checks that promise
for your own agents: it runs one invocation against a fresh golemd once
without a crash, counts the durable effects it makes (its own and those of
the agents it calls), then once for every boundary of every effect, killing
at that boundary:

- before each invocation of the run is sent to its worker (`start`: the
  invocation itself, then those it calls); before each effect other than a
  step is journaled (`effect`); after each effect's result is journaled and
  before the agent sees it (`effect_done`). A step is journaled after it
  runs, so a crash while it runs, or after and before its result is
  journaled, runs it again (steps are at least once, recorded once): the
  matrix kills before it (the previous boundary) and after it is journaled;
- the agent's worker process (SIGKILL; the invocation is retried), and the
  daemon itself (SIGKILL; the daemon is started again on the same state
  directory and the invocation awaited under its idempotency key).

Each run starts from an empty state directory; `setup(client)` prepares it
(create agents, fill them) before the invocation, and `check(case)` looks at
the outcome and the agents afterwards and raises AssertionError when
something ran twice or not at all::

    from golemd.testing import crash_matrix

    def check(case):
        assert case.result["result"]["left"] == 2
        assert case.client.invoke('Inventory("main")', "count", ["hat"])["result"] == 2

    crash_matrix(["shop.py"], 'Shop("s")', "order", ["hat"], check=check,
                 setup=lambda c: c.invoke('Inventory("main")', "add", ["hat", 3]))

It needs golemd's own test hooks (GOLEMD_CRASH_AT, GOLEMD_KILL_WORKER_AT;
golemd.faults), so it runs golemd from the same installation as the caller.
A failing case raises CrashCaseFailed naming the case; `cases` limits the
run to some of them.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

LABELS = ("start", "effect", "effect_done")
KINDS = ("worker", "daemon")


@dataclass
class CrashCase:
    """One run of the matrix: killed `kind` ("worker", "daemon", or None for
    the run without a crash) at the `k`-th pass (from 1) of `label`."""

    kind: str | None
    label: str | None
    k: int
    result: Any = None  # the invocation's reply: {"idempotency_key", "result"}, or the GolemError raised
    client: Any = None  # a golemctl Client connected to the daemon, alive during check()
    state_dir: str = ""
    log: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.kind is None:
            return "no crash"
        what = {"start": "before invocation {k} ran", "effect": "before effect {k} was journaled",
                "effect_done": "after effect {k} was journaled"}[self.label or "start"]
        return f"{self.kind} killed {what.format(k=self.k)}"


class CrashCaseFailed(AssertionError):
    def __init__(self, case: CrashCase, why: BaseException) -> None:
        super().__init__(f"{case}: {why}")
        self.case = case


class _Daemon:
    """golemd in a subprocess, ready when it says READY=1 on a notify socket."""

    def __init__(self, apps: Sequence[str], state_dir: str, env: dict[str, str], args: Sequence[str],
                 sock_dir: str | None = None) -> None:
        self.sock_dir = sock_dir or state_dir
        self.sock_path = os.path.join(self.sock_dir, "golemd.sock")
        self.state_dir = state_dir
        self.apps = apps
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(state_dir, "golemd.out")

    def start(self, extra_env: dict[str, str], timeout: float = 30.0) -> None:
        notify_path = os.path.join(self.sock_dir, f"notify-{uuid.uuid4().hex[:8]}")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLEMD_", "NOTIFY_", "LISTEN_"))}
        env.update(self.env)
        env.update(extra_env)
        env["NOTIFY_SOCKET"] = notify_path
        cmd = [sys.executable, "-m", "golemd", "--socket", self.sock_path, "--state-dir", self.state_dir,
               *[a for app in self.apps for a in ("--app", app)], *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"golemd did not start:\n{self.output()}")
                ready, _, _ = select.select([notify], [], [], min(left, 0.5))
                if ready and b"READY=1" in notify.recv(4096):
                    return
        finally:
            notify.close()
            os.unlink(notify_path)

    def output(self) -> str:
        try:
            return open(self.log_path, errors="replace").read()[-4000:]
        except OSError:
            return ""

    def client(self) -> Any:
        from golemctl.client import Client

        return Client.connect(self.sock_path)

    def wait_exit(self, timeout: float = 30.0) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            if self.wait_exit(30) is None:
                self.proc.kill()
                self.proc.wait(10)


_SHORT_ENOUGH = 80  # leaves room for "/notify-12345678" and a margin under 107


@contextmanager
def _fresh(apps: Sequence[str], env: dict[str, str], args: Sequence[str], base: str | None,
           store: Callable[[], str] | None) -> Iterator[_Daemon]:
    state_dir = tempfile.mkdtemp(prefix="golemd-crash-", dir=base)
    # A Unix socket's path holds 107 bytes at most: under a deep base (pytest's
    # under xdist) the state stays there and the sockets go to a short directory.
    sock_dir = tempfile.mkdtemp(prefix="golemd-") if len(state_dir) > _SHORT_ENOUGH else None
    if store is not None:
        args = [*args, "--store", store()]
    daemon = _Daemon(apps, state_dir, env, args, sock_dir)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)


def _passes(client: Any) -> dict[str, int]:
    """How often the run passed each crash point, from every agent's oplog:
    invocations started, effects other than steps asked, effects journaled."""
    out = dict.fromkeys(LABELS, 0)
    for agent in client.list():
        for e in client.oplog(agent["agent_id"]):
            if e["kind"] == "started":
                out["start"] += 1
            elif e["kind"] == "effect":
                out["effect_done"] += 1
                if (e.get("effect") or {}).get("kind") != "step":
                    out["effect"] += 1
    return out


def crash_matrix(apps: Sequence[str], agent: str, method: str, args: Sequence[Any] = (), *,
                 check: Callable[[CrashCase], None], setup: Callable[[Any], None] | None = None,
                 kinds: Iterable[str] = KINDS, cases: Callable[[CrashCase], bool] | None = None,
                 env: dict[str, str] | None = None, daemon_args: Sequence[str] = (),
                 base_dir: str | None = None, timeout: float = 60.0,
                 store: Callable[[], str] | None = None) -> list[CrashCase]:
    """Run `agent.method(*args)` once per crash case (see the module's
    docstring) and `check` each; returns the cases run. `daemon_args` are
    extra golemd options; `base_dir` where the state directories go;
    `store`, for golemd --store: a new empty database's URL for each case
    (golemd.testing_pg.PgCluster.create_database); None: SQLite in the
    case's state directory."""
    from golemd.model.errors import GolemError

    apps = [os.path.abspath(a) if os.path.exists(a) else a for a in apps]
    env = dict(env or {})
    key = f"crash-matrix-{uuid.uuid4().hex[:12]}"
    done: list[CrashCase] = []

    def run(case: CrashCase) -> None:
        with _fresh(apps, env, daemon_args, base_dir, store) as daemon:
            case.state_dir = daemon.state_dir
            hook = {}
            if case.kind == "daemon":
                hook = {"GOLEMD_CRASH_AT": f"{case.label}:{case.k}"}
            elif case.kind == "worker":
                hook = {"GOLEMD_KILL_WORKER_AT": f"{case.label}:{case.k}"}
            if setup is not None:
                # Setting up must not pass the crash points: a daemon without them first.
                daemon.start({})
                with daemon.client() as c:
                    setup(c)
                daemon.stop()
            daemon.start(hook)
            try:
                with daemon.client() as c:
                    case.result = c.invoke(agent, method, list(args), idempotency_key=key,
                                           reply_timeout=timeout)
            except GolemError as err:
                case.result = err
            if case.kind == "daemon":
                if daemon.wait_exit(timeout) is None:
                    raise AssertionError("the daemon did not die at its crash point")
                daemon.start({})
                with daemon.client() as c:
                    case.result = c.invoke(agent, method, list(args), idempotency_key=key, reply_timeout=timeout)
            with daemon.client() as c:
                case.client = c
                try:
                    check(case)
                except AssertionError as why:
                    case.log.append(daemon.output())
                    raise CrashCaseFailed(case, why) from why
                finally:
                    case.client = None
            done.append(case)

    baseline = CrashCase(None, None, 0)
    with _fresh(apps, env, daemon_args, base_dir, store) as daemon:
        daemon.start({})
        with daemon.client() as c:
            if setup is not None:
                setup(c)
            before = _passes(c)
            baseline.result = c.invoke(agent, method, list(args), idempotency_key=key, reply_timeout=timeout)
            after = _passes(c)
            baseline.client = c
            try:
                check(baseline)
            except AssertionError as why:
                raise CrashCaseFailed(baseline, why) from why
            finally:
                baseline.client = None
    done.append(baseline)
    for kind in kinds:
        for label in LABELS:
            for k in range(1, after[label] - before[label] + 1):
                case = CrashCase(kind, label, k)
                if cases is None or cases(case):
                    run(case)
    return done
