"""VirtualIP with keepalived on real keepalived in two lab nodes, reconcile run inside them.

One lab for the module (lb1, lb2). Each test first writes the manifests it needs and
converges both nodes, so it does not depend on what the previous test left behind.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest

from controller.lab import Lab, temporary_lab
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")
VIP = "192.0.2.100"
API = "192.0.2.101"
CONFIG = "/etc/keepalived/keepalived.conf"

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
"""


def vip(name: str = "web-vip", address: str = f"{VIP}/24", interface: str = "eth0", **keepalived: object) -> str:
    options = {"routerId": 51, "priority": {"lb1": 150, "lb2": 100}, **keepalived}
    return (f"---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: {name}\nspec:\n  cluster: web\n"
            f"  manager: keepalived\n  address: {address}\n  interface: {interface}\n"
            f"  keepalived: {json.dumps(options)}\n")


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, prefix="ka") as lab:
        yield lab


@pytest.fixture
def repo(lab: Lab) -> Callable[..., Path]:
    """repo(*vips): write the manifests (a Cluster and these VIPs) and return the folder."""
    root = lab.shared / "repo"
    root.mkdir(exist_ok=True)
    (root / "cluster.yaml").write_text(CLUSTER)

    def write(*vips: str) -> Path:
        (root / "vips.yaml").write_text("".join(vips))
        return root

    return write


def run(lab: Lab, node: str, root: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    argv = ["reconcile", *args, "--repo", str(root), "-o", "json"]
    r = lab.exec(node, argv, check=False, timeout=120, env=env)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"{node}: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}") from None


def apply(lab: Lab, node: str, root: Path) -> tuple[int, dict]:
    return run(lab, node, root, "apply")


def plan(lab: Lab, node: str, root: Path) -> tuple[int, dict]:
    return run(lab, node, root, "--dry-run")


def vip_objects(record: dict) -> dict[str, dict]:
    return {o["name"]: o for o in record["objects"] if o["kind"] == "VirtualIP"}


def fields(record: dict, name: str) -> dict[str, tuple]:
    return {f["field"]: (f["observed"], f["desired"]) for f in vip_objects(record)[name]["fields"]}


def converge(lab: Lab, root: Path) -> None:
    for node in NODES:
        rc, record = apply(lab, node, root)
        assert rc == 0, f"{node}: apply exited {rc}: {json.dumps(record, indent=1)}"


def holders(lab: Lab, ip: str = VIP) -> set[str]:
    out = set()
    for node in NODES:
        for link in json.loads(lab.exec(node, ["ip", "-j", "addr"]).stdout):
            if any(a.get("local") == ip for a in link.get("addr_info", [])):
                out.add(node)
    return out


