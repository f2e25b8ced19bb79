"""The operations of the client protocol, one module per op (as circus keeps
one command per file).

Each module `golemd/wire/ops/NAME.py` is the whole definition of the op NAME
(`NAME_.py` where NAME is a builtin's name, as `list`):

- its docstring: the spec (request fields, success reply, events, errors),
  the same as the op's section of docs/protocol.md;
- `FIELDS`: {field: (types, required)}, what `validate_request` checks
  (golemd.wire.ops.registry); an optional `check(msg) -> str | None` for what
  types cannot say (ranges, enumerations): the BAD_REQUEST message, or None;
- `MUTATING`: whether the op changes something (such requests are logged
  with who sent them);
- the client half, `client(self, ...)`: it becomes the method NAME of
  golemctl's Client and AsyncClient (`self` is the client), with that
  signature and docstring. It builds the request as a `Call` (below) that
  also says which reply field to return and its shape, and returns
  `self.call(call)` (or `self.run(steps)` when one call needs several
  requests). An op whose reply may take arbitrarily long defines
  `no_reply_deadline(fields) -> bool`;
- the daemon half, `async handle(daemon, req, emit) -> reply fields`, given
  the daemon as context.Daemon describes it, the validated request and a
  callback for event messages; it raises GolemError to refuse. `invoke` has
  `handle = None`: golemd.server.connection answers it through callbacks.

To add an op: write its module here (the registry finds it: every module in
this package is an op except those in `_NOT_OPS`), give it a section in
docs/protocol.md, and give tests/unit/test_ops.py an example of its request
and of its client call (FULL, CLIENT): that test checks the module against
the docs and its two halves against each other. Nothing else changes: the
daemon dispatches through the registry and both clients get the method.

An op module imports only golemd.model, this package and other op modules
(context.py only under TYPE_CHECKING), never the server, driver, host or
daemon: golemctl imports these modules, and must start fast and stay out of
the daemon. asyncio and other heavy modules are imported inside `handle`.

This package itself is cheap to import (a directory listing and the helpers
every op uses, below); golemctl loads one op module when its method is first
used, the daemon all of them through golemd.wire.ops.registry.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from golemd.model.errors import Code, GolemError

PROTOCOL_VERSION = 1
"""The `v` of every request."""

# Modules of this package that are not ops.
_NOT_OPS = frozenset({"context", "registry"})


def _discover() -> dict[str, str]:
    """op name -> its module's name: NAME.py, or NAME_.py where a module
    named NAME would shadow a builtin in this package (list_.py)."""
    found = {}
    for entry in os.listdir(os.path.dirname(__file__)):
        stem, dot, ext = entry.partition(".")
        if dot and ext == "py" and stem.isidentifier() and not stem.startswith("_") \
                and stem not in _NOT_OPS:
            found[stem[:-1] if stem.endswith("_") else stem] = stem
    return found


_MODULES = _discover()
NAMES: tuple[str, ...] = tuple(sorted(_MODULES))
"""Every op's name, sorted."""


def load(name: str) -> ModuleType:
    """The module of op `name` (KeyError if there is no such op)."""
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


# --- what the op modules share ------------------------------------------------

NIL = type(None)
"""In a field's types: the field may be nil (for an optional field, nil is the same as absent)."""

MAP = "map"
"""A Call's shape: the value it returns must be a map."""
MAPS = "maps"
"""A Call's shape: the value it returns must be a list of maps."""


class Call(NamedTuple):
    """One request as a client half builds it: the op, its fields (None
    values are left out on the wire), the reply field to return (None: the
    whole reply, without `id`) and that value's shape (None, MAP or MAPS:
    anything else is a PROTOCOL_ERROR)."""

    op: str
    fields: dict[str, Any]
    unwrap: str | None = None
    shape: str | None = None


def protocol_error(message: str) -> GolemError:
    return GolemError(Code.PROTOCOL_ERROR, message)


def unwrap(call: Call, reply: dict[str, Any]) -> Any:
    """The part of a success reply `call` asks for, checked against its shape."""
    if call.unwrap is None:
        value: Any = reply
    elif call.unwrap in reply:
        value = reply[call.unwrap]
    else:
        raise protocol_error(f"golemd's reply to {call.op!r} lacks {call.unwrap!r}")
    if call.shape == MAP:
        return as_map(call, value)
    if call.shape == MAPS:
        return as_maps(call, value)
    return value


def as_map(call: Call, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise protocol_error(f"golemd's reply to {call.op!r} is not a map: {value!r:.200}")
    return value


def as_maps(call: Call, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise protocol_error(f"golemd's reply to {call.op!r} is not a list of maps: {value!r:.200}")
    return value


def non_negative(*fields: str) -> Callable[[dict[str, Any]], str | None]:
    """A `check` refusing a negative value in any of `fields` (ints by FIELDS)."""

    def check(msg: dict[str, Any]) -> str | None:
        for field in fields:
            value = msg.get(field)
            if value is not None and value < 0:
                return f"field {field!r} must not be negative"
        return None

    return check
