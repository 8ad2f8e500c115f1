"""The reconcilers' systemd paths on nodes that boot a real systemd, from a fresh Debian
node (the packages' services running as installed) onwards: HAProxy, keepalived,
Corosync and Pacemaker started, reloaded and enabled through systemctl; a unit stopped by
hand is drift (planned, then started again); a unit masked or disabled by hand is an
operator's hold (reported, left so) unless the manifest says `metadata.drift: enforce`.

One two-node lab for the module, its tests in order: they build on each other's state.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from controller.cli import DEFAULT_REPO
from controller.lab import Lab, temporary_lab

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")

VIP = """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {name: web-vip%(drift)s}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  interface: eth0
  keepalived:
    routerId: 51
    priority: {lb1: %(lb1)d, lb2: 100}
"""
HAPROXY = """\
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  cluster: web
  healthCheck: {type: none}
  servers:
    - {name: s1, address: 192.0.2.11, port: 8080}
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: web%(drift)s}
spec:
  cluster: web
  bind:
    - {address: 192.0.2.100, port: 80}
  defaultBackend: app%(extra)s
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, systemd=True) as lab:
        yield lab


def write_tree(lab: Lab, *, priority: int = 150, drift: str = "", extra: str = "") -> Path:
    """The module's tree (Cluster from desired-state/, a keepalived VIP, HAProxy), replaced whole."""
    repo = lab.shared / "tree"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    shutil.copy(DEFAULT_REPO / "cluster.yaml", repo)
    meta = f", drift: {drift}" if drift else ""
    (repo / "vip.yaml").write_text(VIP % {"lb1": priority, "drift": meta})
    (repo / "haproxy.yaml").write_text(HAPROXY % {"drift": meta, "extra": extra})
    return repo


def apply(lab: Lab, node: str, repo: Path) -> tuple[int, str]:
    r = lab.reconcile(node, "apply", "--repo", str(repo), "--color", "never", timeout=300)
    return r.returncode, r.stdout + r.stderr


def plan(lab: Lab, node: str, repo: Path) -> tuple[int, str]:
    r = lab.reconcile(node, "--dry-run", "--repo", str(repo), "--color", "never", timeout=120)
    return r.returncode, r.stdout + r.stderr


