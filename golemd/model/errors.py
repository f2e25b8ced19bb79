"""The error-code table: the single source of the codes that cross the wire.

Every refusal the daemon or golemctl makes carries one of these codes. The
exit status golemctl uses for each code lives here too, so the CLI and the
documentation cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    BAD_REQUEST = "BAD_REQUEST"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"
    TOO_LARGE = "TOO_LARGE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"
    TOO_LATE = "TOO_LATE"
    CANCELED = "CANCELED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    QUEUE_FULL = "QUEUE_FULL"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    INVALID_AGENT_ID = "INVALID_AGENT_ID"
    INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
    INVOCATION_FAILED = "INVOCATION_FAILED"
    SNAPSHOT_FAILED = "SNAPSHOT_FAILED"
    AGENT_FAILED = "AGENT_FAILED"
    AGENT_DIED = "AGENT_DIED"
    TIMEOUT = "TIMEOUT"
    INTERRUPTED = "INTERRUPTED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    STORAGE_FULL = "STORAGE_FULL"
    LOAD_FAILED = "LOAD_FAILED"
    UNAUTHORIZED = "UNAUTHORIZED"
    # durable execution (DESIGN.md §5)
    CALL_CYCLE = "CALL_CYCLE"
    NONDETERMINISM = "NONDETERMINISM"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    AGENT_EXISTS = "AGENT_EXISTS"
    NOT_OWNER = "NOT_OWNER"  # cluster: this node no longer owns the agent (nodes retry on its owner)
    NODE_UNREACHABLE = "NODE_UNREACHABLE"  # cluster: the agent's owner could not be reached in time
    NOT_ENABLED = "NOT_ENABLED"  # a feature golemd runs without (dashboard: no `http`)
    CPU_LIMIT = "CPU_LIMIT"  # an invocation used more CPU time than its type's cpu_limit  # agent new of an agent that exists with other environment variables
    INTERNAL = "INTERNAL"
    # Only golemctl produces these; they never come from the daemon.
    DAEMON_UNREACHABLE = "DAEMON_UNREACHABLE"
    USAGE = "USAGE"


# golemctl exit statuses (DESIGN.md section 3): 0 ok, 1 failed, 2 usage, 3 unreachable.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_USAGE_CODES = frozenset({Code.INVALID_AGENT_ID, Code.USAGE})


def exit_status(code: str) -> int:
    """The golemctl exit status for an error code."""
    if code in _USAGE_CODES:
        return EXIT_USAGE
    if code == Code.DAEMON_UNREACHABLE:
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class GolemError(Exception):
    """A refusal with a stable code; `details` carries structured extras
    (for INVOCATION_FAILED: the exception type, message and traceback)."""

    def __init__(self, code: Code | str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        # A code this version does not know (from a newer daemon) stays a str.
        self.code: Code | str = Code(code) if code in Code.__members__ else code
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": str(self.code.value if isinstance(self.code, Code) else self.code),
                               "message": self.message}
        if self.details:
            err["details"] = self.details
        return err

    @classmethod
    def from_wire(cls, err: dict[str, Any]) -> GolemError:
        return cls(str(err.get("code", "INTERNAL")), str(err.get("message", "")), err.get("details"))

    def __str__(self) -> str:
        code = self.code.value if isinstance(self.code, Code) else self.code
        return f"{code}: {self.message}"
