"""A Container placed by Pacemaker (spec.cluster) on real Corosync 3 + Pacemaker 2.1 + LXC 5
in two lab nodes, with reconcile run inside the nodes as an operator would.

One lab for the module; the tests run in order through the life of one container: it is
defined on both nodes and Pacemaker (ocf:heartbeat:lxc) runs it on one; further applies
have nothing to do and never start the second copy; a change that needs a restart waits
for a restart through Pacemaker; when its node stops Pacemaker, the other node runs it
and the agents do not fight that; removing the manifest removes the primitive (stopping
the container through Pacemaker first) and then the container on both nodes.
"""
from __future__ import annotations

import json
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.lab import Lab, temporary_lab
from reconcilers.pacemaker.tools import parse_crm_mon
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")
NAME = "pmct1"
ADDRESS = "198.51.100.10"

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
  properties: {no-quorum-policy: stop, dc-deadtime: 5s}
"""


def container(memory: str = "64M") -> str:
    """busybox httpd as init (it ignores the halt signal: a stop takes stopTimeout, then kill)."""
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Container
        metadata: {{name: {NAME}}}
        spec:
          cluster: web
          template: busybox
          init: [/bin/httpd, -f, -p, "80", -h, /www]
          files: {{/www/index.html: "{NAME}\\n"}}
          stopTimeout: 1s
          limits: {{memory: {memory}}}
          network: {{type: bridge, bridge: pmbr0, address: {ADDRESS}/24, bridgeAddress: 198.51.100.1/24}}
        """)


@pytest.fixture(scope="module")
def lab():
    # ocf:heartbeat:lxc writes 1 to notify_on_release at the root of the first cgroup v1
    # hierarchy it finds (cgroup_mounted()), and lab nodes share the host's cgroupfs: put
    # back what the host had.
    roots = sorted(Path("/sys/fs/cgroup").glob("*/notify_on_release"))
    before = {p: p.read_text() for p in roots}
    try:
        with temporary_lab(nodes=2, prefix="pc") as lab:
            yield lab
    finally:
        for path, value in before.items():
            if path.read_text() != value:
                path.write_text(value)


@pytest.fixture(scope="module")
def repo(lab: Lab) -> Path:
    root = lab.shared / "repo"
    root.mkdir()
    (root / "cluster.yaml").write_text(CLUSTER)
    (root / "container.yaml").write_text(container())
    return root


# --- helpers -----------------------------------------------------------------------------


def reconcile(lab: Lab, node: str, root: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    argv = ["reconcile", *args, "--repo", str(root), "-o", "json"]
    r = lab.exec(node, argv, check=False, timeout=240, env=env)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"{node}: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}") from None


def statuses(record: dict) -> dict[str, str]:
    return {f"{o['kind']}/{o['name']}": o["status"] for o in record["objects"]}


def result(record: dict, kind: str) -> dict:
    return next(o for o in record["objects"] if (o["kind"], o["name"]) == (kind, NAME))


def lxc_state(lab: Lab, node: str) -> tuple[str, str] | None:
    """(STATE, PID) of our container on `node`, None when it is not defined there."""
    out = lab.exec(node, ["lxc-ls", "-f", "-F", "NAME,STATE,PID"]).stdout
    for cols in (line.split() for line in out.splitlines()[1:]):
        if cols and cols[0] == NAME:
            return cols[1], cols[2]
    return None


def running_here(lab: Lab) -> list[str]:
    return [n for n in NODES if (lxc_state(lab, n) or ("",))[0] == "RUNNING"]


def crm_mon(lab: Lab, node: str) -> ET.Element:
    return ET.fromstring(lab.exec(node, ["crm_mon", "-1", "--output-as=xml"]).stdout)


def dc(lab: Lab) -> str:
    for node in NODES:
        try:
            found = parse_crm_mon(lab.exec(node, ["crm_mon", "-1", "--output-as=xml"]).stdout).dc
        except Exception:
            continue
        if found:
            return found
    raise AssertionError("no DC")


def started_on(lab: Lab, node: str = "") -> list[str]:
    """Where Pacemaker says the container's primitive runs."""
    return parse_crm_mon(ET.tostring(crm_mon(lab, node or dc(lab)), encoding="unicode")).active.get(NAME, [])


def failures(lab: Lab, node: str) -> list[dict]:
    return [f.attrib for f in crm_mon(lab, node).iter("failure")]


def other(node: str) -> str:
    return "lb2" if node == "lb1" else "lb1"


