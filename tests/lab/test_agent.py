"""The agent inside lab nodes, following a real git repository in the lab's shared folder
and converging real keepalived: commits, broken and unsigned commits, force pushes,
pruning, drift, kill -9 in the middle of an apply, one agent per node, SIGHUP/SIGTERM.

The operator's side is the host: a working repository and a bare one ("origin") in
`lab.shared`; the agent in lb1 watches the bare repository (a local path) and reacts to a
push at once. Each test gets a fresh two-node lab (they take ~0.1 s) so that no daemon or
state leaks from one test to the next.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from controller.lab import Lab, temporary_lab
from tests.lab.agent_helpers import FREEZE_ON_TEMP_FILE, GIT_ENV

pytestmark = pytest.mark.lab

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
"""
KA_CONF = "/etc/keepalived/keepalived.conf"



def vip(name: str, address: str, router_id: int, priority: int = 150, extra: str = "") -> str:
    return f"""\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {{name: {name}}}
spec:
  cluster: web
  manager: keepalived
  address: {address}
  interface: eth0
  keepalived:
    routerId: {router_id}
    priority: {{lb1: {priority}, lb2: 100}}
{extra}"""


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Operator:
    """The operator's repositories in lab.shared, and the agent in lb1."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.work = lab.shared / "work"
        self.origin = lab.shared / "origin.git"
        self.log = lab.shared / "agent.log"
        self.agent: subprocess.Popen | None = None
        self.gnupg: Path | None = None
        self.work.mkdir()
        self.git("init", "-q", "-b", "main")
        self.write({"cluster.yaml": CLUSTER})
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "the cluster")
        subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.origin)], check=True,
                       capture_output=True, env={**os.environ, **GIT_ENV})
        self.git("remote", "add", "origin", str(self.origin))

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(["git", *args], cwd=self.work, check=True, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV, **(env or {})}).stdout.strip()

    def write(self, files: dict[str, str | None]) -> None:
        for name, text in files.items():
            if text is None:
                (self.work / name).unlink()
            else:
                (self.work / name).write_text(text)

    def push(self, files: dict[str, str | None], message: str = "change", *, sign: str | None = None,
             force: bool = False) -> str:
        """Commit (signed with key `sign` if given) and push to origin; the commit id."""
        self.write(files)
        self.git("add", "-A")
        if sign:
            self.git("-c", f"user.signingkey={sign}", "commit", "-q", "-S", "--allow-empty", "-m", message,
                     env={"GNUPGHOME": str(self.gnupg)})
        else:
            self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", *(["--force"] if force else []), "origin", "main")
        return self.git("rev-parse", "HEAD")

    # --- the agent --------------------------------------------------------------------------

    def start(self, *extra: str) -> subprocess.Popen:
        out = open(self.log, "a")
        self.agent = self.lab.popen("lb1", ["reconcile", "agent", "--repo", str(self.origin), "--ref", "main",
                                            "--resync", "10m", *extra], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_for(lambda: self.status().get("agent") and self.status().get("running"), what="the agent to start")
        return self.agent

    def agent_pid(self) -> int:
        """The agent's PID as the host sees it (nsenter forks it)."""
        assert self.agent is not None
        children = Path(f"/proc/{self.agent.pid}/task/{self.agent.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def stop(self) -> int:
        """SIGTERM, as systemd would: the agent finishes and exits."""
        assert self.agent is not None
        os.kill(self.agent_pid(), signal.SIGTERM)
        code = self.agent.wait(30)
        self.agent = None
        return code

    def status(self) -> dict[str, Any]:
        r = self.lab.exec("lb1", ["reconcile", "status", "-o", "json"], check=False)
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def converged_at(self, sha: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            agent = self.status().get("agent") or {}
            return agent if agent.get("revision") == sha and agent.get("ready") else None

        return wait_for(check, timeout, f"revision {sha[:12]} to be applied")

    def keepalived_conf(self) -> str:
        return self.lab.exec("lb1", ["cat", KA_CONF], check=False).stdout

    def addresses(self) -> set[str]:
        data = json.loads(self.lab.exec("lb1", ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout)
        return {f"{a['local']}/{a['prefixlen']}" for i in data for a in i.get("addr_info", [])}

    def close(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            for child in Path(f"/proc/{self.agent.pid}/task/{self.agent.pid}/children").read_text().split():
                os.kill(int(child), signal.SIGKILL)  # the agent, even if a test left it stopped
            os.kill(self.agent.pid, signal.SIGCONT)  # nsenter stops with its child: let it reap
            self.agent.kill()
            self.agent.wait(10)
        if self.gnupg is not None:
            subprocess.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "all"], check=False)


@pytest.fixture
def ops():
    with temporary_lab(nodes=2) as lab:
        op = Operator(lab)
        try:
            yield op
        finally:
            op.close()
            if op.log.exists():
                print(op.log.read_text()[-6000:])  # shown when the test fails


def test_a_push_converges_the_node_and_status_and_metrics_report_it(ops):
    ops.start()
    started = time.monotonic()
    sha = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    agent = ops.converged_at(sha)
    took = time.monotonic() - started
    assert "192.0.2.100/24" in ops.keepalived_conf() and "virtual_router_id 51" in ops.keepalived_conf()
    assert agent["reason"] == "ReconciliationSucceeded" and agent["lastRun"]["trigger"] == "commit"
    assert took < 20, f"the commit took {took:.1f}s to be applied"
    # keepalived (no peer running) becomes MASTER and holds the address
    wait_for(lambda: "192.0.2.100/24" in ops.addresses(), what="the VIP on lb1")
    metrics = ops.lab.exec("lb1", ["python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                                   "'http://127.0.0.1:9358/metrics', timeout=5).read().decode())"]).stdout
    assert f'reconcile_revision_info{{revision="{sha}"' in metrics
    assert 'reconcile_objects{kind="VirtualIP",result=' in metrics
    # SIGHUP: reconcile now
    runs = ops.status()["agent"]["runs"]
    ops.lab.exec("lb1", ["kill", "-HUP", ops.lab.read_file("lb1", "/var/lib/reconcile/lock").strip()])
    wait_for(lambda: ops.status()["agent"]["runs"] > runs, what="the SIGHUP run")
    assert ops.status()["agent"]["lastRun"]["trigger"] == "signal"
    assert ops.stop() == 0
    assert "agent stopped" in ops.log.read_text()
    assert ops.status()["exitCode"] == 1  # reconcile status tells the agent is gone


def test_a_broken_commit_applies_nothing_and_the_fix_after_it_applies(ops):
    ops.start()
    good = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(good)
    before = ops.keepalived_conf()
    # one commit changes the priority AND adds a broken manifest: nothing of it may apply
    bad = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=200),
                    "broken.yaml": vip("db-vip", "192.0.2.300/24", 52)})
    agent = wait_for(lambda: (ops.status().get("agent") or {}).get("latestRevision") == bad and ops.status()["agent"],
                     what="the broken revision to be seen")
    assert agent["reason"] == "ArtifactFailed" and agent["revision"] == good and not agent["ready"]
    assert any(p.startswith("broken.yaml:7: spec.address:") for p in agent["latestError"]["problems"])
    assert ops.keepalived_conf() == before
    text = ops.lab.exec("lb1", ["reconcile", "status"], check=False)
    assert text.returncode == 1 and f"revision {bad[:12]} refused" in text.stdout
    fix = ops.push({"broken.yaml": vip("db-vip", "192.0.2.101/24", 52)})
    ops.converged_at(fix)
    conf = ops.keepalived_conf()
    assert "priority 200" in conf and "192.0.2.101/24" in conf
    assert ops.stop() == 0


