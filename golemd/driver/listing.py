"""The `list` op's work: the agents that pass its filters, in agent ID order,
a page at a time.

Filters (golemd.model.filters) are tested on facts the supervisor holds
(ID, type, env, status, created_at, pending count), never on the metadata
map: only the agents of the page get one, so a filter that passes few of
10,000 agents costs a pass over cheap attributes, and no psutil call.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from golemd.driver.agent import Agent
    from golemd.model.filters import Filter

# A filter's property -> its value on an agent.
FACTS: dict[str, Callable[[Agent], Any]] = {
    "name": lambda a: a.name,
    "type": lambda a: a.id.type,
    "env": lambda a: a.id.env,
    "status": lambda a: a.engine.status.value,
    "created_at": lambda a: a.engine.created_at,
    "pending": lambda a: a.engine.pending_count,
}


def select(agents: Mapping[str, Agent], env: str | None, type_: str | None, status: str | None,
           filters: Sequence[Filter] = (), limit: int | None = None,
           after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The metadata of the agents that pass every filter (and `env`, `type_`
    and `status`, exact matches, status in any case), ordered by ID, after
    `after`, at most `limit` of them: (page, cursor of the next page or None)."""
    names = _candidates(agents, filters)
    start = 0 if after is None else bisect_right(names, after)
    passes = _test(env, type_, status, filters)
    out: list[dict[str, Any]] = []
    for i in range(start, len(names)):
        if limit is not None and len(out) >= limit:
            return out, out[-1]["agent_id"] if out else None
        a = agents[names[i]]
        if passes(a):
            out.append(a.metadata())
    return out, None


def cursor_before(agents: Mapping[str, Agent], env: str | None, type_: str | None,
                  status: str | None, limit: int, after: str) -> str | None:
    """The `after` of the page before the one that starts after `after`: the
    `limit` agents that pass and sort up to `after` make that page. None when
    that page is the first one (it needs no `after`). A walk back over the
    agents' facts, with no metadata built (the dashboard's Previous link)."""
    names = sorted(agents)
    passes = _test(env, type_, status, ())
    seen = 0
    for i in range(bisect_right(names, after) - 1, -1, -1):
        if passes(agents[names[i]]):
            if seen == limit:
                return names[i]
            seen += 1
    return None


def _test(env: str | None, type_: str | None, status: str | None,
          filters: Sequence[Filter]) -> Callable[[Agent], bool]:
    """Whether an agent passes select's exact matches and filters."""
    tests = [(FACTS.get(f.prop) or _env_var(f.prop[4:]), f.matches) for f in filters]
    wanted = status.lower() if status is not None else None

    def passes(a: Agent) -> bool:
        if env is not None and a.id.env != env:
            return False
        if type_ is not None and a.id.type != type_:
            return False
        if wanted is not None and a.status.value.lower() != wanted:
            return False
        return all(match(fact(a)) for fact, match in tests)

    return passes


def _env_var(name: str) -> Callable[[Agent], Any]:
    return lambda a: a.env_vars.get(name)


def _candidates(agents: Mapping[str, Agent], filters: Sequence[Filter]) -> list[str]:
    """Sorted IDs worth testing: the one a `name = ID` filter names, else all."""
    for f in filters:
        if f.prop == "name" and f.op == "==":
            name = str(f.value)
            return [name] if name in agents else []
    return sorted(agents)
