"""Filters of `agent list`, in Golem's syntax: `PROP OP VALUE`.

PROP is one of PROPS: `name` (the canonical agent ID), `type`, `env`,
`status`, `created_at` (Unix seconds) and `pending` (pending invocation
count); or `env.NAME`, the agent's environment variable NAME (`agent new
--env`, text; an agent without it matches no filter on it). OP is `=` or `==`, `!=`, `<`, `<=`, `>`, `>=` (Golem's words too:
`eq`, `ne`, `lt`, `le`, `gt`, `ge`, ...), and for the text properties
(`name`, `type`, `env`) `like` (VALUE occurs in it: Golem's `like`, a
substring test without wildcards), `notlike` and `startswith`. VALUE is the
rest of the text, spaces and quotes included.

Values: a `name` VALUE that is an agent ID in any spelling is compared in
its canonical form (for `=` and `!=` it must be one); `status` is an agent
status in any case, ordered as Golem orders them (STATUS_ORDER);
`created_at` is Unix seconds or an ISO-8601 time with a zone; `pending` is
a whole number. Text is compared by code point, as `list` orders agent IDs.

Pure: the daemon evaluates the `filters` of the `list` op with it
(golemd.driver.listing), and golemctl refuses a bad --filter with it before
it connects. `re` and `operator` only at import; `datetime` when a time is
parsed.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from golemd.model.agent_id import excerpt, parse_agent_id
from golemd.model.errors import Code, GolemError
from golemd.model.states import AgentStatus

TEXT, STATUS, TIME, COUNT = "text", "status", "time", "count"

PROPS: dict[str, str] = {"name": TEXT, "type": TEXT, "env": TEXT, "status": STATUS,
                         "created_at": TIME, "pending": COUNT}
"""Each property and the kind of its values."""

# Other spellings of a property: Golem's, and the metadata's field names.
_ALIASES = {"createdAt": "created_at", "agent_id": "name", "pending_invocation_count": "pending"}

# Every spelling of an operator (Golem's FromStr, case-insensitive) -> its one form.
_OPERATORS = {
    "=": "==", "==": "==", "eq": "==", "equal": "==",
    "!=": "!=", "ne": "!=", "notequal": "!=",
    "<": "<", "lt": "<", "less": "<",
    "<=": "<=", "le": "<=", "lessequal": "<=",
    ">": ">", "gt": ">", "greater": ">",
    ">=": ">=", "ge": ">=", "greaterequal": ">=",
    "like": "like", "notlike": "notlike", "startswith": "startswith",
}
TEXT_OPERATORS = frozenset({"like", "notlike", "startswith"})
_SHOWN_OPERATORS = "=, ==, !=, <, <=, >, >=, like, notlike, startswith"

_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
    "like": lambda fact, value: value in fact,
    "notlike": lambda fact, value: value not in fact,
    "startswith": lambda fact, value: fact.startswith(value),
}

STATUS_ORDER: tuple[AgentStatus, ...] = (
    AgentStatus.RUNNING, AgentStatus.IDLE, AgentStatus.SUSPENDED, AgentStatus.INTERRUPTED,
    AgentStatus.RETRYING, AgentStatus.FAILED)
"""How `<` and `>` order statuses: Golem's order (its `Exited` has no counterpart)."""
_RANK: dict[str, int] = {s.value: i for i, s in enumerate(STATUS_ORDER)}
_BY_LOWER: dict[str, str] = {s.value.lower(): s.value for s in STATUS_ORDER}

MAX_FILTERS = 64
MAX_FILTER_LENGTH = 65 * 1024  # an agent ID (64 KiB) and room for PROP OP

_FILTER_RE = re.compile(
    r"\s*(?P<prop>[A-Za-z_][A-Za-z0-9_.]*)"
    r"(?:\s*(?P<sym>==|!=|<=|>=|=|<|>)|\s+(?P<word>[A-Za-z]+)(?=\s|\Z))"
    r"\s*(?P<value>.*?)\s*\Z", re.S)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


class Filter:
    """One `PROP OP VALUE`, its VALUE converted; `matches(fact)` tests the
    agent's value of PROP (its canonical ID, status, created_at, ...)."""

    __slots__ = ("prop", "op", "value", "text", "_test")

    def __init__(self, prop: str, op: str, value: str | float, text: str) -> None:
        self.prop = prop
        self.op = op
        self.value = value  # a status is kept as its rank in STATUS_ORDER
        self.text = text
        self._test = _TESTS[op]

    def matches(self, fact: Any) -> bool:
        if fact is None:
            return False  # an environment variable the agent does not have
        if self.prop == "status":
            fact = _RANK[fact]
        return self._test(fact, self.value)

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def parse_filter(text: str, what: str = "filter", code: Code = Code.BAD_REQUEST) -> Filter:
    """A filter from its text, `PROP OP VALUE`; GolemError(code) naming it
    (as `what TEXT: why`) and what is wrong."""
    shown = excerpt(text)

    def fail(why: str) -> GolemError:
        return GolemError(code, f"{what} {shown}: {why}")

    if len(text) > MAX_FILTER_LENGTH:
        raise fail(f"longer than {MAX_FILTER_LENGTH} characters")
    m = _FILTER_RE.match(text)
    if m is None:
        raise fail("expected PROP OP VALUE, such as 'status = Idle' or 'pending > 0'")
    prop = _property(m["prop"], fail)
    op = _operator(m["sym"] or m["word"], prop, fail)
    if not m["value"]:
        raise fail(f"no VALUE after {m['sym'] or m['word']!r}")
    return Filter(prop, op, _value(prop, op, m["value"], fail), text)


