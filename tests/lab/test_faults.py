"""Faults must never leave a node unmanaged (issue 21), on real daemons in a lab node:
kill -9 at chosen steps, full state folders and full config folders (small tmpfs mounts in
the node), a hung HAProxy (SIGSTOP), a damaged inventory, a deleted lock file.

The randomized kill -9 test is in test_faults_random.py, the agent's hostile histories in
test_agent_faults.py; the shared stack and the independent look at the node in faultlab.py.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from controller.lab import temporary_lab
from tests.lab.faultlab import (
    CLUSTER, NODE, STATE, apply, backend, clean_node, container, containers, frontend, haproxy_file, haproxy_runtime,
    inventory, leftovers, plan, sh, vip,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=1, prefix="fl") as lab:
        yield lab


@pytest.fixture
def small_state(lab):
    """The node's state folder on a 2 MiB tmpfs, and a way to fill it to the last byte."""
    sh(lab, "mkdir", "-p", STATE)
    sh(lab, "mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=256,mode=0755", "tmpfs", STATE)

    class Folder:
        def fill(self) -> None:
            lab.exec(NODE, ["dd", "if=/dev/zero", f"of={STATE}/filler", "bs=4k"], check=False)
            lab.exec(NODE, ["sh", "-c", f"i=0; while touch {STATE}/f$i 2>/dev/null; do i=$((i+1)); done"],
                     check=False)  # the inodes too, as a disk full of small files
            assert lab.exec(NODE, ["sh", "-c", f"echo x > {STATE}/probe"], check=False).returncode != 0

        def free(self) -> None:
            sh(lab, "sh", "-c", f"rm -f {STATE}/filler {STATE}/f[0-9]*")

    try:
        yield Folder()
    finally:
        Folder().free()
        clean_node(lab)  # with the state that knows what the test made
        lab.exec(NODE, ["umount", "-l", STATE], check=False)
        lab.exec(NODE, ["sh", "-c", f"rm -rf {STATE}/* {STATE}/.[!.]*"], check=False)  # what it hid is stale now


def tree(lab, name: str, text: str) -> str:
    folder = lab.shared / name
    folder.mkdir(exist_ok=True)
    (folder / "all.yaml").write_text(text)
    return str(folder)


STACK = CLUSTER + backend("fltapp", [("s1", 21), ("s2", 22)]) + frontend("fltweb", 8080, "fltapp")
CHANGED = CLUSTER + backend("fltapp", [("s2", 22), ("s3", 23)]) + frontend("fltweb", 8080, "fltapp")


# --- full disks ----------------------------------------------------------------------------------


def test_a_full_state_folder_fails_the_apply_before_it_changes_anything_and_names_the_folder(lab, small_state):
    r = apply(lab, tree(lab, "stack", STACK))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = sh(lab, "cat", "/etc/haproxy/haproxy.cfg")
    small_state.fill()
    changed = tree(lab, "changed", CHANGED)
    r = apply(lab, changed)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert f"nothing was changed: {STATE}: no room for this run's records" in out, out
    assert "Traceback" not in out
    assert sh(lab, "cat", "/etc/haproxy/haproxy.cfg") == cfg  # the file...
    assert haproxy_runtime(lab) == {"fltapp": ["s1", "s2"]}  # ...and the running HAProxy
    # the failure is recorded (the sweep of the last run's temp-file journal freed a page)
    last = json.loads(sh(lab, "cat", f"{STATE}/status.json"))
    assert last["result"] == "failed" and "no room for this run's records" in last["errors"][0]
    small_state.free()
    r = apply(lab, changed)
    assert r.returncode == 0, r.stdout + r.stderr
    assert haproxy_runtime(lab) == {"fltapp": ["s2", "s3"]} == haproxy_file(lab)["backends"]


def test_a_full_config_folder_is_an_error_naming_the_file_and_the_old_file_stays(lab):
    cluster_vip = CLUSTER + vip("fltvip1", "192.0.2.101/24", 51)
    r = apply(lab, tree(lab, "vip", cluster_vip))
    assert r.returncode == 0, r.stdout + r.stderr
    conf = sh(lab, "cat", "/etc/keepalived/keepalived.conf")
    sh(lab, "sh", "-c", "cp -a /etc/keepalived /var/tmp/ka && mount -t tmpfs -o size=64k tmpfs /etc/keepalived && "
                        "cp -a /var/tmp/ka/. /etc/keepalived/ && "
                        "dd if=/dev/zero of=/etc/keepalived/filler bs=1k 2>/dev/null; true")
    try:
        r = apply(lab, tree(lab, "vip2", CLUSTER + vip("fltvip1", "192.0.2.101/24", 51, priority=120)))
        assert r.returncode == 1
        assert "cannot write /etc/keepalived/keepalived.conf: no space left on device" in r.stdout, r.stdout
        assert sh(lab, "cat", "/etc/keepalived/keepalived.conf") == conf
        assert not [f for f in leftovers(lab) if f.startswith("/etc/keepalived/")]
    finally:
        lab.exec(NODE, ["umount", "/etc/keepalived"], check=False)
        clean_node(lab)


