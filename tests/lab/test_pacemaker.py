"""Cluster and ClusterResource on real Corosync 3 + Pacemaker 2.1 in two lab nodes, with
reconcile run inside the nodes as an operator would.

One lab for the module: the tests run in order on one cluster, as its life goes: it forms
from manifests alone, stays put on a second apply, keeps what was made by hand, previews
and applies changes (only on the DC), prunes, and survives the death of the node that runs
the Pacemaker VIP without the agents fighting Pacemaker.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.lab import Lab, temporary_lab
from reconcilers.pacemaker.tools import parse_crm_mon
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")
VIP = "192.0.2.110"

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
  authkey: {{file: {authkey}}}
  stonithEnabled: false
  properties: {{no-quorum-policy: stop, dc-deadtime: 5s}}
"""

VIRTUAL_IP = f"""\
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: db-vip
spec:
  cluster: web
  manager: pacemaker
  address: {VIP}/24
  interface: eth0
"""

DB = """\
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
{params}  operations:
    - {{name: monitor, interval: 10s, timeout: 20s}}
  colocation:
    - {{with: db-vip}}
  startAfter: [db-vip]
"""


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, prefix="pm") as lab:
        yield lab


@pytest.fixture(scope="module")
def repo(lab: Lab) -> Path:
    root = lab.shared / "repo"
    root.mkdir()
    key = lab.shared / "corosync.authkey"  # outside the repo: a secret is never in git
    key.write_bytes(os.urandom(256))
    key.chmod(0o600)
    (root / "cluster.yaml").write_text(CLUSTER.format(authkey=key))
    (root / "vip.yaml").write_text(VIRTUAL_IP)
    write_db(root)
    return root


def write_db(root: Path, params: str = "") -> None:
    (root / "db.yaml").write_text(DB.format(params=f"  params: {{{params}}}\n" if params else ""))


# --- helpers -----------------------------------------------------------------------------


def reconcile(lab: Lab, node: str, root: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    argv = ["reconcile", *args, "--repo", str(root), "-o", "json"]
    r = lab.exec(node, argv, check=False, timeout=180, env=env)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"{node}: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}") from None


def statuses(record: dict) -> dict[str, str]:
    return {f"{o['kind']}/{o['name']}": o["status"] for o in record["objects"]}


def notes(record: dict, kind: str, name: str) -> list[str]:
    return next(o["notes"] for o in record["objects"] if (o["kind"], o["name"]) == (kind, name))


def status(lab: Lab, node: str = "lb1"):
    return parse_crm_mon(lab.exec(node, ["crm_mon", "-1", "--output-as=xml"]).stdout)


def dc(lab: Lab) -> str:
    for node in NODES:
        try:
            found = status(lab, node).dc
        except Exception:
            continue
        if found:
            return found
    raise AssertionError("no DC")


