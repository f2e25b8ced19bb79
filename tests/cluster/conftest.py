"""Three golemd nodes on one throwaway PostgreSQL (golemd.testing_pg), each
with its own socket, state directory and peer port, sharing a database and
a cluster secret. Leases last LEASE seconds so that failover is quick.

Without PostgreSQL's server these tests are skipped, saying how to install
it; under CI (the CI variable set) that is a failure instead (tests/pg.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator

import pytest

from golemd.testing_pg import PgCluster
from tests.helpers import DURABLE_AGENTS, EXAMPLES, TEST_AGENTS, DaemonProc, RawConn

LEASE = 2.0


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    """The session's PostgreSQL (tests/conftest.py: skipped without one, failed under CI)."""
    return pg_cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, pg: PgCluster, size: int, lease: float = LEASE,
                 apps: tuple[str, ...] = (EXAMPLES, TEST_AGENTS, DURABLE_AGENTS),
                 extra: tuple[str, ...] = ()) -> None:
        self.base = tempfile.mkdtemp(prefix="gc", dir="/tmp")
        self.url = pg.create_database()
        self.secret = os.path.join(self.base, "secret")
        with open(self.secret, "w") as f:
            f.write(secrets.token_urlsafe(32))
        os.chmod(self.secret, 0o600)
        self.nodes: list[DaemonProc] = []
        for i in range(size):
            port = free_port()
            d = DaemonProc(base=os.path.join(self.base, f"n{i}"), apps=apps, args=(
                "--store", self.url, "--node", f"n{i}", "--node-listen", f"127.0.0.1:{port}",
                "--cluster-secret-file", self.secret, "--lease-timeout", str(lease), *extra))
            os.makedirs(d.base, exist_ok=True)
            self.nodes.append(d)

    def start(self) -> Cluster:
        for d in self.nodes:
            d.start()
        return self

    def conn(self, i: int) -> RawConn:
        return self.nodes[i].conn()

    def pause(self, i: int) -> None:
        proc = self.nodes[i].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        proc = self.nodes[i].proc
        assert proc is not None
        proc.send_signal(signal.SIGCONT)

    def logs(self) -> str:
        return "\n".join(f"--- n{i}\n{d.log()[-3000:]}" for i, d in enumerate(self.nodes))

    def close(self, passed: bool) -> None:
        for d in self.nodes:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
                d.stop()
        for d in self.nodes:
            d.assert_no_strays()
        if passed:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def cluster(pg: PgCluster) -> Iterator[Cluster]:
    c = Cluster(pg, 3).start()
    try:
        yield c
    finally:
        c.close(passed=True)