def make_filter(prop: str, op: str, value: object, what: str = "filter",
                code: Code = Code.BAD_REQUEST) -> Filter:
    """A filter from its parts, [PROP, OP, VALUE] as the wire may carry it:
    VALUE a string (read as in the text form) or, for `created_at` and
    `pending`, a number."""
    text = f"{prop} {op} {value!r}" if isinstance(value, str) else f"{prop} {op} {value}"
    shown = excerpt(text)

    def fail(why: str) -> GolemError:
        return GolemError(code, f"{what} {shown}: {why}")

    prop = _property(prop, fail)
    op = _operator(op, prop, fail)
    if isinstance(value, str):
        if len(value) > MAX_FILTER_LENGTH:
            raise fail(f"the value is longer than {MAX_FILTER_LENGTH} characters")
        if not value.strip():
            raise fail("the value is empty")
        return Filter(prop, op, _value(prop, op, value.strip(), fail), text)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and kind_of(prop) in (TIME, COUNT):
        return Filter(prop, op, _number(prop, value, fail), text)
    kind = "a string" if kind_of(prop) in (TEXT, STATUS) else "a number or a string"
    raise fail(f"the value of {prop} must be {kind}")


def parse_filters(items: object, what: str = "filter", code: Code = Code.BAD_REQUEST) -> list[Filter]:
    """The `filters` of a `list` request: each a string `PROP OP VALUE` or
    an array [PROP, OP, VALUE]. None: no filter."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise GolemError(code, f"the {what}s must be a list")
    if len(items) > MAX_FILTERS:
        raise GolemError(code, f"at most {MAX_FILTERS} {what}s, got {len(items)}")
    out = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            out.append(parse_filter(item, what, code))
        elif isinstance(item, (list, tuple)) and len(item) == 3 \
                and isinstance(item[0], str) and isinstance(item[1], str):
            out.append(make_filter(item[0], item[1], item[2], what, code))
        else:
            raise GolemError(code, f"{what} {i} must be a string 'PROP OP VALUE' or an array "
                                   f"[PROP, OP, VALUE] of two strings and a value, got {item!r:.200}")
    return out


# -- the parts ---------------------------------------------------------------

Fail = Callable[[str], GolemError]


def kind_of(prop: str) -> str:
    """The kind of a property's values: PROPS's, or text for `env.NAME`."""
    return PROPS.get(prop, TEXT)


def _property(name: str, fail: Fail) -> str:
    prop = _ALIASES.get(name, name)
    if prop in PROPS:
        return prop
    if name.startswith("env.") and len(name) > 4:
        return name  # the agent's environment variable (agent new --env)
    known = ", ".join(PROPS)
    raise fail(f"unknown property {excerpt(name, 80)} (properties: {known}, env.NAME)")


def _operator(word: str, prop: str, fail: Fail) -> str:
    op = _OPERATORS.get(word.lower())
    if op is None:
        raise fail(f"{excerpt(word, 80)} is not an operator ({_SHOWN_OPERATORS})")
    if op in TEXT_OPERATORS and kind_of(prop) != TEXT:
        raise fail(f"{excerpt(word, 80)} applies to name, type and env, not to {prop}")
    return op


def _value(prop: str, op: str, text: str, fail: Fail) -> str | float:
    kind = kind_of(prop)
    if kind == STATUS:
        status = _BY_LOWER.get(text.lower())
        if status is None:
            names = ", ".join(s.value for s in STATUS_ORDER)
            raise fail(f"{excerpt(text, 80)} is not an agent status ({names})")
        return _RANK[status]
    if kind == COUNT:
        if not text.isascii() or not text.isdigit():
            raise fail(f"pending is a count of invocations: {excerpt(text, 80)} is not a whole number")
        return int(text)
    if kind == TIME:
        return _time(text, fail)
    if prop == "name":
        try:
            return parse_agent_id(text).canonical
        except GolemError as e:
            if op in ("==", "!="):
                raise fail(f"comparing name with = or != needs an agent ID: {e.message}") from None
    return text


def _time(text: str, fail: Fail) -> float:
    if _NUMBER_RE.match(text):
        return _number("created_at", float(text), fail)
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{excerpt(text, 80)} is neither Unix seconds nor an ISO-8601 time "
                   "(2025-01-01T00:00:00Z)") from None
    if when.tzinfo is None:
        raise fail(f"{excerpt(text, 80)} has no time zone; add Z or an offset (2025-01-01T00:00:00Z)")
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        raise fail(f"{excerpt(text, 80)} is out of range") from None


def _number(prop: str, value: float, fail: Fail) -> float:
    if prop == "pending":
        if not isinstance(value, int) or value < 0:
            raise fail("pending is a count of invocations: a whole number, not negative")
        return value
    if value != value or value in (float("inf"), float("-inf")):
        raise fail("created_at must be a finite number of Unix seconds")
    return float(value)
