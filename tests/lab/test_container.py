"""Containers on real LXC 5 inside a lab node, driven by `reconcile` run in the node.

One lab node serves the whole module (each test uses its own container names, bridge,
repository and state folder, and removes its containers, so tests do not see each other's
work). A node's /var is an overlay of the host's, so a container someone made on the host
shows in the node too: tests only look at the names they use. Nothing is faked: lxc-create/start/freeze/stop run for real, HTTP is served by busybox
httpd inside the containers, and limits are read back from the container's cgroup.
"""
from __future__ import annotations

import ipaddress
import json
import re
import select
import shutil
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from controller.cli import DEFAULT_REPO
from controller.lab import Lab, temporary_lab
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab

NODE = "lb1"


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=1, prefix="ct") as lab:
        yield lab


class Repo:
    """A manifest folder in the lab's shared folder, with its own agent state folder."""

    def __init__(self, lab: Lab, name: str):
        self.lab = lab
        self.path = lab.shared / name
        self.state = lab.shared / f"{name}-state"
        self.path.mkdir()
        self.names: set[str] = set()

    def write(self, **manifests: str) -> None:
        for f in self.path.glob("*.yaml"):
            f.unlink()
        for name, text in manifests.items():
            (self.path / f"{name}.yaml").write_text(text)

    def run(self, *args: str) -> tuple[int, dict[str, Any]]:
        r = self.lab.reconcile(NODE, *args, "--repo", str(self.path), "--state-dir", str(self.state), "-o", "json")
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"reconcile {args} rc={r.returncode}\n{r.stdout}\n{r.stderr}") from None

    def apply(self) -> tuple[int, dict[str, dict[str, Any]]]:
        rc, record = self.run("apply")
        return rc, {o["name"]: o for o in record["objects"]}

    def plan(self) -> tuple[int, dict[str, dict[str, Any]]]:
        rc, record = self.run("--dry-run")
        return rc, {o["name"]: o for o in record["objects"]}


