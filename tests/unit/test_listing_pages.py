"""listing.cursor_before (the dashboard's Previous link) walks back to the
`after` that forward paging with select used for the page before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from golemd.driver.listing import cursor_before, select
from golemd.model.states import AgentStatus


def agent(name: str, type_: str, status: AgentStatus, env: str = "default") -> Any:
    return SimpleNamespace(name=name, id=SimpleNamespace(env=env, type=type_), status=status,
                           metadata=lambda: {"agent_id": name})


AGENTS = {a.name: a for a in [
    agent(f"A{i:02}()", "A" if i % 3 else "B", AgentStatus.IDLE if i % 2 else AgentStatus.RUNNING,
          "dev" if i % 5 == 0 else "default")
    for i in range(23)]}


def forward(limit: int, **exact: str) -> list[str | None]:
    """The `after` of every page, first (None) to last."""
    afters: list[str | None] = [None]
    while True:
        _page, cursor = select(AGENTS, exact.get("env"), exact.get("type"), exact.get("status"),
                               limit=limit, after=afters[-1])
        if cursor is None:
            return afters
        afters.append(cursor)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("exact", [{}, {"type": "A"}, {"status": "idle"}, {"env": "dev"},
                                   {"type": "B", "status": "Running"}])
def test_previous_is_the_page_before(limit: int, exact: dict[str, str]) -> None:
    afters = forward(limit, **exact)
    for before, after in zip(afters, afters[1:], strict=False):
        assert after is not None
        assert cursor_before(AGENTS, exact.get("env"), exact.get("type"), exact.get("status"),
                             limit, after) == before


def test_a_cursor_that_is_no_agent() -> None:
    # the agent named by `after` was deleted meanwhile: the page before still ends before it
    assert cursor_before(AGENTS, None, None, None, 2, "A05x") == "A03()"
    assert cursor_before(AGENTS, None, None, None, 2, "A01x") is None
    assert cursor_before(AGENTS, None, None, None, 2, "0") is None
