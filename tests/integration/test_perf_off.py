"""Each speed trick can be turned off (perf_off), to measure what it does,
and the daemon keeps its contract without it: warm awaited calls, a
pipelined burst on one connection, a trigger and a cancel."""

from __future__ import annotations

import pytest

from tests.helpers import running, wait_for


@pytest.mark.parametrize("trick", ["cork", "early_start", "lazy_commit"])
def test_the_contract_holds_with_a_trick_off(trick: str) -> None:
    with running(args=("--perf-off", trick)) as d:
        c = d.conn()
        assert [c.ok("invoke", agent='CounterAgent("p")', method="increment")["result"] for _ in range(5)] == \
            [1, 2, 3, 4, 5]
        rids = [c.send(op="invoke", agent=f'CounterAgent("q{i % 3}")', method="increment") for i in range(30)]
        results = [c.reply(rid)["result"] for rid in rids]
        assert sorted(results) == sorted([n for _ in range(3) for n in range(1, 11)])
        c.ok("invoke", agent='SlowAgent("p")', method="work", args=[30, "busy"], mode="trigger",
             idempotency_key="busy")
        wait_for(lambda: c.meta('SlowAgent("p")').get("current_invocation"), what="busy to start")
        c.ok("invoke", agent='SlowAgent("p")', method="work", args=[0.1, "q"], mode="trigger", idempotency_key="q")
        c.ok("cancel", agent='SlowAgent("p")', idempotency_key="q")
        assert c.err("invoke", agent='SlowAgent("p")', method="work", args=[0.1, "q"], idempotency_key="q") == \
            "CANCELED"
        c.ok("interrupt", agent='SlowAgent("p")')
        c.close()


def test_an_unknown_trick_is_a_configuration_error(tmp_path) -> None:
    from golemd.config import load_config

    with pytest.raises(ValueError, match="perf_off knows cork, early_start and lazy_commit, not polling"):
        load_config(None, {"perf_off": ("polling",), "state_dir": str(tmp_path)})
