"""golemd.wire.codec (framing limits, replies), the request shapes of golemd/wire/ops/ (through
the names the codec always exported) and golemd.model.errors (the code table).

The contract is DESIGN.md section 3 and docs/protocol.md; tests/unit/test_ops.py checks each op's
definition.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

from golemd.model.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Code,
    GolemError,
    exit_status,
)
from golemd.wire.codec import (
    MAX_IDEMPOTENCY_KEY,
    MAX_MESSAGE_BYTES,
    OPS,
    PROTOCOL_VERSION,
    error_reply,
    make_unpacker,
    pack,
    validate_request,
)

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# The smallest valid request of every op (docs/protocol.md, "Ops").
MINIMAL: dict[str, dict[str, Any]] = {
    "invoke": {"agent": 'CounterAgent("c1")', "method": "increment"},
    "get": {"agent": "X()"},
    "new": {"agent": "X()"},
    "revert": {"agent": "X()"},
    "list": {},
    "cancel": {"agent": "X()", "idempotency_key": "k"},
    "interrupt": {"agent": "X()"},
    "simulate_crash": {"agent": "X()"},
    "resume": {"agent": "X()"},
    "delete": {"agent": "X()"},
    "invocations": {"agent": "X()"},
    "oplog": {"agent": "X()"},
    "stream": {"agent": "X()"},
    "promise_complete": {"promise_id": "p-1"},
    "promise_get": {"promise_id": "p-1"},
    "promise_list": {},
    "status": {},
    "types": {},
    "dashboard": {},
    "reload": {},
    "stop": {},
}


def req(op: str, rid: Any = 7, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "id": rid, "op": op, **MINIMAL[op], **fields}


def refused(msg: Any, code: Code = Code.BAD_REQUEST) -> GolemError:
    with pytest.raises(GolemError) as info:
        validate_request(msg)
    assert info.value.code == code, info.value
    return info.value


def _documented_ops() -> list[str]:
    """The ops docs/protocol.md gives a section ('### `op`...' under '## Ops')."""
    ops_part = PROTOCOL_MD.read_text().split("\n## Ops\n", 1)[1].split("\n## ", 1)[0]
    headings = [line[4:].split(":", 1)[0] for line in ops_part.splitlines() if line.startswith("### ")]
    return sorted(op for h in headings for op in re.findall(r"`([a-z_]+)`", h))


def test_every_documented_op_is_known():
    assert PROTOCOL_VERSION == 1
    assert set(OPS) == set(MINIMAL)
    # Exactly the registry's ops (golemd/wire/ops/), each with its own section.
    assert _documented_ops() == sorted(OPS)


@pytest.mark.parametrize("op", sorted(MINIMAL))
def test_minimal_request_is_valid(op):
    msg = req(op)
    rid, got_op, got = validate_request(msg)
    assert (rid, got_op) == (7, op)
    assert got == msg


@pytest.mark.parametrize("op", sorted(MINIMAL))
def test_extra_field_is_refused(op):
    err = refused(req(op, bogus=1))
    assert "bogus" in err.message
    assert err.request_id == 7


@pytest.mark.parametrize(("op", "field"), [(op, f) for op, m in sorted(MINIMAL.items()) for f in m])
def test_missing_required_field_is_refused(op, field):
    msg = req(op)
    del msg[field]
    err = refused(msg)
    assert field in err.message
    assert err.request_id == 7


@pytest.mark.parametrize("fields", [
    {"args": [1, "a", None, [2], {"k": b"v"}]},
    {"idempotency_key": None},
    {"idempotency_key": "k"},
    {"idempotency_key": "k" * MAX_IDEMPOTENCY_KEY},
    {"idempotency_key": "é" * MAX_IDEMPOTENCY_KEY},
    {"mode": "await"},
    {"mode": "trigger"},
    {"schedule_at": 1_700_000_000},
    {"schedule_at": 1_700_000_000.5},
    {"schedule_at": None},
    {"timeout": 1},
    {"timeout": 0.001},
    {"timeout": None},
    {"stream": True},
    {"stream": False},
    {"args": [], "idempotency_key": "x", "mode": "trigger", "schedule_at": 0, "timeout": 5, "stream": False},
])
def test_invoke_optional_fields(fields):
    validate_request(req("invoke", **fields))


@pytest.mark.parametrize(("op", "fields"), [
    ("list", {"env": "dev", "type": "T", "status": "Idle"}),
    ("list", {"env": None, "type": None, "status": None}),
    ("list", {"filters": ["status = Idle", ["pending", ">", 0]], "limit": 5, "after": "A()"}),
    ("list", {"filters": []}),
    ("interrupt", {"recover": True}),
    ("interrupt", {"recover": False}),
    ("oplog", {"last": 0}),
    ("oplog", {"last": 10}),
    ("oplog", {"last": None}),
    ("oplog", {"from": 0, "query": ""}),
    ("oplog", {"from": 12, "query": "kind:failed", "last": 2}),
    ("oplog", {"from": None, "query": None}),
    ("stream", {"follow": True, "last": 3}),
    ("stream", {"last": None}),
])
def test_other_optional_fields(op, fields):
    validate_request(req(op, **fields))


@pytest.mark.parametrize(("op", "fields"), [
    ("invoke", {"agent": 1}),
    ("invoke", {"agent": None}),
    ("invoke", {"agent": b"X()"}),
    ("invoke", {"method": ["m"]}),
    ("invoke", {"args": "x"}),
    ("invoke", {"args": {"a": 1}}),
    ("invoke", {"args": (1,)}),
    ("invoke", {"idempotency_key": 5}),
    ("invoke", {"idempotency_key": b"k"}),
    ("invoke", {"mode": 1}),
    ("invoke", {"schedule_at": "soon"}),
    ("invoke", {"schedule_at": True}),      # bool where a number is expected
    ("invoke", {"timeout": "5"}),
    ("invoke", {"timeout": True}),          # bool where a number is expected
    ("invoke", {"stream": 1}),              # int where a bool is expected
    ("invoke", {"stream": "yes"}),
    ("get", {"agent": 7}),
    ("list", {"env": 1}),
    ("list", {"type": ["T"]}),
    ("list", {"status": True}),
    ("list", {"filters": "status = Idle"}),  # a list of filters, not one
    ("cancel", {"idempotency_key": None}),  # required here
    ("cancel", {"idempotency_key": 1}),
    ("interrupt", {"recover": 1}),          # int where a bool is expected
    ("interrupt", {"recover": "true"}),
    ("oplog", {"last": True}),              # bool where an int is expected
    ("oplog", {"last": 1.5}),
    ("oplog", {"last": "3"}),
    ("oplog", {"from": "3"}),
    ("oplog", {"from": True}),
    ("oplog", {"query": 1}),
    ("oplog", {"query": b"kind:failed"}),
    ("stream", {"follow": 0}),
    ("stream", {"last": False}),
])
def test_wrong_type_is_refused(op, fields):
    err = refused(req(op, **fields))
    (field,) = fields
    assert repr(field) in err.message
    assert err.request_id == 7


@pytest.mark.parametrize("mode", ["", "Await", "TRIGGER", "async", "await "])
def test_bad_mode(mode):
    assert "mode" in refused(req("invoke", mode=mode)).message


@pytest.mark.parametrize("key", ["", "k" * (MAX_IDEMPOTENCY_KEY + 1)])
def test_bad_idempotency_key_length(key):
    err = refused(req("invoke", idempotency_key=key))
    assert "idempotency key" in err.message


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, float("nan"), float("-inf")])
def test_non_positive_timeout(timeout):
    assert "timeout" in refused(req("invoke", timeout=timeout)).message


@pytest.mark.parametrize("op", ["oplog", "stream"])
def test_negative_last(op):
    err = refused(req(op, last=-1))
    assert "last" in err.message
    assert err.request_id == 7


def test_negative_from():
    err = refused(req("oplog", **{"from": -1}))
    assert "'from'" in err.message and err.request_id == 7


@pytest.mark.parametrize("op", ["nope", "", "INVOKE", None, 1, ["get"]])
def test_unknown_op(op):
    err = refused({"v": 1, "id": 3, "op": op, "agent": "X()"})
    assert "unknown op" in err.message
    assert "invoke" in err.message  # lists the known ones
    assert err.request_id == 3


def test_op_missing():
    err = refused({"v": 1, "id": 3})
    assert err.request_id == 3


@pytest.mark.parametrize("msg", [
    {"v": 1, "op": "status"},
    {"v": 1, "id": None, "op": "status"},
    {"v": 1, "id": "7", "op": "status"},
    {"v": 1, "id": 7.0, "op": "status"},
    {"v": 1, "id": True, "op": "status"},
    {"id": "x", "op": "status"},       # no id and no v: still BAD_REQUEST, id unknown
    {},
])
def test_missing_or_non_int_id(msg):
    err = refused(msg)
    assert err.request_id is None
    assert "id" in err.message


@pytest.mark.parametrize("rid", [0, -1, 2**63 - 1, 2**64 - 1])
def test_any_int_id_is_echoed(rid):
    assert validate_request(req("status", rid=rid))[0] == rid
    assert refused(req("status", rid=rid, bogus=1)).request_id == rid


def test_version_missing_is_bad_request():
    err = refused({"id": 4, "op": "status"}, Code.BAD_REQUEST)
    assert err.request_id == 4
    assert "'v'" in err.message


@pytest.mark.parametrize("v", [0, 2, -1, "1", None, [1], 1.5])
def test_version_wrong_is_unsupported(v):
    err = refused({"v": v, "id": 4, "op": "status"}, Code.UNSUPPORTED_VERSION)
    assert err.request_id == 4
    assert "1" in err.message


@pytest.mark.parametrize("v", [True, 1.0])
def test_version_must_be_the_int_one(v):
    with pytest.raises(GolemError):
        validate_request({"v": v, "id": 4, "op": "status"})


@pytest.mark.parametrize("msg", [[1, 2], "status", 7, None, b"\x81", (1,), 1.5])
def test_non_map_message(msg):
    err = refused(msg)
    assert err.request_id is None
    assert "map" in err.message


@pytest.mark.parametrize(("op", "field"), [
    ("invoke", "args"), ("invoke", "mode"), ("invoke", "stream"),
    ("interrupt", "recover"), ("stream", "follow"),
])
def test_optional_fields_may_be_nil(op, field):
    validate_request(req(op, **{field: None}))


# -- framing ------------------------------------------------------------------

def test_unpacker_splits_back_to_back_messages():
    u = make_unpacker()
    data = pack({"v": 1, "id": 1, "op": "status"}) + pack({"v": 1, "id": 2, "op": "types", "x": b"\x00"})
    # fed in small pieces
    for i in range(0, len(data), 3):
        u.feed(data[i:i + 3])
    assert list(u) == [{"v": 1, "id": 1, "op": "status"}, {"v": 1, "id": 2, "op": "types", "x": b"\x00"}]


def test_unpacker_default_limit_is_the_message_limit():
    assert MAX_MESSAGE_BYTES == 64 * 1024 * 1024
    u = make_unpacker()
    with pytest.raises(msgpack.BufferFull):
        u.feed(b"\x00" * (MAX_MESSAGE_BYTES + 1))


def test_unpacker_buffer_limit():
    u = make_unpacker(max_buffer_size=1024)
    u.feed(b"\xc0" * 1024)  # exactly the limit is fine
    with pytest.raises(msgpack.BufferFull):
        u.feed(b"\xc0")
    u = make_unpacker(max_buffer_size=1024)
    with pytest.raises(msgpack.BufferFull):
        u.feed(pack({"s": "x" * 2000}))


def test_unpacker_map_keys():
    data = pack({1: "a", "k": 2})
    strict = make_unpacker()
    strict.feed(data)
    with pytest.raises(ValueError):
        next(strict)
    loose = make_unpacker(strict_map_key=False)
    loose.feed(data)
    assert next(loose) == {1: "a", "k": 2}


def test_unpacker_decodes_str_and_bin():
    u = make_unpacker()
    u.feed(pack({"s": "é", "b": b"\xff"}))
    msg = next(u)
    assert msg == {"s": "é", "b": b"\xff"}
    assert isinstance(msg["s"], str) and isinstance(msg["b"], bytes)


# -- replies ------------------------------------------------------------------

def test_error_reply_shape():
    reply = error_reply(9, GolemError(Code.NOT_FOUND, "no invocation 'k'"))
    assert reply == {"id": 9, "error": {"code": "NOT_FOUND", "message": "no invocation 'k'"}}
    assert type(reply["error"]["code"]) is str
    assert error_reply(None, GolemError(Code.PROTOCOL_ERROR, "x")) == \
        {"id": None, "error": {"code": "PROTOCOL_ERROR", "message": "x"}}


def test_error_reply_with_details_goes_over_msgpack():
    details = {"type": "ValueError", "message": "bad", "traceback": "Traceback...\n"}
    reply = error_reply(2, GolemError(Code.INVOCATION_FAILED, "ValueError: bad", details))
    assert reply["error"]["details"] == details
    decoded = msgpack.unpackb(pack(reply), raw=False)
    assert decoded == {"id": 2, "error": {"code": "INVOCATION_FAILED", "message": "ValueError: bad",
                                          "details": details}}


def test_error_reply_from_validate_request():
    with pytest.raises(GolemError) as info:
        validate_request(req("get", rid=11, extra=True))
    reply = error_reply(info.value.request_id, info.value)
    assert reply["id"] == 11
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert "extra" in reply["error"]["message"]


# -- errors.py ------------------------------------------------------------------

def test_exit_status_contract():
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE) == (0, 1, 2, 3)
    usage = {Code.INVALID_AGENT_ID, Code.USAGE}
    for code in Code:
        want = 2 if code in usage else 3 if code == Code.DAEMON_UNREACHABLE else 1
        assert exit_status(code) == want, code
        assert exit_status(code.value) == want, code  # plain strings from the wire
    assert exit_status("SOMETHING_NEW") == 1


def test_golem_error_basics():
    e = GolemError(Code.TOO_LATE, "has already started")
    assert e.code is Code.TOO_LATE
    assert e.message == "has already started"
    assert e.details is None
    assert str(e) == "TOO_LATE: has already started"
    assert isinstance(e, Exception)
    # a known code given as a string becomes the enum; an unknown one is kept as it is
    assert GolemError("QUEUE_FULL", "m").code is Code.QUEUE_FULL
    odd = GolemError("FROM_THE_FUTURE", "m")
    assert odd.code == "FROM_THE_FUTURE"
    assert str(odd) == "FROM_THE_FUTURE: m"
    assert odd.to_wire() == {"code": "FROM_THE_FUTURE", "message": "m"}


@pytest.mark.parametrize("details", [None, {"type": "KeyError", "message": "'x'", "traceback": "tb"},
                                     {"nested": {"a": [1, 2]}}])
@pytest.mark.parametrize("code", list(Code))
def test_wire_round_trip(code, details):
    e = GolemError(code, f"message for {code}", details)
    wire = e.to_wire()
    assert wire["code"] == code.value and type(wire["code"]) is str
    assert ("details" in wire) == (details is not None)
    back = GolemError.from_wire(msgpack.unpackb(msgpack.packb(wire), raw=False))
    assert back.code == code
    assert back.message == e.message
    assert back.details == details
    assert str(back) == str(e)


def test_from_wire_tolerates_missing_fields():
    e = GolemError.from_wire({})
    assert e.code == Code.INTERNAL
    assert e.message == ""
    assert e.details is None


def _doc_table_codes() -> list[str]:
    text = PROTOCOL_MD.read_text()
    section = text.split("## Error codes", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    codes = []
    for line in section.splitlines():
        m = re.match(r"\|\s*`([A-Z_]+)`\s*\|", line)
        if m:
            codes.append(m.group(1))
    return codes


def test_every_documented_code_exists():
    codes = _doc_table_codes()
    assert len(codes) >= 20, codes
    assert len(set(codes)) == len(codes), "a code is listed twice"
    missing = [c for c in codes if c not in Code.__members__]
    assert not missing, f"docs/protocol.md lists codes golemd.model.errors.Code lacks: {missing}"


def test_every_daemon_code_is_documented():
    client_only = {"DAEMON_UNREACHABLE", "USAGE"}
    undocumented = set(Code.__members__) - client_only - set(_doc_table_codes())
    assert not undocumented


def test_codes_named_elsewhere_in_the_protocol_doc_exist():
    text = PROTOCOL_MD.read_text()
    paragraphs = re.findall(r"Errors:(.*?)(?:\n\n|\Z)", text, re.S)
    named = {code for p in paragraphs for code in re.findall(r"`([A-Z_]{3,})`", p)}
    assert {"INVALID_AGENT_ID", "TOO_LARGE", "TOO_LATE", "AGENT_NOT_FOUND"} <= named
    assert named <= set(Code.__members__)


@pytest.mark.parametrize("timeout", [2**64 - 1, 1e10, float("inf")])
def test_timeout_beyond_any_use(timeout):
    """The store keeps 64-bit integers: a bigger one must not get that far."""
    assert "timeout" in refused(req("invoke", timeout=timeout)).message


@pytest.mark.parametrize("at", [2**64 - 1, -(2**63), 1e12, float("inf"), float("nan")])
def test_schedule_at_beyond_any_time(at):
    assert "schedule_at" in refused(req("invoke", schedule_at=at, mode="trigger")).message


def test_pack_replaces_a_packer_grown_by_a_large_message():
    from golemd.wire import codec as protocol

    before = protocol._packer
    big = b"x" * (2 << 20)
    assert msgpack.unpackb(pack(big)) == big
    assert protocol._packer is not before  # its 2 MiB buffer went with it
    kept = protocol._packer
    assert msgpack.unpackb(pack({"a": 1})) == {"a": 1}
    assert protocol._packer is kept


def test_pack_called_while_packing_does_not_corrupt_the_outer_message():
    class Sneaky(dict):  # agent code that packs from inside a mapping's items()
        def items(self):  # type: ignore[override]
            pack(["inner"])
            return super().items()

    assert msgpack.unpackb(pack([Sneaky(a=1), "after"])) == [{"a": 1}, "after"]