def wait_for(what: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_holders(lab: Lab, expected: set[str], ip: str = VIP, timeout: float = 10.0) -> None:
    assert wait_for(lambda: holders(lab, ip) == expected, timeout), \
        f"{ip} is held by {holders(lab, ip) or 'nobody'}, expected {expected}"


def pids(lab: Lab, node: str) -> tuple[int, int]:
    text = lab.exec(node, ["cat", "/run/keepalived.pid", "/run/keepalived_vrrp.pid"]).stdout.split()
    return int(text[0]), int(text[1])


def keepalived_runs(lab: Lab, node: str) -> bool:
    return lab.exec(node, ["pgrep", "-x", "keepalived"], check=False).returncode == 0


def stop_keepalived(lab: Lab, node: str) -> None:
    """A clean stop (SIGTERM), waited for: keepalived releases its addresses as it goes."""
    lab.exec(node, ["kill", "-TERM", str(pids(lab, node)[0])])
    assert wait_for(lambda: not keepalived_runs(lab, node), timeout=15), f"keepalived on {node} did not stop"


def kill_without_cleanup(lab: Lab, node: str) -> None:
    """What an OOM kill or `systemctl kill -s KILL` does: every keepalived process dies at
    once and none runs its exit path. Stopped first, so that the VRRP child cannot act on
    its parent-death SIGTERM between the two SIGKILLs."""
    parent, child = pids(lab, node)
    lab.exec(node, ["kill", "-STOP", str(parent), str(child)])
    lab.exec(node, ["kill", "-KILL", str(child), str(parent)])


# --- the tests -------------------------------------------------------------------------


def test_vip_comes_up_on_the_highest_priority_node_and_a_second_apply_has_nothing_to_do(lab, repo):
    root = repo(vip())
    rc, record = plan(lab, "lb1", root)
    assert rc == 2 and vip_objects(record)["web-vip"]["status"] == "pending"
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    text = lab.read_file("lb1", CONFIG)
    assert text.startswith("# Generated by reconcile") and "priority 150" in text and "version 3" in text
    for node in NODES:
        rc, record = apply(lab, node, root)
        assert rc == 0 and {o["status"] for o in record["objects"]} == {"in-sync"}, record
    assert holders(lab) == {"lb1"}


def test_stopping_keepalived_moves_the_vip_and_apply_starts_it_again(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    stop_keepalived(lab, "lb1")
    wait_holders(lab, {"lb2"}, timeout=5)
    rc, record = plan(lab, "lb1", root)
    assert rc == 2 and fields(record, "web-vip") == {"keepalived": ("stopped", "running")}, \
        "a clean stop leaves no stale copy"
    rc, _ = apply(lab, "lb1", root)
    assert rc == 0
    wait_holders(lab, {"lb1"})  # preempt: the higher priority takes it back


def test_kill_9_moves_the_vip_and_the_guard_removes_the_stale_copy(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    kill_without_cleanup(lab, "lb1")
    wait_holders(lab, {"lb1", "lb2"}, timeout=5)  # lb2 took over; lb1 still has the stale copy
    rc, record = plan(lab, "lb1", root)
    assert rc == 2 and fields(record, "web-vip") == {"keepalived": ("stopped", "running"),
                                                     "staleAddress": (True, False)}
    assert any("split-brain guard" in n for n in vip_objects(record)["web-vip"]["notes"])
    rc, record = apply(lab, "lb1", root)
    assert rc == 0 and vip_objects(record)["web-vip"]["status"] == "drift-corrected"
    wait_holders(lab, {"lb1"})


def test_watch_reports_keepalived_death_at_once(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    watcher = lab.popen("lb1", ["python", "-c", WATCH_SCRIPT], stdout=-1, text=True)
    try:
        assert watcher.stdout.readline().startswith("watching")
        time.sleep(0.3)  # the watch has taken its first look
        killed = time.monotonic()
        kill_without_cleanup(lab, "lb1")
        line = watcher.stdout.readline()
        seen = time.monotonic()
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert "keepalived went away" in line, line
    assert seen - killed < 2.0, f"the watch took {seen - killed:.2f}s"
    converge(lab, root)  # the guard and a fresh keepalived for the next test


WATCH_SCRIPT = """\
import sys
from reconcilers.base import Node, Runner
from reconcilers.keepalived.reconciler import KeepalivedReconciler
print("watching", flush=True)
for reason in KeepalivedReconciler().watch(Node("lb1", Runner(dry_run=True))):
    if "keepalived" in reason:
        print(reason, flush=True)
"""


def test_changing_priorities_moves_the_vip_as_declared(lab, repo):
    converge(lab, repo(vip()))
    wait_holders(lab, {"lb1"})
    root = repo(vip(priority={"lb1": 150, "lb2": 200}))
    rc, record = plan(lab, "lb2", root)
    assert rc == 2 and fields(record, "web-vip") == {"config.vrrp_instance web-vip.priority": ("100", "200")}
    converge(lab, root)
    wait_holders(lab, {"lb2"})


def test_nopreempt_keeps_the_vip_where_it_is(lab, repo):
    converge(lab, repo(vip(priority={"lb1": 150, "lb2": 200})))
    wait_holders(lab, {"lb2"})
    converge(lab, repo(vip(priority={"lb1": 250, "lb2": 100}, preempt=False)))
    time.sleep(2.0)  # more than two master-down intervals: a preempting lb1 would have taken it
    assert holders(lab) == {"lb2"}
    rc, record = plan(lab, "lb1", repo(vip(priority={"lb1": 250, "lb2": 100}, preempt=False)))
    assert rc == 0, "who holds the address is not drift"


def test_a_vip_removed_by_hand_from_the_master_is_back(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    lab.exec("lb1", ["ip", "addr", "del", f"{VIP}/24", "dev", "eth0"])
    rc, _ = apply(lab, "lb1", root)  # keepalived restores it itself; apply reloads it if it did not
    assert rc == 0
    wait_holders(lab, {"lb1"}, timeout=3)


def test_addresses_moving_into_a_group_instance_take_two_reloads(lab, repo):
    converge(lab, repo(vip(), vip("api-vip", f"{API}/24", routerId=52)))
    wait_holders(lab, {"lb1"})
    wait_holders(lab, {"lb1"}, ip=API)
    root = repo(vip(group="web"), vip("api-vip", f"{API}/24", group="web"))
    rc, record = plan(lab, "lb1", root)
    changed = fields(record, "api-vip")
    assert rc == 2 and "config.vrrp_instance web" in changed and "config.vrrp_instance api-vip" in changed
    assert any("two reloads" in n for n in vip_objects(record)["api-vip"]["notes"])
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    wait_holders(lab, {"lb1"}, ip=API)
    text = lab.read_file("lb1", CONFIG)
    assert "vrrp_instance web {" in text and "vrrp_instance api-vip" not in text
    for node in NODES:
        assert apply(lab, node, root)[0] == 0


def test_dry_run_runs_only_read_only_commands_and_changes_nothing(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    kill_without_cleanup(lab, "lb1")  # a plan with drift exercises the most code
    wait_holders(lab, {"lb1", "lb2"}, timeout=5)
    before = (lab.read_file("lb1", CONFIG), holders(lab))
    record_file = lab.shared / "record-lb1.json"
    rc, record = run(lab, "lb1", root, "--dry-run", env={"RECONCILE_RECORD": str(record_file)})
    assert rc == 2 and fields(record, "web-vip")["staleAddress"] == (True, False)
    commands = json.loads(record_file.read_text())
    refused = [" ".join(c["argv"]) for c in commands if not allowed(c["what"], c["argv"])]
    assert commands and not refused, f"dry-run ran commands outside the allow-list: {refused}"
    assert (lab.read_file("lb1", CONFIG), holders(lab)) == before
    assert not keepalived_runs(lab, "lb1"), "dry-run started keepalived"
    converge(lab, root)


def test_a_configuration_keepalived_refuses_applies_nothing(lab, repo):
    converge(lab, repo(vip()))
    before = lab.read_file("lb1", CONFIG)
    rc, record = apply(lab, "lb1", repo(vip(interface="eth1")))  # no eth1 in the nodes
    assert rc == 1
    error = vip_objects(record)["web-vip"]["error"]
    assert "keepalived -t" in error and "eth1" in error, "the refusal is pinned on the VIP that wrote the line"
    assert lab.read_file("lb1", CONFIG) == before


def test_a_foreign_keepalived_conf_is_not_replaced(lab, repo):
    root = repo(vip())
    converge(lab, root)
    stop_keepalived(lab, "lb1")
    foreign = "! written by hand\nglobal_defs {\n    router_id handmade\n}\n"
    lab.write_file("lb1", CONFIG, foreign)
    rc, record = apply(lab, "lb1", root)
    assert rc == 1 and "not written by reconcile" in vip_objects(record)["web-vip"]["error"]
    assert lab.read_file("lb1", CONFIG) == foreign
    lab.exec("lb1", ["rm", CONFIG])
    converge(lab, root)


def test_removing_the_last_vip_stops_keepalived_and_removes_its_file(lab, repo):
    converge(lab, repo(vip()))
    wait_holders(lab, {"lb1"})
    root = repo()
    for node in NODES:
        rc, record = apply(lab, node, root)
        assert rc == 0 and vip_objects(record)["web-vip"]["action"] == "delete", record
        assert lab.exec(node, ["test", "-e", CONFIG], check=False).returncode == 1
        assert not keepalived_runs(lab, node)
    assert holders(lab) == set()


def test_a_hung_keepalived_is_reported_not_fought(lab, repo):
    root = repo(vip())
    converge(lab, root)
    wait_holders(lab, {"lb1"})
    _, child = pids(lab, "lb1")
    lab.exec("lb1", ["kill", "-STOP", str(child)])
    try:
        wait_holders(lab, {"lb1", "lb2"}, timeout=5)  # lb2 no longer hears lb1 and takes over
        rc, record = plan(lab, "lb1", root)
        assert rc == 2 and fields(record, "web-vip") == {"keepalived": ("not-responding", "running")}
        rc, record = apply(lab, "lb1", root)
        assert rc == 1 and "does not answer its JSON dump signal" in vip_objects(record)["web-vip"]["error"]
        assert pids(lab, "lb1")[1] == child and holders(lab) == {"lb1", "lb2"}, "apply touched it"
    finally:
        lab.exec("lb1", ["kill", "-CONT", str(child)])
    wait_holders(lab, {"lb1"})  # back to one master as soon as lb1 speaks again
    converge(lab, root)


HAPROXY_CFG = """\
global
    pidfile /run/haproxy-test.pid
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
listen probe
    bind 127.0.0.1:9999
"""


def test_track_haproxy_gives_the_vip_away_from_a_node_whose_proxy_died(lab, repo):
    cfg = lab.shared / "haproxy-test.cfg"
    cfg.write_text(HAPROXY_CFG)
    try:
        for node in NODES:  # the service runs on every node (at least once)
            lab.exec(node, ["haproxy", "-D", "-f", str(cfg)])
        root = repo(vip(trackHaproxy=True))
        converge(lab, root)
        wait_holders(lab, {"lb1"})
        assert "track_haproxy weight -51" in lab.read_file("lb1", CONFIG)
        lab.exec("lb1", ["sh", "-c", "kill $(cat /run/haproxy-test.pid)"])
        wait_holders(lab, {"lb2"}, timeout=10)  # 2 failed checks 1 s apart, then preemption
        rc, _ = plan(lab, "lb1", root)
        assert rc == 0, "a dead proxy moves the address; that is keepalived's business, not drift"
        lab.exec("lb1", ["haproxy", "-D", "-f", str(cfg)])
        wait_holders(lab, {"lb1"}, timeout=10)
    finally:
        for node in NODES:
            lab.exec(node, ["sh", "-c", "test -e /run/haproxy-test.pid && kill $(cat /run/haproxy-test.pid) || true"])


def test_one_reload_for_a_batch_and_a_refused_vip_held_back_while_the_others_land(lab, repo):
    converge(lab, repo(vip(), vip("api-vip", f"{API}/24", routerId=52)))
    wait_holders(lab, {"lb1"})
    root = repo(vip(priority={"lb1": 160, "lb2": 100}), vip("api-vip", f"{API}/24", routerId=52, advertInterval=0.5),
                vip("bad-vip", "192.0.2.102/24", interface="eth9", routerId=53),  # no eth9 in the nodes
                vip("new-vip", "192.0.2.103/24", routerId=54))
    r = lab.exec("lb1", ["reconcile", "apply", "-v", "--repo", str(root), "-o", "json"], check=False, timeout=120)
    record = json.loads(r.stdout)
    status = {name: o["status"] for name, o in vip_objects(record).items()}
    assert not record["errors"], record["errors"]
    assert status == {"web-vip": "changed", "api-vip": "changed", "new-vip": "changed", "bad-vip": "failed"}, \
        {name: o.get("error") for name, o in vip_objects(record).items()}
    assert "eth9" in vip_objects(record)["bad-vip"]["error"]
    reloads = [line for line in r.stderr.splitlines() if "kill -s HUP" in line]
    assert len(reloads) == 1, f"one reload for the whole batch: {reloads}"
    text = lab.read_file("lb1", CONFIG)
    assert "priority 160" in text and "advert_int 0.5" in text and "new-vip" in text and "bad-vip" not in text
    wait_holders(lab, {"lb1"}, ip="192.0.2.103")
