"""What docs/protocol.md answers for a client written in another language,
one test per question its author had to guess (issue 13, item 7), each
asserting what the doc says against a real golemd through RawConn."""

from __future__ import annotations

from tests.helpers import RawConn


def test_stream_last_and_follow(daemon, conn: RawConn):
    """`stream`: `last` is the newest N buffered lines (all when fewer are
    buffered, none for 0); `follow` then sends each new line until the agent
    is deleted."""
    conn.ok("invoke", agent="Printer()", method="say", args=["a", 3])

    def lines(**fields) -> tuple[list[str], dict]:
        events: list[dict] = []
        reply = conn.reply(conn.send(op="stream", agent="Printer()", **fields), events)
        return [e["line"] for e in events], reply

    everything = ["a 0", "a 1", "a 2"]
    assert lines() == (everything, {"id": conn.next_id, "ended": "done"})
    assert lines(last=2)[0] == ["a 1", "a 2"]
    assert lines(last=3)[0] == everything
    for more in (4, 5, 50):  # more than are buffered: all of them
        assert lines(last=more)[0] == everything, more
    assert lines(last=0)[0] == []

    follower = daemon.conn()
    rid = follower.send(op="stream", agent="Printer()", follow=True, last=1)
    first = follower.recv()  # the buffered line comes before anything new is asked for
    assert first["id"] == rid and first["event"]["line"] == "a 2"
    assert set(first["event"]) == {"type", "stream", "line", "ts", "idempotency_key"}
    conn.ok("invoke", agent="Printer()", method="say", args=["b", 2])
    assert [follower.recv()["event"]["line"] for _ in range(2)] == ["b 0", "b 1"]
    conn.ok("delete", agent="Printer()")
    assert follower.recv() == {"id": rid, "ended": "deleted"}
    follower.close()


def test_list_limit_is_at_least_one_without_upper_bound(conn: RawConn):
    """`list`: `limit` 0 or negative is BAD_REQUEST; any limit from 1 up pages
    through the agents; one over their number (2^64 - 1 too) gives them all."""
    names = [f'CounterAgent("l{i}")' for i in range(3)]
    for name in names:
        conn.ok("invoke", agent=name, method="get", mode="trigger")
    for bad in (0, -1):
        r = conn.call("list", limit=bad)
        assert r["error"]["code"] == "BAD_REQUEST" and "'limit'" in r["error"]["message"], r
    first = conn.ok("list", limit=1)
    assert [a["agent_id"] for a in first["agents"]] == names[:1] and first["next"] == names[0]
    rest = conn.ok("list", limit=2, after=first["next"])
    assert [a["agent_id"] for a in rest["agents"]] == names[1:]
    for big in (3, 2**64 - 1):
        page = conn.ok("list", limit=big)
        assert [a["agent_id"] for a in page["agents"]] == names and page["next"] is None
