"""`types`: the loaded agent types.

Request: no fields.

Success: `{"types": [TYPE, ...]}` sorted by name, TYPE = `{"name", "module",
"durable" (bool), "memory_limit_mb" (int or nil: `@agent(memory_limit_mb=)`),
"cpu_limit" (number or nil: `@agent(cpu_limit=)`, CPU seconds per
invocation), "doc" (str or nil), "constructor": SIG, "methods":
[{"name", "doc", "timeout", ...SIG}]}` with SIG = `{"signature": "(x: int)",
"params": [{"name", "kind", "annotation" (str or nil), "has_default"}]}`.
A method's `timeout` (number or nil) is its `@timeout`, else its type's
`@agent(timeout=...)`; `kind` is Python's name of the parameter's kind
("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL",
"KEYWORD_ONLY", "VAR_KEYWORD").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAPS, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {}
MUTATING = False
_SHOWN = ("name", "module", "durable", "memory_limit_mb", "cpu_limit", "doc", "constructor", "methods")


def client(self: Caller) -> Any:
    """The loaded agent types and their methods."""
    return self.call(Call("types", {}, "types", MAPS))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    types = d.supervisor.types
    return {"types": [{k: types[name][k] for k in _SHOWN} for name in sorted(types)]}
