"""Clients that attack the daemon (RELIABILITY.md section 4, tests 18, 20, 22, 23, 28).

Frames the daemon must refuse, connections that go silent, a client that
never reads, one that hangs up mid-invoke, and another Unix user."""

from __future__ import annotations

import errno
import functools
import grp
import os
import pwd
import select
import signal
import socket
import time
from typing import Any

import msgpack
import pytest

from tests.helpers import (
    EXAMPLES,
    HOSTILE,
    TEST_AGENTS,
    DaemonProc,
    MiB,
    RawConn,
    closed_by_peer,
    daemon_fds,
    daemon_rss,
    settled_fds,
    wait_for,
)
from tests.helpers import running as _running

pytestmark = pytest.mark.slow

APPS = (EXAMPLES, TEST_AGENTS, HOSTILE)
running = functools.partial(_running, apps=APPS)
MAX_MESSAGE = 64 * MiB


def _first_reply_then_closed(c: RawConn) -> dict[str, Any] | None:
    """The daemon's answer to bad input (None if it hung up first); asserts it hangs up."""
    try:
        reply: dict[str, Any] | None = c.recv()
    except (ConnectionError, OSError):
        return None
    assert closed_by_peer(c.sock, 10) is not None, "the daemon did not hang up"
    return reply


# -- 18: frames the daemon must refuse --------------------------------------------


def test_frame_over_the_max_message_size_gets_too_large_and_is_closed():
    with running() as d:
        bystander = d.conn()
        assert bystander.ok("status")["agents"] == 0
        rss0 = daemon_rss(d)
        c = d.conn()
        size = MAX_MESSAGE + MiB  # a bin32 of 65 MiB: one message over the limit
        chunk = b"\0" * MiB
        sent = 0
        try:
            c.send_raw(b"\xc6" + size.to_bytes(4, "big"))
            while sent < size:
                c.send_raw(chunk)
                sent += len(chunk)
        except OSError as exc:  # it hung up on us before we were done: fine
            assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
        reply = _first_reply_then_closed(c)
        c.close()
        assert reply is not None, "no TOO_LARGE answer before the hang-up"
        assert reply["id"] is None and reply["error"]["code"] == "TOO_LARGE", reply
        assert sent < size, "the daemon read all of a message over its limit"
        grown = daemon_rss(d) - rss0
        assert grown < 96 * MiB, f"the daemon's RSS grew by {grown / MiB:.0f} MiB"
        # Other clients were not affected, and new ones are served.
        assert bystander.ok("status")["pid"] == d.proc.pid
        fresh = d.conn()
        assert fresh.ok("invoke", agent='CounterAgent("c")', method="increment")["result"] == 1
        fresh.close()
        bystander.close()


def _request_with_last_arg(header: bytes) -> bytes:
    """An invoke request whose one argument starts with `header` (and never comes)."""
    head = msgpack.packb({"v": 1, "id": 9, "op": "invoke", "agent": 'CounterAgent("c")', "method": "add"})
    return bytes([head[0] + 1]) + head[1:] + msgpack.packb("args") + b"\x91" + header


HUGE = (0xFFFF_FFFF).to_bytes(4, "big")


def _silent_for(c: RawConn, seconds: float) -> bool:
    """The daemon neither answers nor hangs up for `seconds` (a header not yet whole
    must not be judged; the pause also makes its two parts two reads)."""
    return not select.select([c.sock], [], [], seconds)[0]


