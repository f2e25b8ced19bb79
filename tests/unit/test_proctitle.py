"""golemd.host.proctitle: a process's command line and comm, as ps reads them."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, sys
from golemd.host.proctitle import argv_area, set_title
before = open('/proc/self/cmdline', 'rb').read()
ok = set_title(sys.argv[1], sys.argv[2] or None)
print(json.dumps({"ok": ok, "area": argv_area()[1], "before": len(before),
                  "cmdline": open('/proc/self/cmdline', 'rb').read().decode(),
                  "comm": open('/proc/self/comm').read(), "argv": sys.argv[1:]}))
"""


def titled(title: str, comm: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, title, comm], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_the_command_line_is_the_title_alone():
    r = titled('golemd: CounterAgent("c1")', "CounterAgent")
    assert r["ok"] is True
    assert r["cmdline"] == 'golemd: CounterAgent("c1")\0'  # up to the first NUL, as ps shows it
    assert r["comm"] == "CounterAgent\n"
    assert r["area"] == r["before"]  # the area is the original argv, NULs included
    assert r["argv"] == ['golemd: CounterAgent("c1")', "CounterAgent"]  # Python's copy is untouched


def test_a_long_title_is_cut_to_the_area_and_comm_to_15_bytes():
    r = titled("golemd: " + "x" * 5000)
    assert r["area"] > 5000
    assert r["cmdline"] == ("golemd: " + "x" * 5000)[:4095] + "\0"  # what the kernel reads: one page
    assert r["comm"] == "golemd: xxxxxxx\n"
    r = titled("golemd: " + "y" * 300, "c")
    assert len(r["cmdline"]) - 1 == min(r["area"] - 2, 308)
