"""The daemon halves of the ops (golemd/wire/ops/*.handle) against fakes of
what golemd.wire.ops.context.Daemon describes: no process, no socket, no
store. The real daemon runs them in tests/integration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from golemd.model.errors import Code, GolemError
from golemd.wire.ops.registry import HANDLERS


class FakeOutput:
    def __init__(self, lines: list[dict[str, Any]]):
        self.lines = lines
        self.followers: set[Any] = set()

    def recent(self, last: int | None) -> list[dict[str, Any]]:
        return self.lines if last is None else self.lines[len(self.lines) - last:] if last else []


class FakeWorker:
    alive = True


class FakeAgent:
    def __init__(self, name: str, lines: list[dict[str, Any]] | None = None, live: bool = False):
        self.name = name
        self.output = FakeOutput(lines or [])
        self.worker = FakeWorker() if live else None
        self.done: list[tuple[Any, ...]] = []

    def cancel(self, key: str) -> None:
        if key == "running":
            raise GolemError(Code.TOO_LATE, "has already started")
        self.done.append(("cancel", key))

    def interrupt(self, recover: bool) -> None:
        self.done.append(("interrupt", recover))

    async def recovered(self, timeout: float) -> None:
        self.done.append(("recovered",))

    def resume(self) -> None:
        self.done.append(("resume",))

    def metadata(self) -> dict[str, Any]:
        return {"agent_id": self.name, "done": list(self.done)}

    def invocations(self) -> list[dict[str, Any]]:
        return [{"idempotency_key": "k", "status": "pending"}]


class FakeStore:
    def __init__(self) -> None:
        self.commits = 0
        self.promises = {"p-a": promise_row("p-a", 'Shop("a")', 1.0),
                         "p-b": promise_row("p-b", 'Shop("b")', 2.0)}

    async def commit(self) -> None:
        self.commits += 1

    def oplog(self, name: str, last: int | None) -> list[dict[str, Any]]:
        return [{"index": 1, "kind": "created", "agent": name, "last": last}]


    def get_promise(self, promise_id: str) -> dict[str, Any] | None:
        return self.promises.get(promise_id)

    def list_promises(self, agent_id: str | None, pending: bool = True) -> list[dict[str, Any]]:
        return [r for r in self.promises.values()
                if (agent_id is None or r["agent_id"] == agent_id) and not (pending and r["completed_at"])]


class FakeDurable:
    """golemd.driver.durable.Durable's promises, over FakeStore's rows."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def complete(self, promise_id: str, value: Any) -> None:
        row = self.store.promises.get(promise_id)
        if row is None:
            raise GolemError(Code.NOT_FOUND, f"no promise {promise_id!r}")
        if row["completed_at"] is not None:
            raise GolemError(Code.ALREADY_COMPLETED, f"promise {promise_id} was completed already")
        row["completed_at"], row["value"] = 2000.0, value

    def promise_info(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"promise_id": row["id"], "agent_id": row["agent_id"],
                "completed": row["completed_at"] is not None, "value": row["value"]}


def promise_row(pid: str, agent: str, created_at: float) -> dict[str, Any]:
    return {"id": pid, "agent_id": agent, "key": "k", "seq": 0, "created_at": created_at,
            "completed_at": None, "value": None}


TYPE = {"name": "A", "module": "m", "qualname": "A", "durable": True, "memory_limit_mb": None, "cpu_limit": 2.0,
        "doc": None, "constructor": {"signature": "()", "params": []}, "methods": []}


