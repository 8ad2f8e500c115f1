"""What the agent tells people and machines: `reconcile status`, the Prometheus endpoint,
and systemd's readiness and watchdog notifications (over a real datagram socket)."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from controller.agent import Agent, Notifier
from controller.cli import main as cli
from controller.state import NodeLock
from tests.unit.test_agent import backend, cycle, env  # noqa: F401  (env is a fixture)


def status(env, *args: str) -> int:  # noqa: F811
    return cli(["status", "--state-dir", str(env.state), "--color", "never", *args])


def test_status_shows_a_refused_revision_with_file_line_and_what_stays_applied(env, capsys):  # noqa: F811
    good = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    bad = env.repo.commit({"lb.yaml": backend("app").replace("balance:", "balanse:")})
    cycle(agent, "commit")
    with NodeLock(env.state):  # the agent runs in this process: its pid holds the lock
        assert status(env) == 1
        out = capsys.readouterr().out
        assert f"Agent on lb1: Not ready — ArtifactFailed (running, pid" in out
        assert f"revision {bad[:12]} refused, nothing of it applied" in out
        assert f"{good[:12]} stays applied" in out
        assert "lb.yaml:6: spec.balanse: unknown field" in out
        assert "+ Backend app (applied: create)" in out
        assert f"{bad[:12]}  refused" in out
        assert status(env, "-o", "json") == 1
        data = json.loads(capsys.readouterr().out)
    assert data["running"] and data["agent"]["revision"] == good and data["agent"]["latestRevision"] == bad
    assert data["agent"]["conditions"][1] == {"type": "Stalled", "status": "True", "reason": "ArtifactFailed",
                                              "message": data["agent"]["message"]}
    assert data["lastRun"]["objects"][0]["status"] == "changed"
    assert data["history"][0]["result"] == "refused" and data["exitCode"] == 1


def test_status_exit_code_is_0_when_converged_and_1_when_the_agent_is_gone(env, capsys):  # noqa: F811
    env.repo.commit({"lb.yaml": backend("app")})
    cycle(env.agent(), "startup")
    with NodeLock(env.state):
        assert status(env) == 0
        assert "Ready — ReconciliationSucceeded" in capsys.readouterr().out
    assert status(env) == 1
    assert "NOT RUNNING" in capsys.readouterr().out


def test_status_without_any_run_says_where_it_looked(tmp_path, capsys):
    assert cli(["status", "--state-dir", str(tmp_path)]) == 1
    assert f"No runs recorded in {tmp_path}" in capsys.readouterr().out


def test_metrics_are_served_on_loopback_with_the_applied_revision(env):  # noqa: F811
    sha = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    port = agent.metrics.serve("127.0.0.1", 0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        pass
    assert f'reconcile_revision_info{{revision="{sha}",source="{env.repo.path}@HEAD"}} 1.0' in text
    assert 'reconcile_runs_total{result="converged",trigger="startup"} 1.0' in text
    assert 'reconcile_objects{kind="Backend",result="changed"} 1.0' in text
    assert "reconcile_run_duration_seconds_bucket" in text and "process_resident_memory_bytes" in text
    assert "reconcile_ready 1.0" in text


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(3)
    yield sock, str(path)
    sock.close()


def test_sd_notify_reaches_a_path_and_an_abstract_socket(notify_socket):
    sock, path = notify_socket
    assert Notifier({"NOTIFY_SOCKET": path}).send("READY=1", "STATUS=hello")
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0reconcile-test-{id(abstract)}")
    abstract.settimeout(3)
    try:
        assert Notifier({"NOTIFY_SOCKET": f"@reconcile-test-{id(abstract)}"}).send("WATCHDOG=1")
        assert abstract.recv(100) == b"WATCHDOG=1"
    finally:
        abstract.close()
    assert not Notifier({}).send("READY=1")  # not under systemd: nothing, no error


def test_the_agent_is_ready_after_its_first_cycle_and_feeds_the_watchdog(env, notify_socket, monkeypatch):  # noqa: F811
    sock, path = notify_socket
    env.repo.commit({"lb.yaml": backend("app")})
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = Agent(env.config())
    assert agent.notifier.watchdog_seconds == 0.1
    agent.watchdog()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    got: list[str] = []
    try:
        # The watchdog pings every 50 ms here: on a busy machine several may come before
        # READY, so read until both were seen (bounded by the socket's timeout and a count).
        while len(got) < 500 and not (any(m.startswith("READY=1") for m in got) and "WATCHDOG=1" in got):
            got.append(sock.recv(4096).decode())
    finally:
        agent.stop_requested = True
        agent.triggers.put("stop")
        thread.join(5)
    ready = next(m for m in got if m.startswith("READY=1"))
    assert "STATUS=revision " in ready and ": converged" in ready
    assert "WATCHDOG=1" in got
    assert (env.store / "backend-app.json").exists()


def test_the_watchdog_starves_only_when_a_cycle_hangs(env, notify_socket, monkeypatch):  # noqa: F811
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "50000")
    monkeypatch.setattr("controller.agent.STALL_SECONDS", 0.2)
    agent = Agent(env.config())
    agent.watchdog()
    try:
        sock.settimeout(1)
        assert sock.recv(100) == b"WATCHDOG=1"  # idle, waiting for triggers: fed
        agent.busy_since = time.monotonic() - 1.0  # a cycle stuck for a second
        time.sleep(0.1)
        sock.setblocking(False)
        while True:  # drop what was sent before
            try:
                sock.recv(100)
            except BlockingIOError:
                break
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        agent.busy_since = None  # the cycle ended: fed again
        sock.settimeout(1)
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        agent.stopping.set()
