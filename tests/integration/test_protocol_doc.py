"""What docs/protocol.md answers for a client written in another language,
one test per question its author had to guess (issue 13, item 7), each
asserting what the doc says against a real golemd through RawConn.

The daemon here also loads tests/agents/signatures.py, whose agent says
what its methods were given."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.helpers import (
    EXAMPLES,
    TEST_AGENTS,
    DaemonProc,
    RawConn,
    closed_by_peer,
    daemon_process,
    running,
)

SIGNATURES = str(Path(__file__).resolve().parents[1] / "agents" / "signatures.py")
MiB = 1 << 20


@pytest.fixture
def daemon() -> Iterator[DaemonProc]:
    with running(apps=(EXAMPLES, TEST_AGENTS, SIGNATURES)) as d:
        yield d


def raw(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def refused_then_closed(c: RawConn) -> dict[str, Any]:
    """The daemon's answer to input it cannot decode; it must hang up after it."""
    reply = c.recv()
    assert closed_by_peer(c.sock, 10) is not None, "the daemon did not hang up"
    c.close()
    return reply


def code(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    return str(reply["error"]["code"])


# -- Replies ---------------------------------------------------------------------


def test_details_sit_inside_the_error_map(conn: RawConn):
    """`details` is a third key of `error`, never beside it."""
    r = conn.call("invoke", agent='CounterAgent("d")', method="fail_after_add", args=[1])
    assert set(r) == {"id", "error"}
    assert set(r["error"]) == {"code", "message", "details"} and r["error"]["code"] == "INVOCATION_FAILED"
    assert set(r["error"]["details"]) == {"type", "message", "traceback"}
    assert r["error"]["details"]["type"] == "ValueError"
    r = conn.call("invoke", agent='BadInit("d")', method="hello")
    assert r["error"]["code"] == "AGENT_FAILED" and r["error"]["details"]["type"] == "RuntimeError"
    r = conn.call("invoke", agent="Unpicklable()", method="bad_result")  # a set cannot be sent
    assert r["error"]["code"] == "SNAPSHOT_FAILED" and r["error"]["details"]["type"] == "TypeError"
    r = conn.call("cancel", agent='CounterAgent("d")', idempotency_key="unknown")
    assert set(r["error"]) == {"code", "message"}  # no details for most codes


# -- Requests ---------------------------------------------------------------------


def test_the_same_id_twice_in_flight_is_not_checked(conn: RawConn):
    """Both requests run; both replies carry the id, in the order they finish."""
    conn.send_raw(raw(v=1, id=77, op="invoke", agent='SlowAgent("same")', method="work", args=[0.3, "a"])
                  + raw(v=1, id=77, op="status"))
    replies = [conn.recv(), conn.recv()]
    assert [r["id"] for r in replies] == [77, 77]
    assert "pid" in replies[0] and replies[1]["result"] == "a"  # the status overtook the busy call


def test_a_version_given_as_a_string_is_unsupported(conn: RawConn):
    """Any `v` but the integer 1 is UNSUPPORTED_VERSION, the id echoed; no `v` is BAD_REQUEST."""
    for v in ("1", 1.0, True, 2):
        conn.send_raw(raw(v=v, id=5, op="status"))
        reply = conn.recv()
        assert (reply["id"], reply["error"]["code"]) == (5, "UNSUPPORTED_VERSION"), v
    conn.send_raw(raw(id=6, op="status"))
    reply = conn.recv()
    assert reply["id"] == 6 and reply["error"]["code"] == "BAD_REQUEST" and "'v'" in reply["error"]["message"]
    assert conn.ok("status")["pid"] > 0  # still usable


def test_the_version_is_checked_before_the_op_and_its_fields(conn: RawConn):
    """The checks in the doc's order: map, keys, id, v present, v == 1, op, fields."""
    cases: list[tuple[bytes, Any, str]] = [
        (msgpack.packb([1, 2]), None, "BAD_REQUEST"),
        (msgpack.packb({"v": 2, "id": 3, "op": "status", 7: "x"}), 3, "BAD_REQUEST"),  # keys first
        (msgpack.packb({"v": 2, "id": "3", "op": "frobnicate"}), None, "BAD_REQUEST"),  # then the id
        (raw(id=3, op="frobnicate"), 3, "BAD_REQUEST"),  # then v's presence
        (raw(v=2, id=3, op="frobnicate"), 3, "UNSUPPORTED_VERSION"),  # then v, before the op
        (raw(v=2, id=3, op="get"), 3, "UNSUPPORTED_VERSION"),  # and before the op's fields
        (raw(v=1, id=3, op="frobnicate"), 3, "BAD_REQUEST"),
        (raw(v=1, id=3, op="get", agent="not an id"), 3, "INVALID_AGENT_ID"),  # the op's own, last
    ]
    for data, rid, want in cases:
        conn.send_raw(data)
        reply = conn.recv()
        assert (reply["id"], reply["error"]["code"]) == (rid, want), (data, reply)
    # Among the fields: an unknown or mistyped one (in the map's order), then a
    # missing one, then a range.
    conn.send_raw(raw(v=1, id=4, op="invoke", agent=1, bogus=True, timeout=0))
    assert "'agent'" in conn.recv()["error"]["message"]
    conn.send_raw(raw(v=1, id=4, op="invoke", timeout=0, agent="A()"))
    assert "'method'" in conn.recv()["error"]["message"]
    conn.send_raw(raw(v=1, id=4, op="invoke", timeout=0, agent="A()", method="m"))
    assert "'timeout'" in conn.recv()["error"]["message"]
    assert conn.ok("status")["agents"] == 0  # nothing was created, and the connection is usable


# -- Transport: what the daemon decodes ---------------------------------------------


def test_invalid_utf8_is_a_protocol_error_and_closes(daemon: DaemonProc):
    c = daemon.conn()
    # {"v": 1, "id": 9, "op": <a str of three bytes that are not UTF-8>}
    c.send_raw(b"\x83\xa1v\x01\xa2id\x09\xa2op\xa3\xff\xfe\xfd")
    reply = refused_then_closed(c)
    assert reply["id"] is None and reply["error"]["code"] == "PROTOCOL_ERROR", reply
    assert daemon.conn().ok("status")["pid"] == daemon.proc.pid  # others go on


def test_the_decoders_bounds(daemon: DaemonProc):
    """Extension types, over 1,000,000 entries, over 1,024 levels, an array as
    a map key: PROTOCOL_ERROR with id nil, then the connection is closed."""
    def invoke_with_args(args_bytes: bytes) -> bytes:
        head = b"\x86" + b"".join(msgpack.packb(x) for x in (
            "v", 1, "id", 9, "op", "invoke", "agent", 'CounterAgent("deep")', "method", "get"))
        return head + msgpack.packb("args") + args_bytes

    deepest = invoke_with_args(b"\x91" * 1022 + b"\x90")  # 1,024 levels with the request map
    c = daemon.conn()
    c.send_raw(deepest)
    assert c.recv()["error"]["code"] == "INVALID_ARGUMENTS"  # decoded: get() takes no argument
    c.close()
    for bad in (invoke_with_args(b"\x91" * 1023 + b"\x90"),
                raw(v=1, id=9, op="invoke", agent="EchoAgent()", method="echo",
                    args=[msgpack.ExtType(5, b"x")]),
                raw(v=1, id=9, op="invoke", agent="EchoAgent()", method="echo",
                    args=[msgpack.Timestamp(1)]),
                invoke_with_args(b"\x91\x81\x91\x01\x02"),  # [{[1]: 2}]
                invoke_with_args(b"\xdd" + (1_000_001).to_bytes(4, "big") + b"\x00" * 1_000_001)):
        c = daemon.conn()
        try:
            c.send_raw(bad)
        except OSError as exc:  # hung up before we were done: fine, the answer was written first
            assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
        reply = refused_then_closed(c)
        assert reply["id"] is None and reply["error"]["code"] == "PROTOCOL_ERROR", reply
    other = daemon.conn()
    assert other.ok("status")["agents"] == 0
    other.close()


def test_a_too_large_reply_has_a_nil_id(daemon: DaemonProc):
    c = daemon.conn()
    size = 64 * MiB + 1
    try:
        c.send_raw(b"\xc6" + size.to_bytes(4, "big"))
        for _ in range(size // MiB + 1):
            c.send_raw(b"\0" * MiB)
    except OSError as exc:
        assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
    reply = refused_then_closed(c)
    assert reply["id"] is None and reply["error"]["code"] == "TOO_LARGE", reply


# -- Agent IDs ------------------------------------------------------------------------


def test_agent_ids_take_no_keyword_arguments(conn: RawConn):
    """Nor *args, names, operators, comments, a tuple as a dict key: INVALID_AGENT_ID saying why."""
    for text, why in [('CounterAgent(name="c")', "keyword"), ("Signatures(**{})", "keyword"),
                      ("Signatures(*[1])", "*"), ("Signatures(c)", "not a literal"),
                      ("Signatures(1 + 2)", "not a literal"), ("Signatures({1, 2})", "set"),
                      ('CounterAgent("c")#)', "comments"), ("Signatures({(1, 2): 0})", "tuple as a dict key")]:
        r = conn.call("invoke", agent=text, method="get")
        assert code(r) == "INVALID_AGENT_ID" and why in r["error"]["message"], (text, r)
    assert conn.ok("list")["agents"] == []


def test_the_env_charset(conn: RawConn):
    """ENV is [A-Za-z0-9_-]+; whitespace only around the ID, after the / and before the (."""
    for text, canonical in [('a-B_9/CounterAgent("e")', 'a-B_9/CounterAgent("e")'),
                            (' \ndev/ CounterAgent ("e") ', 'dev/CounterAgent("e")')]:
        conn.ok("invoke", agent=text, method="get")
        assert conn.ok("get", agent=text)["agent"]["agent_id"] == canonical
    for text in ('dev env/CounterAgent("e")', 'dev /CounterAgent("e")', 'dev.x/CounterAgent("e")',
                 'dév/CounterAgent("e")', '/CounterAgent("e")', 'a/b/CounterAgent("e")', 'Zähler("e")'):
        assert conn.err("invoke", agent=text, method="get") == "INVALID_AGENT_ID", text


def test_the_canonical_form_escapes_strings_as_json_does(conn: RawConn):
    value = "a\nb\"c\\d\te\x01\x1f\x7f\u2028é😀'"
    text = f"CounterAgent({value!r})"  # Python's spelling: single quotes, \x escapes
    conn.ok("invoke", agent=text, method="get")
    meta = conn.ok("get", agent=text)["agent"]
    assert meta["agent_id"] == f"CounterAgent({json.dumps(value, ensure_ascii=False)})"
    assert meta["agent_id"] == 'CounterAgent("a\\nb\\"c\\\\d\\te\\u0001\\u001f\x7f\u2028é😀\'")'
    assert meta["args"] == [value]
    assert conn.ok("get", agent=meta["agent_id"])["agent"]["agent_id"] == meta["agent_id"]  # it parses back


def test_the_canonical_form_keeps_an_env_prefix_but_default(conn: RawConn):
    for text in ('dev/Signatures("p")', 'default/Signatures( \'p\' )', 'Signatures("p",)', "Signatures(1)",
                 "Signatures(1.0)", "Signatures(True)", "Signatures([1])", "Signatures((1,))",
                 "Signatures(0x10, 1e3, -0.0, b'\\x00')", "Signatures({'a': 1, 'b': 2})",
                 "Signatures({'b': 2, 'a': 1})"):
        conn.ok("invoke", agent=text, method="constructor_got", mode="trigger")
    agents = {a["agent_id"]: a for a in conn.ok("list")["agents"]}
    assert sorted(agents) == sorted([
        'dev/Signatures("p")', 'Signatures("p")',  # default/ is left out, dev/ kept
        "Signatures(1)", "Signatures(1.0)", "Signatures(True)", "Signatures([1])", "Signatures((1,))",
        "Signatures(16, 1000.0, -0.0, b'\\x00')",
        'Signatures({"a": 1, "b": 2})', 'Signatures({"b": 2, "a": 1})',  # dict order kept: two agents
    ])
    assert agents['dev/Signatures("p")']["env"] == "dev" and agents['Signatures("p")']["env"] == "default"


# -- Arguments and annotations ----------------------------------------------------------


def test_msgpack_values_bind_to_annotations(conn: RawConn):
    """isinstance, so bool passes for int and float; an int for a float stays an
    int; arrays arrive as lists; unknown annotations and generics' insides are not checked."""
    a = "Signatures()"
    got = conn.ok("invoke", agent=a, method="got", args=[True, 1, [1, 2], b"x", None, "any", ["a"]])
    assert got["result"] == ["bool", "int", "list", "bytes", "NoneType", "str", "list"]
    got = conn.ok("invoke", agent=a, method="got", args=[1, False, [], b"", {"k": 1}, None, []])
    assert got["result"] == ["int", "bool", "list", "bytes", "dict", "NoneType", "list"]
    for i, bad in [(1, 1.0), (1, None), (2, "1"), (3, {}), (4, "x"), (5, []), (7, {})]:
        args: list[Any] = [1, 1, [], b"", None, None, []]
        args[i - 1] = bad
        r = conn.call("invoke", agent=a, method="got", args=args)
        assert code(r) == "INVALID_ARGUMENTS" and f"argument {i} (" in r["error"]["message"], (i, bad, r)
    # The constructor's arguments, from the ID: tuples arrive as lists too, checked the same way.
    r = conn.ok("invoke", agent='Signatures((1, 2), [3], b"x", {"k": (4,)})', method="constructor_got")
    assert r["result"] == ["list", "list", "bytes", "dict"]
    r = conn.call("invoke", agent="CounterAgent(1)", method="get")
    assert code(r) == "INVALID_AGENT_ID" and "does not fit the constructor" in r["error"]["message"]


def test_types_timeout_and_kind(conn: RawConn):
    types = conn.ok("types")["types"]
    assert [t["name"] for t in types] == sorted(t["name"] for t in types)
    sig = next(t for t in types if t["name"] == "Signatures")
    methods = {m["name"]: m for m in sig["methods"]}
    assert list(methods) == sorted(methods)
    assert methods["limited"]["timeout"] == 0.5  # its @timeout
    assert methods["got"]["timeout"] == 30  # its type's @agent(timeout=30)
    assert next(t for t in types if t["name"] == "CounterAgent")["methods"][0]["timeout"] is None
    kinds = methods["kinds"]
    assert kinds["signature"] == "(a: int, /, b: str = 'b', *rest: int, flag: bool = False, **extra: Any) -> list[Any]"
    assert [(p["name"], p["kind"], p["annotation"], p["has_default"]) for p in kinds["params"]] == [
        ("a", "POSITIONAL_ONLY", "int", False), ("b", "POSITIONAL_OR_KEYWORD", "str", True),
        ("rest", "VAR_POSITIONAL", "int", False), ("flag", "KEYWORD_ONLY", "bool", True),
        ("extra", "VAR_KEYWORD", "Any", False)]
    assert sig["constructor"]["params"][0]["kind"] == "VAR_POSITIONAL"
    # Positional ones in order, *args the rest; keyword-only keep their defaults, **kwargs stays empty.
    r = conn.ok("invoke", agent="Signatures()", method="kinds", args=[1, "x", 2, 3])
    assert r["result"] == [1, "x", [2, 3], False, {}]
    assert conn.ok("invoke", agent="Signatures()", method="kinds", args=[1])["result"] == [1, "b", [], False, {}]
    r = conn.call("invoke", agent="Signatures()", method="keyword_only", args=[1])
    assert code(r) == "INVALID_ARGUMENTS" and "keyword-only" in r["error"]["message"]
    # A method's timeout applies when the request gives none; the request's replaces it.
    r = conn.call("invoke", agent="Signatures()", method="limited", args=[30])
    assert code(r) == "TIMEOUT" and "0.5s" in r["error"]["message"]
    r = conn.call("invoke", agent="Signatures()", method="limited", args=[30], timeout=0.2)
    assert code(r) == "TIMEOUT" and "0.2s" in r["error"]["message"]
    assert conn.ok("invoke", agent="Signatures()", method="limited", args=[0.7], timeout=30)["result"] == 0.7


# -- invoke ------------------------------------------------------------------------------


def test_out_of_range_fields_are_bad_request(conn: RawConn):
    a = 'CounterAgent("range")'
    for field, value in [("idempotency_key", ""), ("idempotency_key", "k" * 257),
                         ("timeout", 0), ("timeout", -1), ("timeout", 1e9 + 1), ("timeout", float("nan")),
                         ("timeout", True), ("schedule_at", 1e11), ("schedule_at", -1e11),
                         ("schedule_at", float("inf")), ("schedule_at", float("nan")),
                         ("mode", "later"), ("mode", "AWAIT"), ("traceparent", "00-1-2-01"),
                         ("traceparent", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"),
                         ("traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]:
        r = conn.call("invoke", agent=a, method="get", **{"mode": "trigger", field: value})
        named = "idempotency key" if field == "idempotency_key" else repr(field)
        assert code(r) == "BAD_REQUEST" and named in r["error"]["message"], (field, value, r)
    assert conn.err("get", agent=a) == "AGENT_NOT_FOUND"  # nothing was created
    # The bounds themselves are in range.
    conn.ok("invoke", agent=a, method="get", timeout=1e9, schedule_at=time.time() - 1e3,
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")  # traces off: ignored
    assert conn.ok("invoke", agent=a, method="get", mode="trigger", schedule_at=1e11 - 1)["status"] == "pending"


def test_idempotency_keys_are_counted_in_code_points(conn: RawConn):
    a = 'CounterAgent("keys")'
    emoji = "\U0001f600" * 256  # 256 characters, 1,024 bytes of UTF-8
    first = conn.ok("invoke", agent=a, method="increment", idempotency_key=emoji)
    assert first == {"id": conn.next_id, "idempotency_key": emoji, "result": 1}
    assert conn.ok("invoke", agent=a, method="increment", idempotency_key=emoji)["result"] == 1  # the same key
    assert conn.ok("invoke", agent=a, method="increment", idempotency_key="é" * 256)["result"] == 2
    for key in ("é" * 257, "k" * 257, ""):
        assert conn.err("invoke", agent=a, method="increment", idempotency_key=key) == "BAD_REQUEST"


def test_stream_with_trigger_is_ignored(conn: RawConn):
    events: list[dict[str, Any]] = []
    r = conn.reply(conn.send(op="invoke", agent="Printer()", method="say", args=["t", 2], mode="trigger",
                             idempotency_key="t", stream=True), events)
    assert set(r) == {"id", "idempotency_key", "status"} and r["status"] == "pending" and events == []
    assert conn.ok("invoke", agent="Printer()", method="say", args=["t", 2], idempotency_key="t")["result"] == 2
    assert conn.inbox == [] and events == []  # its output never came as events
    out: list[dict[str, Any]] = []
    conn.reply(conn.send(op="stream", agent="Printer()"), out)
    assert [e["line"] for e in out] == ["t 0", "t 1"]  # it printed all the same


def test_the_default_max_pending_is_ten_thousand(conn: RawConn):
    """QUEUE_FULL once 10,000 wait (scheduled ones count); a used key is still answered."""
    a = 'Journal("full")'
    at = time.time() + 3600
    conn.send_raw(b"".join(raw(v=1, id=100 + i, op="invoke", agent=a, method="append", args=["x"],
                               mode="trigger", schedule_at=at, idempotency_key=f"k{i}")
                           for i in range(10_000)))
    replies = [conn.recv() for _ in range(10_000)]
    assert all(r.get("status") == "pending" for r in replies), next(r for r in replies if "error" in r)
    r = conn.call("invoke", agent=a, method="append", args=["x"], mode="trigger", schedule_at=at)
    assert code(r) == "QUEUE_FULL" and "max_pending = 10000" in r["error"]["message"]
    assert conn.ok("get", agent=a)["agent"]["pending_invocation_count"] == 10_000
    again = conn.ok("invoke", agent=a, method="append", args=["x"], mode="trigger", schedule_at=at,
                    idempotency_key="k0")
    assert again["status"] == "pending"


# -- METADATA ----------------------------------------------------------------------------


def test_a_new_agent_is_suspended_before_its_first_start(conn: RawConn):
    a = 'CounterAgent("later")'
    conn.ok("invoke", agent=a, method="increment", mode="trigger", schedule_at=time.time() + 3600)
    meta = conn.ok("get", agent=a)["agent"]
    assert (meta["status"], meta["pid"], meta["current_invocation"], meta["pending_invocation_count"]) == \
        ("Suspended", None, None, 1)
    assert meta["memory_rss_bytes"] is None and meta["completed_count"] == 0


def test_pid_is_nil_while_its_process_starts(daemon: DaemonProc, conn: RawConn):
    """Running at once, pid nil until the fork server answers: held here by stopping it."""
    (template,) = [p for p in daemon_process(daemon).children() if "golemd.host.zygote" in p.cmdline()]
    a = 'CounterAgent("starting")'
    template.suspend()
    try:
        key = conn.ok("invoke", agent=a, method="increment", mode="trigger")["idempotency_key"]
        meta = conn.ok("get", agent=a)["agent"]
        assert (meta["status"], meta["pid"], meta["memory_rss_bytes"], meta["cpu_seconds"]) == \
            ("Running", None, None, None)
        assert meta["current_invocation"] == {"idempotency_key": key, "method": "increment"}
    finally:
        template.resume()
    assert conn.ok("invoke", agent=a, method="get")["result"] == 1
    assert isinstance(conn.ok("get", agent=a)["agent"]["pid"], int)


def test_retry_count_after_recover_and_simulate_crash(daemon: DaemonProc, conn: RawConn):
    """Only a death of the process by itself counts; the user's kills rerun the call uncounted."""
    a = 'SlowAgent("retries")'
    other = daemon.conn()
    for op, fields in (("simulate_crash", {}), ("interrupt", {"recover": True}), (None, {})):
        rid = other.send(op="invoke", agent=a, method="work", args=[1.0, str(op)], stream=True)
        while other.recv().get("event", {}).get("type") != "output":
            pass  # until it prints: it runs in its process now
        pid = conn.meta(a)["pid"]
        if op is None:
            os.kill(pid, 9)  # a death from outside: counted
        else:
            conn.ok(op, agent=a, **fields)
        assert "result" in other.reply(rid)  # its caller still gets the result
        assert conn.ok("get", agent=a)["agent"]["retry_count"] == (1 if op is None else 0), op
    # On an idle agent, simulate_crash recovers at once: a new process, still Idle,
    # and the reply says so (it used to say Idle and leave the agent Suspended).
    pid = conn.meta(a)["pid"]
    meta = conn.ok("simulate_crash", agent=a)["agent"]
    assert meta["agent_id"] == a and meta["status"] == "Idle" and meta["pid"] not in (None, pid)
    assert conn.meta(a)["status"] == "Idle" and conn.meta(a)["pid"] == meta["pid"]
    assert conn.meta(a)["retry_count"] == 1
    assert conn.ok("invoke", agent=a, method="history")["result"] == ["simulate_crash", "interrupt", "None"]
    other.close()


# -- the errors of the agent ops ------------------------------------------------------------


def test_errors_of_the_agent_ops(conn: RawConn):
    ops = ("interrupt", "resume", "simulate_crash", "delete", "invocations", "oplog", "stream")
    for op in ops:
        for agent in ('CounterAgent("never")', "NotLoaded()"):  # never invoked; a type not loaded
            assert conn.err(op, agent=agent) == "AGENT_NOT_FOUND", (op, agent)
        assert conn.err(op, agent="not an id") == "INVALID_AGENT_ID", op
        assert conn.err(op, agent=5) == "BAD_REQUEST", op
    assert conn.err("interrupt", agent='CounterAgent("x")', recover=1) == "BAD_REQUEST"
    assert conn.err("stream", agent='CounterAgent("x")', last=-1) == "BAD_REQUEST"
    assert conn.ok("list")["agents"] == []  # none of them created an agent
    # On an existing agent there is nothing else to refuse.
    a = 'CounterAgent("ops")'
    conn.ok("invoke", agent=a, method="increment")
    assert conn.ok("resume", agent=a)["agent"]["status"] == "Idle"  # not interrupted: nothing to do
    assert conn.ok("invocations", agent=a)["invocations"] == []
    assert conn.ok("interrupt", agent=a)["agent"]["status"] == "Interrupted"  # idle: held all the same
    assert conn.ok("interrupt", agent=a)["agent"]["status"] == "Interrupted"  # twice
    assert conn.ok("resume", agent=a)["agent"]["status"] != "Interrupted"
    conn.ok("delete", agent=a)
    assert conn.err("delete", agent=a) == "AGENT_NOT_FOUND"  # a second delete


# -- list and stream ----------------------------------------------------------------------


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


def test_stream_last_and_follow(daemon, conn: RawConn):
    """`stream`: `last` is the newest N buffered lines (all when fewer are
    buffered, none for 0); `follow` then sends each new line until the agent
    is deleted."""
    conn.ok("invoke", agent="Printer()", method="say", args=["a", 3])

    def lines(**fields: Any) -> tuple[list[str], dict[str, Any]]:
        events: list[dict[str, Any]] = []
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
