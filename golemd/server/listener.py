"""Bind the daemon's Unix socket: published atomically with its final mode,
and probed before a path is declared stale."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

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
    # Listening before the path appears: a client that connects the moment it
    # sees the socket is queued, never refused.
    sock.listen(1024)
    os.rename(tmp, path)
    return sock
