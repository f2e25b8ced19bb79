"""Parse and format agent IDs: `[ENV/]TypeName(arg, ...)`.

Arguments are Python literals, read with `ast` and never evaluated. The
canonical form uses double-quoted strings and ", " separators; the default
environment is left out of it. `ast` is imported lazily so that golemctl,
which uses this module, starts fast.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

from golemd.model.errors import Code, GolemError

if TYPE_CHECKING:
    import ast
    from collections.abc import Callable

    # Builds the error for one bad value from why it is bad ("is not a literal").
    Fail = Callable[[str], Exception]

DEFAULT_ENV = "default"
MAX_ID_LENGTH = 64 * 1024
MAX_LITERAL_LENGTH = 1024 * 1024
_ENV_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class AgentId(NamedTuple):
    # A NamedTuple, not a dataclass: golemctl imports this module, and building
    # a dataclass costs a millisecond of its start-up.
    env: str
    type: str
    args: tuple[Any, ...]
    canonical: str

    def __str__(self) -> str:
        return self.canonical


# Said of an ID of a shape golemd does not have, such as Golem's APP/ENV/Type(...).
_SHAPE = ("golemd has environments and no apps or components: an agent ID is "
          "[ENV/]TypeName(args...), such as dev/CounterAgent(\"c1\")")


def excerpt(text: str, limit: int = 200) -> str:
    """`text` quoted for an error message, cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _bad(text: str, why: str) -> GolemError:
    return GolemError(Code.INVALID_AGENT_ID, f"invalid agent ID {excerpt(text)}: {why}")


def parse_agent_id(text: str) -> AgentId:
    """Parse an agent ID; raise GolemError(INVALID_AGENT_ID) saying what is wrong."""
    if not isinstance(text, str):
        raise GolemError(Code.INVALID_AGENT_ID, "the agent ID must be a string")
    if len(text) > MAX_ID_LENGTH:
        raise _bad(text, f"longer than {MAX_ID_LENGTH} characters")
    stripped = text.strip()
    paren = stripped.find("(")
    if paren < 0:
        raise _bad(text, "expected [ENV/]TypeName(args...), e.g. CounterAgent(\"c1\") or "
                         "dev/CounterAgent(\"c1\"); a singleton is written TypeName()")
    head, body = stripped[:paren], stripped[paren:]
    env = DEFAULT_ENV
    if head.count("/") > 1:
        prefix = head.rpartition("/")[0]
        raise _bad(text, f"{excerpt(prefix, 80)} is not an environment (APP/ENV/ as in Golem?); {_SHAPE}")
    if "/" in head:
        env, _, head = head.partition("/")
        if not _ENV_RE.match(env):
            raise _bad(text, f"environment {excerpt(env, 80)} must match [A-Za-z0-9_-]+; {_SHAPE}")
    type_name = head.strip()
    if not _TYPE_RE.match(type_name):
        raise _bad(text, f"type name {excerpt(type_name, 80)} is not a Python identifier "
                         f"(the agent's class name); {_SHAPE}")
    if not body.endswith(")"):
        raise _bad(text, "missing closing ')'")
    args = _parse_call_args(text, body)
    return make_agent_id(env, type_name, args)


def make_agent_id(env: str, type_name: str, args: tuple[Any, ...] | list[Any]) -> AgentId:
    args = tuple(args)
    inner = ", ".join(format_literal(a) for a in args)
    prefix = "" if env == DEFAULT_ENV else f"{env}/"
    return AgentId(env, type_name, args, f"{prefix}{type_name}({inner})")


def _parse_call_args(text: str, body: str) -> tuple[Any, ...]:
    import ast

    try:
        tree = ast.parse("_" + body, mode="eval")
    except SyntaxError as e:
        col = (e.offset or 1) - 1
        raise _bad(text, f"the arguments are not Python literals ({e.msg} at column {col})") from None
    except (RecursionError, MemoryError, ValueError):
        raise _bad(text, "the arguments are nested too deeply") from None
    if "#" in body and _has_comment("_" + body):
        raise _bad(text, "comments are not allowed")
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise _bad(text, "expected TypeName(args...)")
    if call.keywords:
        raise _bad(text, "keyword arguments are not allowed; give the arguments by position")
    out: list[Any] = []
    for i, node in enumerate(call.args, 1):
        if isinstance(node, ast.Starred):
            raise _bad(text, f"argument {i} uses *, which is not a literal")
        out.append(_literal(node, _bad_argument(text, i)))
    return tuple(out)