def stable_dc(lab: Lab, timeout: float = 60) -> str:
    """The DC once both nodes see the same one, both online, three times a second apart
    (after a partition heals Pacemaker elects again: a DC read at once may not last)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            views = [status(lab, n) for n in NODES]
        except Exception:
            views = []
        agreed = {v.dc for v in views} if views else set()
        if len(agreed) == 1 and None not in agreed and all(sorted(v.online) == list(NODES) for v in views):
            seen.append(agreed.pop())
        else:
            seen.clear()
        if len(seen) >= 3 and len(set(seen[-3:])) == 1:
            return seen[-1]
        time.sleep(1)
    raise AssertionError(f"no stable DC within {timeout:.0f}s: {seen}")


def other(node: str) -> str:
    return "lb2" if node == "lb1" else "lb1"


def epoch(lab: Lab, node: str) -> tuple[int, int]:
    """(admin_epoch, epoch) of the CIB: they grow with every change of the configuration."""
    cib = ET.fromstring(lab.exec(node, ["cibadmin", "--query"]).stdout)
    return int(cib.get("admin_epoch", 0)), int(cib.get("epoch", 0))


def configured(lab: Lab, node: str) -> ET.Element:
    return ET.fromstring(lab.exec(node, ["cibadmin", "--query", "--scope", "configuration"]).stdout)


def running_on(lab: Lab, resource: str) -> list[str]:
    mon = ET.fromstring(lab.exec("lb1", ["crm_mon", "-1", "--output-as=xml"]).stdout)
    for r in mon.iter("resource"):
        if r.get("id") == resource and r.get("active") == "true":
            return [n.get("name") for n in r.findall("node")]
    return []


def has_address(lab: Lab, node: str, address: str) -> bool:
    out = lab.exec(node, ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout
    return any(a.get("local") == address for i in json.loads(out) for a in i.get("addr_info", []))


def wait_for(what, timeout: float, step: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"timed out after {timeout}s")
        time.sleep(step)


def settled(lab: Lab, timeout: float = 60) -> None:
    """Wait until Pacemaker has nothing left to do (`crm_resource --wait`)."""
    lab.exec(dc(lab), ["crm_resource", "--wait", f"--timeout={int(timeout)}s"], timeout=timeout + 10)


# --- the life of one cluster -------------------------------------------------------------


def test_a_dry_run_on_an_empty_node_previews_the_new_cluster_and_changes_nothing(lab, repo):
    lab.exec("lb1", ["touch", "/tmp/.before-dry-run"])
    record_file = lab.shared / "record-empty.json"
    rc, record = reconcile(lab, "lb1", repo, "--dry-run", env={"RECONCILE_RECORD": str(record_file)})
    assert rc == 2
    assert statuses(record) == {"Cluster/web": "pending", "ClusterConfig/web": "pending",
                                "ClusterResource/db": "pending", "ClusterResource/db-vip": "pending"}
    lines = notes(record, "ClusterResource", "db")
    assert "crm_simulate: db: start on lb1" in lines
    assert "crm_simulate: (simulated for the new cluster of lb1, lb2 once it has formed)" in lines
    assert notes(record, "ClusterResource", "db-vip") == ["crm_simulate: db-vip: start on lb1"]
    changed = lab.exec("lb1", ["find", "/etc", "/var", "/run", "/root", "-xdev", "-newer", "/tmp/.before-dry-run"]).stdout
    assert changed.split() == [], f"the dry-run changed files: {changed}"
    commands = json.loads(record_file.read_text())
    refused = [" ".join(c["argv"]) for c in commands if not allowed(c["what"], c["argv"])]
    assert not refused, f"dry-run ran commands outside the allow-list: {refused}"
    ran = {c["argv"][0] for c in commands}
    assert {"corosync", "crm_verify", "crm_simulate", "crm_resource"} <= ran  # the native checks did run


def test_a_cluster_forms_from_manifests_alone_on_empty_nodes(lab, repo):
    assert not lab.exec("lb1", ["pgrep", "-x", "corosync"], check=False).stdout
    started = time.monotonic()
    procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo), "-o", "json"], stdout=-1, stderr=-1,
                          text=True) for n in NODES}
    results = {}
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{node}: apply exited {proc.returncode}\n{out}\n{err}"
        results[node] = statuses(json.loads(out))
    formed = time.monotonic() - started
    assert all(r["Cluster/web"] == "changed" for r in results.values()), results
    # the DC wrote the resources; the other agent deferred to it
    writer = dc(lab)
    assert results[writer]["ClusterResource/db-vip"] == "changed"
    assert results[other(writer)]["ClusterResource/db-vip"] in ("deferred", "in-sync")
    st = status(lab)
    assert st.quorate and sorted(st.online) == ["lb1", "lb2"]
    settled(lab)
    [holder] = running_on(lab, "db-vip")
    assert running_on(lab, "db") == [holder]
    assert has_address(lab, holder, VIP) and not has_address(lab, other(holder), VIP)
    for node in NODES:
        conf = lab.read_file(node, "/etc/corosync/corosync.conf")
        assert conf.startswith("# Generated by reconcile") and "crypto_cipher: aes256" in conf
        mode = lab.exec(node, ["stat", "-c", "%a", "/etc/corosync/authkey"]).stdout.strip()
        assert mode == "400"
        assert lab.exec(node, ["cmp", "/etc/corosync/authkey", str(lab.shared / "corosync.authkey")],
                        check=False).returncode == 0
    print(f"cluster formed and resources applied in {formed:.1f}s")


def test_a_second_apply_reports_nothing_to_do(lab, repo):
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record


def test_a_hung_cib_is_cannot_observe_never_resources_missing_or_drift(lab, repo):
    """Issue 21, item 8: Pacemaker runs on this node but its CIB manager does not answer
    (SIGSTOP). The plan does not show the resources as missing, nor as drift: they cannot
    be observed, and nothing is planned for them. (With cibadmin missing, the native
    validators already refuse the revision before anything is observed.)"""
    writer = dc(lab)
    node = other(writer)
    before = epoch(lab, writer)
    # pacemakerd too: it kills a CIB manager that stays unresponsive for ~25 s and starts a
    # new one, and this plan waits 2 × 15 s for cibadmin
    pids = [lab.exec(node, ["pgrep", "-x", comm]).stdout.split()[0] for comm in ("pacemakerd", "pacemaker-based")]
    lab.exec(node, ["kill", "-STOP", *pids])
    try:
        rc, record = reconcile(lab, node, repo, "--dry-run")
    finally:
        lab.exec(node, ["kill", "-CONT", *reversed(pids)])
    resources = [o for o in record["objects"] if o["kind"] == "ClusterResource"]
    assert rc == 1 and resources, json.dumps(record, indent=1)[:4000]
    for o in resources:
        assert o["status"] == "failed" and "cannot observe ClusterResource" in o["error"], o
        assert not o["drift"] and not any("drift" in n for n in o["notes"]) and not o["action"], o
    settled(lab)
    assert epoch(lab, writer) == before
    rc, record = reconcile(lab, node, repo, "--dry-run")  # answering again: in sync
    assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record


def test_an_agent_that_does_not_exist_is_refused_before_anything_is_applied(lab, repo):
    bad = lab.shared / "bad-agent"
    bad.mkdir()
    for f in repo.iterdir():
        (bad / f.name).write_text(f.read_text())
    (bad / "db.yaml").write_text(DB.format(params="").replace("ocf:heartbeat:Dummy", "ocf:heartbeat:Nope"))
    before = epoch(lab, dc(lab))
    r = lab.exec("lb1", ["reconcile", "validate", "--repo", str(bad)], check=False)
    assert r.returncode == 1
    line = 1 + (bad / "db.yaml").read_text().splitlines().index("  agent: ocf:heartbeat:Nope")
    assert f"db.yaml:{line}: spec.agent: db: resource agent ocf:heartbeat:Nope does not exist on lb1" in r.stderr
    rc, record = reconcile(lab, dc(lab), bad, "apply")
    # the refusal is pinned on db: it keeps its last good version (nothing else changed here)
    [db] = [o for o in record["objects"] if (o["kind"], o["name"]) == ("ClusterResource", "db")]
    assert rc == 1 and db["status"] == "failed" and "ocf:heartbeat:Nope" in db["error"]
    assert epoch(lab, dc(lab)) == before


def test_a_resource_made_by_hand_is_left_alone(lab, repo):
    writer = dc(lab)
    lab.exec(writer, ["cibadmin", "--create", "--scope", "resources", "--xml-text",
                      '<primitive id="handmade" class="ocf" provider="heartbeat" type="Dummy"/>'])
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and "ClusterResource/handmade" not in statuses(record)
    assert configured(lab, writer).find(".//primitive[@id='handmade']") is not None


def test_the_dry_run_shows_the_simulated_transition_and_changes_nothing(lab, repo):
    [holder] = running_on(lab, "db-vip")
    (repo / "vip.yaml").write_text(VIRTUAL_IP + f"  pacemaker: {{preferredNode: {other(holder)}}}\n")
    before = epoch(lab, dc(lab))
    record_file = lab.shared / "record.json"
    rc, record = reconcile(lab, holder, repo, "--dry-run", env={"RECONCILE_RECORD": str(record_file)})
    assert rc == 2
    assert f"crm_simulate: db-vip: move {holder} → {other(holder)}" in notes(record, "ClusterResource", "db-vip")
    # db follows its colocated VIP: no change of its own, shown with the first change
    assert f"crm_simulate: db: move {holder} → {other(holder)}" in notes(record, "ClusterResource", "db-vip")
    commands = json.loads(record_file.read_text())
    refused = [" ".join(c["argv"]) for c in commands if not allowed(c["what"], c["argv"])]
    assert commands and not refused, f"dry-run ran commands outside the allow-list: {refused}"
    assert epoch(lab, dc(lab)) == before and running_on(lab, "db-vip") == [holder]
    # Pacemaker would also move `handmade` (made by hand, unrelated) to balance the nodes
    guard = [n for n in notes(record, "ClusterResource", "db-vip") if n.startswith("guard:")]
    assert guard and "handmade: move" in guard[0], notes(record, "ClusterResource", "db-vip")


def test_the_guard_refuses_a_change_that_would_move_an_unrelated_resource(lab, repo):
    writer = dc(lab)
    [holder] = running_on(lab, "db-vip")
    before = epoch(lab, writer)
    rc, record = reconcile(lab, writer, repo, "apply")
    [vip] = [o for o in record["objects"] if (o["kind"], o["name"]) == ("ClusterResource", "db-vip")]
    assert rc == 1 and vip["status"] == "failed"
    assert "blast-radius guard" in vip["error"] and "handmade: move" in vip["error"]
    assert epoch(lab, writer) == before and running_on(lab, "db-vip") == [holder]


def test_a_non_dc_node_writes_nothing_and_what_the_dc_owes_stays_pending(lab, repo):
    # no agent runs on the DC: woken, nothing answers; the change is pending (exit 2), not
    # "deferred" success, since nothing makes it happen (issue 21, item 6)
    writer = dc(lab)
    before = epoch(lab, writer)
    rc, record = reconcile(lab, other(writer), repo, "apply")
    assert statuses(record)["ClusterResource/db-vip"] == "pending", record
    note = notes(record, "ClusterResource", "db-vip")[-1]
    assert note.startswith(f"not applied yet: owed by the DC {writer}, not in the CIB within 30s of waking its agent"), note
    assert rc == 2
    assert epoch(lab, writer) == before
    woken = lab.exec(writer, ["attrd_updater", "--query", "--name", "reconcile-wake"]).stdout
    assert f'value="{other(writer)}@' in woken, woken


def test_changes_apply_on_the_dc_in_one_cib_update(lab, repo):
    [holder] = running_on(lab, "db-vip")
    write_db(repo, params='fake: "42"')  # a second change, to go with the VIP's new location
    writer = dc(lab)
    r = lab.exec(writer, ["reconcile", "apply", "--repo", str(repo), "-v", "--allow-disruption"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ClusterResource db (applied: update)" in r.stdout
    assert "VirtualIP db-vip (IPaddr2 primitive) (applied: update)" in r.stdout
    assert len(re.findall(r"ran cibadmin --patch", r.stderr)) == 1, r.stderr
    settled(lab)
    assert running_on(lab, "db-vip") == [other(holder)] == running_on(lab, "db")
    db = configured(lab, writer).find(".//primitive[@id='db']")
    assert {nv.get("name"): nv.get("value") for nv in db.iter("nvpair")}["fake"] == "42"
    rc, record = reconcile(lab, other(writer), repo, "apply")
    assert rc == 0 and set(statuses(record).values()) == {"in-sync"}


def test_a_change_owed_by_the_dc_wakes_its_agent_and_is_deferred_once_made(lab, repo):
    """The DC's agent follows a remote repository it polls rarely: the commit is not
    fetched yet when another node applies it. That node wakes the DC's agent through the
    CIB; the agent fetches, applies, and the other node reports the change deferred to
    the DC (exit 0) only once it is in the CIB."""
    writer = dc(lab)
    origin = lab.shared / "origin"
    shutil.copytree(repo, origin)
    git = ["git", "-C", str(origin), "-c", "user.name=Test", "-c", "user.email=test@example.test"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "as applied"], check=True)
    with open(lab.shared / "agent.log", "w") as out:
        agent = lab.popen(writer, ["reconcile", "agent", "--repo", f"file://{origin}", "--interval", "1h",
                                   "--resync", "1h", "--metrics-port", "0", "-v"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (agent_status(lab, writer).get("ready")), timeout=120, message="the DC's agent to start")
        for root in (origin, repo):
            write_db(root, params='fake: "43"')
        subprocess.run([*git, "commit", "-q", "-am", "fake 43"], check=True)
        head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        assert agent_status(lab, writer).get("revision") != head
        started = time.monotonic()
        rc, record = reconcile(lab, other(writer), repo, "apply")
        took = time.monotonic() - started
        log = (lab.shared / "agent.log").read_text()
        # made by the DC during this apply: deferred, or in sync when the engine's next pass
        # already saw it there; never pending, and well before the 30 s bound
        assert rc == 0 and statuses(record)["ClusterResource/db"] in ("deferred", "in-sync"), log[-6000:]
        assert took < 25 and f"revision {head[:12]} (wake): converged" in log, (took, log[-6000:])
        db = configured(lab, writer).find(".//primitive[@id='db']")
        assert {nv.get("name"): nv.get("value") for nv in db.iter("nvpair")}["fake"] == "43"
        assert agent_status(lab, writer).get("revision") == head
        print(f"the woken DC applied the change in {took:.1f}s")
    finally:
        stop_agent(agent)


def agent_status(lab: Lab, node: str) -> dict:
    r = lab.exec(node, ["reconcile", "status", "-o", "json"], check=False)
    return (json.loads(r.stdout) if r.stdout.strip() else {}).get("agent") or {}


def stop_agent(agent: subprocess.Popen) -> None:
    """SIGTERM to the agent (nsenter's child), as systemd would; SIGKILL if it lingers."""
    children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    try:
        agent.wait(60)
    except subprocess.TimeoutExpired:
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        agent.wait(10)


WATCH = """\
import sys
from reconcilers.base import Node, Runner
from reconcilers.{module} import {cls}
for reason in {cls}().watch(Node(sys.argv[1], Runner(dry_run=True))):
    print(reason, flush=True)
    break
"""


def first_event(lab: Lab, node: str, module: str, cls: str, change) -> str:
    watcher = lab.popen(node, ["python3", "-c", WATCH.format(module=module, cls=cls), node],
                        stdout=-1, stderr=-1, text=True)
    try:
        time.sleep(3)  # the watch has taken its first look
        assert watcher.poll() is None, watcher.communicate()
        change()
        out, err = watcher.communicate(timeout=30)
        return out.strip()
    finally:
        watcher.kill()


def test_changes_by_hand_wake_the_watch_and_are_reverted(lab, repo):
    writer = dc(lab)
    event = first_event(lab, writer, "pacemaker.resources", "ClusterResourceReconciler",
                        lambda: lab.exec(writer, ["crm_resource", "--resource", "db", "--set-parameter", "fake",
                                                  "--parameter-value", "by-hand"]))
    assert event == "the CIB configuration changed"
    event = first_event(lab, "lb1", "pacemaker.cluster", "ClusterReconciler",
                        lambda: lab.exec("lb1", ["sed", "-i", "s/token: 1000/token: 5000/",
                                                 "/etc/corosync/corosync.conf"]))
    assert event.startswith("corosync.conf")
    rc, record = reconcile(lab, "lb1", repo, "--dry-run")
    changes = {(f["field"], f["observed"], f["desired"]) for o in record["objects"] for f in o["fields"]}
    assert ("corosync.token", 5000, 1000) in changes and ("file", "edited", "generated") in changes
    assert ("params.fake", "by-hand", "43") in changes  # git says 43 since the wake test
    for node in (writer, "lb1"):
        reconcile(lab, node, repo, "apply")
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
    assert "token: 1000\n" in lab.read_file("lb1", "/etc/corosync/corosync.conf")


def test_a_removed_manifest_removes_only_its_marked_resource(lab, repo):
    (repo / "db.yaml").unlink()
    writer = dc(lab)
    [where] = running_on(lab, "db")
    rc, record = reconcile(lab, writer, repo, "--dry-run")
    assert rc == 2 and statuses(record)["ClusterResource/db"] == "pending"
    assert notes(record, "ClusterResource", "db") == [f"crm_simulate: db: stop on {where} (node availability)"]
    rc, record = reconcile(lab, writer, repo, "apply")
    assert rc == 0 and statuses(record)["ClusterResource/db"] == "changed", json.dumps(record, indent=1)
    config = configured(lab, writer)
    ids = {el.get("id") for el in config.iter() if el.get("id")}
    assert "db" not in ids and "db-with-db-vip" not in ids and "db-after-db-vip" not in ids
    assert {"db-vip", "handmade"} <= ids


def test_crypto_turned_off_and_on_again_reloads_the_cluster_without_splitting_it(lab, repo):
    """A reload makes every node re-read its own corosync.conf: the nodes reload only once
    all of them hold the new crypto settings (a digest each publishes), so the membership
    never splits (before this barrier, one node reloading alone cut the cluster in two)."""
    import subprocess

    original = (repo / "cluster.yaml").read_text()
    seen = {n: len(lab.read_file(n, "/var/log/corosync/corosync.log").splitlines()) for n in NODES}
    for text, cipher in ((original.replace(f"  authkey: {{file: {lab.shared / 'corosync.authkey'}}}\n",
                                           "  crypto: none\n"), "none"), (original, "aes256")):
        assert text != original or cipher == "aes256"
        (repo / "cluster.yaml").write_text(text)
        procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo), "-o", "json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in NODES}  # as both agents would
        for n, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, out + err
        for n in NODES:
            assert lab.exec(n, ["corosync-cmapctl", "-g", "totem.crypto_cipher"]).stdout.split()[-1] == cipher
    for n in NODES:
        log = lab.read_file(n, "/var/log/corosync/corosync.log").splitlines()[seen[n]:]
        assert not [ln for ln in log if "Members left" in ln or "Members joined" in ln], "\n".join(log)
    assert sorted(status(lab).online) == ["lb1", "lb2"]