def test_an_unsigned_commit_is_refused_under_verify_commits(ops):
    ops.gnupg = ops.lab.shared / "gnupg"
    ops.gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(ops.gnupg)]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "Operator <ops@example.test>", "ed25519", "sign",
                    "never"], check=True, capture_output=True)
    listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    keyring = ops.lab.shared / "trusted.asc"
    keyring.write_bytes(subprocess.run([*gpg, "--export", fpr], check=True, capture_output=True).stdout)

    signed = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)}, sign=fpr)
    ops.start("--verify-commits", str(keyring))
    agent = ops.converged_at(signed)
    assert agent["source"]["signer"] == f"Operator <ops@example.test> ({fpr})"
    before = ops.keepalived_conf()
    unsigned = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=200)})
    agent = wait_for(lambda: (ops.status().get("agent") or {}).get("latestRevision") == unsigned and ops.status()["agent"],
                     what="the unsigned revision to be seen")
    assert agent["reason"] == "VerificationFailed" and agent["revision"] == signed
    assert f"commit {unsigned[:12]} is not signed; refused" in agent["message"]
    assert ops.keepalived_conf() == before
    resigned = ops.push({}, "signed again", sign=fpr)
    ops.converged_at(resigned)
    assert "priority 200" in ops.keepalived_conf()
    assert ops.stop() == 0


