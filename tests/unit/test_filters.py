"""golemd.model.filters: `agent list --filter "PROP OP VALUE"` in Golem's
syntax, parsed and tested against an agent's facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from golemd.model.errors import Code, GolemError
from golemd.model.filters import (
    MAX_FILTERS,
    PROPS,
    STATUS_ORDER,
    Filter,
    make_filter,
    parse_filter,
    parse_filters,
)
from golemd.model.states import AgentStatus

# One agent's facts, as golemd.driver.listing reads them.
AGENT: dict[str, Any] = {"name": 'dev/CounterAgent("c1", 2)', "type": "CounterAgent", "env": "dev",
                         "status": "Idle", "created_at": 1_750_000_000.5, "pending": 3}


def holds(text: str, facts: dict[str, Any] = AGENT) -> bool:
    f = parse_filter(text)
    return f.matches(facts[f.prop])


def refused(text: str, code: Code = Code.BAD_REQUEST) -> str:
    with pytest.raises(GolemError) as info:
        parse_filter(text, "--filter", code)
    assert info.value.code == code
    assert info.value.message.startswith(f"--filter {text[:200]!r}"), info.value.message
    return info.value.message


@pytest.mark.parametrize("text", [
    "status = Idle", "status == Idle", "status = idle", "status=IDLE", "status eq Idle",
    "status != Running", "status NE Running", "status > Running", "status <= Suspended",
    "status < Failed", "status >= Idle",
    'name = dev/CounterAgent("c1", 2)', "name = dev/CounterAgent( 'c1',2 )",  # any spelling
    "name == dev/CounterAgent('c1', 2)", "name != CounterAgent('c1', 2)",  # default env: another agent
    'name like "c1"', "name like Counter", "name notlike Echo", "name startswith dev/",
    "name LIKE Agent(", "name startswith dev/CounterAgent('c1', 2)",  # an ID value: canonical form
    "name > dev/A()", "name < e",
    "type = CounterAgent", "type != EchoAgent", "type like ounter", "type startswith Counter",
    "type notlike Echo", "type < D",
    "env = dev", "env != default", "env like de", "env startswith d", "env notlike prod",
    "pending = 3", "pending > 2", "pending >= 3", "pending < 4", "pending <= 3", "pending != 0",
    "pending gt 0", "pending_invocation_count = 3",
    "created_at > 1750000000", "created_at < 1750000001", "created_at >= 1750000000.5",
    "created_at = 1750000000.5", "created_at > 1.7e9", "createdAt > 2025-01-01T00:00:00Z",
    "created_at > 2025-06-15T15:06:40+00:00", "created_at < 2025-06-15T17:06:41+02:00",
    "created_at <= 2025-06-15T15:06:40.500Z",
    "agent_id startswith dev/",
    "  status   =   Idle  ",
])
def test_holds(text):
    assert holds(text)


@pytest.mark.parametrize("text", [
    "status = Running", "status != Idle", "status < Idle", "status > Suspended",
    "name = CounterAgent('c1', 2)",  # the default environment's agent, not dev's
    "name like c2", "name notlike c1", "name startswith Counter", "name like 'c1'",
    "type = counteragent", "type like Echo", "env = default", "env startswith x",
    "pending = 0", "pending > 3", "pending < 3", "created_at < 1750000000",
    "created_at > 2025-06-15T15:06:41Z",
])
def test_does_not_hold(text):
    assert not holds(text)


def test_status_order_is_golems_and_covers_every_status():
    assert set(STATUS_ORDER) == set(AgentStatus)
    assert [s.value for s in STATUS_ORDER] == ["Running", "Idle", "Suspended", "Interrupted",
                                               "Retrying", "Failed"]
    for status in AgentStatus:  # an AgentStatus (a str) is a fact as good as its value
        assert parse_filter(f"status = {status.value}").matches(status)


def test_text_is_compared_by_code_point_as_the_list_is_ordered():
    ids = sorted(['CounterAgent("b")', 'CounterAgent("a")', "EchoAgent()", 'dev/X("é")', "Zed()"])
    f = parse_filter('name > CounterAgent("a")')
    assert [i for i in ids if f.matches(i)] == ids[1:]


def test_the_value_is_the_rest_of_the_text():
    f = parse_filter('name like  "a b"  ')
    assert (f.prop, f.op, f.value) == ("name", "like", '"a b"')
    assert f.matches('T("a b")') and not f.matches('T("a", "b")')
    assert parse_filter("type = A = B").value == "A = B"


@pytest.mark.parametrize(("text", "hint"), [
    ("", "expected PROP OP VALUE"),
    ("   ", "expected PROP OP VALUE"),
    ("status", "expected PROP OP VALUE"),
    ("= Idle", "expected PROP OP VALUE"),
    ("'status' = Idle", "expected PROP OP VALUE"),
    ("status Idle", "'Idle' is not an operator"),
    ("status is Idle", "'is' is not an operator (=, ==, !=, <, <=, >, >=, like, notlike, startswith)"),
    ("status =", "no VALUE after '='"),
    ("name like", "no VALUE after 'like'"),
    ("name like   ", "no VALUE after 'like'"),
    ("revision >= 2", "unknown property 'revision' (properties: name, type, env, status, created_at, pending, "
                      "env.NAME)"),
    ("mode = durable", "unknown property 'mode'"),
    ("Status = Idle", "unknown property 'Status'"),
    ("env. = test", "unknown property 'env.'"),
    ("status = Bogus", "'Bogus' is not an agent status (Running, Idle, Suspended, Interrupted, Retrying, Failed)"),
    ("status like Idle", "'like' applies to name, type and env, not to status"),
    ("pending startswith 1", "'startswith' applies to name, type and env, not to pending"),
    ("created_at notlike 5", "not to created_at"),
    ("pending > x", "'x' is not a whole number"),
    ("pending > -1", "'-1' is not a whole number"),
    ("pending > 1.5", "'1.5' is not a whole number"),
    ("pending > ٣", "is not a whole number"),  # a digit, but not an ASCII one
    ("created_at > yesterday", "neither Unix seconds nor an ISO-8601 time"),
    ("created_at > 2025-01-01", "has no time zone; add Z or an offset"),
    ("created_at > 2025-01-01T00:00:00", "has no time zone"),
    ("created_at > 1e999", "finite"),
    ("created_at > nan", "neither Unix seconds"),
    ("name = foo", "comparing name with = or != needs an agent ID: invalid agent ID 'foo'"),
    ("name != app/dev/X()", "golemd has environments and no apps"),
])
def test_refused_with_a_pointed_message(text, hint):
    assert hint in refused(text)


def test_refusals_take_the_callers_code_and_name():
    assert refused("status = Nope", Code.USAGE)
    with pytest.raises(GolemError) as info:
        parse_filter("nope = 1")
    assert info.value.code == Code.BAD_REQUEST and info.value.message.startswith("filter 'nope = 1': ")


def test_long_input_is_refused_with_a_bounded_message():
    for text in ("name like " + "x" * 100_000, "x" * 300 + " = 1", "status = " + "x" * 10_000):
        with pytest.raises(GolemError) as info:
            parse_filter(text)
        assert len(info.value.message) < 700


def test_time_values_agree():
    at = datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    assert parse_filter(f"created_at > {at.isoformat()}").value == at.timestamp()
    assert parse_filter("created_at > 2025-06-15T15:06:40Z").value == at.timestamp()
    assert parse_filter(f"created_at > {int(at.timestamp())}").value == at.timestamp()


# -- the wire's forms -----------------------------------------------------------

def test_triples_read_as_the_text_form():
    for prop, op, value, text in [("status", "=", "idle", "status = idle"),
                                  ("name", "startswith", "dev/", "name startswith dev/"),
                                  ("pending", ">", "2", "pending > 2"),
                                  ("created_at", "<", "2030-01-01T00:00:00Z", "created_at < 2030-01-01T00:00:00Z")]:
        a, b = make_filter(prop, op, value), parse_filter(text)
        assert (a.prop, a.op, a.value) == (b.prop, b.op, b.value)
    assert make_filter("name", "like", " a b ").value == "a b"


def test_triples_take_numbers_for_numbers():
    assert make_filter("pending", ">=", 2).matches(3)
    assert make_filter("created_at", "<", 1_750_000_001).matches(1_750_000_000.5)
    assert make_filter("created_at", ">", 1.5).value == 1.5


@pytest.mark.parametrize(("prop", "op", "value", "hint"), [
    ("status", "=", 1, "the value of status must be a string"),
    ("name", "=", 5, "the value of name must be a string"),
    ("pending", ">", True, "must be a number or a string"),
    ("pending", ">", None, "must be a number or a string"),
    ("pending", ">", -1, "not negative"),
    ("pending", ">", 1.5, "whole number"),
    ("created_at", ">", float("inf"), "finite"),
    ("created_at", ">", [1], "must be a number or a string"),
    ("pending", ">", "", "the value is empty"),
    ("nope", "=", "x", "unknown property 'nope'"),
    ("status", "~", "Idle", "'~' is not an operator"),
])
def test_bad_triples(prop, op, value, hint):
    with pytest.raises(GolemError) as info:
        make_filter(prop, op, value)
    assert info.value.code == Code.BAD_REQUEST and hint in info.value.message


def test_parse_filters():
    assert parse_filters(None) == []
    fs = parse_filters(["status = Idle", ["pending", ">", 2], ("type", "like", "Counter")])
    assert [(f.prop, f.op) for f in fs] == [("status", "=="), ("pending", ">"), ("type", "like")]
    assert all(isinstance(f, Filter) for f in fs)
    for bad, hint in [("status = Idle", "must be a list"), ([1], "filter 1 must be a string"),
                      (["status = Idle", ["a", "b"]], "filter 2 must be"),
                      ([[1, "=", 2]], "filter 1 must be"),
                      (["x"] * (MAX_FILTERS + 1), f"at most {MAX_FILTERS} filters")]:
        with pytest.raises(GolemError) as info:
            parse_filters(bad)
        assert info.value.code == Code.BAD_REQUEST and hint in info.value.message, info.value.message


def test_every_property_is_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for prop in PROPS:
        assert f"`{prop}`" in text


def test_every_property_takes_every_comparison():
    sample = {"name": "X()", "type": "X", "env": "dev", "status": "Idle", "created_at": "0",
              "pending": "0"}
    assert set(sample) == set(PROPS)
    for prop, value in sample.items():
        for op in ("=", "==", "!=", "<", "<=", ">", ">="):
            assert parse_filter(f"{prop} {op} {value}").prop == prop


def test_an_environment_variable_is_a_text_property():
    f = parse_filter("env.MODE = test")
    assert f.prop == "env.MODE" and f.matches("test") and not f.matches("prod")
    assert not f.matches(None)  # an agent without it
    assert parse_filter("env.MODE startswith te").matches("test")