def container(name: str, address: str | None = None, bridge: str = "", **spec: Any) -> str:
    """A busybox container running busybox httpd as init (stopped within 1 s). Each test
    gives its bridge its own /28 of 198.51.100.0/24: two bridges of a node must not share a
    subnet."""
    if not {"cluster", "nodes", "node"} & set(spec):
        spec["nodes"] = ["*"]  # every node, explicitly: these trees have no Cluster
    lines = [f"  {k}: {json.dumps(v)}" for k, v in spec.items()]
    net = ""
    if address:  # e.g. 198.51.100.18/28: the bridge takes the subnet's first address
        first = ipaddress.IPv4Interface(address).network[1]
        prefix = address.split("/")[1]
        net = (f"  network: {{type: bridge, bridge: {bridge}, address: {address}, "
               f"bridgeAddress: {first}/{prefix}}}\n")
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          template: busybox
          init: [/bin/httpd, -f, -p, "80", -h, /www]
          files: {{/www/index.html: "{name}\\n"}}
          stopTimeout: 1s
        """) + net + "\n".join(lines) + "\n"


def sh(lab: Lab, *argv: str, check: bool = True) -> str:
    return lab.exec(NODE, list(argv), check=check).stdout


def states(lab: Lab) -> dict[str, str]:
    out = sh(lab, "lxc-ls", "-f", "-F", "NAME,STATE")
    return {c[0]: c[1] for c in (line.split() for line in out.splitlines()[1:]) if len(c) == 2}


def memory_limit(lab: Lab, name: str) -> int:
    """The memory limit the running container really has, from its cgroup (v1 or v2)."""
    r = lab.exec(NODE, ["lxc-cgroup", "-n", name, "memory.limit_in_bytes"], check=False)
    if r.returncode:
        r = lab.exec(NODE, ["lxc-cgroup", "-n", name, "memory.max"])
    return int(r.stdout.strip())


def http_get(lab: Lab, address: str) -> tuple[int, str]:
    r = lab.exec(NODE, ["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", f"http://{address}/"],
                 check=False)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body.strip()


def destroy(lab: Lab, *names: str, bridge: str | None = None) -> None:
    for name in names:
        lab.exec(NODE, ["lxc-destroy", "-f", "-n", name], check=False)
    if bridge:
        lab.exec(NODE, ["ip", "link", "del", bridge], check=False)


# --- the worked example --------------------------------------------------------------------


def test_the_example_containers_serve_http_on_the_node_and_a_second_apply_has_nothing_to_do(lab):
    repo = Repo(lab, "example")
    shutil.copy(DEFAULT_REPO / "containers.yaml", repo.path / "containers.yaml")
    try:
        rc, plan = repo.plan()
        assert rc == 2 and {o["action"] for o in plan.values()} == {"create"}
        assert "bridge app0 with 198.51.100.1/24 is created on this node" in plan["app1"]["notes"]
        assert not {"app1", "app2", "app3"} & set(states(lab))  # the plan changed nothing

        rc, objects = repo.apply()
        assert rc == 0, objects
        assert {n: o["status"] for n, o in objects.items()} == {f"app{i}": "changed" for i in (1, 2, 3)}
        assert {n: states(lab).get(n) for n in ("app1", "app2", "app3")} == \
            {"app1": "RUNNING", "app2": "RUNNING", "app3": "RUNNING"}
        for i in (1, 2, 3):  # the servers of the `app` backend answer from the node itself
            assert http_get(lab, f"198.51.100.1{i}") == (200, f"app{i}")
        assert "198.51.100.1/24" in sh(lab, "ip", "-4", "-o", "addr", "show", "dev", "app0")

        # lxc-attach runs a command inside a container the reconciler started
        assert sh(lab, "lxc-attach", "-n", "app2", "--", "/bin/cat", "/www/index.html") == "app2\n"
        inside = sh(lab, "lxc-attach", "-n", "app2", "--", "/bin/ip", "-4", "route")
        assert "default" not in inside and "198.51.100.0/24 dev eth0" in inside
        config = sh(lab, "cat", "/var/lib/lxc/app1/config")
        assert "# reconcile-managed: Container/app1" in config and "lxc.start.auto = 1" in config

        rc, objects = repo.apply()
        assert rc == 0 and {o["status"] for o in objects.values()} == {"in-sync"}
        rc, plan = repo.plan()
        assert rc == 0 and {o["status"] for o in plan.values()} == {"in-sync"}
    finally:
        destroy(lab, "app1", "app2", "app3", bridge="app0")


def test_a_dry_run_runs_only_read_only_commands(lab):
    repo = Repo(lab, "recorded")
    repo.write(c=container("rec1", "198.51.100.18/28", "br-rec") + "---\n" +
               container("rec2", "198.51.100.19/28", "br-rec", state="frozen"))
    record = lab.shared / "recorded.json"
    try:
        assert repo.apply()[0] == 0
        sh(lab, "lxc-stop", "-k", "-n", "rec1")  # something to plan
        r = lab.exec(NODE, ["reconcile", "--dry-run", "--repo", str(repo.path), "--state-dir", str(repo.state)],
                     env={"RECONCILE_RECORD": str(record)}, check=False)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "~ Container rec1" in r.stdout and "state: stopped → running" in r.stdout
        records = json.loads(record.read_text())
        assert records and all(allowed(x["what"], x["argv"]) for x in records), records
        assert any(x["argv"][0] == "lxc-ls" for x in records)
        assert states(lab)["rec1"] == "STOPPED"
    finally:
        destroy(lab, "rec1", "rec2", bridge="br-rec")


# --- lifecycle and drift ---------------------------------------------------------------------


def test_create_start_freeze_thaw_stop_and_hand_made_drift_is_corrected(lab):
    repo = Repo(lab, "life")
    try:
        repo.write(c=container("life1", "198.51.100.34/28", "br-life"))
        rc, objects = repo.apply()
        assert rc == 0 and objects["life1"]["action"] == "create"
        assert states(lab)["life1"] == "RUNNING"
        assert http_get(lab, "198.51.100.34") == (200, "life1")

        repo.write(c=container("life1", "198.51.100.34/28", "br-life", state="frozen"))
        rc, objects = repo.apply()
        assert rc == 0 and ["state", "running", "frozen"] in _fields(objects["life1"])
        assert states(lab)["life1"] == "FROZEN"

        repo.write(c=container("life1", "198.51.100.34/28", "br-life"))  # thaw
        assert repo.apply()[0] == 0 and states(lab)["life1"] == "RUNNING"

        sh(lab, "lxc-freeze", "-n", "life1")  # by hand: drift
        rc, plan = repo.plan()
        assert rc == 2 and ["state", "frozen", "running"] in _fields(plan["life1"])
        assert "drift: changed outside git" in plan["life1"]["notes"]
        rc, objects = repo.apply()
        assert rc == 0 and objects["life1"]["status"] == "drift-corrected"
        assert states(lab)["life1"] == "RUNNING"

        sh(lab, "lxc-stop", "-k", "-n", "life1")  # by hand: drift
        rc, objects = repo.apply()
        assert rc == 0 and objects["life1"]["status"] == "drift-corrected"
        assert http_get(lab, "198.51.100.34") == (200, "life1")

        sh(lab, "sh", "-c", "echo defaced > /var/lib/lxc/life1/rootfs/www/index.html")
        rc, objects = repo.apply()
        assert rc == 0 and objects["life1"]["status"] == "drift-corrected"
        assert http_get(lab, "198.51.100.34") == (200, "life1")

        repo.write(c=container("life1", "198.51.100.34/28", "br-life", state="stopped"))
        assert repo.apply()[0] == 0 and states(lab)["life1"] == "STOPPED"
        rc, objects = repo.apply()
        assert rc == 0 and objects["life1"]["status"] == "in-sync"
    finally:
        destroy(lab, "life1", bridge="br-life")


def test_a_bridge_deleted_by_hand_is_made_again_and_dropped_when_no_container_needs_it(lab):
    repo = Repo(lab, "bridge")
    repo.write(c=container("brg1", "198.51.100.50/28", "br-brg"))
    try:
        assert repo.apply()[0] == 0 and http_get(lab, "198.51.100.50")[0] == 200
        sh(lab, "ip", "link", "del", "br-brg")
        assert http_get(lab, "198.51.100.50")[0] == 0
        rc, objects = repo.apply()
        assert rc == 0 and objects["brg1"]["status"] == "drift-corrected"
        assert ["network.bridgeAddress", None, "198.51.100.49/28"] in _fields(objects["brg1"])
        assert http_get(lab, "198.51.100.50") == (200, "brg1")
        assert states(lab)["brg1"] == "RUNNING"  # repaired without a restart

        repo.write(c=container("brg1"))  # off the bridge: restarted, and our empty bridge goes
        rc, objects = repo.apply()
        assert rc == 0 and ["network.type", "bridge", "none"] in _fields(objects["brg1"])
        assert states(lab)["brg1"] == "RUNNING"
        assert "br-brg" not in sh(lab, "ip", "-o", "link", "show")
    finally:
        destroy(lab, "brg1", bridge="br-brg")


def test_watch_yields_when_a_container_changes_state_by_hand(lab):
    repo = Repo(lab, "watch")
    repo.write(c=container("watch1"))
    watcher = None
    try:
        assert repo.apply()[0] == 0
        watcher = lab.popen(NODE, ["python3", "-c", WATCH, str(repo.state)], stdout=subprocess.PIPE, text=True,
                            cwd=str(Path.cwd()))
        assert watcher.stdout is not None
        assert readline(watcher, 30) == "watching"
        time.sleep(0.5)  # lxc-monitor has connected
        sh(lab, "lxc-freeze", "-n", "watch1")
        assert readline(watcher, 30).startswith("container watch1: FREEZING")
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()
        destroy(lab, "watch1")


def readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"nothing from the watcher within {timeout}s"
    return proc.stdout.readline().strip()


WATCH = """\
import sys
from pathlib import Path
from reconcilers.base import Node, Runner
from reconcilers.lxc.reconciler import ContainerReconciler
print("watching", flush=True)
for event in ContainerReconciler().watch(Node("lb1", Runner(dry_run=True), Path(sys.argv[1]))):
    print(event, flush=True)
