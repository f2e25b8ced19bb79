"""Name a worker in `ps` and `top`: its command line and its comm.

Every worker is a fork of the template, so without this they all read
`python -m golemd.host.zygote 5 APP...` in `ps`. Linux shows as a process's
command line the bytes of its original argv area, [arg_start, arg_end) in
/proc/PID/stat: overwriting them renames it. When the area's last byte is
not NUL the kernel reads the title only up to the first NUL (the convention
setproctitle(3) relies on), so the title is written, then NULs, then one
non-NUL byte at the very end. CPython keeps its own copies of the arguments
(sys.argv, sys.orig_argv), so nothing reads the area after start-up. The
title cannot grow past the area (the template's own command line, at least
some 40 bytes); longer ones are cut. The comm (`top`, `ps -o comm`, 15
bytes) is set with prctl(PR_SET_NAME).

The stdlib is enough here: the setproctitle package does the same, plus
moving the environment to make room for longer titles.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

PR_SET_NAME = 15
COMM_BYTES = 15
MAX_TITLE = 4095


_prctl: Any = None
_area: tuple[int, int] | None | bool = False  # False: not read yet


def libc_prctl() -> Any:
    """libc's prctl (no stdlib wrapper exists), looked up once: the template
    does it before it forks, and a worker's dlopen and symbol lookup would
    cost it a few hundred page faults of the template's memory."""
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except Exception:
            _prctl = False
    return _prctl or None


def argv_area() -> tuple[int, int] | None:
    """(address, length) of this process's argv area, or None if unknown;
    read once (a fork has its parent's)."""
    global _area
    if _area is False:
        _area = _read_argv_area()
    return _area  # type: ignore[return-value]


def _read_argv_area() -> tuple[int, int] | None:
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # Fields after the comm, which may hold spaces and parentheses:
        # field 3 (state) first, so arg_start (field 48) is at index 45.
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return None
    if start <= 0 or end - start < 3:
        return None
    return start, end - start


def set_title(title: str, comm: str | None = None) -> bool:
    """Show `title` as this process's command line and `comm` (or the start
    of the title) as its name. False if the command line could not be set."""
    _set_comm((comm or title).encode(errors="replace")[:COMM_BYTES])
    area = argv_area()
    if area is None:
        return False
    address, length = area
    # The kernel reads a title up to its NUL within one page.
    text = title.encode(errors="replace")[:min(length - 2, MAX_TITLE)]
    data = text + b"\0" * (length - 1 - len(text)) + b"."
    try:
        # Written through /proc/self/mem: plain syscalls, where ctypes.memmove
        # costs a new worker some 25 more pages copied from the template.
        fd = os.open("/proc/self/mem", os.O_WRONLY)
        try:
            written = os.pwrite(fd, data, address)
        finally:
            os.close(fd)
        if written == length:
            return True
    except OSError:
        pass
    ctypes.memmove(address, data, length)
    return True


def _set_comm(name: bytes) -> None:
    # /proc/self/comm first: plain syscalls, where a ctypes call costs a new
    # worker a dozen more pages copied from the template.
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, name)
            return
        finally:
            os.close(fd)
    except OSError:
        pass
    prctl = libc_prctl()
    if prctl is not None:
        try:
            prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
        except Exception:
            pass
