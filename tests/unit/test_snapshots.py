"""golemd.host.runtime's snapshots: a plain class's is its pickled __dict__;
every other class's, and every snapshot an older golemd wrote, is the
pickled instance; each restores to an equal agent."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from golemd.host.runtime import AgentHost, plain_state
from golemd.sdk import AgentSpec


class Counting:
    name: str
    items: list[int]

    def start(self, name: str) -> None:
        self.name = name
        self.items = []

    def add(self, n: int) -> int:
        self.items.append(n)
        return len(self.items)


class Plain(Counting):
    def __init__(self, name: str) -> None:
        self.start(name)


class Slotted(Counting):
    __slots__ = ("name", "items")  # type: ignore[misc]  # slots of its own, besides the base's __dict__

    def __init__(self, name: str) -> None:
        self.start(name)


class OwnState(Plain):
    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "items": list(self.items), "marker": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class FromDict(dict):  # type: ignore[type-arg]
    def add(self, n: int) -> int:
        self[n] = n
        return len(self)


# As @agent would mark them (durable), without entering them in the process's registry.
for _cls in (Plain, Slotted, OwnState, FromDict):
    _cls.__golem_agent__ = AgentSpec(_cls.__name__, True, None, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cls", "plain"), [(Plain, True), (Slotted, False), (OwnState, False), (FromDict, False)])
def test_only_a_class_that_leaves_pickling_to_object_is_plain(cls: type, plain: bool) -> None:
    assert plain_state(cls) is plain


def _host(cls: type, snapshot: bytes | None = None) -> AgentHost:
    host = AgentHost(cls, [] if cls is FromDict else ["a"])
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


def test_a_plain_agents_snapshot_is_its_dict_and_an_older_whole_instance_still_loads() -> None:
    host = _host(Plain)
    snapshot = host.call("add", [7])["snapshot"]
    assert pickle.loads(snapshot) == {"name": "a", "items": [7]}
    old = Plain("a")
    old.items = [1, 2]
    restored = _host(Plain, pickle.dumps(old))  # written by a golemd before this format
    assert type(restored.instance) is Plain and restored.instance.items == [1, 2]


def test_a_dict_saved_before_a_class_took_its_own_setstate_goes_through_it() -> None:
    snapshot = _host(Plain).call("add", [1])["snapshot"]  # as Plain: a pickled __dict__
    restored = _host(OwnState, snapshot)
    assert restored.instance.items == [1] and type(restored.instance) is OwnState


def test_a_changed_state_sends_a_new_snapshot_and_a_failed_call_rolls_back() -> None:
    host = _host(Plain)
    first = host.call("add", [1])["snapshot"]
    assert host.call("add", [2])["snapshot"] != first
    failed = host.call("add", ["not an int but appended", 1])  # too many arguments: raises
    assert not failed["ok"] and host.instance.items == [1, 2]
