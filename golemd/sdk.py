"""What agent code sees: the @agent decorator.

    from golemd import agent

    @agent
    class CounterAgent:
        def __init__(self, name: str): ...
        def increment(self) -> int: ...

Public methods (names not starting with "_") are invocable. `@agent(name=...)`
gives the type another name; `@agent(durable=False)` makes it ephemeral: a
fresh instance for every invocation and no saved state.

Limits: `@agent(timeout=SECONDS, memory_limit_mb=MB, cpu_limit=SECONDS)` for
every method of the type, `@timeout(SECONDS)` on one method. A call's own
timeout (`golemctl agent invoke --timeout`) wins over both. `cpu_limit` is
CPU time per invocation (RLIMIT_CPU, whole seconds): past it the call fails
with CPU_LIMIT and the agent's state is rolled back.
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
    timeout: float | None = None
    memory_limit_mb: int | None = None
    cpu_limit: float | None = None


_REGISTRY: dict[str, type] = {}


class AgentDefinitionError(Exception):
    pass


@overload
def agent(cls: T) -> T: ...
@overload
def agent(*, name: str | None = None, durable: bool = True, timeout: float | None = None,
          memory_limit_mb: int | None = None, cpu_limit: float | None = None) -> Callable[[T], T]: ...


def agent(cls: Any = None, *, name: str | None = None, durable: bool = True,
          timeout: float | None = None, memory_limit_mb: int | None = None,
          cpu_limit: float | None = None) -> Any:
    """Register a class as an agent type."""
    _check_limits(timeout, memory_limit_mb)
    if cpu_limit is not None and not cpu_limit > 0:
        raise AgentDefinitionError("cpu_limit must be a positive number of CPU seconds")

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
        c.__golem_agent__ = AgentSpec(type_name, durable, timeout, memory_limit_mb,  # type: ignore[attr-defined]
                                      cpu_limit)
        _REGISTRY[type_name] = c
        return c

    if cls is not None:
        return wrap(cls)
    return wrap


def _check_limits(timeout: float | None, memory_limit_mb: int | None) -> None:
    if timeout is not None and not timeout > 0:
        raise AgentDefinitionError("timeout must be a positive number of seconds")
    if memory_limit_mb is not None and not memory_limit_mb > 0:
        raise AgentDefinitionError("memory_limit_mb must be a positive number")


F = TypeVar("F", bound=Callable[..., Any])


def timeout(seconds: float) -> Callable[[F], F]:
    """Limit how long one method may run; past it the call fails with TIMEOUT."""
    _check_limits(seconds, None)

    def wrap(fn: F) -> F:
        fn.__golem_timeout__ = float(seconds)  # type: ignore[attr-defined]
        return fn

    return wrap


def registered_types() -> dict[str, type]:
    """Agent types registered so far, by type name."""
    return dict(_REGISTRY)


def spec_of(cls: type) -> AgentSpec:
    return cls.__golem_agent__  # type: ignore[attr-defined,no-any-return]
