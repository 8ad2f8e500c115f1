"""The embedded desired-state/ as one working stack on real daemons, on nodes that boot a
real systemd with Debian's packages as installed, converged by the agent running as a
systemd service; and the dry-run guard.

One lab (lb1, lb2 booting systemd, and a Samba AD DC; lb2 serves SFTP for the Mount
examples) for the whole module, its tests in order: a dry-run of the fresh node; `reconcile
agent install` on both nodes converges the example with no manual step (the packages'
default cluster is replaced, sssd's sockets keep working, lb2's folder is mounted on lb1,
every node ends `running`); then the agent as a service: reload, journal fields, restart
after SIGKILL, the watchdog, and a stop that finishes the current change.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from controller.cli import DEFAULT_REPO
from controller.lab import Lab, temporary_lab
from tests.lab.agent_helpers import FREEZE_ON_TEMP_FILE, GIT_ENV
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")
# Everything a node keeps (and /tmp, listed: validators' temp files must be gone again).
WATCHED = ["/etc", "/var", "/run", "/home", "/root"]
UNIT = "reconcile-agent.service"


class Operator:
    """The operator's repository (a working copy and a bare origin) in the lab's shared
    folder; the agents follow the origin, a local path they watch."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.work = lab.shared / "repo"
        self.origin = lab.shared / "origin.git"
        shutil.copytree(DEFAULT_REPO, self.work)
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "the example")
        subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.origin)], check=True,
                       capture_output=True, env={**os.environ, **GIT_ENV})
        self.git("remote", "add", "origin", str(self.origin))

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.work, check=True, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV}).stdout.strip()

    def push(self, edits: dict[str, tuple[str, str]], message: str) -> str:
        """Replace text in files (name → (old, new)), commit, push; the commit id."""
        for name, (old, new) in edits.items():
            path = self.work / name
            text = path.read_text()
            assert old in text, (name, old)
            path.write_text(text.replace(old, new))
        self.git("commit", "-q", "-am", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def status(self, node: str) -> dict[str, Any]:
        r = self.lab.exec(node, ["reconcile", "status", "-o", "json"], check=False)
        return (json.loads(r.stdout) if r.stdout.strip() else {}).get("agent") or {}

    def unit(self, node: str) -> dict[str, str]:
        props = "ActiveState,SubState,MainPID,NRestarts,Result,ExecMainStatus,StatusText"
        out = self.lab.exec(node, ["systemctl", "show", f"--property={props}", UNIT]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, node: str, *matches: str) -> list[dict[str, str]]:
        out = self.lab.exec(node, ["journalctl", "-u", UNIT, "-o", "json", "--no-pager", *matches]).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, domain_controller=True, systemd=True, sftp=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def ops(lab):
    return Operator(lab)


def snapshot(lab, node: str) -> dict:
    """What a dry-run must not change: files and addresses (processes: processes_changed)."""
    # Not state: the running daemons write their own logs on their own timers (pacemaker.log),
    # journald its journal and systemd its run-time state. LXC's lock folders: what is there,
    # whole (a folder made and removed again changes its parent's time only); the native
    # check's scratch LXC path must leave none (issue 22). /run/lxc itself may be made by
    # LXC's tools on a node that never ran LXC (which changes /run's time): not state.
    files = lab.exec(node, ["find", *WATCHED, "-xdev", "-newer", "/tmp/.dry-run-marker", "-not", "-path", "/run",
                            "-not", "-path", "/run/lxc", "-not", "-path", "/run/lxc/*", "-not", "-path", "/var/log/*",
                            "-not", "-path", "/run/log/journal*", "-not", "-path", "/run/systemd/*"],
                     check=False).stdout.split()
    files += lab.exec(node, ["find", "/run/lxc", "-xdev", "-mindepth", "1"], check=False).stdout.split()
    # /tmp: validators' temp files must be gone again (what is there is compared, not times)
    files += lab.exec(node, ["find", "/tmp", "-xdev"], check=False).stdout.split()
    addrs = json.loads(lab.exec(node, ["ip", "-j", "addr"]).stdout)
    return {"changed files": sorted(files),
            "addresses": sorted((a["ifname"], i["local"]) for a in addrs for i in a.get("addr_info", []))}


SETTLED = 3  # seconds a process has run before it counts as the node's state


def processes(lab, node: str) -> dict[str, int]:
    """The node's processes ("pid comm") and how long each has run (s). Not `ps` itself: on a
    loaded CI machine the look may take seconds to walk /proc, and it showed up as a process
    that had run 3 s and ended (or was left) during the dry-run (CI: two tests of one run)."""
    out = lab.exec(node, ["ps", "-eo", "pid=,etimes=,comm="]).stdout.splitlines()
    return {f"{pid} {comm}": int(etimes) for pid, etimes, comm in (line.split(None, 2) for line in out if line.strip())
            if comm.strip() != "ps"}


def processes_changed(before: dict[str, int], after: dict[str, int]) -> str:
    """Processes a dry-run ended or left behind. Not state: the short ones the daemons start
    on their own timers (Pacemaker's resource monitors, keepalived's track script, sssd's
    helpers), which a look may or may not catch: only a process that had run SETTLED
    seconds counts as ended, and only one still running SETTLED seconds later as left."""
    gone = sorted(p for p, age in before.items() if age >= SETTLED and p not in after)
    new = sorted(p for p, age in after.items() if age >= SETTLED and p not in before)
    return f"processes ended {gone}, left {new}" if gone or new else ""


def recorded_dry_run(lab, node: str, repo: Path) -> tuple[int, str, list[dict]]:
    lab.exec(node, ["touch", "/tmp/.dry-run-marker"])
    record = lab.shared / f"record-{node}.json"
    before, running = snapshot(lab, node), processes(lab, node)
    result = lab.exec(node, ["env", f"RECONCILE_RECORD={record}", "reconcile", "--dry-run", "--repo", str(repo)],
                      check=False, timeout=300)
    after = snapshot(lab, node)
    assert after == before, "a dry-run changed the node: " + "; ".join(
        f"{key}: {sorted(set(before[key]) - set(after[key]))} → {sorted(set(after[key]) - set(before[key]))}"
        for key in before if before[key] != after[key])
    time.sleep(SETTLED)
    changed = processes_changed(running, processes(lab, node))
    assert not changed, f"a dry-run changed the node: {changed}"
    return result.returncode, result.stdout + result.stderr, json.loads(record.read_text())


def assert_read_only(records: list[dict]) -> None:
    assert records, "the recorder saw no command at all"
    refused = [f"{r['what']}: {' '.join(r['argv'])}" for r in records if not allowed(r["what"], r["argv"])]
    assert not refused, "dry-run ran commands outside the read-only allow-list:\n" + "\n".join(refused)


def test_dry_run_on_a_fresh_node_changes_nothing_and_only_reads(lab, ops):
    rc, out, records = recorded_dry_run(lab, "lb1", ops.work)
    assert rc == 2, out
    assert "+ VirtualIP web-vip" in out and "+ Mount reports" in out
    assert "replaces the untouched one-node cluster the Debian packages started" in out
    assert_read_only(records)


def test_the_agent_installed_as_a_service_converges_fresh_nodes_with_no_manual_step(lab, ops):
    installs = {n: lab.popen(n, ["reconcile", "agent", "install", "--repo", str(ops.origin), "--ref", "main",
                                 "--watchdog", "5s", "--restart-sec", "1s"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in NODES}
    for node, proc in installs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{node}: {out}"
    # The first runs race each other (the cluster forms once both run it); failed objects
    # back off and are retried, the agents converge on their own.
    head = ops.git("rev-parse", "HEAD")
    for node in NODES:
        wait_for(lambda: ops.status(node).get("ready") and ops.status(node).get("revision") == head, 300,
                 f"the agent on {node} to converge")
        rc = lab.reconcile(node, "--dry-run", "--repo", str(ops.work)).returncode
        assert rc == 0
        assert lab.exec(node, ["systemctl", "is-system-running"], check=False).stdout.strip() == "running", \
            lab.exec(node, ["systemctl", "--failed", "--no-legend"], check=False).stdout
        assert ops.unit(node)["ActiveState"] == "active"
    assert "services =" not in lab.read_file("lb1", "/etc/sssd/sssd.conf")
    assert lab.exec("lb1", ["getent", "passwd", "alice"]).stdout.startswith("alice:")


def test_the_stack_serves_http_through_the_vip(lab, ops):
    fetch = ("import urllib.request,sys;"
             "print(urllib.request.urlopen('http://192.0.2.100' + sys.argv[1], timeout=5).status)")
    for path in ("/", "/api"):
        assert lab.exec("lb2", ["/usr/bin/python3", "-c", fetch, path]).stdout.strip() == "200"


def test_the_reports_folder_of_lb2_is_mounted_on_lb1_through_rclone_and_sshfs_as_units(lab, ops):
    for point in ("/mnt/reports", "/mnt/reports-sshfs"):
        assert "Served over SFTP by lb2" in lab.exec("lb1", ["cat", f"{point}/README.txt"]).stdout
    units = ["mnt-reports.mount", "mnt-reports\\x2dsshfs.mount"]
    assert lab.exec("lb1", ["systemctl", "is-active", *units]).stdout.split() == ["active", "active"]
    assert lab.exec("lb2", ["systemctl", "is-active", "reconcile-lab-sftp.service"]).stdout.strip() == "active"


def test_a_commit_is_logged_in_the_journal_with_revision_and_object_fields(lab, ops):
    sha = ops.push({"backends.yaml": ("port: 80, weight: 2}", "port: 80, weight: 3}")}, "api2 weight 3")
    entries = wait_for(lambda: ops.journal("lb1", f"RECONCILE_REVISION={sha}", "RECONCILE_OBJECT=Backend/api"),
                       60, "a journal entry for Backend/api at the new revision")
    assert entries[0]["RECONCILE_STATUS"] == "changed" and entries[0]["SYSLOG_IDENTIFIER"] == "reconcile"
    run = ops.journal("lb1", f"RECONCILE_REVISION={sha}", "RECONCILE_TRIGGER=commit")
    assert any(e["MESSAGE"].startswith(f"revision {sha[:12]} (commit): converged") for e in run)


# The native validators of every kind (issue 12: `native_check` remembers what a node accepted).
VALIDATORS = ("haproxy -c", "keepalived -t", "corosync -t", "crm_verify", "lxc-ls -1", "visudo -c",
              "sssctl config-check", "rclone", "systemd-analyze")


def test_a_no_op_plan_of_the_applied_tree_runs_no_native_validator(lab, ops):
    for node in NODES:
        rc, out, records = recorded_dry_run(lab, node, ops.work)
        assert rc == 0, out
        ran = [" ".join(r["argv"]) for r in records if r["what"] == "exec"]
        assert not [c for c in ran if c.startswith(VALIDATORS) or " metadata" in c], ran


def test_systemctl_reload_reconciles_now(lab, ops):
    before = len(ops.journal("lb1", "RECONCILE_TRIGGER=signal"))
    lab.exec("lb1", ["systemctl", "reload", UNIT])
    runs = wait_for(lambda: ops.journal("lb1", "RECONCILE_TRIGGER=signal")[before:], 30, "a run after the reload")
    assert "(signal): in-sync in " in runs[0]["MESSAGE"], runs[0]["MESSAGE"]


def test_a_killed_agent_is_restarted_and_converges_what_changed_meanwhile(lab, ops):
    before = ops.unit("lb2")
    lab.exec("lb2", ["systemctl", "kill", "-s", "KILL", UNIT])
    lab.exec("lb2", ["systemctl", "stop", "haproxy.service"])  # drift while no agent runs
    wait_for(lambda: ops.unit("lb2")["NRestarts"] == str(int(before["NRestarts"]) + 1)
             and ops.unit("lb2")["ActiveState"] == "active", 60, "systemd to restart the agent")
    assert ops.unit("lb2")["MainPID"] != before["MainPID"]
    wait_for(lambda: lab.exec("lb2", ["systemctl", "is-active", "haproxy.service"], check=False).stdout.strip()
             == "active", 60, "the restarted agent to start HAProxy again")
    wait_for(lambda: lab.reconcile("lb2", "--dry-run", "--repo", str(ops.work)).returncode == 0, 60, "convergence")


def test_the_watchdog_restarts_a_hung_agent(lab, ops):
    before = ops.unit("lb2")
    lab.exec("lb2", ["kill", "-STOP", before["MainPID"]])
    wait_for(lambda: ops.unit("lb2")["MainPID"] not in ("0", before["MainPID"]), 30, "the watchdog to act")
    assert any("Watchdog timeout" in e["MESSAGE"] for e in ops.journal("lb2"))
    wait_for(lambda: ops.unit("lb2")["ActiveState"] == "active" and ops.status("lb2").get("ready"), 60,
             "the restarted agent to be ready")


def test_systemctl_stop_finishes_the_current_change_and_applies_no_more(lab, ops):
    """A commit changes the VIP (keepalived, applied first) and a Backend (after it). The
    agent is frozen in the middle of writing keepalived.conf, stopped, then let go: it
    finishes the keepalived change, leaves the Backend for later, and exits cleanly."""
    pid = ops.unit("lb1")["MainPID"]
    freezer = lab.popen("lb1", ["/usr/bin/python3", "-c", FREEZE_ON_TEMP_FILE, pid],
                        stdout=subprocess.PIPE, text=True)
    assert freezer.stdout.readline().strip() == "watching"
    ops.push({"virtual-ips.yaml": ("{lb1: 150,", "{lb1: 160,"),
              "backends.yaml": ("port: 80, weight: 3}", "port: 80, weight: 4}")}, "priority and weight")
    assert freezer.stdout.readline().startswith(".keepalived.conf.")
    freezer.wait(10)
    lab.exec("lb1", ["systemctl", "stop", "--no-block", UNIT])
    wait_for(lambda: ops.unit("lb1")["SubState"] in ("stop-sigterm", "deactivating"), 10, "the stop to begin")
    lab.exec("lb1", ["kill", "-CONT", pid])
    wait_for(lambda: ops.unit("lb1")["ActiveState"] == "inactive", 60, "the agent to stop")
    unit = ops.unit("lb1")
    assert (unit["Result"], unit["ExecMainStatus"]) == ("success", "0"), unit
    assert "priority 160" in lab.read_file("lb1", "/etc/keepalived/keepalived.conf")
    status = json.loads(lab.exec("lb1", ["cat", "/var/lib/reconcile/status.json"]).stdout)
    by_name = {f"{o['kind']}/{o['name']}": o for o in status["objects"]}
    assert by_name["VirtualIP/web-vip"]["status"] == "changed"
    assert by_name["Backend/api"]["status"] == "skipped"
    assert by_name["Backend/api"]["error"] == "not applied: the agent is stopping"
    assert "weight 3" in lab.read_file("lb1", "/etc/haproxy/haproxy.cfg")
    plan = lab.reconcile("lb1", "--dry-run", "--repo", str(ops.work), "--color", "never").stdout
    assert "= VirtualIP web-vip" in plan and "~ Backend api" in plan  # keepalived runs it; the rest waits


def test_dry_run_of_a_change_on_a_running_node_changes_nothing_and_only_reads(lab, ops):
    for node in NODES:  # no agent may change the node while it is watched
        lab.exec(node, ["systemctl", "stop", UNIT], timeout=300)
    changed = lab.shared / "repo-changed"
    shutil.copytree(ops.work, changed, ignore=shutil.ignore_patterns(".git"))
    backends = changed / "backends.yaml"
    backends.write_text(backends.read_text().replace("port: 80, weight: 4}", "port: 80, weight: 7}"))
    vips = changed / "virtual-ips.yaml"
    vips.write_text(vips.read_text().replace("lb2: 100", "lb2: 120"))
    rc, out, records = recorded_dry_run(lab, "lb1", changed)
    assert rc == 2, out
    assert "weight: 3 → 7" in out
    assert_read_only(records)