def show(lab: Lab, node: str, unit: str) -> dict[str, str]:
    props = "ActiveState,UnitFileState,MainPID,NRestarts,ExecMainStartTimestampMonotonic"
    out = lab.exec(node, ["systemctl", "show", f"--property={props}", unit]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(lab: Lab, node: str, unit: str, since: float) -> str:
    return lab.exec(node, ["journalctl", "-u", unit, "--no-pager", "-o", "cat", f"--since=@{since:.0f}"]).stdout


def system_state(lab: Lab) -> dict[str, str]:
    return {n: lab.exec(n, ["systemctl", "is-system-running"], check=False).stdout.strip() for n in NODES}


def node_time(lab: Lab, node: str) -> float:
    return float(lab.exec(node, ["date", "+%s"]).stdout) - 1


def test_a_fresh_node_converges_with_no_manual_step(lab: Lab) -> None:
    repo = write_tree(lab)
    rc, out = plan(lab, "lb1", repo)
    assert rc == 2 and "replaces the untouched one-node cluster the Debian packages started" in out, out
    for _ in range(2):  # the cluster forms once both nodes run it
        codes = {n: apply(lab, n, repo) for n in NODES}
        if all(rc == 0 for rc, _ in codes.values()):
            break
    assert all(rc == 0 for rc, _ in codes.values()), codes
    deadline = time.monotonic() + 30  # lb2's Pacemaker answered; its membership follows
    while (members := lab.exec("lb1", ["crm_mon", "-1", "--output-as=xml"]).stdout).count('online="true"') < 2:
        assert time.monotonic() < deadline, members
        time.sleep(0.5)
    assert 'name="node1"' not in members  # nothing left of the packages' cluster
    for node in NODES:
        for unit in ("corosync.service", "pacemaker.service", "keepalived.service", "haproxy.service"):
            state = show(lab, node, unit)
            assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled"), (node, unit)
        assert lab.exec(node, ["test", "-d", "/var/lib/pacemaker/cib.debian-default"], check=False).returncode == 0
    assert system_state(lab) == {"lb1": "running", "lb2": "running"}
    assert all(plan(lab, n, repo)[0] == 0 for n in NODES)


def test_haproxy_and_keepalived_are_reloaded_through_systemctl_not_restarted(lab: Lab) -> None:
    before = {u: show(lab, "lb1", u) for u in ("haproxy.service", "keepalived.service")}
    since = node_time(lab, "lb1")
    repo = write_tree(lab, priority=160, extra="\n  maxconn: 500")  # a structural HAProxy change
    rc, out = apply(lab, "lb1", repo)
    assert rc == 0, out
    for unit in ("haproxy.service", "keepalived.service"):
        after = show(lab, "lb1", unit)
        assert after["MainPID"] == before[unit]["MainPID"] and after["NRestarts"] == before[unit]["NRestarts"], unit
        assert "Reloaded" in journal(lab, "lb1", unit, since), unit
    assert "maxconn 500" in lab.read_file("lb1", "/etc/haproxy/haproxy.cfg")
    assert "priority 160" in lab.read_file("lb1", "/etc/keepalived/keepalived.conf")


def test_units_stopped_by_hand_are_drift_planned_then_started_again(lab: Lab) -> None:
    repo = lab.shared / "tree"
    for unit in ("haproxy.service", "keepalived.service", "pacemaker.service"):
        lab.exec("lb2", ["systemctl", "stop", unit], timeout=120)
    rc, out = plan(lab, "lb2", repo)
    assert rc == 2, out
    assert "+ Frontend web" in out and "keepalived: stopped → running" in out and "pacemaker: stopped → running" in out, out
    assert out.count("drift: changed outside git") >= 3, out
    assert "= ClusterConfig web" in out, out  # Pacemaker stopped: read from the CIB it saved, in sync
    rc, out = apply(lab, "lb2", repo)
    assert rc == 0 and "drift corrected" in out, out
    for unit in ("haproxy.service", "keepalived.service", "pacemaker.service"):
        assert show(lab, "lb2", unit)["ActiveState"] == "active", unit
    assert system_state(lab)["lb2"] == "running"


def test_a_unit_disabled_or_masked_by_hand_is_reported_and_left_so(lab: Lab) -> None:
    repo = lab.shared / "tree"
    lab.exec("lb2", ["systemctl", "disable", "--now", "keepalived.service"])
    lab.exec("lb2", ["systemctl", "mask", "haproxy.service"])  # still running, but held
    try:
        rc, out = plan(lab, "lb2", repo)
        assert rc == 2, out
        assert "units.haproxy: masked → enabled" in out, out  # HAProxy runs: only its unit is drift
        # keepalived stopped and disabled: its status says both (the plan shortens long values)
        assert 'keepalived: "stopped (keepalived.service is disabled on this node' in out, out
        assert "keepalived will be started" not in out, out  # held: it is not
        assert "keepalived.service is disabled on this node (its package enables it): an operator's hold" in out
        assert "haproxy.service is masked on this node: an operator's hold" in out
        for _ in range(2):  # a second apply changes nothing either
            rc, out = apply(lab, "lb2", repo)
            assert rc == 2 and "an operator's hold" in out, out
            assert show(lab, "lb2", "keepalived.service")["ActiveState"] == "inactive"
            assert show(lab, "lb2", "keepalived.service")["UnitFileState"] == "disabled"
            assert show(lab, "lb2", "haproxy.service")["UnitFileState"] == "masked"
        status = json.loads(lab.exec("lb2", ["cat", "/var/lib/reconcile/status.json"]).stdout)
        held = {f"{o['kind']}/{o['name']}": o["status"] for o in status["objects"] if o["status"] != "in-sync"}
        assert held == {"VirtualIP/web-vip": "pending", "Frontend/web": "pending"}, status
    finally:
        lab.exec("lb2", ["systemctl", "unmask", "haproxy.service"])


def test_metadata_drift_enforce_unmasks_enables_and_starts_held_units(lab: Lab) -> None:
    lab.exec("lb2", ["systemctl", "mask", "--now", "haproxy.service"])
    repo = write_tree(lab, priority=160, extra="\n  maxconn: 500", drift="enforce")
    rc, out = plan(lab, "lb2", repo)
    assert "unmasked and enabled by apply" in out and "enabled by apply" in out, out
    rc, out = apply(lab, "lb2", repo)
    assert rc == 0, out
    for unit in ("haproxy.service", "keepalived.service"):
        state = show(lab, "lb2", unit)
        assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled"), unit
    assert system_state(lab)["lb2"] == "running"


def test_a_cluster_that_is_not_the_packages_default_is_still_refused(lab: Lab) -> None:
    """lb2 leaves git's cluster and runs one of its own (an edited copy of the Debian file):
    reconcile refuses to replace it, and says why."""
    lab.exec("lb2", ["systemctl", "stop", "pacemaker.service", "corosync.service"], timeout=300)
    debian = Path("/etc/corosync/corosync.conf").read_text().replace("cluster_name: debian", "cluster_name: ops")
    lab.write_file("lb2", "/etc/corosync/corosync.conf", debian)
    lab.exec("lb2", ["systemctl", "start", "corosync.service"], timeout=60)
    deadline = time.monotonic() + 20
    while lab.exec("lb2", ["corosync-cfgtool", "-s"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    rc, out = apply(lab, "lb2", lab.shared / "tree")
    assert rc == 1 and "Corosync runs cluster 'ops'" in out and "refusing to replace it" in out, out
    assert "cluster_name: ops" in lab.read_file("lb2", "/etc/corosync/corosync.conf")
