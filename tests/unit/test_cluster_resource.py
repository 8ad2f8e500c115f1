"""ClusterResource: desired states from manifests, the candidate CIB built on CIBs recorded
from a real cluster (only the pass's changes rewritten, the rest as observed), and reading
objects back (what we render, we observe the same)."""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.pacemaker import tools as pacemaker
from reconcilers.pacemaker.candidate import apply_changes, build_unit
from reconcilers.pacemaker.cib import build_primitive, is_marked
from reconcilers.pacemaker.ownership import observe
from reconcilers.pacemaker.resources import ClusterResourceReconciler, _set_target_role

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
  crypto: none
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
  clone: {meta: {interleave: "true"}}
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


def candidate(rec: ClusterResourceReconciler, cib: ET.Element, names: list[str] | None = None,
              deletes: tuple[str, ...] = ()) -> ET.Element:
    """The candidate an apply of `names` (default: every desired resource) builds on `cib`."""
    rec._observed = observe(cib.find("configuration"), rec._states, rec._config)
    batch = rec._batch_for(list(rec._states) if names is None else names, False, list(deletes))
    return apply_changes(copy.deepcopy(cib), batch, rec._value)


def observed(rec: ClusterResourceReconciler, cib: ET.Element) -> dict:
    return observe(cib.find("configuration"), rec._states, rec._config).resources


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
        "agent": "ocf:heartbeat:Dummy",
        "operations": [{"name": "monitor", "interval": "10s", "timeout": "20s"}],
        "colocation": [{"with": "db-vip", "score": "INFINITY"}],
        "order": [{"first": "db-vip", "kind": "Mandatory"}],
    }
    # a failed db-vip skips db (it is colocated with and ordered after it)
    assert out["db"].depends == (("Cluster", "web"), ("ClusterResource", "db-vip"))


def test_a_clustered_container_becomes_an_lxc_primitive(tmp_path):
    container = ("---\napiVersion: reconcile/v1\nkind: Container\nmetadata:\n  name: app9\nspec:\n  cluster: web\n"
                 "  template: busybox\n")
    _, out = reconciler(tmp_path, TREE + container)
    state = out["app9"].state
    assert state["agent"] == "ocf:heartbeat:lxc"
    assert state["params"] == {"container": "app9", "config": "/var/lib/lxc/app9/config"}


def test_nodes_outside_the_cluster_desire_nothing(tmp_path):
    (tmp_path / "tree.yaml").write_text(TREE)
    out = ClusterResourceReconciler().desired(load_tree(tmp_path), Node("lb9", Runner(dry_run=True)))
    assert out == {"ClusterResource": {}, "ClusterConfig": {}}


def test_the_cluster_wide_cib_is_one_object_of_its_own(tmp_path):
    (tmp_path / "tree.yaml").write_text(TREE)
    out = ClusterResourceReconciler().desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True)))
    config = out["ClusterConfig"]["web"]
    assert config.state == {"properties": {"stonith-enabled": "false"}}
    assert config.depends == (("Cluster", "web"),)


# --- rendering and reading back ----------------------------------------------------------


def test_what_we_render_reads_back_as_the_desired_state(tmp_path):
    rec, out = reconciler(tmp_path, TREE + MORE)
    cib = candidate(rec, live("cib_managed.xml"))
    back = observed(rec, cib)
    assert {name: back[name] for name in out} == {name: d.state for name, d in out.items()}


