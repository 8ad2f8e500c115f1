"""Health beside sync on real daemons: a half-applied Pacemaker cluster is in sync and
Degraded, then Healthy once the second node runs it; `apply --wait` returns when the VIP
answers HTTP (and exits 3 when health never comes); a VIP held by two nodes is a split
brain on both; a tree with a manifest placed nowhere is refused inside a node.

One lab per scenario (module-scoped where the steps build on each other).
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from controller.lab import COROSYNC_AUTHKEY_FILE, temporary_lab

pytestmark = pytest.mark.lab

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {{name: web}}
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
  stack: {stack}
{extra}"""
PACEMAKER = f"""\
  authkey: {{file: {COROSYNC_AUTHKEY_FILE}}}
  token: 1000ms
  quorum: {{twoNode: true, waitForAll: true}}
  stonithEnabled: false
  properties: {{no-quorum-policy: stop, dc-deadtime: 5s}}
"""
DB = """\
apiVersion: reconcile/v1
kind: ClusterResource
metadata: {name: db}
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  operations: [{name: monitor, interval: 10s, timeout: 20s}]
  colocation: [{with: db-vip}]
  startAfter: [db-vip]
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {name: db-vip}
spec:
  cluster: web
  manager: pacemaker
  address: 192.0.2.110/24
  interface: eth0
"""
WEB = """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {{name: web-vip}}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  keepalived: {{routerId: 51, priority: {{lb1: 150, lb2: 100}}}}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {{name: app}}
spec:
  cluster: web
  healthCheck: {{type: http, path: /, interval: 1s, rise: 1}}
  servers:
    - {{name: s1, address: 192.0.2.11, port: {port}}}
    - {{name: s2, address: 192.0.2.12, port: {port}}}
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {{name: web}}
spec:
  cluster: web
  bind: [{{address: 192.0.2.100, port: 80}}]
  defaultBackend: app
"""
FETCH = ("import urllib.request,sys;"
         "r=urllib.request.urlopen('http://192.0.2.100/', timeout=3);print(r.status, r.read().decode().strip())")


def write(repo: Path, files: dict[str, str]) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    for old in repo.glob("*.yaml"):
        old.unlink()
    for name, text in files.items():
        (repo / name).write_text(text)
    return repo


def reconcile(lab, node: str, *args: str, timeout: float = 300):
    return lab.exec(node, ["reconcile", *args], check=False, timeout=timeout)


def plan(lab, node: str, repo: Path) -> tuple[int, dict, str]:
    """A dry-run's JSON and its text screen."""
    r = reconcile(lab, node, "--dry-run", "--repo", str(repo), "-o", "json")
    text = reconcile(lab, node, "--dry-run", "--repo", str(repo), "--color", "never").stdout
    return r.returncode, json.loads(r.stdout), text


def health(data: dict) -> dict[str, tuple[str, str]]:
    return {f"{o['kind']} {o['name']}": (o["health"]["status"], o["health"]["reason"]) for o in data["objects"]
            if o.get("health")}


# --- a Pacemaker cluster applied on one node of two -------------------------------------------


@pytest.fixture(scope="module")
def pcm():
    with temporary_lab(nodes=2) as lab:
        repo = write(lab.shared / "pcm", {"cluster.yaml": CLUSTER.format(stack="pacemaker", extra=PACEMAKER),
                                          "db.yaml": DB})
        yield lab, repo


def test_a_half_applied_cluster_is_in_sync_and_degraded(pcm):
    lab, repo = pcm
    r = reconcile(lab, "lb1", "apply", "--repo", str(repo), "--color", "never")
    assert r.returncode == 0, r.stdout + r.stderr  # lb1 did everything it can: it is in sync
    rc, data, text = plan(lab, "lb1", repo)
    assert rc == 0, text  # nothing (left) to change ...
    assert data["sync"]["status"] == "Ready"
    assert data["health"]["status"] == "Degraded"  # ... and it does not work
    got = health(data)
    assert got["Cluster web"] == ("Degraded", "NoQuorum")
    assert got["ClusterResource db"] == ("Degraded", "NotRunning")
    assert got["ClusterResource db-vip"] == ("Degraded", "NotRunning")
    assert data["node_health"]["pacemaker"]["reason"] == "NoQuorum"
    assert "VirtualIP db-vip (IPaddr2 primitive)" in text and "this partition has no quorum" in text
    status = reconcile(lab, "lb1", "status", "--color", "never").stdout
    assert "health Degraded" in status and "NoQuorum" in status
    print(f"--- half-applied: plan on lb1\n{text}\n--- reconcile status on lb1\n{status}")  # shown with -rP