def test_when_the_vip_node_dies_pacemaker_moves_it_and_the_agents_do_not_fight(lab, repo):
    settled(lab)
    [holder] = running_on(lab, "db-vip")
    survivor = other(holder)
    # the VIP prefers the holder now, so a fight would show as a plan to move it back
    (repo / "vip.yaml").write_text(VIRTUAL_IP + f"  pacemaker: {{preferredNode: {holder}}}\n")
    rc, _ = reconcile(lab, dc(lab), repo, "apply")
    assert rc == 0
    settled(lab)
    assert running_on(lab, "db-vip") == [holder]
    started = time.monotonic()
    lab.exec(holder, ["ip", "link", "set", "eth0", "down"])
    try:
        wait_for(lambda: has_address(lab, survivor, VIP), timeout=30, step=0.1,
                 message=f"{VIP} did not move to {survivor}")
        moved = time.monotonic() - started
        rc, record = reconcile(lab, survivor, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
        rc, record = reconcile(lab, survivor, repo, "--dry-run")
        assert rc == 0
        print(f"the Pacemaker VIP moved in {moved:.1f}s")
    finally:
        lab.exec(holder, ["ip", "link", "set", "eth0", "up"])
    wait_for(lambda: sorted(status(lab, survivor).online) == ["lb1", "lb2"], timeout=60,
             message="the cluster did not rejoin")


def test_a_cluster_removed_from_git_is_left_cleanly(lab, repo):
    empty = lab.shared / "empty"
    empty.mkdir()
    writer = stable_dc(lab)  # the DC first: it writes the CIB; then the other node
    rc, record = reconcile(lab, writer, empty, "apply")
    assert rc == 1 and "refusing to prune" in record["errors"][0]  # a broken checkout must not wipe a node
    for node in (writer, other(writer)):
        rc, record = reconcile(lab, node, empty, "apply", "--allow-mass-prune")
        assert rc == 0, (record["errors"], [o for o in record["objects"] if o["status"] != "changed"])
        assert statuses(record)["Cluster/web"] == "changed"
    for node in NODES:
        procs = lab.exec(node, ["ps", "-eo", "comm="]).stdout.split()
        assert "corosync" not in procs and "pacemakerd" not in procs
        assert lab.exec(node, ["test", "-e", "/etc/corosync/corosync.conf"], check=False).returncode == 1
