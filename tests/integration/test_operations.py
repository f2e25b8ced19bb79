"""Operations: sd_notify, watchdog, socket activation, signals, reload, permissions,
stale sockets, connection errors, per-agent logs, units."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import EXAMPLES, ROOT, DaemonProc, RawConn, running, wait_for

GOLEMCTL = [sys.executable, "-m", "golemctl"]


def golemctl(sock: str, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GOLEMCTL, "--socket", sock, *args], capture_output=True, text=True,
                          timeout=60, user=user, cwd=str(ROOT))


def test_notify_status_watchdog_and_stopping():
    with running(env={"WATCHDOG_USEC": "200000"}) as d:
        assert "MAINPID" in d.wait_note("READY=1")
        d.notes.clear()
        d.wait_note("WATCHDOG=1", 5)
        d.notes.clear()
        d.wait_note("WATCHDOG=1", 5)  # again: it keeps pinging from the loop
        d.proc.send_signal(signal.SIGTERM)
        d.wait_note("STOPPING=1", 10)
        assert d.proc.wait(30) == 0


def test_agents_do_not_see_systemd_variables(tmp_path: Path):
    src = tmp_path / "envagent.py"
    src.write_text("import os\nfrom golemd import agent\n\n@agent\nclass EnvAgent:\n"
                   "    def env(self) -> dict:\n        return dict(os.environ)\n"
                   "    def fds(self) -> list:\n        return sorted(int(f) for f in os.listdir('/proc/self/fd'))\n")
    with running(apps=(str(src),), env={"WATCHDOG_USEC": "60000000", "LISTEN_FDNAMES": "x"}) as d:
        c = d.conn()
        env = c.ok("invoke", agent="EnvAgent()", method="env")["result"]
        assert not [k for k in env if k.startswith(("NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_"))]
        fds = c.ok("invoke", agent="EnvAgent()", method="fds")["result"]
        assert fds[:4] == [0, 1, 2, 3] and len(fds) <= 5  # +1: the listdir's own fd
        c.close()


def test_second_signal_stops_workers_at_once():
    d = DaemonProc(args=("--drain-timeout", "60")).start()
    try:
        c = d.conn()
        c.ok("invoke", agent='SlowAgent("f")', method="work", args=[60, "long"], mode="trigger",
             idempotency_key="long")
        wait_for(lambda: c.meta('SlowAgent("f")').get("status") == "Running")
        d.proc.send_signal(signal.SIGTERM)
        d.wait_note("STOPPING=1")
        start = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
        assert time.monotonic() - start < 15
        d.assert_no_strays()
        d.start()
        c = d.conn()
        # The forced-out invocation is still journaled and runs again.
        wait_for(lambda: c.meta('SlowAgent("f")').get("current_invocation"), 10)
        c.close()
    finally:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)
        d.assert_no_strays()


def test_sighup_and_daemon_reload_load_changed_code(tmp_path: Path):
    src = tmp_path / "versioned.py"
    code = "from golemd import agent\n\n@agent\nclass Versioned:\n    def version(self) -> str:\n        return {v!r}\n"
    src.write_text(code.format(v="v1"))
    with running(apps=(str(src),)) as d:
        c = d.conn()
        assert c.ok("invoke", agent="Versioned()", method="version")["result"] == "v1"
        src.write_text(code.format(v="v2"))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: c.ok("invoke", agent="Versioned()", method="version")["result"] == "v2", 15,
                 what="the new code after SIGHUP")
        src.write_text(code.format(v="v3"))
        r = golemctl(d.socket, "daemon", "reload")
        assert r.returncode == 0, r.stderr
        assert c.ok("invoke", agent="Versioned()", method="version")["result"] == "v3"
        c.close()


def test_reload_with_broken_code_keeps_the_running_code(tmp_path: Path):
    src = tmp_path / "fragile.py"
    src.write_text("from golemd import agent\n\n@agent\nclass Fragile:\n    def ok(self) -> int:\n        return 1\n")
    with running(apps=(str(src),)) as d:
        src.write_text("this is not python\n")
        r = golemctl(d.socket, "daemon", "reload")
        assert r.returncode == 1 and "could not be loaded" in r.stderr
        c = d.conn()
        assert c.ok("invoke", agent="Fragile()", method="ok")["result"] == 1
        c.close()


def test_permissions_on_a_fresh_start(daemon: DaemonProc):
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert stat.S_ISSOCK(os.stat(daemon.socket).st_mode)
    assert mode(daemon.socket) == 0o600
    assert mode(daemon.state_dir) == 0o700
    c = daemon.conn()
    c.ok("invoke", agent="Printer()", method="say", args=["x"])
    c.close()
    for name in os.listdir(daemon.state_dir):
        path = os.path.join(daemon.state_dir, name)
        assert mode(path) & 0o077 == 0, (name, oct(mode(path)))


def test_socket_group_makes_it_0660():
    with running(args=("--socket-group", "nogroup")) as d:
        st = os.stat(d.socket)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 65534


def test_stale_socket_is_replaced_and_other_files_refused():
    d = DaemonProc()
    os.makedirs(d.base, exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(d.socket)
    s.close()  # a socket file nobody listens on: what a crashed daemon leaves
    d.start()
    c = d.conn()
    c.ok("status")
    c.close()
    d.stop()
    d.assert_no_strays()
    for make in (lambda p: Path(p).write_text("precious"), lambda p: os.symlink("/etc/passwd", p)):
        make(d.socket)
        r = subprocess.run(d.command(), capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "refusing to replace" in r.stderr
        assert os.path.lexists(d.socket)  # left alone
        os.unlink(d.socket)


def test_connection_errors_name_the_path_and_the_cause(tmp_path: Path):
    missing = str(tmp_path / "none.sock")
    r = golemctl(missing, "daemon", "status")
    assert r.returncode == 3 and missing in r.stderr and "not running" in r.stderr
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    r = golemctl(stale, "daemon", "status")
    assert r.returncode == 3 and stale in r.stderr and "stale" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_permission_denied_names_mode_and_owner(daemon: DaemonProc):
    import grp  # noqa: F401 - `nobody` cannot read this interpreter's stdlib: import it now
    import pwd  # noqa: F401

    from golemctl.client import Client

    os.chmod(daemon.base, 0o755)  # let `nobody` reach the socket file itself
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to nobody, then connects with the client library
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                Client.connect(daemon.socket).request("status")
                msg = "connected"
            except Exception as exc:
                msg = f"{getattr(exc, 'code', '')}|{exc}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    msg = os.read(r, 65536).decode()
    os.close(r)
    assert msg.startswith("DAEMON_UNREACHABLE|"), msg
    assert "permission denied" in msg.lower() and "0600" in msg, msg
    c = daemon.conn()
    c.ok("status")  # the daemon keeps serving
    c.close()


def test_agent_output_goes_to_a_capped_log_file(daemon: DaemonProc):
    c = daemon.conn()
    c.ok("invoke", agent="Printer()", method="say", args=["line", 5])
    logs = Path(daemon.state_dir, "logs")
    files = wait_for(lambda: [p for p in logs.glob("Printer*.log") if "line 4" in p.read_text()], 5)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    c.ok("delete", agent="Printer()")
    wait_for(lambda: not list(logs.glob("Printer*")), 5, what="the log to be removed with the agent")
    assert "by pid" in daemon.log()  # mutating operations log who did them
    c.close()


def test_golemctl_stream_follow_json_lines(daemon: DaemonProc):
    import json
    import threading

    c = daemon.conn()
    c.ok("invoke", agent="Printer()", method="say", args=["before", 1])
    proc = subprocess.Popen([*GOLEMCTL, "--socket", daemon.socket, "--format", "json", "agent", "stream",
                             "--follow", "--last", "0", "Printer()"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in proc.stdout if x.strip()))
    reader.start()
    try:
        # Print until the follower shows it is attached, then the line we look for.
        def attached() -> bool:
            c.ok("invoke", agent="Printer()", method="say", args=["ping", 1])
            return any(e["line"] == "ping 0" for e in lines)
        wait_for(attached, 15, interval=0.1, what="golemctl to follow the agent")
        c.ok("invoke", agent="Printer()", method="say", args=["hello", 2])
        wait_for(lambda: any(e["line"] == "hello 1" for e in lines), 10)
        c.ok("delete", agent="Printer()")  # ends the stream
        assert proc.wait(20) == 0
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(e["type"] == "output" and e["stream"] == "stdout" for e in lines)
    assert "before 0" not in [e["line"] for e in lines]  # --last 0: nothing from before
    c.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_verify_and_score(tmp_path: Path):
    units = ROOT / "systemd"
    r = subprocess.run(["systemd-analyze", "verify", "golemd.socket", "golemd.service"], cwd=units,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    xdg = tmp_path / "xdg"  # a user manager needs a runtime directory
    xdg.mkdir(mode=0o700)
    r = subprocess.run(["systemd-analyze", "--user", "verify", "golemd.socket", "golemd.service"],
                       cwd=units / "user", capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XDG_RUNTIME_DIR": str(xdg)})
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=30", "golemd.service"],
                       cwd=units, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-2000:]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_cluster_node_drop_in_verifies(tmp_path: Path):
    units = tmp_path / "units"
    (units / "golemd.service.d").mkdir(parents=True)
    for name in ("golemd.service", "golemd.socket"):
        shutil.copy(ROOT / "systemd" / name, units / name)
    shutil.copy(ROOT / "systemd" / "golemd.service.d" / "cluster.conf", units / "golemd.service.d" / "cluster.conf")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    r = subprocess.run(["systemd-analyze", "verify", "golemd.service"], cwd=units, capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # the secret reaches golemd as a credential: a copy it may read, the original root's
    assert "--cluster-secret-file ${CREDENTIALS_DIRECTORY}/cluster-secret" in (units / "golemd.service.d" /
                                                                               "cluster.conf").read_text()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate not installed")
def test_socket_activation(tmp_path: Path):
    base = DaemonProc().base
    sock = os.path.join(base, "golemd.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    act = subprocess.Popen(["systemd-socket-activate", "-l", sock, "-E", f"PYTHONPATH={ROOT}",
                            sys.executable, "-m", "golemd.cli", "--state-dir",  # no --socket: the fd says
                            os.path.join(base, "state"), "--app", EXAMPLES],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: os.path.exists(sock), 10, what="the activation socket")
        r = golemctl(sock, "agent", "invoke", 'CounterAgent("sa")', "increment")
        assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "1", r.stderr
        c = RawConn(sock)
        status = c.ok("status")
        assert status["pid"] == act.pid  # exec'd in place, as under systemd
        assert status["socket"] == sock
        c.close()
        assert golemctl(sock, "daemon", "stop").returncode == 0
        out, _ = act.communicate(timeout=30)
        assert "using the socket passed by systemd" in out
        assert os.path.exists(sock)  # golemd never unlinks a socket it did not create
    finally:
        if act.poll() is None:
            act.kill()
            act.wait()


def test_reload_during_a_call_finishes_it_on_the_old_code_then_retires_it(tmp_path: Path):
    src = tmp_path / "slowversion.py"
    code = ("import time\nfrom golemd import agent\n\n@agent\nclass SlowVersion:\n"
            "    def version(self, seconds: float = 0) -> str:\n        time.sleep(seconds)\n"
            "        return {v!r}\n")
    src.write_text(code.format(v="v1"))
    with running(apps=(str(src),)) as d:
        c = d.conn()
        busy = c.send(op="invoke", agent="SlowVersion()", method="version", args=[1.5])
        wait_for(lambda: c.meta("SlowVersion()").get("status") == "Running")
        src.write_text(code.format(v="v2"))
        assert c.ok("reload")["ok"] is True
        assert c.reply(busy)["result"] == "v1"  # it finished on the code it started with
        assert c.ok("invoke", agent="SlowVersion()", method="version")["result"] == "v2"

        def templates() -> int:
            kids = psutil.Process(d.proc.pid).children()
            return sum("golemd.host.zygote" in " ".join(k.cmdline()) for k in kids)

        wait_for(lambda: templates() == 1, 10, what="the old template to stop")
        c.close()


def test_workers_show_their_agent_id_in_ps(daemon: DaemonProc):
    c = daemon.conn()
    c.ok("invoke", agent='CounterAgent("c1")', method="increment")
    c.ok("invoke", agent="dev/EchoAgent()", method="echo", args=[1])
    for agent, comm in (('CounterAgent("c1")', "CounterAgent"), ("dev/EchoAgent()", "EchoAgent")):
        pid = c.meta(agent)["pid"]
        ps = subprocess.run(["ps", "-o", "comm=,args=", "-p", str(pid)], capture_output=True, text=True)
        assert ps.stdout.split(None, 1) == [comm, f"golemd: {agent}\n"], ps.stdout
    template = psutil.Process(c.meta('CounterAgent("c1")')["pid"]).parent()
    assert "golemd.host.zygote" in " ".join(template.cmdline())
    want = {'golemd: CounterAgent("c1")', "golemd: dev/EchoAgent()", "golemd: spare worker"}
    # The spares are forked, and name themselves, just after a spawn was answered.
    wait_for(lambda: {" ".join(p.cmdline()) for p in template.children()} == want, 10,
             what="the template's children to be the two workers and spares")
    c.close()
