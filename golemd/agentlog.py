"""Each agent's output in a size-capped file: STATE_DIR/logs/<agent>.log, plus
one rotated `.1`. Written from the event loop into a buffered file and flushed
once per loop round, so a chatty agent costs a write per burst, not per line;
the agent itself never waits on it (its pipe is drained regardless)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from typing import IO


def log_path(logs_dir: str, agent_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", agent_name).strip("_")[:80]
    digest = hashlib.sha1(agent_name.encode()).hexdigest()[:10]
    return os.path.join(logs_dir, f"{safe}-{digest}.log")


class AgentLog:
    def __init__(self, path: str, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self.file: IO[str] | None = None
        self.size = 0
        self._flush_scheduled = False

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
