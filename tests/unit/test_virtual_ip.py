"""VirtualIP (keepalived): bad input refused with file:line and field, the desired instances
per node, and the observed state built from outputs recorded from the real tools."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.keepalived import parse_config, parse_ip_addr, parse_json_dump, render_config
from reconcilers.virtual_ip import desired_instances, observed_vips, runtime_ok, track_weight

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"

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
    - {name: lb3, id: 3, address: 192.0.2.13/24}
"""


def vip(name: str = "web-vip", address: str = "192.0.2.100/24", keepalived: str = "routerId: 51",
        placement: str = "cluster: web", extra: str = "") -> str:
    body = "\n".join("    " + line for line in keepalived.splitlines())
    return (f"---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: {name}\nspec:\n  {placement}\n"
            f"  manager: keepalived\n  address: {address}\n{extra}  keepalived:\n{body}\n")


def tree(tmp_path: Path, *vips: str):
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "vips.yaml").write_text("".join(vips))
    return load_tree(tmp_path)


def problems(tmp_path: Path, *vips: str) -> list:
    with pytest.raises(TreeError) as err:
        tree(tmp_path, *vips)
    return err.value.problems


def line_of(tmp_path: Path, text: str, occurrence: int = 1) -> int:
    lines = (tmp_path / "vips.yaml").read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    return hits[occurrence - 1]


# --- bad input ---------------------------------------------------------------------------


def test_address_outside_the_interface_subnet(tmp_path):
    [p] = problems(tmp_path, vip(address="198.51.100.100/24"))
    assert (p.file, p.line, p.field) == ("vips.yaml", line_of(tmp_path, "address:"), "spec.address")
    assert "outside the subnet" in p.message and "192.0.2.0/24" in p.message


@pytest.mark.parametrize("rid", [0, 256])
def test_router_id_out_of_range(tmp_path, rid):
    [p] = problems(tmp_path, vip(keepalived=f"routerId: {rid}"))
    assert (p.line, p.field) == (line_of(tmp_path, "routerId"), "spec.keepalived.routerId")


def test_the_same_router_id_twice_on_one_interface(tmp_path):
    [p] = problems(tmp_path, vip(), vip(name="api-vip", address="192.0.2.101/24"))
    assert (p.line, p.field) == (line_of(tmp_path, "routerId", 2), "spec.keepalived.routerId")
    assert "router id 51 on eth0 is already used by VirtualIP 'web-vip'" in p.message


def test_the_same_router_id_on_disjoint_nodes_is_fine(tmp_path):
    tree(tmp_path, vip(placement="nodes: [lb1, lb2]"),
         vip(name="api-vip", address="192.0.2.101/24", placement="node: lb3"))


@pytest.mark.parametrize("priority", [0, 255])
def test_priority_out_of_range(tmp_path, priority):
    [p] = problems(tmp_path, vip(keepalived=f"routerId: 51\npriority: {{lb1: {priority}}}"))
    assert (p.line, p.field) == (line_of(tmp_path, "priority"), "spec.keepalived.priority.lb1")


def test_one_address_in_two_vips(tmp_path):
    [p] = problems(tmp_path, vip(), vip(name="api-vip", keepalived="routerId: 52"))
    assert (p.line, p.field) == (line_of(tmp_path, "address:", 2), "spec.address")
    assert "web-vip" in p.message and "192.0.2.100" in p.message


def test_priority_for_a_node_that_is_not_the_vips(tmp_path):
    [p] = problems(tmp_path, vip(placement="nodes: [lb1, lb2]", keepalived="routerId: 51\npriority: {lb3: 200}"))
    assert p.field == "spec.keepalived.priority.lb3" and "not a node of this VIP" in p.message


