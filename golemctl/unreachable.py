"""Say why golemd cannot be reached, naming the path and the likely cause.

"No such file" alone is the classic supervisorctl complaint (supervisor
#480, #851): the user cannot tell a stopped daemon from a wrong path, a stale
socket or a permission problem. Each errno gets its own explanation here.
"""

from __future__ import annotations

import errno
import os
import stat

from golemd.model.errors import Code, GolemError

# sizeof(sockaddr_un.sun_path) on Linux; CPython refuses longer paths.
MAX_SOCKET_PATH = 108

_NOT_RUNNING = ("golemd is not running there (start it with `golemd`, "
                "or point --socket / GOLEMD_SOCKET at it)")


def unreachable(message: str) -> GolemError:
    return GolemError(Code.DAEMON_UNREACHABLE, message)


def path_too_long(path: str) -> GolemError | None:
    n = len(os.fsencode(path))
    if n <= MAX_SOCKET_PATH:
        return None
    return unreachable(f"socket path {path} is {n} bytes long, over the {MAX_SOCKET_PATH}-byte "
                       "limit of Unix sockets; use a shorter --socket / GOLEMD_SOCKET")


def explain_connect_error(path: str, exc: BaseException, timeout: float) -> GolemError:
    """The DAEMON_UNREACHABLE error for a failed connect to `path`."""
    if isinstance(exc, TimeoutError):
        return unreachable(f"golemd at {path} did not accept the connection within {timeout:g} s "
                           "(is it overloaded or stopped with SIGSTOP?)")
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENOTDIR):
        return unreachable(f"no socket at {path}: {_NOT_RUNNING}")
    if code == errno.ECONNREFUSED:
        kind = _file_kind(path)
        if kind not in (None, "socket"):
            return unreachable(f"{path} is a {kind}, not a socket: {_NOT_RUNNING}")
        return unreachable(f"socket {path} exists but no daemon accepts connections "
                           "(stale socket left by a daemon that died?)")
    if code in (errno.EACCES, errno.EPERM):
        return unreachable(_permission_denied(path))
    if code is None and "too long" in str(exc):
        return path_too_long(path) or unreachable(f"socket path {path} is too long")
    why = os.strerror(code) if code else str(exc)
    return unreachable(f"cannot connect to golemd at {path}: {why}")


def _file_kind(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "regular file"
    return "special file"


def _permission_denied(path: str) -> str:
    # The refusal may come from a parent directory without search permission
    # (e.g. a 0750 runtime dir) rather than from the socket's own mode.
    target = path
    parent = os.path.dirname(os.path.abspath(path))
    for d in _ancestors(parent):
        if not os.access(d, os.X_OK):
            target = d
            break
    try:
        st = os.stat(target)
    except OSError:
        return f"permission denied on {target}; you are {_whoami()}"
    owner = f"{st.st_uid}:{st.st_gid} {_user(st.st_uid)}/{_group(st.st_gid)}"
    text = (f"permission denied on {target} (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}; "
            f"you are {_whoami()})")
    # Connecting needs write permission on the socket, search on directories.
    needed = stat.S_IXGRP if stat.S_ISDIR(st.st_mode) else stat.S_IWGRP
    in_group = st.st_gid in os.getgroups() or st.st_gid == os.getgid()
    if st.st_mode & needed and not in_group:
        text += f"; to use it, join group {_group(st.st_gid)} (then log in again)"
    return text


def _ancestors(directory: str) -> list[str]:
    out = []
    while True:
        out.append(directory)
        up = os.path.dirname(directory)
        if up == directory:
            return out[::-1]
        directory = up


def _whoami() -> str:
    groups = sorted(set(os.getgroups()) | {os.getgid()})
    names = ", ".join(f"{g}({_group(g)})" for g in groups)
    return f"uid {os.getuid()} ({_user(os.getuid())}) in groups {names}"


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def connection_lost(path: str, e: OSError) -> GolemError:
    """The connection broke in the middle of an exchange."""
    return unreachable(f"lost the connection to golemd at {path}: {e.strerror or e}")
