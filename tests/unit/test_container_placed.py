"""Containers Pacemaker places (spec.cluster): what the Container reconciler desires and
observes for them, on configs and output recorded in a two-node lab cluster (lb1 ran ct1
under Pacemaker with a pending memory change; lb2 had the stopped copy): the run state is
Pacemaker's, autostart is off, a restart-only change is remembered for the running
instance, and the plan says what Pacemaker owns."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.pacemaker import tools as pacemaker
from reconcilers.base import Change, Deferred, Node, Runner
from reconcilers.lxc.config import (
    CLUSTER_TAG, RUNNING_INSTANCE_TAG, CgroupLayout, config_path, merge_config, parse_config, render_block,
)
from reconcilers.lxc.reconciler import ContainerReconciler
from reconcilers.lxc.placed import (
    placed_by_pacemaker, lxc_path_problem, running_settings, running_view,
)
from reconcilers.lxc.tools import instance_of
from reconcilers.lxc.model import observed_from_config, render_settings, restart_changes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
V1 = CgroupLayout(frozenset({"memory", "cpuset", "cpu"}))
RUNNING = "4840:383386"  # ct1's init on lb1 when the config was recorded (PID:start time)

TREE = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
---
# A container Pacemaker places on one node of `web` (the one the lab recorded)
apiVersion: reconcile/v1
kind: Container
metadata: {name: ct1}
spec:
  cluster: web
  template: busybox
  init: [/bin/httpd, -f, -p, "80", -h, /www]
  files: {/www/index.html: "ct1\\n"}
  stopTimeout: 1s
  limits: {memory: 48M}
  network: {type: bridge, bridge: ctbr0, address: 198.51.100.10/24, bridgeAddress: 198.51.100.1/24}
"""


def text(name: str) -> str:
    return (FIXTURES / "lxc" / name).read_text()