def test_a_force_push_is_followed_and_a_removed_manifest_prunes_only_what_the_agent_made(ops):
    ops.lab.exec("lb1", ["ip", "addr", "add", "192.0.2.200/24", "dev", "eth0"])  # by hand, not in git
    ops.start()
    first = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51),
                      "vip2.yaml": vip("api-vip", "192.0.2.101/24", 52)})
    ops.converged_at(first)
    wait_for(lambda: {"192.0.2.100/24", "192.0.2.101/24"} <= ops.addresses(), what="both VIPs")
    # history rewrite: replace that commit by one without api-vip and with another web-vip
    ops.git("reset", "-q", "--hard", "HEAD~1")
    rewritten = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=180)}, "rewritten", force=True)
    agent = ops.converged_at(rewritten)
    conf = ops.keepalived_conf()
    assert "priority 180" in conf and "192.0.2.101" not in conf
    wait_for(lambda: "192.0.2.101/24" not in ops.addresses(), what="api-vip to be let go")
    assert "192.0.2.200/24" in ops.addresses() and "192.0.2.100/24" in ops.addresses()
    inventory = json.loads(ops.lab.read_file("lb1", "/var/lib/reconcile/inventory.json"))
    assert set(inventory["objects"]) == {"VirtualIP/web-vip"}
    assert agent["revision"] == rewritten
    assert ops.stop() == 0


def test_drift_is_corrected_by_the_agent_at_once(ops):
    ops.start()
    sha = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(sha)
    wait_for(lambda: "192.0.2.100/24" in ops.addresses(), what="the VIP on lb1")
    # someone edits the generated keepalived.conf by hand: the VirtualIP watch sees the
    # file change and the agent puts git's version back
    conf = ops.keepalived_conf()
    assert "priority 150" in conf
    ops.lab.write_file("lb1", KA_CONF, conf.replace("priority 150", "priority 10"))
    edited = time.monotonic()
    wait_for(lambda: "priority 150" in ops.keepalived_conf(), timeout=20, what="the file to be put back")
    took = time.monotonic() - edited
    history = wait_for(lambda: [h for h in ops.status()["history"] if h["counts"].get("drift-corrected")],
                       what="a drift-corrected run in the history")
    assert history[0]["trigger"] == "drift"
    assert took < 10, f"drift took {took:.1f}s to be corrected"
    assert ops.status()["agent"]["driftEvents"] >= 1
    assert ops.stop() == 0


