"""The Unix socket: accept connections, decode requests, run handlers, write replies.

Each request runs in its own task, so one connection can pipeline many
requests and a reply for an idle agent overtakes one for a busy agent. A
connection's tasks end with it (`finally`), but an awaited invocation does
not: it runs on and its outcome stays retrievable by its idempotency key.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Any

import msgpack

from golemd.errors import Code, GolemError
from golemd.handlers import HANDLERS
from golemd.protocol import MAX_MESSAGE_BYTES, error_reply, make_unpacker, pack, validate_request

if TYPE_CHECKING:
    from golemd.daemon import Daemon

log = logging.getLogger("golemd.server")


class SocketPathError(Exception):
    pass


def bind_unix_socket(path: str, group: str | None = None) -> socket.socket:
    """Bind `path` so that it never exists with a wider mode than `mode`.

    A socket file left by a dead daemon is replaced after a connect probe
    fails; anything else at the path (a live daemon, a regular file, a
    symlink) is refused and left alone.
    """
    directory = os.path.dirname(path) or "."
    gid = -1
    if group is not None:
        import grp

        gid = grp.getgrnam(group).gr_gid
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o750 if group else 0o700, exist_ok=True)
        if group is not None:
            os.chown(directory, -1, gid)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a socket"
            raise SocketPathError(f"{path} exists and is {kind}; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            log.info("removing stale socket %s", path)
            os.unlink(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise SocketPathError(f"cannot probe {path}: {exc}") from exc
        else:
            raise SocketPathError(f"another daemon is listening on {path}")
        finally:
            probe.close()
    tmp = os.path.join(directory, f".golemd-{os.getpid()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        sock.bind(tmp)
    finally:
        os.umask(old)
    if group is not None:
        os.chown(tmp, -1, gid)
    os.chmod(tmp, 0o660 if group else 0o600)
    os.rename(tmp, path)
    sock.listen(1024)
    return sock


MUTATING = frozenset({"invoke", "cancel", "interrupt", "simulate_crash", "resume", "delete",
                      "reload", "stop"})


def peer_credentials(sock: Any) -> str:
    """'pid N uid N gid N' of the connected process (SO_PEERCRED)."""
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
    except (OSError, AttributeError):
        return "unknown peer"
    return f"pid {pid} uid {uid} gid {gid}"


class Connection:
    def __init__(self, daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.daemon = daemon
        self.reader = reader
        self.writer = writer
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.peer = peer_credentials(writer.get_extra_info("socket"))

    def close(self) -> None:
        self.writer.transport.close()

    def send(self, obj: dict[str, Any]) -> None:
        if self.closed or self.writer.is_closing():
            return
        try:
            data = pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            data = pack(error_reply(obj.get("id"), GolemError(Code.INTERNAL, f"reply cannot be encoded: {exc}")))
        self.writer.write(data)

    async def serve(self) -> None:
        unpacker = make_unpacker(MAX_MESSAGE_BYTES)
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                try:
                    unpacker.feed(data)
                except msgpack.BufferFull:
                    self.send(error_reply(None, GolemError(
                        Code.TOO_LARGE, f"a message is larger than {MAX_MESSAGE_BYTES} bytes")))
                    break
                try:
                    for msg in unpacker:
                        self.dispatch(msg)
                except Exception as exc:  # any undecodable input: answer once, then hang up
                    self.send(error_reply(None, GolemError(Code.PROTOCOL_ERROR, f"undecodable msgpack: {exc}")))
                    break
                if self.writer.transport.get_write_buffer_size() > 8 * MAX_MESSAGE_BYTES:
                    await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            for task in list(self.tasks):
                task.cancel()
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                pass
            self.writer.close()

    def dispatch(self, msg: Any) -> None:
        try:
            rid, op, req = validate_request(msg)
        except GolemError as err:
            self.send(error_reply(getattr(err, "request_id", None), err))
            return
        task = asyncio.create_task(self.run(rid, op, req))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, rid: int | None, op: str, req: dict[str, Any]) -> None:
        if op in MUTATING:
            # Who changed what: operators ask this after the fact.
            log.log(logging.DEBUG if op == "invoke" else logging.INFO, "%s %s by %s",
                    op, req.get("agent", ""), self.peer)
        def emit(event: dict[str, Any]) -> None:
            self.send({"id": rid, "event": event})

        try:
            reply = await HANDLERS[op](self.daemon, req, emit)
            self.send({"id": rid, **reply})
        except GolemError as err:
            self.send(error_reply(rid, err))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("op %s failed", op)
            self.send(error_reply(rid, GolemError(Code.INTERNAL, f"golemd failed: {exc!r}")))
