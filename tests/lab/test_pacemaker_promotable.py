"""Three Pacemaker nodes and a quorum/BMC host, as operators run them (issue 15).

One lab for the module (lb1..lb3 the cluster, lb4 the corosync-qnetd server and the IPMI
BMCs), and the tests run in order on one cluster's life: lb1 still runs the one-node
`debian` cluster its packages would have started; the manifests replace it and form a
cluster with two knet links (IPv4 and IPv6), crypto, a quorum device, fencing through
fence_ipmilan against real BMC simulators whose password comes from a secret file, fencing
levels, and a promotable Stateful resource with role-aware monitors and a VIP colocated
with the promoted instance and started after promotion. The password never reaches the
CIB, a plan or a log; a changed password is drift; bad input changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from controller.lab import COROSYNC_AUTHKEY_FILE, Lab, temporary_lab
from tests.lab.pcmk import (
    add_link, apply_all, crm_mon, dc, epoch, reconcile, roles, settled, start_bmc, start_qnetd, status, statuses, wait_for,
)

pytestmark = pytest.mark.lab
NODES = ["lb1", "lb2", "lb3"]
QNETD = "lb4"
VIP = "192.0.2.130"
PASSWORD = "Bmc.Pass-4711"
ROTATED = "Bmc.Pass-0815"
BMC_PORTS = {"lb1": 6231, "lb2": 6232, "lb3": 6233, "spare": 6234}

CLUSTER = f"""\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: db
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24, links: [192.0.2.11, "2001:db8:1::11"]}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24, links: [192.0.2.12, "2001:db8:1::12"]}}
    - {{name: lb3, id: 3, address: 192.0.2.13/24, links: [192.0.2.13, "2001:db8:1::13"], attributes: {{rack: r2}}}}
  links: [{{priority: 20}}, {{priority: 10}}]
  totem: {{linkMode: passive}}
  authkey: {{file: {COROSYNC_AUTHKEY_FILE}}}
  quorum:
    device: {{net: {{host: 192.0.2.14, algorithm: ffsplit, tls: "off"}}}}
  stonithEnabled: true
  # The lab's BMC simulators answer status but cannot power-cycle: no startup fencing of
  # lb1, which joins late while it takes over from its packages' default cluster.
  properties: {{dc-deadtime: 5s, no-quorum-policy: stop, startup-fencing: "false"}}
  resourceDefaults: {{resource-stickiness: "1"}}
  operationDefaults: {{timeout: 60s}}
  fencingLevels:
    - {{index: 1, target: lb1, devices: [fence-lb1]}}
    - {{index: 1, target: lb2, devices: [fence-lb2]}}
    - {{index: 1, target: lb3, devices: [fence-lb3]}}
    - {{index: 2, targetPattern: "^lb[0-9]+$", devices: [fence-spare]}}
  alerts:
    - id: to-file
      path: /usr/share/pacemaker/alerts/alert_file.sh.sample
      recipients: [{{value: /var/log/pacemaker/alerts.log}}]
"""

FENCE = """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: fence-{target}
spec:
  cluster: db
  agent: stonith:fence_ipmilan
  params:
    ip: 192.0.2.14
    ipport: "{port}"
    username: admin
    password: {{file: {secret}}}
    pcmk_host_list: "{hosts}"
  operations:
    - {{name: monitor, interval: 20s}}
{avoid}"""

DB = f"""\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: db
  agent: ocf:pacemaker:Stateful
  operations:
    - {{name: monitor, interval: 5s, role: Promoted, timeout: 20s}}
    - {{name: monitor, interval: 6s, role: Unpromoted, timeout: 20s}}
    - {{name: notify, interval: 0s, timeout: 20s}}
  clone:
    promotable: true
    meta: {{notify: "true", promoted-max: "1"}}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db-vip
spec:
  cluster: db
  agent: ocf:heartbeat:IPaddr2
  params: {{ip: {VIP}, cidr_netmask: "24", nic: eth0}}
  operations:
    - {{name: monitor, interval: 10s, timeout: 20s}}
  colocation:
    - {{with: db, withRole: Promoted}}
  order:
    - {{first: db, firstAction: promote, thenAction: start}}