HAPROXY = """\
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  nodes: [lb1]
  mode: http
  balance: roundrobin
  healthCheck: {type: tcp}
  servers:
    - {name: app1, address: 192.0.2.12, port: 8001}
    - {name: app2, address: 192.0.2.12, port: 8002}
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: web}
spec:
  nodes: [lb1]
  mode: http
  bind:
    - {address: 192.0.2.11, port: 8080}
  defaultBackend: app
"""
# Runs in the node: one command on HAProxy's admin socket, the answer printed.
HAPROXY_CLI = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(sys.argv[1].encode() + b"\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode())
"""


def test_a_haproxy_server_disabled_by_hand_is_put_back_by_the_agent(ops):
    ops.start()
    sha = ops.push({"haproxy.yaml": HAPROXY})
    ops.converged_at(sha)

    def admin_state(server: str) -> int | None:
        out = ops.lab.exec("lb1", ["/usr/bin/python3", "-c", HAPROXY_CLI, "show servers state app"]).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) > 6 and f[3] == server:
                return int(f[6])
        return None

    assert admin_state("app1") == 0
    ops.lab.exec("lb1", ["/usr/bin/python3", "-c", HAPROXY_CLI, "set server app/app1 state maint"])
    disabled = time.monotonic()
    wait_for(lambda: admin_state("app1") == 0, timeout=20, what="app1 to be ready again")
    took = time.monotonic() - disabled
    history = wait_for(lambda: [h for h in ops.status()["history"] if h["counts"].get("drift-corrected")],
                       what="a drift-corrected run")
    assert history[0]["trigger"] == "drift" and took < 10
    assert admin_state("app2") == 0  # untouched
    assert ops.stop() == 0


def resume(ops: Operator, agent: int, sig: int) -> None:
    """Send `sig` to the stopped agent, then continue nsenter: it stops itself when its
    child stops (as a shell would), and must run again to reap the agent."""
    os.kill(agent, sig)
    assert ops.agent is not None
    os.kill(ops.agent.pid, signal.SIGCONT)


def test_kill_9_in_the_middle_of_an_apply_then_restart_converges_and_a_second_agent_refuses(ops):
    ops.start()
    first = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51)})
    ops.converged_at(first)
    # one agent per node: a second one refuses to start while the first runs
    second = ops.lab.exec("lb1", ["reconcile", "agent", "--repo", str(ops.origin), "--metrics-port", "0"],
                          check=False, timeout=60)
    holder = ops.lab.read_file("lb1", "/var/lib/reconcile/lock").strip()
    assert second.returncode == 1
    assert f"another reconcile (pid {holder}) holds /var/lib/reconcile/lock" in second.stderr

    # kill -9 in the middle of the apply that installs a new keepalived.conf: a watcher in
    # the node freezes the agent (SIGSTOP) the moment the temp file appears, that is after
    # the temp file was created and before the rename that would install it; then kill -9
    agent = ops.agent_pid()
    frozen = ""
    for attempt in range(5):
        watcher = ops.lab.popen("lb1", ["/usr/bin/python3", "-c", FREEZE_ON_TEMP_FILE, holder],
                                stdout=subprocess.PIPE, text=True)
        assert watcher.stdout is not None and watcher.stdout.readline().strip() == "watching"
        sha = ops.push({"vip.yaml": vip("web-vip", "192.0.2.100/24", 51, priority=190 - attempt)})
        temp = watcher.stdout.readline().strip()
        watcher.wait(30)
        if temp and ops.lab.exec("lb1", ["test", "-e", f"/etc/keepalived/{temp}"], check=False).returncode == 0:
            frozen = temp  # stopped before the rename: the apply is half done
            break
        resume(ops, agent, signal.SIGCONT)  # too late (already renamed): let it finish, try again
        ops.converged_at(sha)
    assert frozen, "could not stop the agent between writing the temp file and installing it"
    resume(ops, agent, signal.SIGKILL)
    ops.agent.wait(10)
    conf = ops.keepalived_conf()
    assert "priority 150" in conf and f"priority {190 - attempt}" not in conf  # the old file, whole
    assert ops.lab.exec("lb1", ["keepalived", "-t", "-f", KA_CONF], check=False).returncode == 0

    # the lock of the dead agent is free; the new agent converges
    ops.start()
    agent_status = ops.converged_at(sha)
    assert agent_status["pid"] != int(holder)
    conf = ops.keepalived_conf()
    assert f"priority {190 - attempt}" in conf and conf.count("vrrp_instance") == 1
    assert ops.lab.exec("lb1", ["keepalived", "-t", "-f", KA_CONF], check=False).returncode == 0
    assert ops.stop() == 0
