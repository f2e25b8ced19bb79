"""One frozen Config: paths, limits, timeouts. Defaults, TOML file, validation.

Precedence: command-line flags > environment (GOLEMD_SOCKET, GOLEMD_STATE_DIR)
> the TOML file > defaults.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golemctl.paths import default_socket_path

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_state_dir() -> str:
    env = os.environ.get("GOLEMD_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/golemd"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "golemd")


def default_config_path() -> str:
    if os.geteuid() == 0:
        return "/etc/golemd/golemd.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "golemd", "golemd.toml")


@dataclass(frozen=True)
class Config:
    socket: str = field(default_factory=default_socket_path)
    state_dir: str = field(default_factory=default_state_dir)
    apps: tuple[str, ...] = ()
    socket_group: str | None = None  # the socket is 0660 and owned by this group; else 0600
    # queue and retry policy
    max_pending: int = 10_000
    retry_attempts: int = 3
    retry_backoff_initial: float = 0.1
    retry_backoff_max: float = 2.0
    # workers
    idle_timeout: float = 60.0
    max_live_workers: int = 256
    stop_grace: float = 2.0  # SIGTERM -> SIGKILL when stopping a worker (interrupt, delete, timeout)
    drain_timeout: float = 30.0
    memory_limit_mb: int = 0  # per worker address space (RLIMIT_AS); 0: none
    # the event loop polls this long before it sleeps (golemd.perf.spin); 0: never
    spin_us: float = 200.0
    # queued calls sent to a worker behind the one it runs, read together and
    # run back to back; each stays cancelable until it starts; 0: one at a time
    batch_calls: int = 16
    # durable execution: an invocation waiting (a call, a promise, a sleep)
    # this long has its process stopped; it runs again by replay when the wait ends
    suspend_after: float = 10.0
    # clients
    allow_uids: tuple[int, ...] = ()  # besides our own uid and root
    allow_groups: tuple[str, ...] = ()  # besides socket_group
    client_idle_timeout: float = 300.0  # a connection with nothing in flight
    client_read_timeout: float = 30.0  # a request that arrives only in part
    max_client_buffer: int = 128 * 1024 * 1024  # unread replies before a client is dropped
    # store: "" for golemd.db in state_dir (SQLite); a postgresql:// URL for PostgreSQL
    store: str = ""
    journal: str = "disk"  # "memory": nothing survives a restart (benchmarks only)
    synchronous: str = "NORMAL"
    retention_count: int = 10_000
    retention_seconds: float = 86_400.0
    # agent revert: states up to this many bytes are kept with each completed
    # invocation; revert cannot go back past one that changed a larger state
    revert_snapshot_bytes: int = 4096
    # logs
    log_level: str = "INFO"
    log_buffer_lines: int = 1000
    log_buffer_bytes: int = 1024 * 1024  # per agent: lines can be 64 KiB each
    agent_log_bytes: int = 1024 * 1024  # per agent file in STATE_DIR/logs, one rotation kept

    def validate(self) -> Config:
        problems = []
        if self.journal not in ("disk", "memory"):
            problems.append("journal must be disk or memory")
        if self.store and not self.store.startswith(POSTGRES_SCHEMES):
            # Only its scheme: the rest may hold a password.
            problems.append("store must be a postgresql:// (or postgres://) URL, or empty for golemd.db in "
                            f"the state directory; got {self.store.partition(':')[0][:20]!r}:...")
        if self.store and self.journal == "memory":
            problems.append("journal = memory keeps the SQLite store in memory: it does not go with store")
        if self.synchronous.upper() not in ("NORMAL", "FULL"):
            problems.append("synchronous must be NORMAL or FULL")
        for name in ("max_pending", "retry_attempts", "max_live_workers", "retention_count",
                     "log_buffer_lines", "log_buffer_bytes", "agent_log_bytes"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("retry_backoff_initial", "retry_backoff_max", "idle_timeout", "stop_grace",
                     "drain_timeout", "retention_seconds", "memory_limit_mb", "client_idle_timeout", "spin_us",
                     "batch_calls", "suspend_after", "revert_snapshot_bytes",
                     "client_read_timeout", "max_client_buffer"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if len(os.fsencode(self.socket)) >= 108:
            problems.append(f"socket path {self.socket!r} is too long for a Unix socket (max 107 bytes)")
        if self.socket_group is not None:
            import grp

            try:
                grp.getgrnam(self.socket_group)
            except KeyError:
                problems.append(f"socket_group {self.socket_group!r} does not exist")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def db_path(self) -> str:
        if self.journal == "memory":
            return ":memory:"
        return os.path.join(self.state_dir, "golemd.db")


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def load_config(path: str | None, overrides: dict[str, Any]) -> Config:
    """Build the Config from an optional TOML file plus non-None overrides."""
    values: dict[str, Any] = {}
    if path is not None or Path(default_config_path()).is_file():
        import tomllib

        file = path or default_config_path()
        with open(file, "rb") as f:
            data = tomllib.load(f)
        data = data.get("golemd", data)
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ValueError(f"{file}: unknown option {key!r}")
            values[name] = tuple(value) if isinstance(value, list) else value
    for env, name in (("GOLEMD_SOCKET", "socket"), ("GOLEMD_STATE_DIR", "state_dir")):
        if os.environ.get(env):
            values[name] = os.environ[env]
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    defaults = Config()
    for name, value in values.items():
        want = str if name in ("socket", "state_dir", "socket_group") else type(getattr(defaults, name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ValueError(f"option {name} must be {want.__name__}, got {value!r}")
    return Config(**values).validate()