@pytest.fixture
def placed(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t.yaml").write_text(TREE)
    rec = ContainerReconciler()
    rec._layout = V1
    node = Node("lb1", Runner(dry_run=True, recording=True), tmp_path / "state")
    return rec, node, rec.desired(load_tree(tmp_path / "tree"), node)["Container"]["ct1"]


def observed(config: str, state: str, instance: str | None = None, may_run_here: bool = True) -> dict:
    obs = observed_from_config("ct1", "/var/lib/lxc", running_view(config, instance), state)
    obs["pacemaker"]["mayRunHere"] = may_run_here
    obs["network"]["bridgeAddress"] = "198.51.100.1/24"
    return obs


# --- desired -----------------------------------------------------------------------------------


def test_the_run_state_is_not_desired_and_autostart_is_off(placed):
    _, _, want = placed
    assert want.state["state"] is None and "/state" in want.ignore  # running here or not is not drift
    assert want.state["autostart"] is False and want.state["startOrder"] is None
    assert want.state["pacemaker"] == {"cluster": "web", "mayRunHere": True}
    assert want.depends == (("Cluster", "web"),)
    assert ("lxc.start.auto", "0") in render_settings("ct1", want.state, V1)


def test_every_node_of_the_cluster_defines_it(tmp_path):
    (tmp_path / "t.yaml").write_text(TREE)
    tree = load_tree(tmp_path)
    for name in ("lb1", "lb2"):
        assert set(ContainerReconciler().desired(tree, Node(name, Runner(dry_run=True)))["Container"]) == {"ct1"}
    assert ContainerReconciler().desired(tree, Node("lb9", Runner(dry_run=True))) == {"Container": {}}


# --- observe: configs recorded in the lab ------------------------------------------------------


def test_the_stopped_copy_reads_back_as_desired(placed):
    _, _, want = placed
    have = observed(text("config-placed-ct1-stopped"), "stopped")
    assert have["pacemaker"] == {"cluster": "web", "mayRunHere": True}
    skip = {"state", "files"} | {p.lstrip("/") for p in want.ignore}  # the template's fields are not compared
    assert {k: v for k, v in have.items() if k not in skip} == {k: v for k, v in want.state.items() if k not in skip}


def test_the_running_instance_reads_back_with_what_it_runs_with(placed):
    _, _, want = placed
    config = text("config-placed-ct1-restart-pending")
    assert parse_config(config)["lxc.cgroup.memory.limit_in_bytes"] == ["48M"]  # the next start takes 48M
    have = observed(config, "running", RUNNING)
    assert have["limits"]["memory"] == "64M"  # the instance Pacemaker started still has 64M
    assert restart_changes(have, want.state) == ["limits.memory"]
    # another run of the container (Pacemaker restarted it, here or elsewhere) has the new config
    assert observed(config, "running", "4840:999999")["limits"]["memory"] == "48M"
    assert observed(config, "stopped", None)["limits"]["memory"] == "48M"


def test_the_instance_is_named_by_pid_and_start_time(tmp_path):
    (tmp_path / "4840").mkdir()
    (tmp_path / "4840" / "stat").write_text(text("proc-stat-ct1-init"))
    assert instance_of(4840, proc=str(tmp_path)) == RUNNING
    assert instance_of(4841, proc=str(tmp_path)) is None and instance_of(None) is None


def test_the_running_settings_survive_a_second_write(placed):
    _, _, want = placed
    config = text("config-placed-ct1-restart-pending")
    held = running_settings(config, RUNNING)
    assert ("lxc.cgroup.memory.limit_in_bytes", "64M") in held
    assert ("lxc.cgroup.memory.limit_in_bytes", "48M") in running_settings(config, "1:1")
    block = render_block("ct1", "busybox", 1, render_settings("ct1", want.state, V1), "web", (RUNNING, held))
    assert merge_config(config, block) == config  # what apply wrote in the lab, written again: no change
    assert f"{CLUSTER_TAG}web" in block and f"{RUNNING_INSTANCE_TAG}{RUNNING}" in block


# --- plan notes ----------------------------------------------------------------------------------


def test_a_create_says_pacemaker_starts_it(placed):
    rec, node, want = placed
    notes = rec.explain(Change("Container", "ct1", "create", want.state, None), node)
    assert notes[0] == ("create from busybox in /var/lib/lxc, not started: Pacemaker of cluster web starts it on "
                        "one node (ocf:heartbeat:lxc primitive ct1)")
    assert "node attribute reconcile-container-ct1=1" in notes[1]


def test_a_change_that_needs_a_restart_is_left_to_pacemaker(placed):
    rec, node, want = placed
    have = observed(text("config-placed-ct1-restart-pending"), "running", RUNNING)
    notes = rec.explain(Change("Container", "ct1", "update", want.state, have), node)
    assert notes == ["restart required (limits.memory): Pacemaker runs it here and owns its start and stop, so "
                     "reconcile does not restart it; the new config is written on every node and taken at the "
                     "next start: restart it through Pacemaker when it suits you: crm_resource --restart -r ct1"]
    stopped = dict(have, state="stopped")
    assert rec.explain(Change("Container", "ct1", "update", want.state, stopped), node) == \
        ["limits.memory: taken when Pacemaker next starts it here"]


def test_a_node_attribute_lost_with_a_pacemaker_restart_is_set_again(placed):
    rec, node, want = placed
    have = observed(text("config-placed-ct1-stopped"), "stopped", may_run_here=False)
    notes = rec.explain(Change("Container", "ct1", "update", want.state, have), node)
    assert notes == ["tells Pacemaker this node can run it: node attribute reconcile-container-ct1=1 (the "
                     "primitive's location rule needs it)"]


def test_a_delete_waits_while_pacemaker_runs_it_here(placed):
    rec, node, _ = placed
    rec.primitives = {"ct1": "ct1"}
    have = observed(text("config-placed-ct1-stopped"), "running")
    notes = rec.explain(Change("Container", "ct1", "delete", None, have), node)
    assert notes[0].startswith("destroy waits: Pacemaker runs it here (primitive ct1)")
    stopped = rec.explain(Change("Container", "ct1", "delete", None, dict(have, state="stopped")), node)
    assert stopped[0].startswith("destroy: node attribute reconcile-container-ct1 is removed first")
    rec.primitives = {}
    assert rec.explain(Change("Container", "ct1", "delete", None, have), node) == \
        ["destroy: stop it, then lxc-destroy (its root file system is deleted)"]


# --- apply never takes a running container from Pacemaker ---------------------------------------


def test_destroy_is_deferred_while_a_primitive_runs_it_here(placed, tmp_path, monkeypatch):
    rec, node, _ = placed
    lxc = tmp_path / "lxc"
    (lxc / "ct1").mkdir(parents=True)
    # the recorded config, in this test's LXC path (its root file system where lxc-create puts it)
    (lxc / "ct1" / "config").write_text(text("config-placed-ct1-stopped").replace("/var/lib/lxc", str(lxc)))
    cib = pacemaker.parse_xml((FIXTURES / "pacemaker" / "cib_lxc_container.xml").read_text())
    monkeypatch.setattr(pacemaker, "query_cib", lambda *a, **k: copy.deepcopy(cib))
    monkeypatch.setattr(ContainerReconciler, "_state_now", lambda self, node, name, path: "running")
    have = dict(observed(text("config-placed-ct1-stopped"), "running"), lxcPath=str(lxc))
    with pytest.raises(Deferred, match=r"Pacemaker runs ct1 here \(lxc primitive ct1\)"):
        rec.apply_one(Change("Container", "ct1", "delete", None, have), node)
    assert node.runner.records == []  # nothing ran: no stop, no destroy, the node attribute kept
    assert (lxc / "ct1" / "config").exists()


# --- helpers -------------------------------------------------------------------------------------


def test_the_primitive_names_the_config_the_reconciler_writes():
    assert config_path("/var/lib/lxc", "ct1") == "/var/lib/lxc/ct1/config"
    assert config_path("/srv/lxc/", "ct1") == "/srv/lxc/ct1/config"


def test_the_lxc_agent_needs_the_default_lxc_path():
    assert lxc_path_problem("ct1", "/var/lib/lxc", "/var/lib/lxc") is None
    assert lxc_path_problem("ct1", "/var/lib/lxc/", "/var/lib/lxc") is None
    why = lxc_path_problem("ct1", "/srv/lxc", "/var/lib/lxc")
    assert why.startswith("ct1: spec.lxcPath is /srv/lxc, but ocf:heartbeat:lxc starts, watches and stops "
                          "containers in LXC's default path only (/var/lib/lxc")


def test_the_watch_leaves_pacemakers_state_changes_alone(tmp_path):
    (tmp_path / "ct1").mkdir()
    (tmp_path / "ct1" / "config").write_text(text("config-placed-ct1-stopped"))
    (tmp_path / "app1").mkdir()
    (tmp_path / "app1" / "config").write_text(text("config-managed-app1"))
    assert placed_by_pacemaker([str(tmp_path)], "ct1") is True
    assert placed_by_pacemaker([str(tmp_path)], "app1") is False
    assert placed_by_pacemaker([str(tmp_path)], "nothere") is False