def settled(lab: Lab, timeout: float = 90) -> None:
    lab.exec(dc(lab), ["crm_resource", "--wait", f"--timeout={int(timeout)}s"], timeout=timeout + 10)


def wait_for(what, timeout: float, step: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"timed out after {timeout}s")
        time.sleep(step)


def memory_limit(lab: Lab, node: str) -> int:
    r = lab.exec(node, ["lxc-cgroup", "-n", NAME, "memory.limit_in_bytes"], check=False)
    if r.returncode:
        r = lab.exec(node, ["lxc-cgroup", "-n", NAME, "memory.max"])
    return int(r.stdout.strip())


def http_get(lab: Lab, node: str) -> str:
    return lab.exec(node, ["curl", "-s", "-m", "5", f"http://{ADDRESS}/"], check=False).stdout.strip()


# --- the life of one Pacemaker-placed container -------------------------------------------


def test_a_placed_container_is_defined_on_both_nodes_and_runs_on_one(lab, repo):
    record_file = lab.shared / "record-dry-run.json"
    rc, record = reconcile(lab, "lb1", repo, "--dry-run", env={"RECONCILE_RECORD": str(record_file)})
    assert rc == 2 and statuses(record) == {"Cluster/web": "pending", "ClusterConfig/web": "pending",
                                            f"Container/{NAME}": "pending", f"ClusterResource/{NAME}": "pending"}
    assert "not started: Pacemaker of cluster web starts it on one node" in result(record, "Container")["notes"][0]
    assert result(record, "ClusterResource")["notes"] == [
        f"starts only on a node where the container is defined (node attribute reconcile-container-{NAME}=1, "
        "set by that node's Container reconciler): no node yet"]
    commands = json.loads(record_file.read_text())
    refused = [" ".join(c["argv"]) for c in commands if not allowed(c["what"], c["argv"])]
    assert commands and not refused, f"dry-run ran commands outside the allow-list: {refused}"
    assert all(lxc_state(lab, n) is None for n in NODES)

    started = time.monotonic()
    procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo), "-o", "json"], stdout=-1, stderr=-1,
                          text=True) for n in NODES}
    results = {}
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{node}: apply exited {proc.returncode}\n{out}\n{err}"
        results[node] = statuses(json.loads(out))
    settled(lab)
    print(f"cluster formed, container defined on both nodes and started in {time.monotonic() - started:.1f}s")
    assert all(r[f"Container/{NAME}"] == "changed" for r in results.values()), results
    [holder] = started_on(lab)
    assert running_here(lab) == [holder]  # at most once, where Pacemaker says
    assert lxc_state(lab, other(holder))[0] == "STOPPED"
    for node in NODES:
        config = lab.read_file(node, f"/var/lib/lxc/{NAME}/config")
        assert f"# reconcile-managed: Container/{NAME}" in config and "# reconcile-cluster: web" in config
        assert "lxc.start.auto = 0" in config  # a node that boots does not start a second copy
    assert http_get(lab, holder) == NAME
    # the primitive Pacemaker runs names the config the Container reconciler wrote
    primitive = ET.fromstring(lab.exec(holder, ["cibadmin", "--query", "--scope", "resources"]).stdout) \
        .find(f".//primitive[@id='{NAME}']")
    params = {nv.get("name"): nv.get("value") for nv in primitive.iter("nvpair")}
    assert (params["container"], params["config"]) == (NAME, f"/var/lib/lxc/{NAME}/config")


def test_a_second_apply_has_nothing_to_do_and_leaves_the_run_state_to_pacemaker(lab, repo):
    [holder] = started_on(lab)
    pid = lxc_state(lab, holder)[1]
    for node in (other(holder), holder):  # the node without it first: it must not start it
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
        rc, _ = reconcile(lab, node, repo, "--dry-run")
        assert rc == 0
    assert running_here(lab) == [holder] and lxc_state(lab, holder)[1] == pid  # not restarted either
    assert started_on(lab) == [holder]