"""


# --- restarts --------------------------------------------------------------------------------


def test_a_limit_change_restarts_on_change_and_waits_under_restart_policy_never(lab):
    repo = Repo(lab, "limits")
    try:
        repo.write(c=container("lim1", limits={"memory": "64M"}))
        assert repo.apply()[0] == 0 and memory_limit(lab, "lim1") == 64 << 20

        repo.write(c=container("lim1", limits={"memory": "96M"}))
        rc, plan = repo.plan()
        assert rc == 2 and ["limits.memory", "64M", "96M"] in _fields(plan["lim1"])
        assert any(n.startswith("restart required (limits.memory): restartPolicy onChange")
                   for n in plan["lim1"]["notes"])
        rc, objects = repo.apply()
        assert rc == 0 and objects["lim1"]["status"] == "changed"
        assert memory_limit(lab, "lim1") == 96 << 20 and states(lab)["lim1"] == "RUNNING"

        repo.write(c=container("lim1", limits={"memory": "128M"}, restartPolicy="never", autostart=True))
        rc, plan = repo.plan()
        assert rc == 2 and any("restartPolicy never" in n for n in plan["lim1"]["notes"])
        rc, objects = repo.apply()
        assert objects["lim1"]["status"] == "deferred", objects
        assert any("restart required (limits.memory), restartPolicy: never" in n for n in objects["lim1"]["notes"])
        # the running container and the restart-relevant part of its config are untouched,
        # the rest (autostart) is applied
        assert memory_limit(lab, "lim1") == 96 << 20
        config = sh(lab, "cat", "/var/lib/lxc/lim1/config")
        assert "limit_in_bytes = 96M" in config or "memory.max = 96M" in config
        assert "lxc.start.auto = 1" in config
        assert repo.plan()[0] == 2  # still pending

        sh(lab, "lxc-stop", "-k", "-n", "lim1")  # the operator's restart window
        rc, objects = repo.apply()
        assert rc == 0 and objects["lim1"]["status"] in ("changed", "drift-corrected")
        assert memory_limit(lab, "lim1") == 128 << 20 and states(lab)["lim1"] == "RUNNING"
        assert repo.apply()[1]["lim1"]["status"] == "in-sync"
    finally:
        destroy(lab, "lim1")


# --- ownership and pruning -------------------------------------------------------------------


def test_removed_from_git_is_destroyed_and_its_bridge_goes_with_the_last_container(lab):
    repo = Repo(lab, "prune")
    repo.write(a=container("gone1", "198.51.100.66/28", "br-prune"),
               b=container("gone2", "198.51.100.67/28", "br-prune"),
               c=container("stay1", "198.51.100.68/28", "br-prune"))
    try:
        assert repo.apply()[0] == 0
        # one at a time: the engine refuses to prune most of the inventory at once
        repo.write(b=container("gone2", "198.51.100.67/28", "br-prune"),
                   c=container("stay1", "198.51.100.68/28", "br-prune"))
        rc, objects = repo.apply()
        assert rc == 0 and objects["gone1"]["action"] == "delete" and objects["gone1"]["status"] == "changed"
        repo.write(c=container("stay1", "198.51.100.68/28", "br-prune"))
        rc, objects = repo.apply()
        assert rc == 0 and objects["gone2"]["action"] == "delete"
        assert set(states(lab)) >= {"stay1"} and not {"gone1", "gone2"} & set(states(lab))
        assert "br-prune" in sh(lab, "ip", "-o", "link", "show")  # stay1 still uses it

        repo.write()
        rc, objects = repo.apply()
        assert rc == 0 and objects["stay1"]["status"] == "changed"
        assert "stay1" not in states(lab)
        assert "br-prune" not in sh(lab, "ip", "-o", "link", "show")
    finally:
        destroy(lab, "gone1", "gone2", "stay1", bridge="br-prune")


def test_containers_made_by_hand_are_never_touched(lab):
    repo = Repo(lab, "hand")
    seed = lab.shared / "hand.conf"
    seed.write_text("lxc.net.0.type = empty\n")
    try:
        # one with the name of a manifest, one with another name, both running
        for name in ("hand1", "other1"):
            sh(lab, "lxc-create", "-n", name, "-t", "busybox", "-f", str(seed))
            sh(lab, "lxc-start", "-n", name)
        before = sh(lab, "cat", "/var/lib/lxc/hand1/config")
        repo.write(c=container("hand1", limits={"memory": "64M"}))
        rc, plan = repo.plan()
        assert rc == 2 and plan["hand1"]["notes"][0].startswith("conflict: container hand1 in /var/lib/lxc "
                                                                "was not created by reconcile")
        rc, objects = repo.apply()
        assert rc == 1 and objects["hand1"]["status"] == "failed"
        assert "not created by reconcile" in objects["hand1"]["error"]
        assert "other1" not in objects
        assert sh(lab, "cat", "/var/lib/lxc/hand1/config") == before
        assert states(lab)["hand1"] == "RUNNING" and states(lab)["other1"] == "RUNNING"

        # one of ours whose agent state was lost is not in the inventory: never pruned,
        # although the reconciler sees it (it runs for keep1) and knows it is ours
        repo.write(c=container("orphan1"), d=container("keep1"))
        assert repo.apply()[0] == 0
        shutil.rmtree(repo.state)
        repo.write(d=container("keep1"))
        rc, objects = repo.apply()
        assert rc == 0 and set(objects) == {"keep1"} and objects["keep1"]["status"] == "in-sync"
        assert {"hand1", "other1", "orphan1"} <= set(states(lab))
        assert states(lab)["orphan1"] == "RUNNING"
    finally:
        destroy(lab, "hand1", "other1", "orphan1", "keep1")


def test_a_broken_tree_changes_nothing(lab):
    repo = Repo(lab, "broken")
    repo.write(a=container("fine1"), b=container("bad1", limits={"memory": "1.5G"}))
    r = lab.reconcile(NODE, "apply", "--repo", str(repo.path), "--state-dir", str(repo.state))
    assert r.returncode == 1
    assert re.search(r"b\.yaml:\d+: spec\.limits\.memory: '1\.5G' is not a memory size", r.stderr), r.stderr
    assert not {"fine1", "bad1"} & set(states(lab))


# --- the local template ------------------------------------------------------------------------


def test_a_container_from_a_local_rootfs_tarball(lab):
    """`template: local` for real: a rootfs tarball made from a busybox container's root file
    system, and a metadata tarball with the image's config, as `lxc-create -t local` wants."""
    img = lab.shared / "image"
    img.mkdir()
    seed = lab.shared / "img.conf"
    seed.write_text("lxc.net.0.type = empty\n")
    try:
        sh(lab, "lxc-create", "-n", "imgsrc", "-t", "busybox", "-f", str(seed))
        sh(lab, "tar", "-C", "/var/lib/lxc/imgsrc/rootfs", "--numeric-owner", "-cJf", f"{img}/rootfs.tar.xz", ".")
        # the image's config: what the busybox template gives every container, minus its paths
        base = [ln for ln in sh(lab, "cat", "/var/lib/lxc/imgsrc/config").splitlines()
                if ln.startswith(("lxc.signal.", "lxc.autodev", "lxc.mount.", "lxc.tty.", "lxc.pty.", "lxc.cap."))]
        (img / "meta").mkdir()
        (img / "meta" / "config").write_text("\n".join(base) + "\n")
        sh(lab, "tar", "-C", f"{img}/meta", "-cJf", f"{img}/meta.tar.xz", "config")

        repo = Repo(lab, "local")
        repo.write(c=container("local1", "198.51.100.82/28", "br-local").replace(
            "template: busybox",
            f"template: local\n  local: {{rootfs: {img}/rootfs.tar.xz, metadata: {img}/meta.tar.xz}}"))
        rc, objects = repo.apply()
        assert rc == 0, objects
        assert states(lab)["local1"] == "RUNNING"
        assert http_get(lab, "198.51.100.82") == (200, "local1")
        assert sh(lab, "lxc-attach", "-n", "local1", "--", "/bin/hostname") == "local1\n"
        config = sh(lab, "cat", "/var/lib/lxc/local1/config")
        assert f"# reconcile-source: local rootfs={img}/rootfs.tar.xz metadata={img}/meta.tar.xz" in config
        assert repo.apply()[1]["local1"]["status"] == "in-sync"
    finally:
        destroy(lab, "imgsrc", "local1", bridge="br-local")


