"""A three-node cluster with fencing on, clones and groups, on real Corosync + Pacemaker.

The cluster-glue `stonith:null` device stands in for a real fencing device (it fences
nothing): enough for Pacemaker to run resources with stonith-enabled=true, and for the
check that refuses a tree that would leave fencing on without any device.
"""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest

from controller.lab import temporary_lab

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2", "lb3")

TREE = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: db
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
    - {name: lb3, id: 3, address: 192.0.2.13/24}
  authkey: {file: /etc/reconcile/secrets/corosync.authkey}
  stonithEnabled: true
  properties: {dc-deadtime: 5s}
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: app-ip
spec:
  cluster: db
  manager: pacemaker
  address: 192.0.2.120/24
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: app
spec:
  cluster: db
  agent: ocf:heartbeat:Dummy
  operations:
    - {name: monitor, interval: 10s}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: app-tier
spec:
  cluster: db
  group: [app-ip, app]
  location:
    - {node: lb3, score: 50}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: ping
spec:
  cluster: db
  agent: ocf:pacemaker:Dummy
  meta: {interleave: "true"}
  clone: true
"""

FENCE = """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: fence
spec:
  cluster: db
  agent: stonith:null
  params: {hostlist: "lb1 lb2 lb3"}
  operations:
    - {name: monitor, interval: 60s}
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=3, prefix="pmf") as lab:
        yield lab


def resources(lab) -> dict[str, list[str]]:
    mon = ET.fromstring(lab.exec("lb1", ["crm_mon", "-1", "--output-as=xml"]).stdout)
    out: dict[str, list[str]] = {}
    for r in mon.iter("resource"):
        if r.get("active") == "true":
            out.setdefault(r.get("id"), []).extend(n.get("name") for n in r.findall("node"))
    return out


def test_three_nodes_with_fencing_a_group_and_a_clone(lab):
    repo = lab.shared / "repo"
    repo.mkdir()
    (repo / "tree.yaml").write_text(TREE + FENCE)
    procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo), "-o", "json"], stdout=-1, stderr=-1,
                          text=True) for n in NODES}
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{node}: {out}\n{err}"
    conf = lab.read_file("lb1", "/etc/corosync/corosync.conf")
    assert "two_node" not in conf and "nodeid: 3" in conf
    lab.exec("lb1", ["crm_resource", "--wait", "--timeout=60s"], timeout=90)
    deadline = time.monotonic() + 60
    while len(resources(lab).get("ping", [])) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    running = resources(lab)
    assert sorted(running["ping"]) == list(NODES)  # the clone runs everywhere
    assert running["app-ip"] == running["app"] == ["lb3"]  # the group together, where it prefers
    assert running["fence"]
    for node in NODES:
        r = lab.exec(node, ["reconcile", "apply", "--repo", str(repo), "-o", "json"], check=False)
        assert r.returncode == 0 and {o["status"] for o in json.loads(r.stdout)["objects"]} == {"in-sync"}


def test_fencing_on_without_any_device_is_refused(lab):
    repo = lab.shared / "no-fence"
    repo.mkdir()
    (repo / "tree.yaml").write_text(TREE)
    r = lab.exec("lb1", ["reconcile", "validate", "--repo", str(repo)], check=False)
    assert r.returncode == 1
    assert "no STONITH resources have been defined" in r.stderr
    r = lab.exec("lb1", ["reconcile", "apply", "--repo", str(repo)], check=False)
    assert r.returncode == 1 and resources(lab)["fence"]  # nothing was applied
