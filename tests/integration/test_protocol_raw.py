"""The wire protocol driven with raw msgpack frames, as docs/protocol.md describes it."""

from __future__ import annotations

import msgpack
import pytest

from tests.helpers import DaemonProc, RawConn, closed_by_peer


def test_reply_echoes_id_and_trigger_shape(conn: RawConn):
    conn.send_raw(msgpack.packb({"v": 1, "id": 41, "op": "invoke", "agent": 'CounterAgent("w")',
                                 "method": "increment", "args": [], "mode": "trigger",
                                 "idempotency_key": "job-1"}))
    assert conn.recv() == {"id": 41, "idempotency_key": "job-1", "status": "pending"}
    conn.send_raw(msgpack.packb({"v": 1, "id": 42, "op": "cancel", "agent": 'CounterAgent("w")',
                                 "idempotency_key": "nope"}))
    reply = conn.recv()
    assert reply["id"] == 42 and reply["error"]["code"] == "NOT_FOUND" and reply["error"]["message"]


@pytest.mark.parametrize("request_,code", [
    ({"v": 1, "id": 1, "op": "frobnicate"}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "get"}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "get", "agent": 5}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "get", "agent": "A()", "extra": 1}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "invoke", "agent": "A()", "method": "m", "mode": "later"}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "invoke", "agent": "A()", "method": "m", "timeout": -1}, "BAD_REQUEST"),
    ({"v": 2, "id": 1, "op": "status"}, "UNSUPPORTED_VERSION"),
    ({"id": 1, "op": "status"}, "BAD_REQUEST"),
    ({"v": 1, "op": "status"}, "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "get", "agent": "not an id"}, "INVALID_AGENT_ID"),
    ([1, 2, 3], "BAD_REQUEST"),
    ({"v": 1, "id": 1, "op": "status", 7: "int key"}, "BAD_REQUEST"),  # a request's keys are strings
])
def test_wrong_shapes_get_bad_request_and_connection_stays(conn: RawConn, request_, code):
    conn.send_raw(msgpack.packb(request_))
    reply = conn.recv()
    assert reply["error"]["code"] == code
    expected_id = request_.get("id") if isinstance(request_, dict) else None
    assert reply["id"] == expected_id  # echoed whenever the request has a usable id
    assert conn.ok("status")["pid"] > 0  # still usable


@pytest.mark.parametrize("garbage", [
    b"\xc1",                                  # never-used msgpack byte
    b"\xdd\xff\xff\xff\xff",                  # array header claiming 2^32 items
    b"\x91" * 10_000 + b"\x00",               # 10k-deep nesting
])
def test_malformed_input_is_answered_then_closed(daemon: DaemonProc, garbage: bytes):
    c = daemon.conn()
    c.send_raw(garbage)
    try:
        reply = c.recv()
        assert reply["id"] is None and reply["error"]["code"] in ("PROTOCOL_ERROR", "TOO_LARGE")
        assert closed_by_peer(c.sock, 10) is not None, "the daemon did not hang up"
    except ConnectionError:
        pass  # closed before it could answer: allowed
    c.close()
    other = daemon.conn()
    assert other.ok("status")["agents"] == 0
    other.close()


def test_status_fields(conn: RawConn):
    st = conn.ok("status")
    for field in ("version", "pid", "uptime", "agents", "live_workers"):
        assert field in st


def test_types_lists_signatures(conn: RawConn):
    types = {t["name"]: t for t in conn.ok("types")["types"]}
    counter = types["CounterAgent"]
    assert counter["constructor"]["signature"] == "(name: str)"
    methods = {m["name"]: m for m in counter["methods"]}
    assert methods["add"]["signature"] == "(n: int) -> int"
    assert "save_snapshot" not in {m["name"] for m in types["Snap"]["methods"]}
    assert types["StatelessAgent"]["durable"] is False


def test_arguments_may_be_maps_with_int_keys(conn: RawConn):
    value = {1: "one", 2: [b"\x00", None]}
    assert conn.ok("invoke", agent="EchoAgent()", method="echo", args=[value])["result"] == value