@pytest.mark.parametrize(("frame", "said"), [
    (b"\xdb" + HUGE, "string of 4294967295 bytes"),                       # str32, alone
    (b"\xc6" + (MAX_MESSAGE + 1).to_bytes(4, "big"), "binary of 67108865 bytes"),  # bin32 just over
    (_request_with_last_arg(b"\xdb" + HUGE), "string of 4294967295 bytes"),  # nested in a request
    (_request_with_last_arg(b"\x81\xa1k\xc6" + HUGE), "binary of 4294967295 bytes"),  # deeper
], ids=["str32", "bin32", "nested-str32", "nested-bin32"])
def test_a_header_declaring_more_than_the_limit_is_refused_at_once(frame: bytes, said: str):
    """The body never comes: TOO_LARGE and the hang-up come at once, not after
    client_read_timeout (30 s here), also with the header cut in two reads."""
    with running({"client_read_timeout": 30}) as d:
        bystander = d.conn()
        for cut in (len(frame), len(frame) - 2):
            c = d.conn()
            t0 = time.monotonic()
            c.send_raw(frame[:cut])
            if cut < len(frame):
                assert _silent_for(c, 0.2), "refused before the header was whole"
                c.send_raw(frame[cut:])
            reply = _first_reply_then_closed(c)
            took = time.monotonic() - t0
            c.close()
            assert reply is not None, "no TOO_LARGE answer before the hang-up"
            assert reply["id"] is None and reply["error"]["code"] == "TOO_LARGE", reply
            assert said in reply["error"]["message"], reply
            assert took < 5, f"answered after {took:.1f} s"
        assert bystander.ok("status")["pid"] == d.proc.pid
        bystander.close()


def _str_header(raw: bytes) -> bytes:
    return bytes([0xA0 | len(raw)]) + raw


@pytest.mark.parametrize("where", ["value", "key"])
def test_non_utf8_str_is_a_protocol_error(where: str):
    bad = _str_header(b"\xff\xfe")  # a msgpack str whose bytes are not UTF-8
    head = b"\x83" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("id") + msgpack.packb(7)
    frame = head + (msgpack.packb("op") + bad if where == "value" else bad + msgpack.packb("status"))
    with running() as d:
        bystander = d.conn()
        assert bystander.ok("status")["agents"] == 0
        rss0 = daemon_rss(d)
        c = d.conn()
        c.send_raw(frame)
        reply = _first_reply_then_closed(c)
        c.close()
        assert reply is not None and reply["error"]["code"] == "PROTOCOL_ERROR", reply
        assert reply["id"] is None
        assert bystander.ok("status")["pid"] == d.proc.pid
        assert daemon_rss(d) - rss0 < 5 * MiB
        bystander.close()


# -- 20: silent connections -------------------------------------------------------


def test_truncated_frame_and_silent_client_are_closed_and_their_fds_released():
    with running({"client_read_timeout": 1, "client_idle_timeout": 2}) as d:
        base_fds = settled_fds(d)
        truncated, silent = d.conn(), d.conn()
        t0 = time.monotonic()
        truncated.send_raw(msgpack.packb({"v": 1, "id": 1, "op": "status"})[:5])
        wait_for(lambda: daemon_fds(d) >= base_fds + 2, 5, what="the daemon to accept both")
        closed = {}
        for name, c in (("truncated", truncated), ("silent", silent)):
            assert closed_by_peer(c.sock, 8) is not None, f"the {name} client was kept open"
            closed[name] = time.monotonic() - t0
        assert closed["truncated"] < 5 and closed["silent"] < 6, f"closed after {closed} s"
        assert closed["silent"] >= 1.5, f"the idle client was closed before its 2 s: {closed}"
        truncated.close()
        silent.close()
        wait_for(lambda: daemon_fds(d) <= base_fds, 5, what=f"the daemon's fds to return to {base_fds}")
        log = d.log()
        assert log.count("closing a silent connection") >= 2, log[-2000:]
        assert time.monotonic() - t0 < 15
        fresh = d.conn()
        assert fresh.ok("status")["pid"] == d.proc.pid
        fresh.close()


def test_a_connection_awaiting_an_invocation_is_not_idle():
    """An awaited invoke has no task of its own: the connection must still
    count it as in flight, past the idle timeout, and answer it."""
    with running({"client_idle_timeout": 1}) as d:
        c = d.conn()
        t0 = time.monotonic()
        r = c.ok("invoke", agent='SlowAgent("idle")', method="work", args=[2.5, "done"])
        assert r["result"] == "done" and time.monotonic() - t0 >= 2.5
        # and once answered, the same connection idles out as usual
        assert closed_by_peer(c.sock, 5) is not None
        c.close()


