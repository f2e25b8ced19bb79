"""A raw msgpack client (docs/protocol.md): the one client that drives the floor
and golemd alike, so both are measured through the same code.

Blocking socket, no threads. Requests for pipelined runs are packed before
the clock starts, so the client's own CPU (on a 2-core machine it competes
with the server) is mostly reading replies.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

import msgpack


class BenchError(Exception):
    """A request failed: the server answered an error, or went away."""


def invoke_request(rid: int, agent: str, method: str = "increment", args: Sequence[Any] = ()) -> dict[str, Any]:
    return {"v": 1, "id": rid, "op": "invoke", "agent": agent, "method": method, "args": list(args),
            "mode": "await"}


def counter_id(name: str) -> str:
    return f'BenchCounter("{name}")'


class RawClient:
    def __init__(self, path: str, timeout: float = 120.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.next_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv_into_unpacker(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise BenchError("the server closed the connection")
        self.unpacker.feed(data)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its final reply (events are skipped)."""
        self.next_id += 1
        rid = self.next_id
        self.sock.sendall(msgpack.packb({"v": 1, "id": rid, "op": op, **fields}, use_bin_type=True))
        while True:
            for msg in self.unpacker:
                if msg.get("id") == rid and "event" not in msg:
                    if "error" in msg:
                        raise BenchError(f"{op}: {msg['error']}")
                    return msg
            self._recv_into_unpacker()

    def invoke(self, agent: str, method: str = "increment", args: Sequence[Any] = ()) -> Any:
        """One awaited invocation; its result."""
        self.next_id += 1
        rid = self.next_id
        self.sock.sendall(msgpack.packb(invoke_request(rid, agent, method, args), use_bin_type=True))
        while True:
            for msg in self.unpacker:
                if msg.get("id") == rid:
                    if "error" in msg:
                        raise BenchError(f"invoke {agent}.{method}: {msg['error']}")
                    return msg.get("result")
            self._recv_into_unpacker()

    def timed_invokes(self, agent: str, n: int) -> list[float]:
        """`n` sequential awaited calls; each one's round trip in seconds."""
        out = []
        packb = msgpack.packb
        for _ in range(n):
            self.next_id += 1
            data = packb(invoke_request(self.next_id, agent), use_bin_type=True)
            t0 = time.perf_counter()
            self.sock.sendall(data)
            msg = None
            while msg is None:
                for m in self.unpacker:
                    msg = m
                    break
                else:
                    self._recv_into_unpacker()
            out.append(time.perf_counter() - t0)
            if msg.get("id") != self.next_id or "error" in msg:
                raise BenchError(f"unexpected reply {msg!r}")
        return out

    def pipeline(self, agents: Sequence[str], window: int, batch: int | None = None) -> float:
        """Invoke `increment` once per entry of `agents` (repeats allowed), keeping
        up to `window` requests in flight on this one connection, written in
        batches. Replies are matched by id. Returns the wall time in seconds."""
        batch = batch or max(1, window // 4)
        packb = msgpack.packb
        first = self.next_id + 1
        payloads = [packb(invoke_request(first + i, a), use_bin_type=True) for i, a in enumerate(agents)]
        self.next_id += len(payloads)
        expected = set(range(first, first + len(payloads)))
        n = len(payloads)
        sent = 0
        inflight = 0
        sock = self.sock
        unpacker = self.unpacker
        t0 = time.perf_counter()
        while expected:
            if sent < n and inflight + batch <= window or (sent < n and inflight == 0):
                k = min(batch, n - sent, max(window - inflight, 1))
                sock.sendall(b"".join(payloads[sent:sent + k]))
                sent += k
                inflight += k
                continue
            data = sock.recv(1 << 20)
            if not data:
                raise BenchError("the server closed the connection")
            unpacker.feed(data)
            for msg in unpacker:
                rid = msg.get("id")
                if "error" in msg:
                    raise BenchError(f"invoke failed: {msg['error']}")
                if rid in expected and "event" not in msg:
                    expected.discard(rid)
                    inflight -= 1
        return time.perf_counter() - t0


def wait_ready(path: str, timeout: float = 30.0, alive: Any = None) -> float:
    """Poll `{"op": "status"}` until it answers; the seconds it took."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        try:
            with RawClient(path, timeout=2.0) as c:
                c.request("status")
            return time.perf_counter() - t0
        except (OSError, BenchError):
            if alive is not None and not alive():
                raise BenchError(f"the server exited before answering on {path}") from None
            if time.perf_counter() > deadline:
                raise BenchError(f"no answer on {path} after {timeout}s") from None
            time.sleep(0.02)
