"""Fixtures for the engine's tests: a World (tests/engine/harness.py) whose
answer rules are checked when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from golemd.engine.context import Policy
from tests.engine.harness import World


@pytest.fixture
def make_world() -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(**policy: Any) -> World:
        durable = policy.pop("durable", True)
        world = World(Policy(**policy), durable=durable)
        made.append(world)
        return world

    yield make
    for world in made:
        assert world.violations == []


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    """One durable agent, default policy but no idle timeout (tests of suspension set one)."""
    return make_world(idle_timeout=0)
