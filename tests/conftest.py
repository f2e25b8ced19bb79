from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.helpers import DaemonProc


@pytest.fixture
def daemon() -> Iterator[DaemonProc]:
    """A real golemd with the example and test agents; stopped and checked at teardown."""
    d = DaemonProc().start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            code = d.stop(signal.SIGTERM)
            assert code == 0, f"golemd exited {code} on SIGTERM:\n{d.log()}"
        d.assert_no_strays()


@pytest.fixture
def conn(daemon: DaemonProc):  # noqa: ANN201
    c = daemon.conn()
    yield c
    c.close()