def _fields(obj: dict[str, Any]) -> list[list[Any]]:
    return [[f["field"], f["observed"], f["desired"]] for f in obj["fields"]]


# --- issue 22: hostile values, a root file system moved by hand, nothing left by a dry-run ------


# lxc-monitord (started by the watch test's lxc-monitor) removes its FIFO when it ends on its
# own, some seconds later: not something these tests did.
NOT_OURS = "-not -name monitor-fifo"


def node_state(lab: Lab) -> str:
    """What must not change: files under the node's /etc, /root, /home, the containers and
    their configs, with size and time; what LXC's run-time folder holds; the containers."""
    return sh(lab, "sh", "-c", "{ find /etc /root /home /var/lib/reconcile -xdev -printf '%p %s %T@\\n'; "
                               "find /var/lib/lxc -maxdepth 2 -printf '%p %s %T@\\n'; "
                               "find /run/lxc " + NOT_OURS + " -printf '%p\\n'; } 2>/dev/null | sort; lxc-ls -1")


INJECTIONS = {
    "init": (container("inj1").replace('init: [/bin/httpd, -f, -p, "80", -h, /www]',
                                       'init: [/bin/httpd, -f, "/www\\n", "lxc.rootfs.path=dir:/etc\\n", '
                                       '"lxc.apparmor.profile=unconfined\\n"]'), r"c\.yaml:\d+: spec\.init\[2\]: "),
    "lxcPath": (container("inj2") + '  lxcPath: "/var/lib/lxc\\n"\n', r"c\.yaml:\d+: spec\.lxcPath: "),
    "skel": ("apiVersion: reconcile/v1\nkind: DomainJoin\nmetadata: {name: corp}\nspec:\n  domain: corp.example.test\n"
             "  password: {file: /etc/reconcile/secrets/corp-join.password}\n"
             '  homeDirectories: {skel: "/etc/skel\\n"}\n  nodes: ["*"]\n', r"c\.yaml:7: spec\.homeDirectories\.skel: "),
    "pattern": ("apiVersion: reconcile/v1\nkind: DomainJoin\nmetadata: {name: corp}\nspec:\n  domain: corp.example.test\n"
                "  password: {file: /etc/reconcile/secrets/corp-join.password}\n"
                "  homeDirectories: {pattern: /home/../etc/%u}\n  nodes: [\"*\"]\n",
                r"c\.yaml:7: spec\.homeDirectories\.pattern: '/home/\.\./etc/%u': '\.\.' is not allowed"),
}


