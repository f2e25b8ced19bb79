"""Fixtures of the store tests: `backend` runs each contract test once per
implementation in helpers.BACKENDS; `store` is a fresh store of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from golemd.storage.base import Store
from tests.storage.helpers import BACKENDS, Backend, FakeLoop


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](tmp_path, request.getfixturevalue)
    yield b
    b.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    s = backend.open()
    yield s
    s.close()


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()