def test_groups_and_clones_are_rendered_as_pacemaker_expects(tmp_path):
    rec, _ = reconciler(tmp_path, TREE + MORE)

    def unit(name: str) -> ET.Element:
        return build_unit(name, rec._states[name], lambda m: build_primitive(m, rec._states[m]), None)

    group = unit("web-tier")
    assert group.tag == "group" and [p.get("id") for p in group.findall("primitive")] == ["web-ip", "web-app"]
    assert pacemaker.nvpairs(group, "meta_attributes") == {"resource-stickiness": "100"}
    clone = unit("ping")
    assert (clone.tag, clone.get("id")) == ("clone", "ping-clone")
    assert pacemaker.nvpairs(clone, "meta_attributes") == {"interleave": "true"}
    assert clone.find("primitive").get("provider") == "pacemaker"
    lsb = unit("db-after-ping")
    assert (lsb.get("class"), lsb.get("type"), lsb.get("provider")) == ("lsb", "ntp", None)
    cib = candidate(rec, live("cib_managed.xml"))
    constraints = {c.get("id"): c.attrib for c in cib.find("configuration/constraints")}
    assert constraints["ping-with-web-tier"] == {"id": "ping-with-web-tier", "rsc": "ping-clone",
                                                 "with-rsc": "web-tier", "score": "-INFINITY"}
    assert constraints["db-after-ping-after-ping"]["first"] == "ping-clone"
    assert constraints["web-ip-location-lb1"]["score"] == "100"
    # what apply writes carries the ownership marker on each top-level element
    assert is_marked(cib.find(".//clone[@id='ping-clone']")) and is_marked(cib.find(".//group[@id='web-tier']"))


def test_observe_sees_every_resource_and_leaves_the_operators_switches_out(tmp_path):
    rec, _ = reconciler(tmp_path)
    seen = observed(rec, live())
    assert set(seen) == {"db", "db-vip", "handmade"}  # the engine deletes only what its inventory holds
    # `pcs resource move` made cli-prefer-db-vip: an operator's switch, no location of db-vip
    assert "location" not in seen["db-vip"]
    # target-role=Stopped set by hand on db: not drift while git does not set it
    assert "meta" not in seen["db"]


def test_an_unchanged_tree_gives_an_unchanged_configuration(tmp_path):
    rec, _ = reconciler(tmp_path)
    before = live("cib_managed.xml")
    assert pacemaker.same_configuration(before, candidate(rec, before))


def test_a_param_change_rewrites_the_resource_in_place_and_keeps_what_is_not_ours(tmp_path):
    rec, _ = reconciler(tmp_path, TREE.replace("agent: ocf:heartbeat:Dummy", "agent: ocf:heartbeat:Dummy\n"
                                                                            "  params: {fake: \"42\"}"))
    before = live()
    order_before = [el.get("id") for el in before.find("configuration/resources")]
    after = candidate(rec, before, ["db"])
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


def test_the_candidate_holds_the_batchs_changes_and_everything_else_as_observed(tmp_path):
    # both change in git, only db is in the batch (db-vip was refused and held back)
    text = TREE.replace("agent: ocf:heartbeat:Dummy", "agent: ocf:heartbeat:Dummy\n  params: {fake: \"42\"}")
    rec, _ = reconciler(tmp_path, text.replace("address: 192.0.2.110/24", "address: 192.0.2.111/24"))
    before = live()
    after = candidate(rec, before, ["db"])
    vip = lambda cib: ET.tostring(cib.find(".//primitive[@id='db-vip']"))  # noqa: E731
    assert vip(after) == vip(before)
    assert pacemaker.nvpairs(after.find(".//primitive[@id='db']"), "instance_attributes") == {"fake": "42"}


def test_a_delete_removes_its_resource_and_its_constraints_only(tmp_path):
    rec, _ = reconciler(tmp_path, TREE.split("---\napiVersion: reconcile/v1\nkind: ClusterResource")[0])
    after = candidate(rec, live(), [], deletes=("db",))
    ids = [el.get("id") for el in after.find("configuration/resources")]
    assert ids == ["db-vip", "handmade"]
    constraints = [c.get("id") for c in after.find("configuration/constraints")]
    assert constraints == ["cli-prefer-db-vip"]


