from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import DaemonProc, RawConn, running


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
