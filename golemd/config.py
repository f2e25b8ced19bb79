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
    # speed tricks turned off, to measure what each does (bench/RESULTS.md):
    # "cork" (one write per client per burst), "early_start" (an awaited call to an
    # idle warm agent goes to its worker before its enqueue commits), "lazy_commit"
    # (that enqueue's commit waits for the outcome's or for the loop to idle)
    perf_off: tuple[str, ...] = ()
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
    # HTTP (golemd.http): /metrics and the dashboard; off unless an ADDR:PORT is given
    http: str | None = None
    http_allow_remote: bool = False  # binding a non-loopback address needs this
    http_session_seconds: float = 12 * 3600.0  # a dashboard login lasts this long
    http_max_connections: int = 64  # more are closed at once
    http_request_timeout: float = 10.0  # for a request's head, and for its body
    # traces (the golemd[otel] extra): an OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318
    otel_endpoint: str | None = None
    # cluster (DESIGN.md §7; needs store = a PostgreSQL URL): this node's name, the
    # TCP address other nodes reach it on, the file holding the shared secret
    node: str | None = None
    node_listen: str | None = None
    cluster_secret_file: str | None = None
    lease_timeout: float = 5.0  # a node that cannot renew its lease this long loses its agents
    # logs
    log_level: str = "INFO"
    log_format: str = "text"  # "json": one object per line, for log shippers
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
        unknown = set(self.perf_off) - {"cork", "early_start", "lazy_commit"}
        if unknown:
            problems.append(f"perf_off knows cork, early_start and lazy_commit, not {', '.join(sorted(unknown))}")
        if self.log_format not in ("text", "json"):
            problems.append("log_format must be text or json")
        if self.http_max_connections < 1:
            problems.append("http_max_connections must be at least 1")
        if self.http_session_seconds <= 0 or self.http_request_timeout <= 0:
            problems.append("http_session_seconds and http_request_timeout must be positive")
        if self.http is not None:
            try:
                host, _port = parse_http_address(self.http)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if not self.http_allow_remote and not is_loopback(host):
                    problems.append(f"http address {self.http!r} is not a loopback address: anyone who can "
                                    "reach it could try to log in; set http_allow_remote = true to bind it")
        if self.node is not None:
            if not self.store:
                problems.append("a cluster node (node) needs store: the PostgreSQL database the nodes share")
            if not (self.node_listen and self.cluster_secret_file):
                problems.append("a cluster node (node) needs node_listen (HOST:PORT) and cluster_secret_file")
            if self.lease_timeout < 0.5:
                problems.append("lease_timeout must be at least 0.5 seconds")
        if self.otel_endpoint is not None and not self.otel_endpoint.startswith(("http://", "https://")):
            problems.append(f"otel_endpoint must be an http:// or https:// URL (OTLP/HTTP), got {self.otel_endpoint!r}")
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


def parse_http_address(text: str) -> tuple[str, int]:
    """"127.0.0.1:7070", "[::1]:7070", "localhost:7070" -> (host, port); port 0: any free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"http must be ADDR:PORT (e.g. 127.0.0.1:7070), got {text!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_OPTIONAL_STR = ("socket", "state_dir", "socket_group", "http", "otel_endpoint", "node", "node_listen",
                 "cluster_secret_file")


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
        want = str if name in _OPTIONAL_STR else type(getattr(defaults, name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ValueError(f"option {name} must be {want.__name__}, got {value!r}")
    return Config(**values).validate()