@pytest.mark.parametrize("field", list(INJECTIONS))
def test_the_four_injections_of_issue_22_are_refused_and_change_nothing(lab, field):
    text, where = INJECTIONS[field]
    repo = Repo(lab, f"inject-{field.lower()}")
    repo.write(c=text)
    before = node_state(lab)
    for args in (["validate"], ["--dry-run"], ["apply"]):
        r = lab.reconcile(NODE, *args, "--repo", str(repo.path), "--state-dir", str(repo.state))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert re.search(where, r.stderr), r.stderr
        assert "Traceback" not in r.stderr
    assert node_state(lab) == before


def test_a_container_whose_rootfs_was_pointed_elsewhere_by_hand_is_neither_written_into_nor_destroyed(lab):
    repo = Repo(lab, "moved")
    repo.write(c=container("moved1"))
    config = "/var/lib/lxc/moved1/config"
    victim = "/root/victim"  # stands for the node's /etc: a folder that must survive
    try:
        assert repo.apply()[0] == 0 and states(lab)["moved1"] == "RUNNING"
        sh(lab, "lxc-stop", "-k", "-n", "moved1")
        sh(lab, "sh", "-c", f"mkdir -p {victim}/www && echo precious > {victim}/keep && "
                            f"sed -i 's|^lxc.rootfs.path = .*|lxc.rootfs.path = dir:{victim}|' {config}")
        before = sh(lab, "sh", "-c", f"find {victim} -printf '%p %s %T@\\n' | sort; cat {config}")

        # a new file content: not written there, and the plan says why
        repo.write(c=container("moved1").replace('"moved1\\n"', '"defaced\\n"'))
        rc, plan = repo.plan()
        assert rc == 2 and plan["moved1"]["notes"][0].startswith(
            f"conflict: the config of container moved1 ({config}) puts its root file system at dir:{victim}, "
            "not at dir:/var/lib/lxc/moved1/rootfs")
        assert ["rootfs", f"dir:{victim}", "dir:/var/lib/lxc/moved1/rootfs"] in _fields(plan["moved1"])
        rc, objects = repo.apply()
        assert rc == 1 and objects["moved1"]["status"] == "failed"
        assert "neither writes files into it nor destroys it" in objects["moved1"]["error"]

        # the manifest removed: not destroyed, nor stopped or started
        repo.write()
        rc, objects = repo.apply()
        assert rc == 1 and objects["moved1"]["action"] == "delete" and objects["moved1"]["status"] == "failed"
        assert "nor destroys it" in objects["moved1"]["error"]
        assert sh(lab, "sh", "-c", f"find {victim} -printf '%p %s %T@\\n' | sort; cat {config}") == before
        assert "moved1" in states(lab)
        assert sh(lab, "cat", "/var/lib/lxc/moved1/rootfs/www/index.html") == "moved1\n"
    finally:  # put the config back before anything destroys it, then remove the container
        lab.exec(NODE, ["sed", "-i", "s|^lxc.rootfs.path = .*|lxc.rootfs.path = dir:/var/lib/lxc/moved1/rootfs|",
                        config], check=False)
        destroy(lab, "moved1")
        lab.exec(NODE, ["rm", "-rf", victim], check=False)


def test_a_dry_run_and_validate_leave_no_lxc_lock_folder(lab):
    repo = Repo(lab, "locks")
    repo.write(c=container("lock1") + "---\n" + container("lock2", state="stopped"))
    listing = "find /run/lxc /tmp " + NOT_OURS + " -printf '%p\\n' 2>/dev/null | sort"
    before = sh(lab, "sh", "-c", listing)
    for args in (["--dry-run"], ["validate"], ["--dry-run"]):
        r = lab.reconcile(NODE, *args, "--repo", str(repo.path), "--state-dir", str(repo.state))
        assert r.returncode in (0, 2), r.stdout + r.stderr
    assert sh(lab, "sh", "-c", listing) == before
    assert not {"lock1", "lock2"} & set(states(lab))