class FakeSupervisor:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.durable = FakeDurable(self.store)
        self.types = {"B": {**TYPE, "name": "B"}, "A": TYPE}
        self.agents = {"A()": FakeAgent("A()", [{"line": "one"}, {"line": "two"}], live=True),
                       "B()": FakeAgent("B()")}
        self.started = 1000.0
        self.deleted: list[str] = []

    def parse_id(self, text: str) -> Any:
        from golemd.model.agent_id import parse_agent_id

        return parse_agent_id(text)

    def find(self, agent: str) -> FakeAgent:
        if agent not in self.agents:
            raise GolemError(Code.AGENT_NOT_FOUND, f"no agent {agent}")
        return self.agents[agent]

    async def new(self, text: str, env_vars: dict[str, str]) -> tuple[FakeAgent, bool]:
        agent = self.agents.get(text)
        if agent is None:
            agent = self.agents[text] = FakeAgent(text)
            return agent, True
        return agent, False

    async def delete(self, agent: FakeAgent) -> dict[str, Any]:
        self.deleted.append(agent.name)
        return agent.metadata()

    def list(self, env: str | None, type_: str | None, status: str | None, limit: int | None,
             after: str | None, filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return [{"filters": [env, type_, status, limit, after, [f.text for f in filters]]}], "next-cursor"

    def status_counts(self) -> dict[str, int]:
        return {"Idle": 1, "Suspended": 1}


class FakeDaemon:
    def __init__(self) -> None:
        self.supervisor = FakeSupervisor()
        self.socket_path = "/run/g.sock"
        self.state_dir = "/var/lib/g"
        self.reloads = 0
        self.stops = 0

    def calls_in_flight(self) -> int:
        return 3

    async def reload(self) -> None:
        self.reloads += 1

    def request_stop(self) -> None:
        self.stops += 1

    def dashboard_login(self) -> dict[str, Any]:
        return {"url": "http://127.0.0.1:1/login?token=t", "expires_in": 120.0, "loopback": True}


def handle(op: str, d: FakeDaemon | None = None, **req: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    reply = asyncio.run(HANDLERS[op](d or FakeDaemon(), req, events.append))
    return reply, events


def test_get():
    assert handle("get", agent="A()")[0] == {"agent": {"agent_id": "A()", "done": []}}


@pytest.mark.parametrize("op", sorted(set(HANDLERS) - {"list", "types", "status", "reload", "stop", "new",
                                                         "promise_complete", "promise_get", "promise_list",
                                                         "dashboard"}))
def test_unknown_agent(op):
    with pytest.raises(GolemError) as info:
        handle(op, agent="Nope()", idempotency_key="k")
    assert info.value.code == Code.AGENT_NOT_FOUND


def test_dashboard_answers_the_daemons_login():
    assert handle("dashboard")[0]["url"].startswith("http://127.0.0.1:1/login?token=")


def test_new_creates_once():
    d = FakeDaemon()
    reply, _ = handle("new", d, agent="C()", env={"A": "1"})
    assert reply["created"] is True and reply["agent"]["agent_id"] == "C()"
    reply, _ = handle("new", d, agent="C()", env={"A": "1"})
    assert reply["created"] is False


def test_list_passes_filters_and_cursor():
    reply, _ = handle("list", env="dev", status="Idle", limit=5)
    assert reply == {"agents": [{"filters": ["dev", None, "Idle", 5, None, []]}], "next": "next-cursor"}
    reply, _ = handle("list", filters=["pending > 0", ["status", "=", "idle"]], after="A()")
    assert reply["agents"][0]["filters"] == [None, None, None, None, "A()", ["pending > 0", "status = 'idle'"]]
    with pytest.raises(GolemError) as info:
        handle("list", filters=["pending like 0"])
    assert info.value.code == Code.BAD_REQUEST and "filter 'pending like 0'" in info.value.message


def test_cancel_commits_and_refusals_pass_through():
    d = FakeDaemon()
    assert handle("cancel", d, agent="A()", idempotency_key="k")[0] == \
        {"idempotency_key": "k", "canceled": True}
    assert d.supervisor.store.commits == 1
    with pytest.raises(GolemError) as info:
        handle("cancel", d, agent="A()", idempotency_key="running")
    assert info.value.code == Code.TOO_LATE


@pytest.mark.parametrize(("op", "fields", "done"), [
    ("interrupt", {}, [("interrupt", False)]),
    ("interrupt", {"recover": True}, [("interrupt", True), ("recovered",)]),
    ("simulate_crash", {}, [("interrupt", True), ("recovered",)]),
    ("resume", {}, [("resume",)]),
])
def test_controls_commit_then_answer_metadata(op, fields, done):
    """A recover answers once the agent's new worker is up (Agent.recovered)."""
    d = FakeDaemon()
    reply, _ = handle(op, d, agent="B()", **fields)
    assert reply == {"agent": {"agent_id": "B()", "done": done}}
    assert d.supervisor.store.commits == 1


def test_delete_answers_the_last_metadata():
    d = FakeDaemon()
    assert handle("delete", d, agent="B()")[0] == {"agent": {"agent_id": "B()", "done": []}}
    assert d.supervisor.deleted == ["B()"]


def test_invocations_and_oplog():
    assert handle("invocations", agent="A()")[0] == \
        {"invocations": [{"idempotency_key": "k", "status": "pending"}]}
    assert handle("oplog", agent="A()", last=2)[0] == \
        {"entries": [{"index": 1, "kind": "created", "agent": "A()", "last": 2}]}


class OplogStore(FakeStore):
    """Six entries: what the oplog handler filters (from, query, then last)."""

    LOG = [{"index": i, "ts": float(i), "kind": kind, "idempotency_key": key, "method": "add"}
           for i, (kind, key) in enumerate([("enqueued", "a"), ("started", "a"), ("completed", "a"),
                                            ("enqueued", "b"), ("started", "b"), ("failed", "b")], 1)]

    def oplog(self, name: str, last: int | None) -> list[dict[str, Any]]:
        return self.LOG if last is None else (self.LOG[len(self.LOG) - last:] if last else [])


def _indexes(**req: Any) -> list[int]:
    d = FakeDaemon()
    d.supervisor.store = OplogStore()
    return [e["index"] for e in handle("oplog", d, agent="A()", **req)[0]["entries"]]


@pytest.mark.parametrize("req, want", [
    ({}, [1, 2, 3, 4, 5, 6]),
    ({"last": 2}, [5, 6]),
    ({"last": 0}, []),
    ({"from": 0}, [1, 2, 3, 4, 5, 6]),
    ({"from": 4}, [4, 5, 6]),
    ({"from": 99}, []),
    ({"query": "key:b"}, [4, 5, 6]),
    ({"query": "   "}, [1, 2, 3, 4, 5, 6]),
    ({"query": "-kind:started", "from": 2}, [3, 4, 6]),
    ({"query": "-kind:started", "last": 2}, [4, 6]),  # last keeps the newest of what the query left
    ({"query": "kind:enqueued", "from": 2, "last": 0}, []),
])
def test_oplog_filters_from_then_query_then_last(req, want):
    assert _indexes(**req) == want


def test_oplog_refuses_a_bad_query_before_it_looks_for_the_agent():
    for agent in ("A()", "Nope()"):
        with pytest.raises(GolemError) as info:
            handle("oplog", agent=agent, query='kind:"open')
        assert info.value.code == Code.BAD_REQUEST
        assert info.value.message.startswith("bad query: ") and "not closed" in info.value.message


def test_stream_sends_the_buffered_lines_as_events():
    assert handle("stream", agent="A()") == ({"ended": "done"}, [{"line": "one"}, {"line": "two"}])
    assert handle("stream", agent="A()", last=1) == ({"ended": "done"}, [{"line": "two"}])


def test_stream_follows_until_the_output_ends():
    d = FakeDaemon()
    output = d.supervisor.agents["A()"].output
    events: list[dict[str, Any]] = []

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(HANDLERS["stream"](d, {"agent": "A()", "follow": True, "last": 0},
                                                      events.append))
        await asyncio.sleep(0)
        (follower,) = output.followers
        follower({"line": "three"}, "")
        follower(None, "deleted")
        return await task

    assert asyncio.run(scenario()) == {"ended": "deleted"}
    assert events == [{"line": "three"}]
    assert output.followers == set()  # the follower is gone with the request


def test_promise_complete_commits_then_answers():
    d = FakeDaemon()
    assert handle("promise_complete", d, promise_id="p-a", value=[1, "x"])[0] == \
        {"promise_id": "p-a", "completed": True}
    assert d.supervisor.store.commits == 1
    assert d.supervisor.store.promises["p-a"]["value"] == [1, "x"]
    for pid, code in (("p-a", Code.ALREADY_COMPLETED), ("p-zzz", Code.NOT_FOUND)):
        with pytest.raises(GolemError) as info:
            handle("promise_complete", d, promise_id=pid)
        assert info.value.code == code
    assert d.supervisor.store.commits == 1  # a refusal commits nothing
    assert d.supervisor.store.promises["p-a"]["value"] == [1, "x"]  # the first completion wins


def test_promise_complete_value_defaults_to_nil():
    d = FakeDaemon()
    handle("promise_complete", d, promise_id="p-b")
    assert d.supervisor.store.promises["p-b"]["completed_at"] is not None
    assert d.supervisor.store.promises["p-b"]["value"] is None


def test_promise_get():
    d = FakeDaemon()
    assert handle("promise_get", d, promise_id="p-b")[0] == \
        {"promise": {"promise_id": "p-b", "agent_id": 'Shop("b")', "completed": False, "value": None}}
    with pytest.raises(GolemError) as info:
        handle("promise_get", d, promise_id="nope")
    assert info.value.code == Code.NOT_FOUND


def test_promise_list_filters_by_canonical_agent_and_state():
    d = FakeDaemon()

    def ids(**req: Any) -> list[str]:
        return [p["promise_id"] for p in handle("promise_list", d, **req)[0]["promises"]]

    assert ids() == ["p-a", "p-b"]
    assert ids(agent="Shop( 'a' )") == ["p-a"]  # any spelling: the canonical ID is looked up
    assert ids(agent='dev/Shop("a")') == []
    handle("promise_complete", d, promise_id="p-a", value=1)
    assert ids() == ["p-b"] and ids(all=True) == ["p-a", "p-b"]
    assert ids(agent='Shop("a")', all=True) == ["p-a"]
    with pytest.raises(GolemError) as info:
        handle("promise_list", d, agent="Shop(")
    assert info.value.code == Code.INVALID_AGENT_ID


def test_types_sorted_and_without_internal_fields():
    reply, _ = handle("types")
    assert [t["name"] for t in reply["types"]] == ["A", "B"]
    assert set(reply["types"][0]) == {"name", "module", "durable", "memory_limit_mb", "cpu_limit", "doc",
                                      "constructor", "methods"}
    assert reply["types"][0]["cpu_limit"] == 2.0 and "qualname" not in reply["types"][0]


def test_status():
    reply, _ = handle("status")
    assert reply["agents"] == 2 and reply["live_workers"] == 1 and reply["calls_in_flight"] == 3
    assert reply["agents_by_status"] == {"Idle": 1, "Suspended": 1}
    assert (reply["socket"], reply["state_dir"]) == ("/run/g.sock", "/var/lib/g")
    assert reply["uptime"] > 0 and isinstance(reply["pid"], int) and reply["version"]


def test_reload_and_stop():
    d = FakeDaemon()
    assert handle("reload", d)[0] == {"ok": True} and d.reloads == 1
    assert handle("stop", d)[0] == {"ok": True} and d.stops == 1


def test_op_context_is_the_daemon_the_handlers_see():
    from golemd.host.worker_handle import Worker
    from golemd.server.context import OpContext

    class Config:
        state_dir = "/var/lib/g"

    class Server:
        config = Config()
        supervisor = FakeSupervisor()
        socket_path = "/run/g.sock"
        stopped = False

        async def reload(self) -> None:
            pass

        def request_stop(self) -> None:
            self.stopped = True

    server = Server()
    ctx = OpContext(server)  # type: ignore[arg-type]
    assert ctx.supervisor is server.supervisor
    assert (ctx.socket_path, ctx.state_dir) == ("/run/g.sock", "/var/lib/g")
    assert ctx.calls_in_flight() == Worker.in_flight
    reply, _ = handle("stop", ctx)  # type: ignore[arg-type]
    assert reply == {"ok": True} and server.stopped