def _has_comment(source: str) -> bool:
    """Whether Python source that parses holds a comment: in `T(1)#)` one
    hides the closing parenthesis the ID was checked to end with."""
    import io
    import tokenize

    try:
        return any(tok.type == tokenize.COMMENT
                   for tok in tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return False  # it parsed: what is wrong with it the literal checks tell


def _bad_argument(text: str, i: int) -> Fail:
    return lambda why: _bad(text, f"argument {i} {why}")


def _literal(node: ast.expr, fail: Fail) -> Any:
    import ast

    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise fail("is not a literal (strings must be quoted; names and calls are not allowed)") from None
    except (RecursionError, MemoryError):
        raise fail("is nested too deeply") from None
    check_wire_value(value, fail)
    return value


def check_wire_value(value: object, fail: Fail, depth: int = 0) -> None:
    """Refuse what msgpack cannot carry (sets, complex, ints over 64 bits),
    or carries only one way (a tuple as a dict key)."""
    if depth > 100:
        raise fail("is nested too deeply")
    if value is None or isinstance(value, (bool, bytes)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise fail("is not a finite number")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise fail("has a string that is not valid Unicode (a lone surrogate)") from None
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise fail("is an integer outside the 64-bit range")
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            check_wire_value(v, fail, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, tuple):
                # It travels as an array, which a Python decoder (the daemon's,
                # a worker's, golemctl's) cannot make a key of: it refuses the
                # whole message.
                raise fail("has a tuple as a dict key, which msgpack cannot carry "
                           "(use a str, number, bool, None or bytes)")
            check_wire_value(k, fail, depth + 1)
            check_wire_value(v, fail, depth + 1)
        return
    raise fail(f"has a {type(value).__name__}, which cannot be sent (use a list, dict, str, number, bool or None)")


def parse_literal(text: str, what: str = "argument") -> Any:
    """Parse one command-line literal; raise GolemError(USAGE) on anything else."""
    import ast

    def fail(why: str) -> GolemError:
        shown = text if len(text) <= 80 else text[:80] + "..."
        return GolemError(Code.USAGE, f"{what} {shown!r} {why}")

    if len(text) > MAX_LITERAL_LENGTH:
        raise fail(f"is longer than {MAX_LITERAL_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise fail("is not a Python literal (quote strings: '\"hello\"')") from None
    except (RecursionError, MemoryError, ValueError):
        raise fail("is nested too deeply") from None
    return _literal(tree.body, fail)


# What json.dumps(s, ensure_ascii=False) escapes, and how (its ESCAPE and
# ESCAPE_DCT). Canonical IDs are stored and compared, so this must stay
# exactly json's output; tests/unit/test_fuzz.py holds it to that. Not json
# itself: golemctl renders IDs with this and json costs 1.5 ms to import.
_ESCAPE = re.compile(r'[\x00-\x1f\\"\b\f\n\r\t]')
_ESCAPE_DCT = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
for _i in range(0x20):
    _ESCAPE_DCT.setdefault(chr(_i), f"\\u{_i:04x}")


def quote(s: str) -> str:
    """A string as a JSON string literal, non-ASCII kept (json.dumps(s, ensure_ascii=False))."""
    return '"' + _ESCAPE.sub(lambda m: _ESCAPE_DCT[m.group(0)], s) + '"'


def format_literal(value: object) -> str:
    """Canonical text of a literal: double-quoted strings, ", " separators."""
    if isinstance(value, str):
        return quote(value)
    if value is None or isinstance(value, (bool, int, float, bytes)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        if len(value) == 1:
            return "(" + format_literal(value[0]) + ",)"
        return "(" + ", ".join(format_literal(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{format_literal(k)}: {format_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)