def test_a_change_that_needs_a_restart_waits_for_a_restart_through_pacemaker(lab, repo):
    [holder] = started_on(lab)
    pid = lxc_state(lab, holder)[1]
    assert memory_limit(lab, holder) == 64 << 20
    (repo / "container.yaml").write_text(container(memory="32M"))
    rc, record = reconcile(lab, other(holder), repo, "apply")
    assert rc == 0 and result(record, "Container")["status"] == "changed"  # its stopped copy takes it now
    rc, record = reconcile(lab, holder, repo, "apply")
    mine = result(record, "Container")
    assert rc == 0 and mine["status"] == "deferred", mine
    assert any(f"crm_resource --restart -r {NAME}" in n for n in mine["notes"])
    assert lxc_state(lab, holder)[1] == pid and memory_limit(lab, holder) == 64 << 20  # left running as it was
    rc, record = reconcile(lab, holder, repo, "--dry-run")
    assert rc == 2 and result(record, "Container")["fields"] == [
        {"field": "limits.memory", "observed": "64M", "desired": "32M"}]

    lab.exec(holder, ["crm_resource", "--restart", "-r", NAME, "--timeout=60s"], timeout=90)
    # Pacemaker starts it where it likes (no stickiness; both nodes may run it): wherever that
    # is, the new limit is in that copy's config and the new instance runs with it
    [now] = started_on(lab)
    assert memory_limit(lab, now) == 32 << 20
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record


def test_when_its_node_stops_pacemaker_the_other_node_runs_it_and_the_agents_do_not_fight(lab, repo):
    [holder] = started_on(lab)
    survivor = other(holder)
    started = time.monotonic()
    lab.exec(holder, ["pacemakerd", "--shutdown"], timeout=60)  # resources leave first, then the daemons
    wait_for(lambda: running_here(lab) == [survivor], timeout=90, step=0.25,
             message=f"{NAME} did not move to {survivor}")
    moved = time.monotonic() - started
    assert started_on(lab, survivor) == [survivor] and http_get(lab, survivor) == NAME
    rc, record = reconcile(lab, survivor, repo, "apply")
    assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
    print(f"{NAME} moved to {survivor} in {moved:.1f}s after Pacemaker stopped on {holder}")

    # the old node comes back through its own apply (the Cluster starts Pacemaker again);
    # its copy gets its node attribute back, and nothing starts a second copy
    rc, record = reconcile(lab, holder, repo, "apply")
    assert rc == 0, record
    assert result(record, "Container")["status"] == "drift-corrected"  # the attribute went with Pacemaker
    settled(lab)
    assert len(running_here(lab)) == 1 and started_on(lab) == running_here(lab)
    for node in NODES:
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record


def test_removing_the_manifest_removes_the_primitive_and_then_the_container(lab, repo):
    writer = dc(lab)
    holder = other(writer)
    if started_on(lab) != [holder]:  # make it run on the node that does not write the CIB
        lab.exec(writer, ["crm_resource", "--move", "-r", NAME, "-N", holder])
        settled(lab)
        lab.exec(writer, ["crm_resource", "--clear", "-r", NAME])
        settled(lab)
    assert started_on(lab) == [holder]
    (repo / "container.yaml").unlink()

    # the node that runs it cannot remove the primitive (the DC writes the CIB; no agent
    # runs there to be woken: pending, issue 21 item 6) and does not destroy a container
    # Pacemaker runs
    rc, record = reconcile(lab, holder, repo, "apply", "--allow-mass-prune")
    assert rc == 2 and statuses(record) == {"Cluster/web": "in-sync", "ClusterConfig/web": "in-sync",
                                            f"Container/{NAME}": "deferred", f"ClusterResource/{NAME}": "pending"}, record
    assert running_here(lab) == [holder]

    # the DC stops it through Pacemaker, removes the primitive, then destroys its own copy
    rc, record = reconcile(lab, writer, repo, "apply", "--allow-mass-prune")
    assert rc == 0 and statuses(record) == {"Cluster/web": "in-sync", "ClusterConfig/web": "in-sync",
                                            f"Container/{NAME}": "changed", f"ClusterResource/{NAME}": "changed"}, record
    ids = {el.get("id") for el in ET.fromstring(lab.exec(writer, ["cibadmin", "--query", "--scope",
                                                                  "configuration"]).stdout).iter()}
    assert NAME not in ids and f"{NAME}-where-defined" not in ids
    assert lxc_state(lab, writer) is None and lxc_state(lab, holder)[0] == "STOPPED"

    rc, record = reconcile(lab, holder, repo, "apply", "--allow-mass-prune")
    assert rc == 0 and statuses(record) == {"Cluster/web": "in-sync", "ClusterConfig/web": "in-sync",
                                            f"Container/{NAME}": "changed"}, record
    for node in NODES:
        assert lxc_state(lab, node) is None
        assert lab.exec(node, ["ip", "link", "show", "pmbr0"], check=False).returncode != 0  # our bridge went too
        assert failures(lab, node) == []  # no failed stop of an orphan, nothing blocked
        rc, record = reconcile(lab, node, repo, "apply")
        assert rc == 0 and set(statuses(record).values()) == {"in-sync"}, record
