"""An agent's output: the recent lines in memory (for `agent stream` and its
followers) and a size-capped file, STATE_DIR/logs/<agent>.log plus one
rotated `.1`. The file is written from the event loop into a buffer flushed
once per loop round, so a chatty agent costs a write per burst, not per line;
the agent itself never waits on it (its pipe is drained regardless)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

Follower = Callable[[dict[str, Any] | None, str], None]
log = logging.getLogger("golemd.agent")


def log_path(logs_dir: str, agent_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", agent_name).strip("_")[:80]
    digest = hashlib.sha1(agent_name.encode()).hexdigest()[:10]
    return os.path.join(logs_dir, f"{safe}-{digest}.log")


class AgentLog:
    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.file: IO[str] | None = None
        self.size = 0
        self._flush_scheduled = False
        self.dropped_bytes = 0  # in the rotated file when the next rotation replaced it

    def write(self, stream: str, line: str, ts: float | None = None) -> None:
        try:
            self._write(stream, line, ts)
        except OSError:
            pass  # disk full or gone: the ring buffer and `agent stream` still have the line

    def _write(self, stream: str, line: str, ts: float | None) -> None:
        if self.file is None:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8", errors="replace")
            self.size = self.file.tell()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts or time.time()))
        text = f"{stamp} {stream} {line}\n"
        self.file.write(text)
        self.size += len(text)
        if self.size >= self.max_bytes:
            self._rotate()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.file is not None:
            try:
                self.file.flush()
            except OSError:
                pass  # disk full: the ring buffer still has the lines

    def _rotate(self) -> None:
        self.close()
        try:
            lost = os.path.getsize(self.path + ".1")
        except OSError:
            lost = 0  # the first rotation: nothing is lost yet
        if lost and not self.dropped_bytes:
            log.warning("%s: the agent's output outruns its %d-byte log file; older output is dropped "
                        "(counted in `agent get`, output_dropped_bytes)", self.path, self.max_bytes)
        self.dropped_bytes += lost
        try:
            os.replace(self.path, self.path + ".1")
        except OSError:
            pass
        self.size = 0

    def close(self) -> None:
        if self.file is not None:
            self.flush()
            self.file.close()
            self.file = None

    def remove(self) -> None:
        self.close()
        for p in (self.path, self.path + ".1"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


class AgentOutput:
    """The recent lines (bounded in count and bytes), the file, and who follows."""

    def __init__(self, path: str, max_lines: int, max_bytes: int, file_bytes: int) -> None:
        # Made at the first line: most agents print nothing, and an empty deque
        # is 600 bytes (10,000 agents, 6 MB).
        self.lines: deque[dict[str, Any]] | None = None
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.bytes = 0
        self.file = AgentLog(path, file_bytes)
        self.cut_lines = 0  # lines over 64 KiB arrive cut into pieces: how many pieces
        self.followers: set[Follower] = set()

    def add(self, entry: dict[str, Any]) -> None:
        lines = self.lines
        if lines is None:
            lines = self.lines = deque()
        lines.append(entry)
        self.bytes += len(entry["line"])
        while len(lines) > 1 and (len(lines) > self.max_lines or self.bytes > self.max_bytes):
            self.bytes -= len(lines.popleft()["line"])
        self.file.write(entry["stream"], entry["line"], entry["ts"])
        for follower in list(self.followers):
            follower(entry, "")

    def recent(self, last: int | None) -> list[dict[str, Any]]:
        """The newest `last` lines (all of them when fewer are buffered, or `last` is None)."""
        lines = list(self.lines or ())
        return lines if last is None else lines[max(0, len(lines) - last):]

    def end(self, reason: str) -> None:
        """Tell every follower the stream is over (the agent was deleted, the daemon stops)."""
        for follower in list(self.followers):
            follower(None, reason)
        self.followers.clear()
