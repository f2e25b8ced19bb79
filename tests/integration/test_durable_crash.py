"""The crash matrix (golemd.testing.crash_matrix) on a three-effect
invocation: Shop.three makes a step, an awaited call to Inventory, and a
step. Killed before and after each effect, the worker (SIGKILL) and the
daemon (kill -9): each effect ran exactly once, the outcome is right, and
each agent's state changed once."""

from __future__ import annotations

import os

import pytest

from golemd.testing import CrashCase, crash_matrix
from tests import pg
from tests.helpers import DURABLE_AGENTS, EXAMPLES, TEST_AGENTS

DURABLE = DURABLE_AGENTS
INV = 'Inventory("main")'


@pytest.mark.parametrize("kind", ["worker", "daemon"])
def test_three_effects_run_once_whatever_dies_at_each_boundary(tmp_path, kind):
    ledger = str(tmp_path / "ledger")

    def setup(client) -> None:
        if os.path.exists(ledger):
            os.unlink(ledger)
        client.invoke(INV, "add", ["hat", 3])

    def check(case: CrashCase) -> None:
        assert not isinstance(case.result, Exception), case.result
        assert case.result["result"] == {"a": "step-1", "left": 2, "c": "step-3:2", "orders": 1}
        lines = open(ledger).read().split()
        assert lines == ["step-1", "step-3:2"], lines  # each step ran once
        assert case.client.invoke(INV, "count", ["hat"])["result"] == 2  # reserved once
        assert case.client.invoke('Shop("s")', "orders_made")["result"] == 1  # the state changed once

    cases = crash_matrix([EXAMPLES, TEST_AGENTS, DURABLE], 'Shop("s")', "three", [ledger, INV, "hat"],
                         check=check, setup=setup, kinds=[kind], base_dir=str(tmp_path),
                         store=pg.daemon_database if pg.daemons_on_postgres() else None)
    # the run without a crash; before Shop.three and Inventory.reserve run;
    # before the call is journaled; after each of the three effects is
    assert [str(c) for c in cases][1:] == [
        f"{kind} killed before invocation 1 ran", f"{kind} killed before invocation 2 ran",
        f"{kind} killed before effect 1 was journaled",
        *[f"{kind} killed after effect {k} was journaled" for k in (1, 2, 3)]]
