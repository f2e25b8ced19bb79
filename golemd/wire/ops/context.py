"""What each half of an op is given, as protocols: the client half a Caller
(golemctl's Client or AsyncClient), the daemon half a Daemon
(golemd.server.context.OpContext provides it).

The op modules import this module only under TYPE_CHECKING. It must not
import the server, driver, host or daemon either, even for type checkers:
they import the ops, and golemctl, which imports the ops, must not depend on
them. So the driver's objects are described here by what the handlers use of
them, which is also what a new driver must keep offering (their parameters
positional only: the names are the driver's own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from types import EllipsisType
from typing import Any, Protocol

from golemd.model.agent_id import AgentId
from golemd.model.filters import Filter
from golemd.wire.ops import Call

Fields = dict[str, tuple[tuple[type, ...], bool]]
"""An op's FIELDS: field name -> (accepted types, required)."""
Check = Callable[[dict[str, Any]], str | None]
"""An op's optional `check`: what FIELDS cannot say; the BAD_REQUEST message, or None."""

EventCallback = Callable[[dict[str, Any]], object]
Steps = Generator[Call, dict[str, Any], Any]
"""A client half that needs several requests: it yields each Call, is sent
its unwrapped reply, and returns the method's result."""

Emit = Callable[[dict[str, Any]], None]
"""Sends one event message ({"id": N, "event": EVENT}) before the final reply."""


# --- the client half's side -----------------------------------------------------


class Caller(Protocol):
    """A golemctl client. Client.call returns the unwrapped reply,
    AsyncClient.call an awaitable of it; a client half returns what call
    (or run) returns, so one definition serves both."""

    def call(self, c: Call, on_event: EventCallback | None = None,
             reply_timeout: float | None | EllipsisType = ...) -> Any: ...

    def run(self, steps: Steps) -> Any: ...


# --- the daemon half's side -----------------------------------------------------


class Output(Protocol):
    """An agent's buffered output (golemd.host.agentlog)."""

    @property
    def followers(self) -> set[Callable[[dict[str, Any] | None, str], None]]:
        """Called with each new entry, and with (None, reason) when the stream ends."""
        ...

    def recent(self, last: int | None, /) -> Iterable[dict[str, Any]]: ...


class Store(Protocol):
    def commit(self) -> Awaitable[None]:
        """Make what was changed durable (a future, or a coroutine)."""
        ...

    def oplog(self, name: str, last: int | None, /) -> Sequence[Mapping[str, Any]]: ...

    def get_promise(self, promise_id: str, /) -> dict[str, Any] | None:
        """The promise's row (golemd.storage.base.PromiseRow), or None."""
        ...

    def list_promises(self, agent_id: str | None, /, pending: bool) -> list[dict[str, Any]]:
        """Promise rows, oldest first: the agent's (canonical ID) or everyone's, pending or all."""
        ...


class Agent(Protocol):
    """One agent, as golemd.driver's Agent offers it to the handlers."""

    @property
    def name(self) -> str: ...

    @property
    def output(self) -> Output: ...

    @property
    def worker(self) -> Any:
        """Its golemd.host.workers.Worker (with `.alive`), or None."""
        ...

    def cancel(self, key: str, /) -> None: ...

    def interrupt(self, recover: bool, /) -> None: ...

    async def recovered(self, timeout: float, /) -> None:
        """After interrupt(recover=True): until its new worker is up, or none is coming."""
        ...

    def resume(self) -> None: ...

    def metadata(self) -> dict[str, Any]: ...

    def invocations(self) -> list[dict[str, Any]]: ...


class Durable(Protocol):
    """Durable execution's promises (golemd.driver.durable.Durable)."""

    def complete(self, promise_id: str, value: Any, /) -> None:
        """Complete it (written, not committed: commit before answering), or
        raise GolemError NOT_FOUND, ALREADY_COMPLETED, BAD_REQUEST."""
        ...

    def promise_info(self, row: dict[str, Any], /) -> dict[str, Any]:
        """A promise row as the protocol shows it (promise_get's PROMISE)."""
        ...


class Supervisor(Protocol):
    """golemd.driver.supervisor.Supervisor, as far as the handlers use it."""

    @property
    def store(self) -> Store: ...

    @property
    def types(self) -> Mapping[str, dict[str, Any]]:
        """The loaded agent types' descriptions (golemd.host.apps.describe_type)."""
        ...

    @property
    def agents(self) -> Mapping[str, Agent]: ...

    @property
    def durable(self) -> Durable: ...

    @property
    def started(self) -> float:
        """Unix time the supervisor started."""
        ...

    def parse_id(self, text: str, /) -> AgentId:
        """The agent ID (GolemError INVALID_AGENT_ID): `.canonical` is its stored name."""
        ...

    def find(self, agent: str, /) -> Agent:
        """The agent of this ID, or raise GolemError (AGENT_NOT_FOUND, INVALID_AGENT_ID...)."""
        ...

    def revert(self, agent: Any, count: int | None, last_index: int | None, /) -> Awaitable[list[str]]:
        """Revert the agent's last invocations: the keys forgotten."""
        ...

    def new(self, text: str, env_vars: dict[str, str], /) -> Awaitable[tuple[Agent, bool]]:
        """Create the agent without invoking it: (agent, created)."""
        ...

    # Any: the agent find() returned; a protocol cannot say "yours" without generics.
    def delete(self, agent: Any, /) -> Awaitable[dict[str, Any]]:
        """Delete it; its last metadata."""
        ...

    def list(self, env: str | None, type_: str | None, status: str | None,
             limit: int | None, after: str | None, filters: Sequence[Filter],
             /) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the metadata of the agents that pass every filter, ordered
        by agent ID, and the cursor of the next page."""
        ...

    def status_counts(self) -> dict[str, int]: ...


class Daemon(Protocol):
    """What an op's handler may use of the daemon."""

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def socket_path(self) -> str: ...

    @property
    def state_dir(self) -> str: ...

    def calls_in_flight(self) -> int:
        """Messages sent to workers and not answered yet."""
        ...

    async def reload(self) -> None:
        """Re-import the apps in a new template process (GolemError LOAD_FAILED)."""
        ...

    def request_stop(self) -> None: ...

    def dashboard_login(self) -> dict[str, Any]:
        """A one-time login URL of the HTTP dashboard (GolemError NOT_ENABLED without one)."""
        ...


Handler = Callable[[Daemon, dict[str, Any], Emit], Coroutine[Any, Any, dict[str, Any]]]
