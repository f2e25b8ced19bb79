"""The template process: imports the apps once, then forks workers on request.

    python -m golemd.host.zygote CTL_FD APP...

A fork costs about a millisecond where a new interpreter plus the apps'
imports cost tens, and the supervisor never forks from its own large heap.
Control is a SOCK_SEQPACKET socket: one msgpack map per message, with the
new worker's three fds (control, stdout, stderr) attached to a spawn request.
The template reaps its children and reports each exit.
"""

from __future__ import annotations

import _signal
import _socket
import gc
import os
import resource
import select
import signal
import socket
import sys
import traceback
from collections import deque
from typing import Any, NoReturn

import msgpack

from golemd.host import apps as apps_mod
from golemd.host import runtime as worker  # imported here once, so a forked worker starts with it
from golemd.host.proctitle import argv_area, libc_prctl, set_title
from golemd.wire.codec import pack

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SPARES = 4  # forked in a row while spawns queue up: see fork_spares


def _prctl(option: int, arg: int) -> None:
    prctl = libc_prctl()
    if prctl is not None:
        try:
            prctl(option, arg, 0, 0, 0)
        except Exception:
            pass


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Die with our parent."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> None:
    """Orphaned descendants (a grandchild that double-forked or called setsid)
    are re-parented to us instead of init, so they can still be found and killed."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _own_children() -> list[int]:
    """Our children, from the kernel's list (we are single-threaded, so the
    main thread's list is all of them)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        return []


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.send(pack(msg))


