"""The test session's PostgreSQL cluster (golemd.testing_pg.PgCluster): one
per session, started by the `pg_cluster` fixture (tests/conftest.py) on
first use and removed when the session ends.

Without PostgreSQL's server the tests that need it are skipped, saying how
to install it; under CI (the CI variable set) that is a failure instead, so
that a CI machine missing it cannot pass for nothing.

GOLEMD_TEST_STORE=postgresql runs the daemons of the integration tests on
PostgreSQL (tests/helpers.py DaemonProc): each daemon gets a fresh database.
"""

from __future__ import annotations

import os

import pytest

from golemd.testing_pg import PgCluster, PgUnavailable

STORE_VAR = "GOLEMD_TEST_STORE"
_cluster: PgCluster | None = None


def daemons_on_postgres() -> bool:
    """The integration tests' daemons use PostgreSQL (GOLEMD_TEST_STORE=postgresql)."""
    value = os.environ.get(STORE_VAR, "")
    if value not in ("", "sqlite", "postgresql"):
        raise RuntimeError(f"{STORE_VAR}={value!r}: sqlite (the default) or postgresql")
    return value == "postgresql"


def start() -> PgCluster:
    """The session's cluster, started on the first call; skips (fails under CI) without PostgreSQL."""
    global _cluster
    if _cluster is None:
        try:
            cluster = PgCluster()
        except PgUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"{exc} (CI is set: PostgreSQL must be there)", pytrace=False)
            pytest.skip(str(exc))
        _cluster = cluster.start()
    return _cluster


def stop() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.remove()
        _cluster = None


def daemon_database() -> str | None:
    """A fresh database's URL for one daemon, under GOLEMD_TEST_STORE=postgresql; else None."""
    if not daemons_on_postgres():
        return None
    if _cluster is None:
        raise RuntimeError("the pg_cluster fixture starts the cluster before any daemon (tests/conftest.py)")
    return _cluster.create_database()


def drop(url: str) -> None:
    """Drop a database daemon_database() made, once its daemon is gone."""
    if _cluster is not None:
        _cluster.drop_database(url.rsplit("/", 1)[1])
