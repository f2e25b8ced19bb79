"""`agent get`'s metadata of one agent (docs/protocol.md, METADATA)."""

from __future__ import annotations

from typing import Any


def metadata(agent: Any) -> dict[str, Any]:
    """`agent` is a golemd.driver.agent.Agent (not imported: it imports this module)."""
    eng = agent.engine
    worker = agent.worker if agent.worker is not None and agent.worker.alive else None
    rss, cpu = worker.usage() if worker else (None, None)
    cur = eng.current
    return {
        "agent_id": agent.name,
        "type": agent.id.type,
        "env": agent.id.env,
        "args": list(agent.id.args),
        "status": eng.status.value,
        "pending_invocation_count": eng.pending_count,
        "env_vars": dict(agent.env_vars),
        "current_invocation": {"idempotency_key": cur.key, "method": cur.method} if cur else None,
        "waiting_for": cur.waiting_for if cur else None,
        "pid": worker.pid if worker else None,
        "created_at": eng.created_at,
        "last_active_at": eng.last_active_at,
        "completed_count": eng.completed_count,
        "failed_count": eng.failed_count,
        "retry_count": eng.retry_count,
        "last_error": eng.last_error,
        "memory_rss_bytes": rss,
        "cpu_seconds": cpu,
        # What the bounds on its output cost since the daemon started: pieces
        # of over-long lines, and bytes its log file's rotation threw away.
        "output_cut_lines": agent.output.cut_lines,
        "output_dropped_bytes": agent.output.file.dropped_bytes,
    }