# --- kill -9 at chosen steps ---------------------------------------------------------------------


@pytest.mark.parametrize("step", ["exec:lxc-create*", "write:/var/lib/lxc/fltct1/config", "engine:owned Container/*"])
def test_an_apply_killed_right_after_a_container_is_made_leaves_it_owned_and_pruned_later(lab, step):
    base = tree(lab, "ct-base", CLUSTER)
    with_ct = tree(lab, "ct", CLUSTER + container("fltct1", "198.51.100.31"))
    apply(lab, base)
    r = apply(lab, with_ct, env={"RECONCILE_FAULT_KILL": step})
    assert r.returncode == -9 or r.returncode == 137, r.stdout + r.stderr
    assert "Container/fltct1" in inventory(lab)
    r = apply(lab, base)  # the manifest left git before the next run
    assert r.returncode == 0, r.stdout + r.stderr
    assert sh(lab, "sh", "-c", "ls -d /var/lib/lxc/flt* 2>/dev/null; true").strip() == ""
    assert "Container/fltct1" not in inventory(lab)
    assert plan(lab, base).returncode == 0
    clean_node(lab)


MORE = CLUSTER + backend("fltapp", [("s2", 22), ("s3", 23)]) + backend("fltapi", [("a1", 24)]) \
    + frontend("fltweb", 8080, "fltapi")


@pytest.mark.parametrize("rerun", ["back", "forward"])
def test_an_apply_killed_between_haproxy_cfg_and_the_running_haproxy_is_pending_work_not_drift(lab, rerun):
    stack, more = tree(lab, "stack", STACK), tree(lab, "more", MORE)
    assert apply(lab, stack).returncode == 0
    r = apply(lab, more, env={"RECONCILE_FAULT_KILL": "write:/etc/haproxy/haproxy.cfg"})
    assert r.returncode in (-9, 137), r.stdout + r.stderr
    # the file has the new servers and backend, the running HAProxy does not
    assert haproxy_file(lab)["backends"] == {"fltapp": ["s2", "s3"], "fltapi": ["a1"]}
    assert haproxy_runtime(lab) == {"fltapp": ["s1", "s2"]}
    target = stack if rerun == "back" else more
    r = plan(lab, target)
    assert r.returncode == 2, r.stdout
    assert "pending work, not drift" in r.stdout and "drift: changed outside git" not in r.stdout, r.stdout
    if rerun == "back":  # git went back before the next run: the half-made backend is pruned
        assert "- Backend fltapi" in r.stdout and "~ Backend fltapp" in r.stdout, r.stdout
    r = apply(lab, target)
    assert r.returncode == 0, r.stdout + r.stderr
    want = {"fltapp": ["s1", "s2"]} if rerun == "back" else {"fltapp": ["s2", "s3"], "fltapi": ["a1"]}
    assert haproxy_file(lab)["backends"] == want == haproxy_runtime(lab)
    assert plan(lab, target).returncode == 0
    clean_node(lab)


# Runs in the node: apply in a process group of its own, killed -9 as a whole (reconcile,
# lxc-create and its template, as `systemctl kill` of the agent would) at one of the two
# moments a kill can leave lxc-create's work (strace'd: `partial` first, ~5 ms later the
# config, then the template fills the rootfs for ~100 ms, `partial` goes last):
# - "before its config": strace stops lxc-create (SIGSTOP) at its mkdir of the rootfs, so
#   the kill always falls in that 5 ms window: a folder with `partial` and no config;
# - "while its template runs": as soon as the config is there, a few ms into the template.
KILL_DURING_LXC_CREATE = r"""
import os, signal, subprocess, sys, time
folder = "/var/lib/lxc/fltct1"
argv = ["reconcile", "apply", "--no-health", "--allow-mass-prune", "--repo", sys.argv[1]]
if sys.argv[2] == "before its config":
    argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", folder + "/rootfs", "-e", "trace=mkdir",
            "-e", "inject=mkdir:signal=STOP"] + argv
apply = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 60
ready = ((lambda: os.path.isdir(folder + "/rootfs")) if sys.argv[2] == "before its config"
         else (lambda: os.path.exists(folder + "/config")))
while not (os.path.exists(folder + "/partial") and ready()):
    if apply.poll() is not None or time.monotonic() > deadline:
        sys.exit("lxc-create never got there")
    time.sleep(0.002)
if sys.argv[2] == "before its config":
    time.sleep(0.3)  # it is stopped: nothing more gets written
os.killpg(apply.pid, signal.SIGKILL)
apply.wait()
print("killed")
"""


