"""Where the daemon's socket lives by default.

Shared by golemd (which binds there) and golemctl (which connects there), so
the two cannot disagree. Imports only `os`: both start-up paths import it.
"""

from __future__ import annotations

import os

ROOT_SOCKET = "/run/golemd/golemd.sock"


def default_socket_path() -> str:
    """GOLEMD_SOCKET if set; as root /run/golemd/golemd.sock; otherwise
    $XDG_RUNTIME_DIR/golemd/golemd.sock, or /tmp/golemd-$UID/golemd.sock when
    XDG_RUNTIME_DIR is unset (cron jobs, su without a login session)."""
    env = os.environ.get("GOLEMD_SOCKET")
    if env:
        return env
    return builtin_socket_path()


def builtin_socket_path() -> str:
    """The default when GOLEMD_SOCKET is unset."""
    uid = os.getuid()
    if uid == 0:
        return ROOT_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "golemd", "golemd.sock")
    return f"/tmp/golemd-{uid}/golemd.sock"
