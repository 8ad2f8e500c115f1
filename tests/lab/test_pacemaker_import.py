"""A cluster made by hand is imported and then managed (issue 15), on real Corosync +
corosync-qdevice + Pacemaker, and two nodes with a quorum device outlive one of them.

One lab for the module: lb1 and lb2 form a two-node cluster the way an operator does it
without reconcile (a corosync.conf written by hand with a quorum device on lb3, the daemons
started, the resources made with crmsh); `reconcile import pacemaker --live` writes its
manifests, which then plan nothing to do on either node and render back to the same
configuration. Then lb2 is cut off: lb1 keeps quorum through the device and runs
everything.
"""
from __future__ import annotations

import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.lab import COROSYNC_AUTHKEY_FILE, Lab, temporary_lab
from reconcilers.pacemaker.importer import comparable
from tests.lab.pcmk import crm_mon, dc, epoch, reconcile, settled, start_qnetd, status, statuses, wait_for

pytestmark = pytest.mark.lab
NODES = ["lb1", "lb2"]
QNETD = "lb3"
VIP = "192.0.2.140"

# what an operator writes (pcs writes the same shape), with a quorum device on lb3
COROSYNC_CONF = """\
totem {
    version: 2
    cluster_name: handmade
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
    cluster_uuid: 0f6fa87cbd2c4bd2a4b4d2de2d7b7f01
}

nodelist {
    node {
        ring0_addr: 192.0.2.11
        name: lb1
        nodeid: 1
    }

    node {
        ring0_addr: 192.0.2.12
        name: lb2
        nodeid: 2
    }
}

quorum {
    provider: corosync_votequorum

    device {
        model: net
        votes: 1

        net {
            algorithm: ffsplit
            host: 192.0.2.13
            tls: off
        }
    }
}

logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: yes
    timestamp: on
}
"""