@pytest.mark.parametrize("then", ["made again", "pruned"])
@pytest.mark.parametrize("when", ["before its config", "while its template runs"])
def test_a_container_half_made_by_a_killed_lxc_create_is_removed_and_made_again_or_pruned(lab, when, then):
    base = tree(lab, "ct-base", CLUSTER)
    with_ct = tree(lab, "ct", CLUSTER + container("fltct1", "198.51.100.31"))
    assert apply(lab, base).returncode == 0
    r = lab.exec(NODE, ["python3", "-c", KILL_DURING_LXC_CREATE, with_ct, when], check=False, timeout=90)
    assert r.stdout.strip() == "killed", r.stdout + r.stderr
    left = sh(lab, "ls", "/var/lib/lxc/fltct1").split()
    assert "partial" in left and ("config" in left) == (when != "before its config"), left  # as LXC left it
    assert "Container/fltct1" in inventory(lab)  # recorded before lxc-create ran
    target = with_ct if then == "made again" else base
    p = plan(lab, target)
    assert p.returncode == 2 and "half made: lxc-create was killed" in p.stdout, p.stdout
    assert "removes what it left" in p.stdout, p.stdout
    r = apply(lab, target)
    assert r.returncode == 0, r.stdout + r.stderr
    cts = containers(lab)
    if then == "made again":
        assert cts == {"fltct1": {"config": True, "partial": False, "rootfs": True, "listed": True}}
        assert "Container/fltct1" in inventory(lab)
        sh(lab, "lxc-start", "-n", "fltct1")  # LXC no longer says "Ongoing container creation detected"
        sh(lab, "lxc-stop", "-k", "-n", "fltct1")
    else:
        assert cts == {} and "Container/fltct1" not in inventory(lab)
    assert plan(lab, target).returncode == 0
    clean_node(lab)


def test_an_inventory_entry_does_not_outlive_a_container_destroyed_by_hand(lab):
    base = tree(lab, "ct-base", CLUSTER)
    with_ct = tree(lab, "ct", CLUSTER + container("fltct1", "198.51.100.31"))
    assert apply(lab, with_ct).returncode == 0
    assert "Container/fltct1" in inventory(lab)
    sh(lab, "lxc-destroy", "-f", "-n", "fltct1")  # by hand
    r = apply(lab, base)  # and its manifest leaves git
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Container/fltct1" not in inventory(lab)
    clean_node(lab)


# --- hung daemons --------------------------------------------------------------------------------


def test_a_hung_haproxy_is_cannot_observe_never_absent_and_nothing_is_changed(lab):
    stack = tree(lab, "stack", STACK)
    assert apply(lab, stack).returncode == 0
    pids = sh(lab, "pgrep", "-x", "haproxy").split()
    sh(lab, "kill", "-STOP", *pids)
    try:
        cfg = sh(lab, "cat", "/etc/haproxy/haproxy.cfg")
        r = plan(lab, tree(lab, "changed", CHANGED))
        assert r.returncode == 1
        assert "x Backend fltapp (failed)" in r.stdout and "cannot observe Backend: HAProxy did not answer" in r.stdout
        assert "+ Backend" not in r.stdout and "drift" not in r.stdout
        r = apply(lab, tree(lab, "changed", CHANGED))
        assert r.returncode == 1 and "cannot observe" in r.stdout
        assert sh(lab, "cat", "/etc/haproxy/haproxy.cfg") == cfg
    finally:
        sh(lab, "kill", "-CONT", *pids)
    assert apply(lab, tree(lab, "changed", CHANGED)).returncode == 0
    clean_node(lab)