def test_after_the_second_node_the_cluster_is_healthy(pcm):
    lab, repo = pcm
    r = reconcile(lab, "lb2", "apply", "--repo", str(repo), "--color", "never")
    assert r.returncode == 0, r.stdout + r.stderr
    # lb1 has nothing to change; --wait waits until Pacemaker has quorum and runs db.
    r = reconcile(lab, "lb1", "apply", "--repo", str(repo), "--wait", "--timeout", "90s", "--color", "never")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Healthy after" in r.stdout
    rc, data, text = plan(lab, "lb1", repo)
    assert rc == 0 and data["health"]["status"] == "Healthy", text
    got = health(data)
    assert got["Cluster web"] == ("Healthy", "Quorate")
    assert got["ClusterResource db"] == ("Healthy", "Running")
    vip = next(o for o in data["objects"] if o["name"] == "db-vip")
    assert vip["shown_as"] == "VirtualIP db-vip (IPaddr2 primitive)"
    holder = vip["health"]["message"].split("runs on ")[1].split(";")[0]
    assert vip["health"]["message"] == f"runs on {holder}; held by {holder} only"
    status = reconcile(lab, "lb1", "status", "--color", "never").stdout
    assert "health Healthy" in status
    print(f"--- after lb2: plan on lb1\n{text}\n--- reconcile status on lb1\n{status}")


# --- keepalived, HAProxy: apply --wait until the VIP answers HTTP -------------------------------


@pytest.fixture(scope="module")
def web():
    with temporary_lab(nodes=2) as lab:
        for n in lab.nodes:
            lab.exec(n, ["mkdir", "-p", "/var/www"])
            lab.write_file(n, "/var/www/index.html", f"{n}\n")
        servers = [lab.popen(n, ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", lab.address(n),
                                 "--directory", "/var/www"], stderr=subprocess.DEVNULL) for n in lab.nodes]
        try:
            for n in lab.nodes:
                lab.wait_tcp(n, lab.address(n), 8080)
            repo = write(lab.shared / "web", {"cluster.yaml": CLUSTER.format(stack="none", extra=""),
                                              "web.yaml": WEB.format(port=8080)})
            yield lab, repo
        finally:
            for p in servers:
                p.terminate()
                p.wait(timeout=10)


def test_apply_wait_returns_when_the_vip_answers_http(web):
    lab, repo = web
    r = reconcile(lab, "lb2", "apply", "--repo", str(repo))
    assert r.returncode == 0, r.stdout + r.stderr
    started = time.monotonic()
    r = reconcile(lab, "lb1", "apply", "--repo", str(repo), "--wait", "--timeout", "60s", "--color", "never")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Healthy after" in r.stdout
    # At once, no retry: what --wait waited for is what makes the VIP serve.
    fetched = lab.exec("lb2", ["/usr/bin/python3", "-c", FETCH])
    assert fetched.stdout.split()[0] == "200", fetched.stdout
    rc, data, text = plan(lab, "lb2", repo)
    got = health(data)
    assert got["VirtualIP web-vip"] == ("Healthy", "HeldOnce"), text
    assert "held by lb1" in next(o["health"]["message"] for o in data["objects"] if o["name"] == "web-vip")
    assert got["Backend app"] == ("Healthy", "ServersUp") and got["Frontend web"] == ("Healthy", "Listening")
    assert time.monotonic() - started < 60


def test_a_vip_held_by_two_nodes_is_a_split_brain_on_both(web):
    lab, repo = web
    lab.exec("lb2", ["ip", "addr", "add", "192.0.2.100/24", "dev", "eth0"])  # a stale copy, as a killed keepalived leaves
    try:
        for node in ("lb1", "lb2"):
            _, data, text = plan(lab, node, repo)
            vip = next(o for o in data["objects"] if o["name"] == "web-vip")
            assert (vip["health"]["status"], vip["health"]["reason"]) == ("Degraded", "SplitBrain"), text
            assert "lb1 and lb2" in vip["health"]["message"] or "lb2 and lb1" in vip["health"]["message"]
    finally:
        lab.exec("lb2", ["ip", "addr", "del", "192.0.2.100/24", "dev", "eth0"], check=False)


def test_apply_wait_exits_3_when_health_never_comes(web):
    lab, repo = web
    broken = write(lab.shared / "web-broken", {"cluster.yaml": CLUSTER.format(stack="none", extra=""),
                                               "web.yaml": WEB.format(port=8099)})  # nothing listens there
    r = reconcile(lab, "lb1", "apply", "--repo", str(broken), "--wait", "--timeout", "8s", "-o", "json")
    assert r.returncode == 3, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["wait"]["healthy"] is False
    assert any(w.startswith("Backend app: Degraded") for w in data["wait"]["waitingFor"]), data["wait"]
    reconcile(lab, "lb1", "apply", "--repo", str(repo))  # back to the working tree for the next test


def test_a_tree_with_a_manifest_placed_nowhere_is_refused_in_a_node(web):
    lab, repo = web
    unplaced = write(lab.shared / "unplaced", {"cluster.yaml": CLUSTER.format(stack="none", extra=""),
                                                "web.yaml": WEB.format(port=8080).replace("  cluster: web\n", "", 1)})
    before = lab.read_file("lb1", "/etc/keepalived/keepalived.conf")
    r = reconcile(lab, "lb1", "apply", "--repo", str(unplaced))
    assert r.returncode == 1
    assert "web.yaml:4: spec: where this manifest lands is not said" in r.stderr, r.stderr
    assert lab.read_file("lb1", "/etc/keepalived/keepalived.conf") == before
