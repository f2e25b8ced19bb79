from __future__ import annotations

from collections.abc import Iterator

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
