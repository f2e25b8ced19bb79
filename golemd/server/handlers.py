"""One small function per operation of the wire protocol (docs/protocol.md).

Each takes the daemon, the validated request and an `emit` callback for
event messages, and returns the success fields or raises GolemError. Invoke
is not here: the connection hands it to `Supervisor.submit`, which answers
through a callback (see golemd/server/connection.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import golemd
from golemd.host.workers import Worker

if TYPE_CHECKING:
    from golemd.server.context import ServerContext as Daemon

Emit = Callable[[dict[str, Any]], None]
Handler = Callable[["Daemon", dict[str, Any], Emit], Awaitable[dict[str, Any]]]


async def get(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return {"agent": d.supervisor.find(req["agent"]).metadata()}


async def list_(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agents, cursor = d.supervisor.list(req.get("env"), req.get("type"), req.get("status"),
                                       req.get("limit"), req.get("after"))
    return {"agents": agents, "next": cursor}


async def cancel(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    agent.cancel(req["idempotency_key"])
    await d.supervisor.store.commit()
    return {"idempotency_key": req["idempotency_key"], "canceled": True}


async def interrupt(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    agent.interrupt(bool(req.get("recover")))
    await d.supervisor.store.commit()
    return {"agent": agent.metadata()}


async def simulate_crash(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return await interrupt(d, {**req, "recover": True}, emit)


async def resume(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    agent.resume()
    await d.supervisor.store.commit()
    return {"agent": agent.metadata()}


async def delete(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"agent": await d.supervisor.delete(agent)}


async def invocations(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"invocations": agent.invocations()}


async def oplog(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"entries": d.supervisor.store.oplog(agent.name, req.get("last"))}


async def stream(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    for entry in agent.output.recent(req.get("last")):
        emit(entry)
    if not req.get("follow"):
        return {"ended": "done"}
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def follower(entry: dict[str, Any] | None, reason: str) -> None:
        if entry is not None:
            emit(entry)
        elif not ended.done():
            ended.set_result(reason)

    agent.output.followers.add(follower)
    try:
        return {"ended": await ended}
    finally:
        agent.output.followers.discard(follower)


async def types(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    out = []
    for name in sorted(d.supervisor.types):
        t = d.supervisor.types[name]
        out.append({k: t[k] for k in ("name", "module", "durable", "doc", "constructor", "methods")})
    return {"types": out}


async def status(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    sup = d.supervisor
    return {
        "version": golemd.__version__,
        "pid": os.getpid(),
        "uptime": time.time() - sup.started,
        "agents": len(sup.agents),
        "agents_by_status": sup.status_counts(),
        "live_workers": sum(1 for a in sup.agents.values() if a.worker is not None and a.worker.alive),
        "calls_in_flight": Worker.in_flight,
        "socket": d.socket_path,
        "state_dir": d.config.state_dir,
    }


async def reload(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    await d.reload()
    return {"ok": True}


async def stop(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    d.request_stop()
    return {"ok": True}


HANDLERS: dict[str, Handler] = {
    "get": get, "list": list_, "cancel": cancel, "interrupt": interrupt,
    "simulate_crash": simulate_crash, "resume": resume, "delete": delete,
    "invocations": invocations, "oplog": oplog, "stream": stream, "types": types,
    "status": status, "reload": reload, "stop": stop,
}
