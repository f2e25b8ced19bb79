"""Start and stop the systems under test: the floor and golemd, each a fresh
subprocess on a short socket path under /tmp, ready once `status` answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.client import wait_ready

ROOT = Path(__file__).resolve().parent.parent
AGENTS = "bench/agents.py"


class Server:
    """One system under test, running as a subprocess."""

    def __init__(self, name: str, journal: str | None = None, profile: str | None = None,
                 spin_us: float | None = None, batch_calls: int | None = None, args: tuple[str, ...] = ()):
        self.name = name
        self.args = args  # more golemd options (bench/pgstore.py: --store, --synchronous)
        self.journal = journal
        self.spin_us = spin_us
        self.batch_calls = batch_calls
        self.profile = profile
        self.dir = tempfile.mkdtemp(prefix="gb-", dir="/tmp")
        self.socket = os.path.join(self.dir, "s")
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    @property
    def is_golemd(self) -> bool:
        return self.name.startswith("golemd")

    def command(self) -> list[str]:
        if not self.is_golemd:
            return [sys.executable, "-m", "bench.floor", self.socket]
        prefix = [sys.executable]
        if self.profile:
            prefix += ["-m", "cProfile", "-o", self.profile]
        cmd = prefix + ["-m", "golemd.cli", "--socket", self.socket, "--state-dir", self.dir,
                        "--app", AGENTS, "--log-level", "WARNING"]
        if self.journal:
            cmd += ["--journal", self.journal]
        if self.spin_us is not None:
            cmd += ["--spin-us", str(self.spin_us)]
        if self.batch_calls is not None:
            cmd += ["--batch-calls", str(self.batch_calls)]
        return cmd + list(self.args)

    def start(self) -> None:
        log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        try:
            wait_ready(self.socket, timeout=60, alive=lambda: self.proc is not None and self.proc.poll() is None)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None
        self.ready_s = time.perf_counter() - t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT (so a profiled daemon writes its profile), then SIGKILL the group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the floor's template and children too
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