CRM = f"""\
property cib-bootstrap-options: stonith-enabled=false no-quorum-policy=stop dc-deadtime=5s
rsc_defaults rsc-options: resource-stickiness=100
op_defaults op-options: timeout=60s
node lb1 attributes datacenter=east
primitive vip ocf:heartbeat:IPaddr2 params ip={VIP} cidr_netmask=24 nic=eth0 op monitor interval=10s timeout=20s
primitive app ocf:pacemaker:Dummy op monitor interval=15s
primitive helper ocf:pacemaker:Dummy op monitor interval=30s meta target-role=Started
clone helper-clone helper meta interleave=true
colocation app_with_vip inf: app vip
order vip_then_app Mandatory: vip app
order helper_first Optional: helper-clone app
location app_prefers_east app rule 50: datacenter eq east
commit
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=3, prefix="pmi") as lab:
        start_qnetd(lab, QNETD)
        yield lab


@pytest.fixture(scope="module")
def handmade(lab: Lab) -> None:
    """The cluster as an operator makes it, without reconcile."""
    for node in NODES:
        lab.write_file(node, "/etc/corosync/corosync.conf", COROSYNC_CONF)
        lab.exec(node, ["install", "-m", "400", COROSYNC_AUTHKEY_FILE, "/etc/corosync/authkey"])
        lab.exec(node, ["sh", "-c", "mkdir -p /var/log/corosync /run/corosync-qdevice && corosync"])
    for node in NODES:
        wait_for(lambda: lab.exec(node, ["corosync-cfgtool", "-s"], check=False).returncode == 0, 20)
        lab.exec(node, ["corosync-qdevice"])
    for node in NODES:
        lab.exec(node, ["start-stop-daemon", "--start", "--background", "--make-pidfile", "--pidfile",
                        "/run/pacemakerd.pid", "--exec", "/usr/sbin/pacemakerd"])
    wait_for(lambda: _quorate_dc(lab), 90, message="the hand-made cluster did not form")
    lab.exec("lb1", ["crm", "configure"], input=CRM, timeout=120)
    settled(lab, dc(lab, NODES))


def _quorate_dc(lab: Lab) -> bool:
    try:
        st = status(lab, "lb1")
    except Exception:
        return False
    return bool(st.dc and st.quorate and sorted(st.online) == NODES)


@pytest.fixture(scope="module")
def repo(lab: Lab, handmade) -> Path:
    root = lab.shared / "imported"
    r = lab.exec("lb1", ["reconcile", "import", "pacemaker", "--live", "--output-dir", str(root)])
    assert "note:" in r.stderr  # what to check (the prefix length corosync.conf does not say)
    text = (root / "pacemaker.yaml").read_text()
    (root / "pacemaker.yaml").unlink()
    docs = text.split("\n---\n")  # the Cluster first, then its resources
    (root / "cluster.yaml").write_text(docs[0] + "\n")
    (root / "resources.yaml").write_text("\n---\n".join(docs[1:]) + "\n")
    return root


def test_the_import_writes_the_cluster_and_its_resources(lab, repo):
    cluster = (repo / "cluster.yaml").read_text()
    resources = (repo / "resources.yaml").read_text()
    assert "name: handmade" in cluster and "host: 192.0.2.13" in cluster and "authkey:" in cluster
    assert "vip_then_app" in cluster and "app_prefers_east" in cluster  # every constraint, in the CIB's order
    assert "rsc-options" in cluster and "datacenter: east" in cluster
    assert "name: helper" in resources and "clone:" in resources and "interleave" in resources
    r = lab.exec("lb1", ["reconcile", "validate", "--repo", str(repo)], check=False)
    assert r.returncode == 0, r.stderr


def test_an_imported_cluster_plans_nothing_to_do_on_either_node(lab, repo):
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "--dry-run")
        assert rc == 0, [(o["kind"], o["name"], o["fields"], o["notes"]) for o in record["objects"]
                         if o["status"] != "in-sync"]
        assert set(statuses(record)) >= {"Cluster/handmade", "ClusterConfig/handmade", "ClusterResource/vip",
                                         "ClusterResource/app", "ClusterResource/helper"}


def test_applying_the_import_changes_nothing(lab, repo):
    writer = dc(lab, NODES)
    before = epoch(lab, writer)
    conf = lab.read_file("lb2", "/etc/corosync/corosync.conf")
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
    assert epoch(lab, writer) == before and lab.read_file("lb2", "/etc/corosync/corosync.conf") == conf


def test_the_imported_manifests_render_back_to_the_live_configuration(lab, repo):
    out = lab.shared / "rendered"
    lab.exec("lb1", ["reconcile", "render", "--repo", str(repo), "--output-dir", str(out)])
    live = ET.fromstring(lab.exec("lb1", ["cibadmin", "--query"]).stdout)
    rendered = ET.fromstring((out / "pacemaker" / "cib-configuration.xml").read_text())
    diff = crm_diff(live.find("configuration"), rendered)
    assert diff == "", diff


def crm_diff(a: ET.Element, b: ET.Element) -> str:
    """crm_diff's patch between two configurations (their layout made canonical, the
    properties Pacemaker writes itself left out), "" when equal."""
    files = []
    for conf in (a, b):
        cib = ET.Element("cib", {"admin_epoch": "0", "epoch": "1", "num_updates": "0", "validate-with": "pacemaker-3.9"})
        cib.append(comparable(conf))
        ET.SubElement(cib, "status")
        f = tempfile.NamedTemporaryFile("wb", suffix=".xml", delete=False)
        f.write(ET.tostring(cib))
        f.close()
        files.append(f.name)
    r = subprocess.run(["crm_diff", "-o", files[0], "-n", files[1]], capture_output=True, text=True)
    for f in files:
        Path(f).unlink()
    return "" if r.returncode == 0 else r.stdout


def test_two_nodes_with_a_quorum_device_outlive_the_loss_of_one(lab, repo):
    settled(lab, "lb1")
    quorum = lab.exec("lb1", ["corosync-quorumtool", "-s"]).stdout
    assert "Qdevice" in quorum and "2Node" not in quorum  # the device breaks the tie, not two_node
    lab.exec("lb2", ["ip", "link", "set", "eth0", "down"])
    try:
        wait_for(lambda: sorted(status(lab, "lb1").online) == ["lb1"], 60, message="lb1 still sees lb2",
                 show=lambda: crm_mon(lab, "lb1"))
        st = status(lab, "lb1")
        assert st.quorate and st.dc == "lb1", crm_mon(lab, "lb1")
        wait_for(lambda: st.active.get("vip") == ["lb1"] or status(lab, "lb1").active.get("vip") == ["lb1"], 60,
                 message="the VIP does not run on the survivor", show=lambda: crm_mon(lab, "lb1"))
        wait_for(lambda: status(lab, "lb1").active.get("app") == ["lb1"], 60, show=lambda: crm_mon(lab, "lb1"))
        # the cut-off node loses quorum (the device votes with lb1): it stops what it ran
        wait_for(lambda: "Quorate:          No" in lab.exec("lb2", ["corosync-quorumtool", "-s"], check=False).stdout,
                 30, message="lb2 kept quorum", show=lambda: lab.exec("lb2", ["corosync-quorumtool", "-s"],
                                                                     check=False).stdout)
    finally:
        lab.exec("lb2", ["ip", "link", "set", "eth0", "up"])
    wait_for(lambda: sorted(status(lab, "lb1").online) == NODES, 90, message="lb2 did not rejoin",
             show=lambda: crm_mon(lab, "lb1"))
