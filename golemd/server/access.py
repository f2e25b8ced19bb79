"""Who may use the daemon, from the peer's credentials (SO_PEERCRED)."""

from __future__ import annotations

import logging
import os
import socket
import struct
from typing import Any

log = logging.getLogger("golemd.server")


MUTATING = frozenset({"invoke", "new", "cancel", "interrupt", "simulate_crash", "resume", "delete", "revert",
                      "promise_complete", "reload", "stop", "dashboard"})


def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the connected process (SO_PEERCRED)."""
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
    except (OSError, AttributeError):
        return None
    return pid, uid, gid


class Access:
    """Who may use the daemon: our own user, root, the allowed uids, and the
    members of the socket group and the allowed groups. The socket's mode is
    the first gate; this one holds even where the mode is wider (a socket
    made by systemd, a group that grew)."""

    def __init__(self, uids: tuple[int, ...], groups: tuple[str, ...]):
        import grp

        self.uids = {0, os.geteuid(), *uids}
        self.gids = set()
        for name in groups:
            try:
                self.gids.add(grp.getgrnam(name).gr_gid)
            except KeyError:
                log.warning("allowed group %r does not exist", name)

    def allows(self, peer: tuple[int, int, int] | None) -> bool:
        if peer is None:
            return False
        pid, uid, gid = peer
        if uid in self.uids or gid in self.gids:
            return True
        return bool(self.gids & _supplementary_groups(pid))


def _supplementary_groups(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def refusal(peer: tuple[int, int, int] | None) -> str:
    """What UNAUTHORIZED tells a refused peer: who it is, and which of the
    daemon's settings would let it in. The settings' values are not told: a
    refused user has no business learning who else may connect."""
    if peer is None:
        return "golemd could not tell who is connecting (no SO_PEERCRED): it lets nobody in so"
    uid = peer[1]
    me = os.geteuid()
    return (f"uid {uid} ({_user_name(uid)}) may not use this golemd, which runs as uid {me} "
            f"({_user_name(me)}) and lets in its own user, root, and the users its configuration "
            f"allows. To allow this one, golemd's operator adds it to golemd.toml: "
            f"`allow_uids = [{uid}]`, or one of its groups to `allow_groups`, or makes it a member "
            "of `socket_group` (--socket-group); then restarts golemd")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
