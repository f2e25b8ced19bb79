"""golemd.host.runtime's snapshots: the pickled instance, restored whole,
with every reference inside it kept (a back-reference to the agent is the
agent again, not a copy), for slotted classes and classes that pickle their
own way too; a failed call rolls back to the last one."""

from __future__ import annotations

from typing import Any

import pytest

from golemd.host.runtime import AgentHost
from golemd.sdk import AgentSpec


class Handler:
    """Something the agent keeps that points back at it."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner


class Counting:
    name: str
    items: list[int]

    def start(self, name: str) -> None:
        self.name = name
        self.items = []

    def add(self, n: int) -> int:
        self.items.append(n)
        return len(self.items)

    def size(self) -> int:
        return len(self.items)


class Plain(Counting):
    def __init__(self, name: str) -> None:
        self.start(name)
        self.me = self
        self.handler = Handler(self)


class Slotted(Counting):
    __slots__ = ("name", "items")  # type: ignore[misc]  # slots of its own, besides the base's __dict__

    def __init__(self, name: str) -> None:
        self.start(name)


class OwnState(Counting):
    def __init__(self, name: str) -> None:
        self.start(name)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "items": list(self.items), "marker": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# As @agent would mark them (durable), without entering them in the process's registry.
for _cls in (Plain, Slotted, OwnState):
    _cls.__golem_agent__ = AgentSpec(_cls.__name__, True, None, None)  # type: ignore[attr-defined]


def _host(cls: type, snapshot: bytes | None = None) -> AgentHost:
    host = AgentHost(cls, ["a"])
    host.build(snapshot)
    return host


@pytest.mark.parametrize("cls", [Plain, Slotted, OwnState])
def test_a_snapshot_restores_the_state_the_calls_left(cls: type) -> None:
    host = _host(cls)
    for n in (3, 4):
        out = host.call("add", [n])
        assert out["ok"] and out["snapshot"] is not None
    again = _host(cls, out["snapshot"])
    assert type(again.instance) is cls
    assert again.instance.name == "a" and again.instance.items == [3, 4]
    assert again.call("add", [5])["ok"] and again.instance.items == [3, 4, 5]


def test_references_back_to_the_agent_are_the_agent_after_a_restore() -> None:
    snapshot = _host(Plain).call("add", [1])["snapshot"]
    agent = _host(Plain, snapshot).instance
    assert agent.me is agent and agent.handler.owner is agent


def test_a_read_only_call_sends_no_snapshot_and_a_failed_call_rolls_back() -> None:
    host = _host(Slotted)
    first = host.call("add", [1])["snapshot"]
    assert first is not None
    assert host.call("add", [2])["snapshot"] not in (None, first)
    assert host.call("size", [])["snapshot"] is None  # unchanged: nothing to save
    failed = host.call("add", [3, 4])  # too many arguments: raises
    assert not failed["ok"] and host.instance.items == [1, 2]
    assert host.call("start", ["a"])["ok"] and host.instance.items == []