_RESET_SIGNALS = tuple(int(s) for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
_SIG_DFL = int(signal.SIG_DFL)


def _prepare(parent: int) -> None:
    """What every worker does first, whatever it will run: leave the
    template's signal set-up, get its own process group, die with the
    template, adopt its orphans, never dump core."""
    signal.set_wakeup_fd(-1)
    for sig in _RESET_SIGNALS:
        # The C function: signal.signal's wrapper makes enums of both handlers,
        # which costs a new worker some 60 pages copied from the template.
        _signal.signal(sig, _SIG_DFL)
    os.setsid()  # its own process group, so stopping it stops its children too
    set_parent_death_signal()
    if os.getppid() != parent:
        os._exit(1)
    become_subreaper()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _become(ctl_fd: int, out_fd: int, err_fd: int, cls: type, memory_limit: int) -> NoReturn:
    """Turn a prepared process into the worker of `cls`, on these fds."""
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.dup2(ctl_fd, 3)
    os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # only 0-3 stay open
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    worker.run(3, cls)


def _child(ctl_fd: int, out_fd: int, err_fd: int, cls: type, parent: int,
           memory_limit: int) -> NoReturn:
    try:
        _prepare(parent)
        _become(ctl_fd, out_fd, err_fd, cls, memory_limit)
    except BaseException:  # noqa: B036
        traceback.print_exc()
    os._exit(70)


# A spare worker: its pid and the template's end of its channel (a bare
# _socket.socket, which is all send_fds needs).
Spare = tuple[int, _socket.socket]
_AF_UNIX = int(socket.AF_UNIX)
_SOCK_SEQPACKET = int(socket.SOCK_SEQPACKET)


def fork_spares(count: int, parent: int, types: dict[str, type], close: list[int]) -> list[Spare]:
    """`count` workers forked before they are needed, each waiting for its type and fds.

    A fork is most of a new agent's first call (about 0.8 ms of 2): with a
    spare at hand the template answers a spawn at once, and forks the next
    spares after it has answered, off the caller's path. While spawns queue
    up it forks several in a row, because it copies every page it writes
    after a fork (the children share them): the pages a spawn's handling
    writes are then copied once per batch. Those a fork itself writes are
    kept few by plain calls here (socket.socketpair's Python wrapper and an
    object per spare cost some 30 pages more per fork). Pages the template
    copies per new worker (bench.w4split): 140-144 one at a time with the
    wrapper, 54-57 in fours."""
    sys.stdout.flush()  # once: nothing is written between these forks
    sys.stderr.flush()
    spares: list[Spare] = []
    for _ in range(count):
        ours, theirs = _socket.socketpair(_AF_UNIX, _SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            # The template's ends of the channels of the spares forked before
            # us: not ours to hold.
            _wait_as_spare(theirs, parent, types, [*close, *(sock.fileno() for _, sock in spares)])
        theirs.close()
        spares.append((pid, ours))
    return spares


def assign(spare: Spare, type_name: str, memory_limit: int, fds: list[int]) -> bool:
    """Hand a spare a worker's fds; False if it is gone (then fork instead)."""
    sock = spare[1]
    try:
        socket.send_fds(sock, [pack({"type": type_name, "memory_limit": memory_limit})], fds)  # type: ignore[arg-type]
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _wait_as_spare(sock: _socket.socket, parent: int, types: dict[str, type], close: list[int]) -> NoReturn:
    try:
        _prepare(parent)
        set_title("golemd: spare worker")
        for fd in close:
            os.close(fd)  # the template's own channel and wake-up pipe: not ours to hold
        data, fds, _flags, _addr = socket.recv_fds(sock, 4096, 3)  # type: ignore[arg-type]
        if not data or len(fds) != 3:
            os._exit(0)  # the template no longer needs us
        msg = msgpack.unpackb(data, raw=False)
        sock.close()
        _become(fds[0], fds[1], fds[2], types[msg["type"]], int(msg.get("memory_limit") or 0))
    except BaseException:  # noqa: B036
        traceback.print_exc()
    os._exit(70)


def _reap(sock: socket.socket, workers: set[int], spares: set[int]) -> None:
    reaped = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped = True
        if pid in workers:
            workers.discard(pid)
            _send(sock, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
    if reaped:
        # A dead worker's children were re-parented to us (we are a subreaper):
        # an agent's processes must not outlive it. Killing one orphans its own
        # children to us in turn; they go at the next reap.
        for orphan in _own_children():
            if orphan not in workers and orphan not in spares:
                try:
                    os.kill(orphan, signal.SIGKILL)
                except OSError:
                    pass


def serve(sock: socket.socket, types: dict[str, type]) -> NoReturn:
    libc_prctl()  # looked up here, once, for every worker forked from now on
    argv_area()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    me = os.getpid()
    workers: set[int] = set()
    own_fds = [sock.fileno(), wake_r, wake_w]
    spares: deque[Spare] = deque(fork_spares(SPARES, me, types, own_fds))
    watched: list[socket.socket | int] = [sock, wake_r]
    queued = select.poll()  # whether another spawn is waiting already
    queued.register(sock, select.POLLIN)
    while True:
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(sock, workers, {pid for pid, _ in spares})
        if sock not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 8)
        except OSError:
            data, fds = b"", []
        if not data:
            os._exit(0)  # the supervisor went away
        msg = msgpack.unpackb(data, raw=False)
        if msg.get("op") != "spawn":
            continue
        cls = types.get(msg["type"])
        if cls is None or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            _send(sock, {"op": "spawn_failed", "req": msg["req"],
                         "error": f"type {msg['type']!r} is not loaded"})
            continue
        memory_limit = int(msg.get("memory_limit") or 0)
        pid = 0
        while spares and not pid:
            spare = spares.popleft()
            if assign(spare, msg["type"], memory_limit, fds):
                pid = spare[0]
        if not pid:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(fds[0], fds[1], fds[2], cls, me, memory_limit)
        workers.add(pid)
        for fd in fds:
            os.close(fd)
        _send(sock, {"op": "spawned", "req": msg["req"], "pid": pid})
        if not spares:
            # Now that this one is answered: several in a row while spawns
            # queue up (W4's shape), one while they come one at a time, so
            # that a lone new agent's first call does not run beside four forks.
            spares.extend(fork_spares(SPARES if queued.poll(0) else 1, me, types, own_fds))


def main(argv: list[str]) -> NoReturn:
    # Ctrl-C in golemd's terminal reaches the template too (it shares the
    # daemon's process group): the daemon stops, and the template goes when
    # its channel closes, not with a KeyboardInterrupt traceback. Its workers
    # put SIGINT back to the default (_prepare) in process groups of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    set_parent_death_signal()
    if os.getppid() == 1:
        os._exit(1)  # the daemon died before we could ask to die with it
    become_subreaper()
    try:
        catalog = apps_mod.load_apps(argv[1:])
    except BaseException as exc:  # noqa: B036 - report any import failure, then exit
        _send(sock, {"op": "load_failed", "error": "".join(traceback.format_exception(exc))})
        os._exit(1)
    from golemd.sdk import registered_types

    _send(sock, {"op": "ready", "types": catalog})
    # Worked out here, once, rather than in each worker.
    for cls in registered_types().values():
        worker.class_facts(cls)
    worker.premake_unpacker()
    # Everything imported so far is left out of garbage collection from now
    # on: a collection in a worker would otherwise write to every inherited
    # object's header and un-share the pages fork gave it for free.
    gc.freeze()
    serve(sock, registered_types())


if __name__ == "__main__":
    main(sys.argv[1:])
