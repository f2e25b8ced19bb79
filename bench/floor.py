"""The floor: the yardstick every golemd figure is divided by.

    python -m bench.floor SOCKET_PATH

The least a server of golemd's shape can do, kept deliberately bare: a
client -> one asyncio supervisor -> one forked process per agent. It speaks
the same wire subset as golemd for `invoke` (msgpack maps on a Unix socket,
`{"v": 1, "id": N, "op": "invoke", "agent": ..., "method": ..., "args": [...]}`
-> `{"id": N, "idempotency_key": K, "result": R}`), so the same client code
drives both. Any other op (the readiness probe's `status`) gets `{"id": N,
"pid": PID}`.

What it leaves out, on purpose: no journal, no snapshots, no idempotency,
no validation, no error handling, no worker budget (one live process per
agent ever invoked), no output capture. FIFO per agent comes from the
stream itself: calls go down the agent's socket in arrival order and its
process answers them one at a time, in order. Each message is written as it
comes (one write per request and per reply, no batching), which is what the
goals in the Performance issue were calibrated against.

Processes: the supervisor forks a template before it starts its event loop;
the template forks one child per agent on request (the child's end of a
socketpair rides along with SCM_RIGHTS) and lets the kernel reap them
(SIGCHLD ignored). A child exits when its socket closes, the template when
the supervisor goes away.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import os
import signal
import socket
import sys
from collections import deque
from typing import Any, NoReturn

import msgpack

from bench.agents import BenchCounter

TYPES: dict[str, type] = {"BenchCounter": BenchCounter}
_packb = msgpack.packb


# -- inside an agent's process ----------------------------------------------------


def _child(fd: int, cls: type) -> NoReturn:
    """Build the agent from the first message (its constructor arguments), then
    answer each [method, args] with the packed result, in order."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    unpacker = msgpack.Unpacker(raw=False)
    obj: Any = None
    while True:
        data = sock.recv(1 << 16)
        if not data:
            os._exit(0)
        unpacker.feed(data)
        out = []
        for msg in unpacker:
            if obj is None:
                obj = cls(*msg)
            else:
                out.append(_packb(getattr(obj, msg[0])(*msg[1])))
        if out:
            sock.sendall(b"".join(out))


def _template(sock: socket.socket) -> NoReturn:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        if not data:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(fds[0], TYPES[data.decode()])
        os.close(fds[0])


# -- the supervisor ------------------------------------------------------------------


class Agent(asyncio.Protocol):
    """The supervisor's end of one agent's socket: requests down, results up, FIFO."""

    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.waiting: deque[tuple[ClientConn, int]] = deque()
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []  # written before the connection was made
        self.unpacker = msgpack.Unpacker(raw=False)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"".join(self.early))  # type: ignore[union-attr]
        self.early = []

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.early.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for result in self.unpacker:
            conn, rid = self.waiting.popleft()
            conn.write(_packb({"id": rid, "idempotency_key": f"f{next(self.sup.keys)}",
                               "result": result}))


class Supervisor:
    def __init__(self, template: socket.socket):
        self.template = template
        self.agents: dict[str, Agent] = {}
        self.keys = itertools.count(1)

    def agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is not None:
            return agent
        type_name, _, rest = agent_id.partition("(")
        inner = rest.rstrip()[:-1].strip()
        args = list(ast.literal_eval(f"({inner},)")) if inner else []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket.send_fds(self.template, [type_name.encode()], [theirs.fileno()])
        theirs.close()
        agent = Agent(self)
        agent.write(_packb(args))
        self.agents[agent_id] = agent
        loop = asyncio.get_running_loop()
        loop.create_task(loop.create_unix_connection(lambda: agent, sock=ours))
        return agent


class ClientConn(asyncio.Protocol):
    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.unpacker = msgpack.Unpacker(raw=False)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for req in self.unpacker:
            if req.get("op") == "invoke":
                agent = self.sup.agent(req["agent"])
                agent.waiting.append((self, req["id"]))
                agent.write(_packb([req["method"], req.get("args") or []]))
            else:
                self.write(_packb({"id": req.get("id"), "pid": os.getpid()}))


async def serve(path: str, template: socket.socket) -> None:
    sup = Supervisor(template)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if os.path.exists(path):
        os.unlink(path)
    server = await loop.create_unix_server(lambda: ClientConn(sup), path, backlog=1024)
    await stop
    server.close()
    os.unlink(path)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m bench.floor SOCKET_PATH")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        ours.close()
        _template(theirs)
    theirs.close()
    asyncio.run(serve(argv[0], ours))


if __name__ == "__main__":
    main(sys.argv[1:])