def test_a_manifest_naming_a_resource_made_by_hand_adopts_it(tmp_path):
    text = TREE + ("---\napiVersion: reconcile/v1\nkind: ClusterResource\nmetadata:\n  name: handmade\nspec:\n"
                   "  cluster: web\n  agent: ocf:heartbeat:Dummy\n")
    rec, out = reconciler(tmp_path, text)
    # the same definition: in sync, nothing to write (an import is applied without a change)
    assert observed(rec, live())["handmade"] == out["handmade"].state
    rec, out = reconciler(tmp_path, text + "  params: {fake: \"1\"}\n")
    after = candidate(rec, live(), ["handmade"])
    handmade = after.find(".//primitive[@id='handmade']")
    assert pacemaker.nvpairs(handmade, "instance_attributes") == {"fake": "1"} and is_marked(handmade)


def test_making_a_resource_a_clone_rewrites_its_constraints(tmp_path):
    rec, _ = reconciler(tmp_path, TREE.replace("  startAfter: [db-vip]\n", "  startAfter: [db-vip]\n  clone: true\n"))
    after = candidate(rec, live("cib_managed.xml"))
    resources = after.find("configuration/resources")
    assert [el.get("id") for el in resources] == ["db-clone", "db-vip"]  # where db was
    constraints = {c.get("id"): c.attrib for c in after.find("configuration/constraints")}
    assert constraints["db-with-db-vip"]["rsc"] == "db-clone"
    assert constraints["db-after-db-vip"]["then"] == "db-clone"
    assert observed(rec, after)["db"]["clone"] == {}


def test_members_leaving_a_deleted_group_are_kept(tmp_path):
    rec, _ = reconciler(tmp_path, TREE + MORE)
    grouped = candidate(rec, live("cib_managed.xml"))
    rec2, _ = reconciler(tmp_path, TREE + MORE.replace("  group: [web-ip, web-app]\n", "  agent: ocf:pacemaker:Dummy\n")
                         .replace("  meta: {resource-stickiness: \"100\"}\n", ""))
    after = candidate(rec2, grouped, ["web-ip", "web-app"], deletes=("web-tier",))
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
    [rule] = state["location"][0]["rules"]
    assert {e["attribute"] for e in rule["expressions"]} == {"reconcile-container-ct1"}
    _, plain = reconciler(tmp_path, TREE + CONTAINER.replace("  stopTimeout: 1s\n", ""))
    assert {"name": "stop", "interval": "0s", "timeout": "15s"} in plain["ct1"].state["operations"]


def test_the_placement_rule_keeps_it_off_nodes_that_have_not_defined_it(tmp_path):
    rec, out = reconciler(tmp_path, TREE + CONTAINER)
    cib = candidate(rec, live("cib_managed.xml"))
    rule = cib.find("configuration/constraints/rsc_location[@id='ct1-where-defined']")
    assert rule.get("rsc") == "ct1" and rule.find("rule").attrib == {
        "id": "ct1-where-defined-rule", "score": "-INFINITY", "boolean-op": "or"}
    assert [(e.get("operation"), e.get("value")) for e in rule.iter("expression")] == [("not_defined", None),
                                                                                      ("ne", "1")]
    assert observed(rec, cib)["ct1"] == out["ct1"].state


def test_the_cib_recorded_in_the_lab_reads_back_as_the_desired_container(tmp_path):
    # lb1 and lb2 had defined ct1 (both carry the node attribute) and lb1 ran it
    recorded = live("cib_lxc_container.xml")
    rec, out = reconciler(tmp_path, TREE.split("---")[0] + CONTAINER)
    assert observed(rec, recorded) == {"ct1": out["ct1"].state}
    assert pacemaker.lxc_primitives(recorded) == {"ct1": "ct1"}
    for node in ("lb1", "lb2"):
        assert pacemaker.node_attributes(recorded, node)["reconcile-container-ct1"] == "1"


def test_a_placement_rule_edited_by_hand_is_drift(tmp_path):
    recorded = live("cib_lxc_container.xml")
    recorded.find(".//rsc_location[@id='ct1-where-defined']/rule").set("score", "100")
    rec, out = reconciler(tmp_path, TREE.split("---")[0] + CONTAINER)
    assert observed(rec, recorded)["ct1"]["location"][0]["rules"][0]["score"] == 100
    fixed = candidate(rec, recorded)
    assert fixed.find(".//rsc_location[@id='ct1-where-defined']/rule").get("score") == "-INFINITY"