"""


def tree(secret: str) -> str:
    fences = "".join(FENCE.format(target=n, port=BMC_PORTS[n], secret=secret, hosts=n,
                                  avoid=f"  location:\n    - {{node: {n}, score: -INFINITY}}\n") for n in NODES)
    fences += FENCE.format(target="spare", port=BMC_PORTS["spare"], secret=secret, hosts=" ".join(NODES), avoid="")
    return CLUSTER + fences + DB


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=4, prefix="pmp") as lab:
        add_link(lab, NODES)
        start_qnetd(lab, QNETD)
        lab.bmcs = {name: start_bmc(lab, QNETD, f"bmc-{name}", port, PASSWORD) for name, port in BMC_PORTS.items()}
        yield lab


@pytest.fixture(scope="module")
def repo(lab: Lab):
    root = lab.shared / "repo"
    root.mkdir()
    secret = lab.shared / "secrets" / "bmc.password"  # outside the repo: never in git
    secret.parent.mkdir()
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    (root / "db.yaml").write_text(tree(str(secret)))
    lab.secret = secret
    return root


def leaks(lab: Lab, text: str) -> list[str]:
    return [w for w in (PASSWORD, ROTATED) if w in text]


def test_a_node_running_its_packages_default_cluster_is_taken_over(lab, repo):
    """lb1 runs the one-node `debian` cluster Debian's packages start (the packaged
    corosync.conf, untouched, and Pacemaker with no resource): no manual step needed."""
    lab.exec("lb1", ["sh", "-c", "mkdir -p /var/log/corosync && corosync"])
    lab.exec("lb1", ["start-stop-daemon", "--start", "--background", "--make-pidfile", "--pidfile",
                     "/run/pacemakerd.pid", "--exec", "/usr/sbin/pacemakerd"])
    wait_for(lambda: "debian" in lab.exec("lb1", ["corosync-cmapctl", "-g", "totem.cluster_name"], check=False).stdout,
             30, message="the default cluster did not start")
    wait_for(lambda: lab.exec("lb1", ["cibadmin", "--query", "--local"], check=False).returncode == 0, 60)
    rc, record = reconcile(lab, "lb1", repo, "--dry-run")
    assert rc == 2, json.dumps(record, indent=1)
    cluster = next(o for o in record["objects"] if o["kind"] == "Cluster")
    assert any("replaces the untouched one-node cluster the Debian packages started" in n for n in cluster["notes"])


def test_the_cluster_forms_with_two_links_crypto_a_quorum_device_and_fencing(lab, repo):
    started = time.monotonic()
    results = apply_all(lab, NODES, repo)
    formed = time.monotonic() - started
    assert all(statuses(r)["Cluster/db"] == "changed" for r in results.values()), results
    # lb1's default cluster is gone, its CIB put aside
    assert lab.exec("lb1", ["test", "-d", "/var/lib/pacemaker/cib.debian-default"], check=False).returncode == 0
    links = lab.exec("lb1", ["corosync-cfgtool", "-s"]).stdout
    assert "LINK ID 0" in links and "LINK ID 1" in links and "2001:db8:1::11" in links
    assert links.count("connected") == 4, links  # two peers on each link
    quorum = lab.exec("lb1", ["corosync-quorumtool", "-s"]).stdout
    assert "Qdevice" in quorum and "Quorate:          Yes" in quorum, quorum
    conf = lab.read_file("lb2", "/etc/corosync/corosync.conf")
    assert "crypto_cipher: aes256" in conf and "knet_link_priority: 20" in conf and "host: 192.0.2.14" in conf
    settled(lab, dc(lab, NODES))
    print(f"the cluster formed and its resources were written in {formed:.1f}s")


def test_the_vip_runs_with_the_promoted_instance_after_it_was_promoted(lab, repo):
    writer = dc(lab, NODES)
    db = wait_for(lambda: (r := roles(lab, writer, "db")) and list(r.values()).count("Promoted") == 1 and r, 90,
                  message="db was never promoted", show=lambda: crm_mon(lab, writer))
    [promoted] = [n for n, role in db.items() if role == "Promoted"]
    assert sorted(db) == NODES and list(db.values()).count("Unpromoted") == 2
    vip = wait_for(lambda: roles(lab, writer, "db-vip"), 60)
    assert list(vip) == [promoted]
    # role-aware monitors run on each instance: both are in the CIB with their roles
    cib = lab.exec(writer, ["cibadmin", "--query", "--scope", "resources"]).stdout
    assert 'role="Promoted"' in cib and 'role="Unpromoted"' in cib and 'name="promotable" value="true"' in cib
    # every fencing device started: each BMC accepted the password from the secret file
    for device in ("fence-lb1", "fence-lb2", "fence-lb3", "fence-spare"):
        assert wait_for(lambda: roles(lab, writer, device), 60, message=f"{device} did not start")
    levels = lab.exec(writer, ["stonith_admin", "--list-registered"]).stdout
    assert "fence-spare" in levels


def test_the_password_is_only_in_each_node_s_cibsecret_files(lab, repo):
    writer = dc(lab, NODES)
    cib = lab.exec(writer, ["cibadmin", "-Q"]).stdout
    assert not leaks(lab, cib) and cib.count('name="password" value="lrm://"') == 4
    for node in NODES:
        stored = lab.read_file(node, "/var/lib/pacemaker/lrm/secrets/fence-lb1/password")
        sign = lab.read_file(node, "/var/lib/pacemaker/lrm/secrets/fence-lb1/password.sign")
        assert stored == PASSWORD + "\n" and sign.strip() == hashlib.md5(PASSWORD.encode()).hexdigest()
        mode = lab.exec(node, ["stat", "-c", "%a", "/var/lib/pacemaker/lrm/secrets/fence-lb1/password"]).stdout
        assert mode.strip() == "600"
        rc, plan = reconcile(lab, node, repo, "--dry-run")
        assert not leaks(lab, json.dumps(plan))
        r = lab.exec(node, ["reconcile", "apply", "--repo", str(repo), "-v"], check=False)
        assert not leaks(lab, r.stdout + r.stderr)
        logs = lab.exec(node, ["sh", "-c", "cat /var/log/pacemaker/pacemaker.log /var/log/corosync/corosync.log "
                                           "/var/log/pacemaker/alerts.log 2>/dev/null || true"]).stdout
        assert not leaks(lab, logs), f"the password is in {node}'s logs"
    # and never on any command line reconcile ran (the runner refuses a secret in argv)


def test_a_second_plan_has_nothing_to_do_on_any_node_and_all_is_healthy(lab, repo):
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "--dry-run")
        assert rc == 0, [(o["kind"], o["name"], o["fields"], o["notes"]) for o in record["objects"]
                         if o["status"] != "in-sync"]
        health = {f"{o['kind']} {o['name']}": o.get("health") or {} for o in record["objects"]}
        assert health["Cluster db"]["reason"] == "Quorate", health  # corosync-qdevice counted too
        assert health["ClusterResource db"]["status"] == "Healthy" and "promoted on" in health[
            "ClusterResource db"]["message"], health
        assert health["ClusterResource db-vip"]["status"] == "Healthy", health


def test_a_changed_password_is_drift_that_each_node_corrects_without_touching_the_cib(lab, repo):
    writer = dc(lab, NODES)
    for name, proc in lab.bmcs.items():  # the BMCs get the new password
        proc.terminate()
        proc.wait(timeout=10)
        lab.bmcs[name] = start_bmc(lab, QNETD, f"bmc-{name}", BMC_PORTS[name], ROTATED)
    lab.secret.write_text(ROTATED + "\n")
    before = epoch(lab, writer)
    rc, record = reconcile(lab, "lb2", repo, "--dry-run")
    fence = next(o for o in record["objects"] if o["name"] == "fence-lb1")
    assert rc == 2 and ["params.password", "<secret: changed>", "<secret: in sync>"] in \
        [[f["field"], f["observed"], f["desired"]] for f in fence["fields"]]
    apply_all(lab, NODES, repo)
    for node in NODES:
        assert lab.read_file(node, "/var/lib/pacemaker/lrm/secrets/fence-lb3/password") == ROTATED + "\n"
    assert epoch(lab, writer) == before  # the CIB still says lrm://: nothing to write there
    rc, _ = reconcile(lab, "lb3", repo, "--dry-run")
    assert rc == 0


def test_when_the_promoted_node_leaves_the_vip_follows_the_new_promotion(lab, repo):
    writer = dc(lab, NODES)
    [promoted] = [n for n, r in roles(lab, writer, "db").items() if r == "Promoted"]
    survivor = next(n for n in NODES if n != promoted)
    started = time.monotonic()
    lab.exec(promoted, ["pacemakerd", "--shutdown"])  # a clean stop: resources move, no fencing
    new = wait_for(lambda: [n for n, r in roles(lab, survivor, "db").items() if r == "Promoted" and n != promoted],
                   90, message="no other instance was promoted")
    wait_for(lambda: list(roles(lab, survivor, "db-vip")) == new, 60, message="the VIP did not follow")
    print(f"promotion moved {promoted} → {new[0]} and the VIP followed in {time.monotonic() - started:.1f}s")
    assert status(lab, survivor).quorate
    # the agent on the stopped node starts Pacemaker again: the cluster is whole
    rc, record = reconcile(lab, promoted, repo, "apply")
    assert rc == 0, record
    wait_for(lambda: sorted(status(lab, survivor).online) == NODES, 90, message="the node did not rejoin")


BAD = {
    "inline-password": lambda t: t.replace("password: {file: ", "password: hunter2-inline #"),
    "unknown-role": lambda t: t.replace("withRole: Promoted", "withRole: Primary"),
    "set-names-unknown-resource": lambda t: t.replace(
        "  fencingLevels:", "  constraints:\n    - {type: order, id: o1, sets: [{resources: [db-vip, ghost]}]}\n"
        "  fencingLevels:"),
    "crypto-unset": lambda t: t.replace(f"  authkey: {{file: {COROSYNC_AUTHKEY_FILE}}}\n", ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_file_line_and_field_and_nothing_changes(lab, repo, case):
    writer = dc(lab, NODES)
    bad = lab.shared / f"bad-{case}"
    bad.mkdir()
    (bad / "db.yaml").write_text(BAD[case]((repo / "db.yaml").read_text()))
    conf = lab.read_file(writer, "/etc/corosync/corosync.conf")
    before = epoch(lab, writer)
    r = lab.exec(writer, ["reconcile", "apply", "--repo", str(bad)], check=False)
    assert r.returncode == 1 and "nothing was changed" in r.stderr
    assert "db.yaml:" in r.stderr and "hunter2" not in r.stderr
    assert epoch(lab, writer) == before and lab.read_file(writer, "/etc/corosync/corosync.conf") == conf
    os.sync()
