from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from golemd.testing_pg import PgCluster
from tests import pg
from tests.helpers import DaemonProc, RawConn, running


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster (tests/pg.py): skipped without PostgreSQL, failed under CI."""
    yield pg.start()
    pg.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database of the session's cluster, dropped after the test."""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session", autouse=True)
def _daemons_store(request: pytest.FixtureRequest) -> None:
    """GOLEMD_TEST_STORE=postgresql: the cluster the daemons' databases are made in."""
    if pg.daemons_on_postgres():
        request.getfixturevalue("pg_cluster")


@pytest.fixture
def daemon() -> Iterator[DaemonProc]:
    """A real golemd with the example and test agents; stopped and checked at teardown."""
    with running() as d:
        yield d


@pytest.fixture
def conn(daemon: DaemonProc) -> Iterator[RawConn]:
    c = daemon.conn()
    yield c
    c.close()


@pytest.fixture
def run(daemon: DaemonProc):  # noqa: ANN201 - a function of the CLI's arguments
    """The real golemctl (click's CliRunner) against the test's daemon."""
    from click.testing import CliRunner

    from golemctl.cli import cli

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--socket", daemon.socket, *args], prog_name="golemctl")
    return run
