"""Say why golemd cannot be reached, naming the path, the likely cause and
what to do about it.

"No such file" alone is the classic supervisorctl complaint (supervisor
#480, #851): the user cannot tell a stopped daemon from a wrong path, a stale
socket or a permission problem. Each errno gets its own explanation here,
and each explanation ends with the command that fixes it.
"""

from __future__ import annotations

import errno
import os
import stat

from golemctl.paths import ROOT_SOCKET, builtin_socket_path
from golemd.model.errors import Code, GolemError

# sizeof(sockaddr_un.sun_path) on Linux; CPython refuses longer paths.
MAX_SOCKET_PATH = 108


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
        return unreachable(_not_running(path))
    if code == errno.ECONNREFUSED:
        kind = _file_kind(path)
        if kind not in (None, "socket"):
            return unreachable(f"{path} is a {kind}, not a socket: golemd does not listen there"
                               f"{_origin(path)}; point --socket / GOLEMD_SOCKET at golemd's socket")
        return unreachable(_stale(path))
    if code in (errno.EACCES, errno.EPERM):
        return unreachable(_permission_denied(path))
    if code is None and "too long" in str(exc):
        return path_too_long(path) or unreachable(f"socket path {path} is too long")
    why = os.strerror(code) if code else str(exc)
    return unreachable(f"cannot connect to golemd at {path}: {why}")


# --- not running, stale ---------------------------------------------------------


def _origin(path: str) -> str:
    """Where golemctl took `path` from, for the user who did not choose it:
    ' (from GOLEMD_SOCKET)', or nothing for a path given."""
    if os.environ.get("GOLEMD_SOCKET") == path:
        return " (the path in GOLEMD_SOCKET)"
    if path == builtin_socket_path():
        return f" (golemctl's default for uid {os.getuid()})"
    return ""


def _start_commands(path: str) -> str:
    """How to start a golemd that listens on `path`."""
    builtin = builtin_socket_path()
    if path not in (builtin, os.environ.get("GOLEMD_SOCKET")):
        return f"`golemd --socket {path} --app YOUR_APP`"
    text = "`golemd --app YOUR_APP`, or from a golemd checkout `make run`"
    if path == builtin:  # where the systemd units listen
        text += (", or `systemctl start golemd.socket` (the system service)" if os.getuid() == 0 else
                 ", or `systemctl --user start golemd.socket` (the user service)")
    return text


def _not_running(path: str) -> str:
    text = (f"no socket at {path}: golemd is not running there{_origin(path)}. "
            f"Start it: {_start_commands(path)}; or point --socket / GOLEMD_SOCKET at the socket "
            "of a golemd that runs")
    if os.getuid() != 0 and path != ROOT_SOCKET and _file_kind(ROOT_SOCKET) == "socket":
        text += f". A system golemd has its socket at {ROOT_SOCKET}: --socket {ROOT_SOCKET}"
    return text


def _stale(path: str) -> str:
    return (f"socket {path} exists but no daemon accepts connections on it{_origin(path)}: "
            "a stale socket, left by a golemd that died or was killed (or one that is just "
            f"stopping). Starting golemd replaces it: {_start_commands(path)}; "
            f"or remove it with `rm {path}`")


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


# --- permission denied ----------------------------------------------------------


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
    return f"{text}: {_how_to_get_in(st, stat.S_ISDIR(st.st_mode))}"


def _how_to_get_in(st: os.stat_result, directory: bool) -> str:
    """What lets this user through a mode that refused it."""
    me = _user(os.getuid())
    group = _group(st.st_gid)
    # Connecting needs write permission on the socket, search on directories.
    needed = stat.S_IXGRP if directory else stat.S_IWGRP
    in_session = st.st_gid in os.getgroups() or st.st_gid == os.getgid()
    if st.st_mode & needed and not in_session:
        if me in _members(st.st_gid):
            return (f"you were added to group {group} after this session began: log in again "
                    f"(or run `newgrp {group}`) to use it")
        return (f"only members of group {group} may use it: ask an administrator to run "
                f"`usermod -aG {group} {me}`, then log in again (or run `newgrp {group}`)")
    if directory:
        return (f"only {_user(st.st_uid)} may enter that directory: golemd's operator can put "
                "the socket where you may reach it (`socket = \"PATH\"` in golemd.toml, or "
                "--socket PATH)")
    return (f"golemd lets only its own user ({_user(st.st_uid)}) connect to it. Run golemctl as "
            f"{_user(st.st_uid)}, or have golemd's operator set `socket_group = \"GROUP\"` in its "
            f"golemd.toml (or start it with --socket-group GROUP) and add you to that group: "
            f"`usermod -aG GROUP {me}`, then log in again")


def _members(gid: int) -> list[str]:
    import grp

    try:
        return list(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return []


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
