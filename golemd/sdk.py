"""What agent code sees: the @agent decorator.

    from golemd import agent

    @agent
    class CounterAgent:
        def __init__(self, name: str): ...
        def increment(self) -> int: ...

Public methods (names not starting with "_") are invocable. `@agent(name=...)`
gives the type another name; `@agent(durable=False)` makes it ephemeral: a
fresh instance for every invocation and no saved state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    durable: bool


_REGISTRY: dict[str, type] = {}


class AgentDefinitionError(Exception):
    pass


@overload
def agent(cls: T) -> T: ...
@overload
def agent(*, name: str | None = None, durable: bool = True) -> Callable[[T], T]: ...


def agent(cls: Any = None, *, name: str | None = None, durable: bool = True) -> Any:
    """Register a class as an agent type."""

    def wrap(c: T) -> T:
        if not isinstance(c, type):
            raise AgentDefinitionError("@agent decorates a class")
        type_name = name or c.__name__
        if not type_name.isidentifier():
            raise AgentDefinitionError(f"agent type name {type_name!r} is not an identifier")
        other = _REGISTRY.get(type_name)
        if other is not None and other.__qualname__ != c.__qualname__:
            raise AgentDefinitionError(
                f"two agent types are named {type_name!r}: {other.__module__}.{other.__qualname__} "
                f"and {c.__module__}.{c.__qualname__}")
        c.__golem_agent__ = AgentSpec(type_name, durable)  # type: ignore[attr-defined]
        _REGISTRY[type_name] = c
        return c

    if cls is not None:
        return wrap(cls)
    return wrap


def registered_types() -> dict[str, type]:
    """Agent types registered so far, by type name."""
    return dict(_REGISTRY)


def spec_of(cls: type) -> AgentSpec:
    return cls.__golem_agent__  # type: ignore[attr-defined,no-any-return]
