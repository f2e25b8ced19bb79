"""A throwaway PostgreSQL cluster for tests: golemd's own, and yours.

    from golemd.testing_pg import PgCluster

    with PgCluster() as pg:
        url = pg.create_database()   # a fresh, empty database
        ...                          # golemd --store URL, PostgresStore(url)

The cluster lives in a temporary directory (data, logs, its Unix socket),
listens on a free TCP port of 127.0.0.1, and is stopped and removed on exit.
It is tuned for tests, not for keeping data: fsync is off (a crash of the
machine loses it, a crash of a client never does) and so is autovacuum (no
background transactions, so a test can count the ones it makes).

It needs PostgreSQL's server binaries (initdb, pg_ctl): on PATH or in
/usr/lib/postgresql/*/bin (Debian: `apt-get install postgresql`). As root,
initdb refuses to run: the cluster then belongs to the `postgres` user
(Debian's package creates it) and its programs run through
`runuser -u postgres --`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "PostgreSQL's server is not installed: apt-get install postgresql"

_TEST_SETTINGS = ("fsync=off", "full_page_writes=off", "autovacuum=off", "max_connections=200",
                  "shared_buffers=32MB")


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no user to run them as."""


def find_bin_dir() -> str | None:
    """The directory holding initdb and pg_ctl (the newest version installed), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return str(Path(on_path).resolve().parent)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return str(Path(found[-1]).parent) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One PostgreSQL server in a temporary directory; a context manager."""

    def __init__(self, base: str | None = None, settings: tuple[str, ...] = _TEST_SETTINGS) -> None:
        bindir = find_bin_dir()
        if bindir is None:
            raise PgUnavailable(INSTALL_HINT)
        self.bindir = bindir
        self.settings = settings
        self._owns_base = base is None
        self.base = base or tempfile.mkdtemp(prefix="golemd-pg-")
        self.data = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root, and initdb refuses root: there is no `postgres` "
                                    "user to run the cluster as (apt-get install postgresql creates it)") from None
            self._as = ["runuser", "-u", "postgres", "--"]
            os.chown(self.base, pw.pw_uid, pw.pw_gid)

    # -- the server --------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60.0) -> str:
        cmd = [*self._as, os.path.join(self.bindir, args[0]), *args[1:]]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{args[0]} did not finish in {timeout}s:\n{self.log_tail()}") from exc
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}")
        return done.stdout

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.logfile).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> PgCluster:
        """initdb (once) and start the server on a free port; ready when this returns."""
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--no-locale", "--no-sync", timeout=timeout)
            self._mkdir_as_owner(self.sockdir)
        last: Exception | None = None
        for _attempt in range(3):  # another process may take the free port before the server binds it
            self.port = self.port or _free_port()
            try:
                self._pg_ctl_start(timeout)
                return self
            except RuntimeError as exc:
                last = exc
                self.port = 0
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def _mkdir_as_owner(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chown(path, os.stat(self.base).st_uid, os.stat(self.base).st_gid)

    def _pg_ctl_start(self, timeout: float) -> None:
        opts = [f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sockdir}"]
        opts += [f"-c {s}" for s in self.settings]
        self._run("pg_ctl", "start", "-D", self.data, "-l", self.logfile, "-w", "-t", str(int(timeout)),
                  "-o", " ".join(opts), timeout=timeout + 10)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """pg_ctl -w waits for the server; this also waits until it takes connections on our port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.execute("SELECT 1")
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL on port {self.port} is not ready after {timeout}s: {exc}\n"
                                       f"{self.log_tail()}") from exc
                time.sleep(0.05)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop the server (`fast`: clients are disconnected; `immediate`: as a crash)."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "stop", "-D", self.data, "-m", mode, "-w", "-t", str(int(timeout)),
                      timeout=timeout + 10)

    def restart(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop and start again on the same port: every client's connection is cut."""
        self.stop(mode, timeout)
        self._pg_ctl_start(timeout)

    def remove(self) -> None:
        """Stop the server and delete everything it had."""
        try:
            self.stop("immediate")
        finally:
            if self._owns_base:
                shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    # -- databases -----------------------------------------------------------

    def url(self, dbname: str = "postgres", unix: bool = False) -> str:
        """A libpq URL of one database: over TCP, or over the cluster's Unix socket."""
        if unix:
            return f"postgresql://postgres@/{dbname}?host={self.sockdir}&port={self.port}"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """One statement in autocommit (CREATE DATABASE cannot run in a transaction); its rows."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql)  # type: ignore[call-overload]  # our own text, not a user's
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None, unix: bool = False) -> str:
        """A new empty database; its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, unix)

    def drop_database(self, name: str) -> None:
        """Drop it, cutting off whoever is still connected."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