def test_truncated_frame_is_closed_after_the_read_timeout_not_the_idle_timeout():
    with running({"client_read_timeout": 1, "client_idle_timeout": 30}) as d:
        c = d.conn()
        c.send_raw(msgpack.packb({"v": 1, "id": 1, "op": "status"})[:5])
        took = closed_by_peer(c.sock, 5)
        c.close()
        assert took is not None, "a truncated request was still open after 5 s (read timeout 1 s)"
        assert "a request arrived only in part" in d.log()


# -- 22: a client that never reads ------------------------------------------------


def _flood_requests(c: RawConn, make: Any, count: int) -> int:
    """Pipeline up to `count` requests without reading; how many went out."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no room for replies
    sent = 0
    try:
        for i in range(count):
            c.send(**make(i))
            sent += 1
    except OSError as exc:  # dropped while we were sending
        assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
    return sent


@pytest.mark.parametrize("flood", ["large_results", "many_small"])
def test_slow_reader_is_dropped_and_others_are_served(flood: str):
    with running({"max_client_buffer": 8 * MiB}) as d:
        other = d.conn()
        big = "Blob()"
        # One 1 MiB result computed; the flood asks for it again and again.
        assert len(other.ok("invoke", agent=big, method="blob", args=[MiB], idempotency_key="b")["result"]) == MiB
        rss0 = daemon_rss(d)
        base_fds = settled_fds(d)
        slow = d.conn()
        if flood == "large_results":
            sent = _flood_requests(slow, lambda i: {"op": "invoke", "agent": big, "method": "blob",
                                                    "args": [MiB], "idempotency_key": "b"}, 64)
        else:
            sent = _flood_requests(slow, lambda i: {"op": "types"}, 20_000)
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            assert other.ok("status")["pid"] == d.proc.pid
            latencies.append(time.monotonic() - t0)
        wait_for(lambda: "dropping a client that does not read its replies" in d.log(), 10,
                 what="the slow reader to be dropped")
        took = closed_by_peer(slow.sock, 10)
        slow.close()
        assert took is not None, f"the slow reader was not hung up on (sent {sent})"
        assert max(latencies) < 3.0, f"status took up to {max(latencies) * 1000:.0f} ms meanwhile"
        grown = daemon_rss(d) - rss0
        assert grown < 40 * MiB, f"the daemon's RSS grew by {grown / MiB:.0f} MiB for a client that never reads"
        wait_for(lambda: daemon_fds(d) <= base_fds, 5, what=f"the daemon's fds to return to {base_fds}")
        assert other.ok("invoke", agent=big, method="blob", args=[10], idempotency_key="s")["result"] == "x" * 10
        other.close()


# -- 23: a client that hangs up while awaiting ---------------------------------------


def test_client_disconnecting_while_awaiting_does_not_stop_the_invocation():
    with running() as d:
        agent = 'SlowAgent("hangup")'
        watcher = d.conn()
        c = d.conn()
        c.send(op="invoke", agent=agent, method="work", args=[1.0, "a"], idempotency_key="ka")
        c.send(op="invoke", agent=agent, method="work", args=[0.2, "b"], idempotency_key="kb")

        def running_and_queued() -> bool:
            m = watcher.meta(agent)
            return bool(m) and (m.get("current_invocation") or {}).get("idempotency_key") == "ka" \
                and m.get("pending_invocation_count") == 1

        wait_for(running_and_queued, 5, what="ka running and kb pending")
        c.close()  # hang up on both
        # Both still run to completion; their results come back by key.
        again = d.conn()
        assert again.ok("invoke", agent=agent, method="work", args=[1.0, "a"], idempotency_key="ka")["result"] == "a"
        assert again.ok("invoke", agent=agent, method="work", args=[0.2, "b"], idempotency_key="kb")["result"] == "b"
        assert again.ok("invoke", agent=agent, method="history")["result"] == ["a", "b"]
        completed = [e["idempotency_key"] for e in again.ok("oplog", agent=agent)["entries"]
                     if e["kind"] == "completed"]
        assert completed.count("ka") == 1 and completed.count("kb") == 1, completed
        again.close()
        watcher.close()
        assert d.stop() == 0
        log = d.log()
        for bad in ("Task exception was never retrieved", "Task was destroyed but it is pending",
                    "Traceback"):
            assert bad not in log, f"{bad!r} in the daemon's log:\n{log}"


# -- 28: another Unix user --------------------------------------------------------

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")


def _nobody() -> tuple[int, int]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _as_other_user(path: str, uid: int, gid: int, timeout: float = 15.0) -> dict[str, Any]:
    """Fork, drop to uid/gid, connect to `path` and ask for `status`.

    The child imports nothing (the interpreter's stdlib may be unreadable for
    that user): the socket and msgpack modules are already loaded."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(r)
            out: dict[str, Any]
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(path)
                try:
                    s.sendall(msgpack.packb({"v": 1, "id": 1, "op": "status"}))
                except OSError:
                    pass  # it may hang up at once; its answer is still there to read
                unpacker = msgpack.Unpacker(raw=False)
                out = {"closed": True}
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    unpacker.feed(data)
                    msg = next(unpacker, None)
                    if msg is not None:
                        out = {"reply": msg}
                        break
            except OSError as exc:
                out = {"errno": exc.errno, "error": str(exc)}
            os.write(w, msgpack.packb(out))
        finally:
            os._exit(0)
    os.close(w)
    reaped: list[int] = []

    def child_done() -> bool:
        if not reaped and os.waitpid(pid, os.WNOHANG)[0] == pid:
            reaped.append(pid)
        return bool(reaped)

    try:
        wait_for(child_done, timeout, what="the other user's client")
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert data, "the child reported nothing"
    return msgpack.unpackb(data, raw=False)  # type: ignore[no-any-return]