def test_a_delete_stops_the_resource_through_pacemaker_first(tmp_path):
    cib = _set_target_role(live("cib_lxc_container.xml"), "ct1")
    ct1 = cib.find(".//primitive[@id='ct1']")
    assert pacemaker.nvpairs(ct1, "meta_attributes") == {"reconcile-managed": "true", "target-role": "Stopped"}
    # a clone is stopped as a whole
    rec, _ = reconciler(tmp_path, TREE + MORE)
    cib = _set_target_role(candidate(rec, live()), "ping-clone")
    assert pacemaker.nvpairs(cib.find(".//clone[@id='ping-clone']"), "meta_attributes")["target-role"] == "Stopped"
    assert "target-role" not in pacemaker.nvpairs(cib.find(".//primitive[@id='ping']"), "meta_attributes")


def test_containers_are_defined_before_their_primitives_and_destroyed_after_them():
    from controller.engine import owner_order
    from reconcilers import reconciler_class

    kinds = ["Cluster", "ClusterResource", "Container"]  # registry order breaks ties
    order = owner_order([reconciler_class(k)() for k in kinds])
    assert [k for rec in order for k in rec.kinds] == ["Cluster", "Container", "ClusterResource", "ClusterConfig"]
    # a tree with only a Cluster and a placed Container still gets its primitive
    assert {"VirtualIP", "Container", "Cluster"} <= set(reconciler_class("ClusterResource").consumes)


def test_a_node_writes_its_galera_option_file_before_it_joins_the_cluster():
    # the DC starts the galera clone on a member as soon as it joins: the file must be there
    from controller.engine import owner_order
    from reconcilers import reconciler_class

    order = owner_order([reconciler_class(k)() for k in ["Cluster", "ClusterResource", "Galera"]])
    assert [k for rec in order for k in rec.kinds] == ["Galera", "Cluster", "ClusterResource", "ClusterConfig"]


def test_the_wake_token_is_read_from_the_dcs_transient_attributes() -> None:
    # as attrd writes `attrd_updater -n reconcile-wake -N lb1 -U …` into the status section
    text = (FIXTURES / "cib_with_resources.xml").read_text()
    cib = pacemaker.parse_xml(text)
    assert pacemaker.wake_token(cib, "lb1") is None
    woken = text.replace('<nvpair id="status-1-.feature-set" name="#feature-set" value="3.16.1"/>',
                         '<nvpair id="status-1-.feature-set" name="#feature-set" value="3.16.1"/>'
                         '<nvpair id="status-1-reconcile-wake" name="reconcile-wake" value="lb2@1795558490.125"/>')
    assert woken != text
    cib = pacemaker.parse_xml(woken)
    assert pacemaker.wake_token(cib, "lb1") == "lb2@1795558490.125"
    assert pacemaker.wake_token(cib, "lb2") is None


def test_a_stopped_pacemaker_is_observed_from_the_cib_it_saved_if_it_is_this_clusters(tmp_path) -> None:
    # issue 21 item 8: Pacemaker down is not an empty cluster; Debian's `debian` one is not ours
    saved = tmp_path / "cib.xml"
    assert pacemaker.saved_configuration("web", saved) is None  # never ran
    text = (FIXTURES / "cib_with_resources.xml").read_text()
    saved.write_text(text)
    configuration = pacemaker.saved_configuration("web", saved)
    assert configuration is not None and configuration.find("resources/primitive[@id='db']") is not None
    assert pacemaker.saved_configuration("other", saved) is None
    saved.write_text(text.replace('name="cluster-name" value="web"', 'name="cluster-name" value="debian"'))
    assert pacemaker.saved_configuration("web", saved) is None
    saved.write_text(text[: len(text) // 2])  # cut short: not a CIB
    assert pacemaker.saved_configuration("web", saved) is None
