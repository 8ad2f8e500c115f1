"""ClusterResource: desired states from manifests, the candidate CIB built on CIBs recorded
from a real cluster, and reading our objects back (what we render, we observe the same)."""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers import pacemaker
from reconcilers.base import ApplyError, Node, Runner
from reconcilers.cluster_resource import (
    ClusterResourceReconciler, build_candidate, is_marked, parse_managed, render_unit,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"

TREE = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  stonithEnabled: false
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: db-vip
spec:
  cluster: web
  manager: pacemaker
  address: 192.0.2.110/24
  interface: eth0
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  operations:
    - {name: monitor, interval: 10s, timeout: 20s}
  colocation:
    - {with: db-vip}
  startAfter: [db-vip]
"""

MORE = """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: web-tier
spec:
  cluster: web
  group: [web-ip, web-app]
  meta: {resource-stickiness: "100"}
  location:
    - {node: lb2, score: 50}
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: web-ip
spec:
  cluster: web
  manager: pacemaker
  address: 192.0.2.120/24
  pacemaker: {monitorInterval: 5s, preferredNode: lb1}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: web-app
spec:
  cluster: web
  agent: systemd:nginx
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: ping
spec:
  cluster: web
  agent: ocf:pacemaker:Dummy
  params: {state: /run/ping.state}
  meta: {interleave: "true"}
  clone: true
  colocation:
    - {with: web-tier, score: -INFINITY}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db-after-ping
spec:
  cluster: web
  agent: lsb:ntp
  startAfter: [ping]
"""


def reconciler(tmp_path: Path, text: str = TREE) -> tuple[ClusterResourceReconciler, dict]:
    (tmp_path / "tree.yaml").write_text(text)
    rec = ClusterResourceReconciler()
    out = rec.desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True)))["ClusterResource"]
    return rec, out


def live(name: str = "cib_managed_and_handmade.xml") -> ET.Element:
    return pacemaker.parse_xml((FIXTURES / name).read_text())


# --- desired -----------------------------------------------------------------------------


def test_a_pacemaker_vip_becomes_an_ipaddr2_primitive(tmp_path):
    _, out = reconciler(tmp_path)
    vip = out["db-vip"]
    assert vip.state["agent"] == "ocf:heartbeat:IPaddr2"
    assert vip.state["params"] == {"ip": "192.0.2.110", "cidr_netmask": "24", "nic": "eth0"}
    assert {"name": "monitor", "interval": "10s", "timeout": "20s"} in vip.state["operations"]
    assert vip.depends == (("Cluster", "web"),)
    assert vip.source.startswith("tree.yaml:")  # the VirtualIP manifest, for errors and the plan


def test_a_resource_with_constraints(tmp_path):
    _, out = reconciler(tmp_path)
    assert out["db"].state == {
        "agent": "ocf:heartbeat:Dummy", "params": {}, "meta": {}, "clone": False,
        "operations": [{"name": "monitor", "interval": "10s", "timeout": "20s"}],
        "location": [], "colocation": [{"with": "db-vip", "score": "INFINITY"}], "startAfter": ["db-vip"],
    }
    # an operator's `pcs resource disable` / `unmanage` is not drift unless git says otherwise
    assert out["db"].ignore == ("/meta/target-role", "/meta/is-managed")


def test_a_clustered_container_becomes_an_lxc_primitive(tmp_path):
    container = ("---\napiVersion: reconcile/v1\nkind: Container\nmetadata:\n  name: app9\nspec:\n  cluster: web\n"
                 "  template: busybox\n")
    _, out = reconciler(tmp_path, TREE + container)
    state = out["app9"].state
    assert state["agent"] == "ocf:heartbeat:lxc"
    assert state["params"] == {"container": "app9", "config": "/var/lib/lxc/app9/config"}


def test_nodes_outside_the_cluster_desire_nothing(tmp_path):
    (tmp_path / "tree.yaml").write_text(TREE)
    out = ClusterResourceReconciler().desired(load_tree(tmp_path), Node("lb9", Runner(dry_run=True)))["ClusterResource"]
    assert out == {}


# --- rendering and reading back ----------------------------------------------------------


def test_what_we_render_reads_back_as_the_desired_state(tmp_path):
    rec, out = reconciler(tmp_path, TREE + MORE)
    cib = build_candidate(live("cib_managed.xml"), rec._states)
    assert parse_managed(cib.find("configuration")) == {name: d.state for name, d in out.items()}


def test_groups_and_clones_are_rendered_as_pacemaker_expects(tmp_path):
    rec, _ = reconciler(tmp_path, TREE + MORE)
    group = render_unit("web-tier", rec._states)
    assert group.tag == "group" and [p.get("id") for p in group.findall("primitive")] == ["web-ip", "web-app"]
    assert pacemaker.nvpairs(group, "meta_attributes") == {"reconcile-managed": "true", "resource-stickiness": "100"}
    clone = render_unit("ping", rec._states)
    assert (clone.tag, clone.get("id")) == ("clone", "ping-clone")
    assert pacemaker.nvpairs(clone, "meta_attributes") == {"reconcile-managed": "true", "interleave": "true"}
    assert is_marked(clone.find("primitive")) and clone.find("primitive").get("provider") == "pacemaker"
    lsb = render_unit("db-after-ping", rec._states)
    assert (lsb.get("class"), lsb.get("type"), lsb.get("provider")) == ("lsb", "ntp", None)
    cib = build_candidate(live("cib_managed.xml"), rec._states)
    constraints = {c.get("id"): c.attrib for c in cib.find("configuration/constraints")}
    assert constraints["ping-with-web-tier"] == {"id": "ping-with-web-tier", "rsc": "ping-clone",
                                                 "with-rsc": "web-tier", "score": "-INFINITY"}
    assert constraints["db-after-ping-after-ping"]["first"] == "ping-clone"
    assert constraints["web-ip-location-lb1"]["score"] == "100"


def test_observe_sees_only_marked_objects(tmp_path):
    observed = parse_managed(live().find("configuration"))
    assert set(observed) == {"db", "db-vip"}  # `handmade` was made with cibadmin by hand
    # `pcs resource move` made cli-prefer-db-vip: not ours, not observed as a location
    assert observed["db-vip"]["location"] == []
    assert observed["db"]["meta"] == {"target-role": "Stopped"}  # an operator's, ignored by the diff


def test_an_unchanged_tree_gives_an_unchanged_configuration(tmp_path):
    rec, _ = reconciler(tmp_path)
    before = live("cib_managed.xml")
    after = build_candidate(copy.deepcopy(before), rec._states)
    assert pacemaker.same_configuration(before, after)


def test_a_param_change_replaces_the_resource_in_place_and_keeps_what_is_not_ours(tmp_path):
    rec, _ = reconciler(tmp_path, TREE.replace("agent: ocf:heartbeat:Dummy", "agent: ocf:heartbeat:Dummy\n"
                                                                            "  params: {fake: \"42\"}"))
    before = live()
    order_before = [el.get("id") for el in before.find("configuration/resources")]
    after = build_candidate(copy.deepcopy(before), rec._states)
    resources = after.find("configuration/resources")
    assert [el.get("id") for el in resources] == order_before
    db = next(el for el in resources if el.get("id") == "db")
    assert pacemaker.nvpairs(db, "instance_attributes") == {"fake": "42"}
    # the operator's target-role on db survives our rewrite of db
    assert pacemaker.nvpairs(db, "meta_attributes")["target-role"] == "Stopped"
    handmade = [el for el in resources if el.get("id") == "handmade"]
    assert len(handmade) == 1 and ET.tostring(handmade[0]) == ET.tostring(
        next(el for el in before.find("configuration/resources") if el.get("id") == "handmade"))
    ids = [c.get("id") for c in after.find("configuration/constraints")]
    assert "cli-prefer-db-vip" in ids


def test_a_delete_removes_only_the_marked_object_and_its_constraints(tmp_path):
    rec, _ = reconciler(tmp_path)
    states = {k: v for k, v in rec._states.items() if k == "db-vip"}
    after = build_candidate(live(), states, deletes=["db", "handmade"])
    ids = [el.get("id") for el in after.find("configuration/resources")]
    assert ids == ["db-vip", "handmade"]
    constraints = [c.get("id") for c in after.find("configuration/constraints")]
    assert constraints == ["cli-prefer-db-vip"]


def test_a_manifest_may_not_take_over_a_resource_made_by_hand(tmp_path):
    text = TREE + ("---\napiVersion: reconcile/v1\nkind: ClusterResource\nmetadata:\n  name: handmade\nspec:\n"
                   "  cluster: web\n  agent: ocf:heartbeat:Dummy\n")
    rec, _ = reconciler(tmp_path, text)
    with pytest.raises(ApplyError, match="'handmade' that reconcile did not create"):
        build_candidate(live(), rec._states)


def test_making_a_resource_a_clone_rewrites_its_constraints(tmp_path):
    rec, _ = reconciler(tmp_path, TREE.replace("  startAfter: [db-vip]\n", "  startAfter: [db-vip]\n  clone: true\n"))
    after = build_candidate(live("cib_managed.xml"), rec._states)
    resources = after.find("configuration/resources")
    assert [el.get("id") for el in resources] == ["db-clone", "db-vip"]  # where db was
    constraints = {c.get("id"): c.attrib for c in after.find("configuration/constraints")}
    assert constraints["db-with-db-vip"]["rsc"] == "db-clone"
    assert constraints["db-after-db-vip"]["then"] == "db-clone"
    assert parse_managed(after.find("configuration"))["db"]["clone"] is True


def test_members_leaving_a_deleted_group_are_kept(tmp_path):
    rec, _ = reconciler(tmp_path, TREE + MORE)
    grouped = build_candidate(live("cib_managed.xml"), rec._states)
    states = {k: v for k, v in rec._states.items() if k != "web-tier"}
    for name in ("web-ip", "web-app"):
        states[name] = rec._states[name]
    # the group's own delete comes later: the CIB must be valid without it already
    after = build_candidate(grouped, states)
    ids = [el.get("id") for el in after.find("configuration/resources")]
    assert "web-tier" not in ids and {"web-ip", "web-app"} <= set(ids)


# --- Pacemaker-placed containers -----------------------------------------------------------------

CONTAINER = """\
---
apiVersion: reconcile/v1
kind: Container
metadata:
  name: ct1
spec:
  cluster: web
  template: busybox
  stopTimeout: 1s
"""


def test_a_placed_container_gets_the_agents_params_a_stop_that_kills_in_time_and_a_placement_rule(tmp_path):
    from reconcilers.lxc.config import config_path

    _, out = reconciler(tmp_path, TREE + CONTAINER)
    state = out["ct1"].state
    # the config the Container reconciler writes on every node, in LXC's default path
    assert state["params"] == {"container": "ct1", "config": config_path("/var/lib/lxc", "ct1")}
    # the agent runs `lxc-stop -t (timeout - 5)`: the manifest's 1 s, then the kill
    assert {"name": "stop", "interval": "0s", "timeout": "6s"} in state["operations"]
    assert state["nodeAttribute"] == "reconcile-container-ct1"
    _, plain = reconciler(tmp_path, TREE + CONTAINER.replace("  stopTimeout: 1s\n", ""))
    assert {"name": "stop", "interval": "0s", "timeout": "15s"} in plain["ct1"].state["operations"]


def test_the_placement_rule_keeps_it_off_nodes_that_have_not_defined_it(tmp_path):
    rec, out = reconciler(tmp_path, TREE + CONTAINER)
    cib = build_candidate(live("cib_managed.xml"), rec._states)
    rule = cib.find("configuration/constraints/rsc_location[@id='ct1-where-defined']")
    assert rule.get("rsc") == "ct1" and rule.find("rule").attrib == {
        "id": "ct1-where-defined-rule", "score": "-INFINITY", "boolean-op": "or"}
    assert [(e.get("operation"), e.get("value")) for e in rule.iter("expression")] == [("not_defined", None),
                                                                                      ("ne", "1")]
    assert parse_managed(cib.find("configuration")) == {name: d.state for name, d in out.items()}


def test_the_cib_recorded_in_the_lab_reads_back_as_the_desired_container(tmp_path):
    # lb1 and lb2 had defined ct1 (both carry the node attribute) and lb1 ran it
    recorded = live("cib_lxc_container.xml")
    _, out = reconciler(tmp_path, TREE.split("---")[0] + CONTAINER)
    assert parse_managed(recorded.find("configuration")) == {"ct1": out["ct1"].state}
    assert pacemaker.lxc_primitives(recorded) == {"ct1": "ct1"}
    for node in ("lb1", "lb2"):
        assert pacemaker.node_attributes(recorded, node)["reconcile-container-ct1"] == "1"


def test_a_placement_rule_edited_by_hand_is_drift(tmp_path):
    recorded = live("cib_lxc_container.xml")
    recorded.find(".//rsc_location[@id='ct1-where-defined']/rule").set("score", "100")
    observed = parse_managed(recorded.find("configuration"))["ct1"]
    assert observed["nodeAttribute"] == "(edited by hand: reconcile-container-ct1)"
    rec, _ = reconciler(tmp_path, TREE.split("---")[0] + CONTAINER)
    fixed = build_candidate(recorded, rec._states)
    assert fixed.find(".//rsc_location[@id='ct1-where-defined']/rule").get("score") == "-INFINITY"


def test_a_delete_stops_the_resource_through_pacemaker_first(tmp_path):
    from reconcilers.cluster_resource import stop_resource

    cib = stop_resource(live("cib_lxc_container.xml"), "ct1")
    ct1 = cib.find(".//primitive[@id='ct1']")
    assert pacemaker.nvpairs(ct1, "meta_attributes") == {"reconcile-managed": "true", "target-role": "Stopped"}
    # a clone is stopped as a whole; something we did not make is never touched
    rec, _ = reconciler(tmp_path, TREE + MORE)
    cib = stop_resource(stop_resource(build_candidate(live(), rec._states), "ping"), "handmade")
    assert pacemaker.nvpairs(cib.find(".//clone[@id='ping-clone']"), "meta_attributes")["target-role"] == "Stopped"
    assert "target-role" not in pacemaker.nvpairs(cib.find(".//primitive[@id='ping']"), "meta_attributes")
    assert cib.find(".//primitive[@id='handmade']/meta_attributes") is None


def test_containers_are_defined_before_their_primitives_and_destroyed_after_them():
    from controller.engine import owner_order
    from reconcilers import reconciler_class

    kinds = ["Cluster", "ClusterResource", "Container"]  # registry order breaks ties
    order = owner_order([reconciler_class(k)() for k in kinds])
    assert [k for rec in order for k in rec.kinds] == ["Cluster", "Container", "ClusterResource"]  # deletes: reverse
    # a tree with only a Cluster and a placed Container still gets its primitive
    assert {"VirtualIP", "Container"} <= set(reconciler_class("ClusterResource").consumes)
