"""golemd.model imports nothing of golemd's outside itself, and what golemctl
takes from it stays light: golemctl imports it on every command."""

from __future__ import annotations

import subprocess
import sys

MODEL = ("agent_id", "catalog", "effects", "errors", "filters", "invocation", "oplog_query", "states",
         "tracecontext")
# What golemctl imports from the model, and what that must not pull in
# (agent_id imports ast only to parse, and its typing-only imports stay so).
GOLEMCTL_USES = ("agent_id", "errors", "filters", "states")
HEAVY = ("ast", "json", "dataclasses", "datetime", "logging", "inspect", "asyncio")


def _modules_after(imports: tuple[str, ...], names: str) -> list[str]:
    code = (f"import sys; import {', '.join('golemd.model.' + m for m in imports)}; "
            f"print(' '.join(sorted(m for m in sys.modules if {names})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_model_imports_nothing_of_golemd_outside_it():
    loaded = _modules_after(MODEL, "m.startswith('golemd')")
    assert [m for m in loaded if m not in ("golemd", "golemd.model") and not m.startswith("golemd.model.")] == []


def test_what_golemctl_imports_from_the_model_stays_light():
    assert _modules_after(GOLEMCTL_USES, f"m in {HEAVY!r}") == []
