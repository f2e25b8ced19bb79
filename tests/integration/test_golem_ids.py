"""Agent IDs of shapes golemd does not have (Golem's APP/ENV/Type(...),
kebab-case type names) are refused, saying that golemd has environments and
no apps: through the wire and through golemctl."""

from __future__ import annotations

from click.testing import CliRunner

from golemctl.cli import cli
from tests.helpers import RawConn


def test_golem_shaped_ids_are_refused_saying_golemd_has_environments(conn: RawConn):
    for agent in ('app/dev/CounterAgent("c1")', 'app/env/Type("x")', 'counter-agent("c1")'):
        for op in ("invoke", "get"):
            fields = {"agent": agent, "method": "increment"} if op == "invoke" else {"agent": agent}
            r = conn.call(op, **fields)
            assert r["error"]["code"] == "INVALID_AGENT_ID", r
            assert "golemd has environments and no apps" in r["error"]["message"]
    assert conn.ok("list")["agents"] == []  # nothing was created
    assert conn.ok("invoke", agent='dev/CounterAgent("c1")', method="increment")["result"] == 1


def test_cli_golem_shaped_id_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(cli, ["--socket", str(tmp_path / "s"), "agent", "get", 'app/dev/CounterAgent("c1")'])
    assert r.exit_code == 2
    assert "INVALID_AGENT_ID" in r.stderr and "golemd has environments and no apps" in r.stderr