def test_a_stopped_keepalived_leaves_the_vip_on_both_nodes_and_both_plans_say_so(make_lab):
    """Decision for issue 21 (item 9): a VIP held by two nodes is Degraded (SplitBrain) on
    both plans, and the node whose keepalived does not answer says that too (NotResponding,
    and its sync fails rather than taking the silence for "in sync"); apply does not fight
    a daemon someone stopped."""
    lab = make_lab(nodes=2)
    repo = lab.shared / "vip"
    repo.mkdir()
    (repo / "all.yaml").write_text(CLUSTER + vip("fltvip1", "192.0.2.101/24", 51))
    for node in ("lb2", "lb1"):
        r = lab.exec(node, ["reconcile", "apply", "--repo", str(repo)], check=False)
        assert r.returncode == 0, r.stdout + r.stderr

    def holds(node: str) -> bool:
        return "192.0.2.101/" in lab.exec(node, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout

    wait = __import__("tests.lab.test_agent", fromlist=["wait_for"]).wait_for
    wait(lambda: holds("lb1") and not holds("lb2"), what="lb1 to hold the VIP alone")
    pids = lab.exec("lb1", ["pgrep", "-x", "keepalived"]).stdout.split()
    lab.exec("lb1", ["kill", "-STOP", *pids])
    try:
        wait(lambda: holds("lb2"), what="lb2 to take the VIP over")
        assert holds("lb1")  # frozen with it: held twice
        for node in ("lb1", "lb2"):
            r = lab.exec(node, ["reconcile", "--dry-run", "--repo", str(repo), "-o", "json"], check=False)
            data = json.loads(r.stdout)
            (obj,) = [o for o in data["objects"] if o["name"] == "fltvip1"]
            assert (obj["health"]["status"], obj["health"]["reason"]) == ("Degraded", "SplitBrain"), r.stdout
            # lb2's configuration is git's; lb1's keepalived not answering is drift to repair
            want = ("in-sync", []) if node == "lb2" else (
                "pending", [{"field": "keepalived", "observed": "not-responding", "desired": "running"}])
            assert (obj["status"], obj["fields"]) == want, r.stdout
        r = lab.exec("lb1", ["reconcile", "--dry-run", "--repo", str(repo), "--color", "never"], check=False)
        assert "does not answer" in r.stdout and "SplitBrain" in r.stdout, r.stdout
        # apply does not fight a daemon someone stopped: it fails, saying so, and changes nothing
        r = lab.exec("lb1", ["reconcile", "apply", "--repo", str(repo)], check=False)
        assert r.returncode == 1 and "does not answer" in r.stdout, r.stdout + r.stderr
        assert holds("lb1") and holds("lb2")
    finally:
        lab.exec("lb1", ["kill", "-CONT", *pids], check=False)
    wait(lambda: holds("lb1") != holds("lb2"), what="the VIP to be held once again")


# --- the node lock and the inventory ---------------------------------------------------------------


def test_a_deleted_lock_file_does_not_let_a_second_apply_run(lab):
    slow = tree(lab, "stack", STACK)
    holder = lab.popen(NODE, ["python3", "-c", "import sys, time; from controller.state import NodeLock; "
                              "NodeLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", STATE],
                       stdout=subprocess.PIPE, text=True, cwd=str(lab.shared))
    try:
        assert holder.stdout.readline().strip() == "held"
        sh(lab, "rm", f"{STATE}/lock")
        r = apply(lab, slow)
        assert r.returncode == 1 and f"holds {STATE}/lock" in r.stderr
    finally:
        holder.kill()
        holder.wait()
    assert apply(lab, slow).returncode == 0
    clean_node(lab)


def test_a_damaged_inventory_stops_plan_and_apply_with_the_file_named(lab):
    assert apply(lab, tree(lab, "stack", STACK)).returncode == 0
    saved = sh(lab, "cat", f"{STATE}/inventory.json")
    for bad in ("[]", "null", "{\"objects\": 3}", "garbage"):
        lab.write_file(NODE, f"{STATE}/inventory.json", bad)
        for run in (plan(lab, tree(lab, "empty", CLUSTER)), apply(lab, tree(lab, "empty", CLUSTER))):
            assert run.returncode == 1
            assert f"{STATE}/inventory.json: " in run.stderr and "move it aside" in run.stderr
            assert "Traceback" not in run.stderr
        assert haproxy_file(lab)["backends"] == {"fltapp": ["s1", "s2"]}  # the removal waits, it is not lost
    lab.write_file(NODE, f"{STATE}/inventory.json", saved)
    assert apply(lab, tree(lab, "empty", CLUSTER)).returncode == 0
    assert haproxy_file(lab)["backends"] == {}
    r = lab.exec(NODE, ["sh", "-c", f"echo '[7]' > {STATE}/history.json; reconcile status"], check=False)
    assert r.returncode == 1 and f"{STATE}/history.json: is damaged: entry 1 is a number" in r.stdout
    sh(lab, "rm", f"{STATE}/history.json")
    clean_node(lab)