def _open_dir(d: DaemonProc) -> None:
    os.chmod(d.base, 0o755)  # only the socket's own mode and the allow-list stand in the way


@root_only
def test_other_user_cannot_connect_to_a_0600_socket():
    uid, gid = _nobody()
    with running(before_start=_open_dir) as d:
        assert os.stat(d.socket).st_mode & 0o777 == 0o600
        out = _as_other_user(d.socket, uid, gid)
        assert out.get("errno") == errno.EACCES, out
        c = d.conn()
        assert c.ok("status")["pid"] == d.proc.pid
        c.close()


@root_only
def test_member_of_the_socket_group_is_allowed():
    uid, gid = _nobody()
    group = grp.getgrgid(gid).gr_name  # nogroup: nobody's own group
    with running({"allow_groups": []}, args=("--socket-group", group), before_start=_open_dir) as d:
        st = os.stat(d.socket)
        assert st.st_mode & 0o777 == 0o660 and st.st_gid == gid, oct(st.st_mode)
        out = _as_other_user(d.socket, uid, gid)
        assert "reply" in out and "error" not in out["reply"], out
        assert out["reply"]["pid"] == d.proc.pid


@root_only
def test_other_user_is_refused_by_peer_credentials_when_the_socket_is_open():
    uid, gid = _nobody()
    with running(before_start=_open_dir) as d:
        os.chmod(d.socket, 0o666)  # as if the mode had been widened behind golemd's back
        out = _as_other_user(d.socket, uid, gid)
        assert "reply" in out, out
        assert out["reply"]["error"]["code"] == "UNAUTHORIZED", out
        wait_for(lambda: "refused a connection" in d.log(), 5, what="the refusal in the log")
        assert f"uid {uid}" in d.log()
        c = d.conn()  # and it keeps serving its own user
        assert c.ok("status")["pid"] == d.proc.pid
        c.close()