def test_advert_interval_must_be_whole_centiseconds(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\nadvertInterval: 0.125"))
    assert p.field == "spec.keepalived" and "centiseconds" in p.message


def test_track_haproxy_needs_preempt(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\npreempt: false\ntrackHaproxy: true"))
    assert p.field == "spec.keepalived" and "trackHaproxy needs preempt" in p.message


def test_the_vips_of_a_group_must_agree(tmp_path):
    [p] = problems(tmp_path, vip(keepalived="routerId: 51\ngroup: web"),
                   vip(name="api-vip", address="192.0.2.101/24", keepalived="routerId: 51\ngroup: web\n"
                                                                            "advertInterval: 1"))
    assert (p.line, p.field) == (line_of(tmp_path, "advertInterval"), "spec.keepalived.advertInterval")
    assert "share one VRRP instance" in p.message


def test_a_group_and_an_ungrouped_vip_may_not_share_an_instance_name(tmp_path):
    ps = problems(tmp_path, vip(name="web"), vip(name="api-vip", address="192.0.2.101/24",
                                                 keepalived="routerId: 52\ngroup: web"))
    assert [p.field for p in ps] == ["spec.keepalived.group"]


def test_a_node_without_an_address_cannot_send_adverts(tmp_path):
    # No Cluster lists lb1 and lb2, so there is no address to send unicast adverts from.
    (tmp_path / "vips.yaml").write_text(vip(placement="nodes: [lb1, lb2]"))
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    [p] = err.value.problems
    assert p.field == "spec.keepalived" and "node lb1 has no address in any Cluster" in p.message


# --- desired -----------------------------------------------------------------------------


def test_desired_instance_per_node_with_priorities_and_unicast_peers(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\npriority: {lb2: 200}\nadvertInterval: 0.1"))
    lb1, lb2, lb3 = (desired_instances(t, n)[0] for n in ("lb1", "lb2", "lb3"))
    assert (lb1.priority, lb2.priority, lb3.priority) == (100, 200, 80), "unnamed nodes: 100, 90, 80 by place"
    assert lb1.unicast_src_ip == "192.0.2.11" and lb1.unicast_peers == ("192.0.2.12", "192.0.2.13")
    assert lb2.unicast_peers == ("192.0.2.11", "192.0.2.13")
    assert lb1.advert_interval == 0.1 and lb1.router_id == 51 and lb1.addresses == (("web-vip", "192.0.2.100/24"),)


def test_a_group_is_one_instance_carrying_every_address(tmp_path):
    t = tree(tmp_path, vip(keepalived="routerId: 51\ngroup: web"),
             vip(name="api-vip", address="192.0.2.101/24", keepalived="routerId: 51\ngroup: web"))
    [inst] = desired_instances(t, "lb1")
    assert inst.name == "web" and inst.addresses == (("web-vip", "192.0.2.100/24"), ("api-vip", "192.0.2.101/24"))


def test_pacemaker_vips_and_other_nodes_are_not_keepalived_instances(tmp_path):
    pm = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n  cluster: web\n"
          "  manager: pacemaker\n  address: 192.0.2.110/24\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("stack: none", "stack: pacemaker\n  stonithEnabled: false"))
    (tmp_path / "vips.yaml").write_text(vip(placement="nodes: [lb1, lb2]") + pm)
    t = load_tree(tmp_path)
    assert [i.name for i in desired_instances(t, "lb1")] == ["web-vip"]
    assert desired_instances(t, "lb3") == []


def test_track_weight_drops_a_dead_proxy_below_every_live_one():
    prios = {"lb1": 150, "lb2": 100, "lb3": 90}
    w = track_weight(prios)
    assert all(p - w < min(prios.values()) for p in prios.values())
    assert 150 - w >= 1, "still above zero: with no proxy anywhere the address stays somewhere"
    assert track_weight({"lb1": 254, "lb2": 1}) == 253


# --- observed ----------------------------------------------------------------------------


def fx(name: str) -> str:
    return (FIXTURES / name).read_text()


def config_of(tmp_path: Path, node: str = "lb1", keepalived: str = "routerId: 51\npriority: {lb1: 150, lb2: 100}"):
    t = tree(tmp_path, vip(placement="nodes: [lb1, lb2]", keepalived=keepalived))
    instances = desired_instances(t, node)
    return instances, parse_config(render_config(node, instances))


def test_in_sync_master_matches_its_desired_state(tmp_path):
    instances, config = config_of(tmp_path)
    seen = observed_vips(config, True, parse_json_dump(fx("json-master.json")), parse_ip_addr(fx("ip-addr-master.json")))
    assert seen == {"web-vip": instances[0].vip_state("web-vip", "192.0.2.100/24") | runtime_ok()}


def test_in_sync_backup_without_the_address_is_not_drift(tmp_path):
    instances, config = config_of(tmp_path, "lb2")
    seen = observed_vips(config, True, parse_json_dump(fx("json-backup.json")), parse_ip_addr(fx("ip-addr-backup.json")))
    assert seen["web-vip"] == instances[0].vip_state("web-vip", "192.0.2.100/24") | runtime_ok()


def test_split_brain_guard_flags_an_address_left_by_a_dead_keepalived(tmp_path):
    _, config = config_of(tmp_path)
    seen = observed_vips(config, False, None, parse_ip_addr(fx("ip-addr-stale.json")))["web-vip"]
    assert seen["keepalived"] == "stopped" and seen["staleAddress"] is True


def test_stopped_keepalived_without_the_address_is_not_stale(tmp_path):
    _, config = config_of(tmp_path)
    seen = observed_vips(config, False, None, parse_ip_addr(fx("ip-addr-backup.json")))["web-vip"]
    assert seen["keepalived"] == "stopped" and seen["staleAddress"] is False


def test_master_without_its_address_is_drift(tmp_path):
    _, config = config_of(tmp_path)
    seen = observed_vips(config, True, parse_json_dump(fx("json-master.json")),
                         parse_ip_addr(fx("ip-addr-master-missing-vip.json")))["web-vip"]
    assert seen["vipPresentOnMaster"] is False and seen["keepalived"] == "running"


def test_a_file_keepalived_has_not_loaded_needs_a_reload(tmp_path):
    _, config = config_of(tmp_path, keepalived="routerId: 51\npriority: {lb1: 200, lb2: 100}")
    seen = observed_vips(config, True, parse_json_dump(fx("json-master.json")), parse_ip_addr(fx("ip-addr-master.json")))
    assert seen["web-vip"]["keepalived"] == "reload-needed" and seen["web-vip"]["priority"] == 200


def test_keepalived_that_does_not_answer_its_dump_signal(tmp_path):
    _, config = config_of(tmp_path)
    seen = observed_vips(config, True, None, parse_ip_addr(fx("ip-addr-master.json")))["web-vip"]
    assert seen["keepalived"] == "not-responding" and seen["staleAddress"] is False


def test_a_foreign_file_shows_no_managed_vip():
    config = parse_config(fx("keepalived-foreign.conf"))
    assert observed_vips(config, True, None, {}) == {}
    assert observed_vips(None, False, None, {}) == {}


def test_pacemaker_vips_are_listed_and_deferred_while_no_reconciler_makes_them(tmp_path, monkeypatch):
    import reconcilers
    from reconcilers.base import Change, Deferred, Node, Runner
    from reconcilers.virtual_ip import PACEMAKER_NOTE, VirtualIPReconciler

    monkeypatch.setitem(reconcilers.REGISTRY, "ClusterResource", "reconcilers.not_there:Nothing")
    pm = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n  cluster: web\n"
          "  manager: pacemaker\n  address: 192.0.2.110/24\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("stack: none", "stack: pacemaker\n  stonithEnabled: false"))
    (tmp_path / "vips.yaml").write_text(pm)
    node = Node("lb1", Runner(dry_run=True))
    rec = VirtualIPReconciler()
    desired = rec.desired(load_tree(tmp_path), node)["VirtualIP"]
    assert desired["db-vip"].state == {"manager": "pacemaker", "address": "192.0.2.110/24"}
    change = Change("VirtualIP", "db-vip", "create", desired["db-vip"].state, None)
    assert rec.explain(change, node) == [PACEMAKER_NOTE]
    assert isinstance(rec.apply([change], node)[change.key], Deferred)


def test_pacemaker_vips_belong_to_the_cluster_resource_reconciler_once_it_is_installed(tmp_path, monkeypatch):
    import reconcilers
    from reconcilers.base import Node, Runner
    from reconcilers.virtual_ip import VirtualIPReconciler

    monkeypatch.setitem(reconcilers.REGISTRY, "ClusterResource", "reconcilers.virtual_ip:VirtualIPReconciler")
    pm = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n  cluster: web\n"
          "  manager: pacemaker\n  address: 192.0.2.110/24\n")
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("stack: none", "stack: pacemaker\n  stonithEnabled: false"))
    (tmp_path / "vips.yaml").write_text(pm)
    assert VirtualIPReconciler().desired(load_tree(tmp_path), Node("lb1", Runner(dry_run=True))) == {"VirtualIP": {}}


def test_a_vip_placed_everywhere_on_a_machine_no_cluster_lists_is_an_error_for_people(tmp_path):
    """Issue 22 found a KeyError here (`reconcile validate` on a machine that is no node)."""
    from reconcilers.base import ApplyError

    (tmp_path / "v.yaml").write_text("apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {name: v}\nspec:\n"
                                     "  nodes: [\"*\"]\n  manager: keepalived\n  address: 192.0.2.100/24\n  keepalived: {routerId: 5}\n")
    with pytest.raises(ApplyError, match="VirtualIP v lands on every node, but no Cluster lists vm"):
        desired_instances(load_tree(tmp_path), "vm")
