"""Cluster and ClusterResource: bad input is refused by load_tree with file, line and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree

CLUSTER = """\
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
"""

DB = """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  colocation:
    - {with: db-vip}
  startAfter: [db-vip]
"""

VIP = """\
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: {name}
spec:
  cluster: web
  manager: pacemaker
  address: {address}
"""


def write(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)


def problems(tmp_path: Path, files: dict[str, str]) -> list:
    write(tmp_path, files)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    return err.value.problems


def line_of(tmp_path: Path, file: str, text: str, occurrence: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate((tmp_path / file).read_text().splitlines()) if text in line]
    return hits[occurrence - 1]


def base(**over: str) -> dict[str, str]:
    files = {"cluster.yaml": CLUSTER, "resources.yaml": DB,
             "vips.yaml": VIP.format(name="db-vip", address="192.0.2.110/24")}
    files.update(over)
    return files


def test_the_base_tree_is_valid(tmp_path):
    write(tmp_path, base())
    tree = load_tree(tmp_path)
    assert {i.name for i in tree.items} == {"web", "db", "db-vip"}


def test_duplicate_node_ids(tmp_path):
    [p] = problems(tmp_path, base(**{"cluster.yaml": CLUSTER.replace("{name: lb2, id: 2", "{name: lb2, id: 1")}))
    assert (p.file, p.line, p.field) == ("cluster.yaml", line_of(tmp_path, "cluster.yaml", "name: lb2"),
                                         "spec.nodes[1].id")
    assert "duplicate node id 1" in p.message


def test_a_node_in_two_clusters(tmp_path):
    other = CLUSTER.replace("name: web", "name: db").replace("{name: lb1, id: 1, address: 192.0.2.11/24}",
                                                             "{name: lb3, id: 1, address: 192.0.2.13/24}")
    found = problems(tmp_path, base(**{"other.yaml": other}))
    assert [(p.file, p.field) for p in found] == [("other.yaml", "spec.nodes[1].name")]
    assert found[0].line == line_of(tmp_path, "other.yaml", "name: lb2")
    assert "lb2" in found[0].message and "cluster.yaml:" in found[0].message


def test_stonith_not_stated(tmp_path):
    [p] = problems(tmp_path, base(**{"cluster.yaml": CLUSTER.replace("  stonithEnabled: false\n", "")}))
    assert (p.file, p.line, p.field) == ("cluster.yaml", line_of(tmp_path, "cluster.yaml", "spec:"),
                                         "spec.stonithEnabled")
    assert "stated explicitly" in p.message


def test_stonith_enabled_is_not_a_property(tmp_path):
    text = CLUSTER + "  properties:\n    stonith-enabled: \"true\"\n"
    [p] = problems(tmp_path, base(**{"cluster.yaml": text}))
    assert (p.line, p.field) == (line_of(tmp_path, "cluster.yaml", "stonith-enabled"), "spec.properties.stonith-enabled")
    assert "spec.stonithEnabled" in p.message


def test_two_node_quorum_needs_two_nodes(tmp_path):
    text = CLUSTER.replace("  crypto", "    - {name: lb3, id: 3, address: 192.0.2.13/24}\n"
                           "  quorum: {twoNode: true}\n  crypto")
    [p] = problems(tmp_path, base(**{"cluster.yaml": text}))
    assert (p.line, p.field) == (line_of(tmp_path, "cluster.yaml", "twoNode"), "spec.quorum.twoNode")


def test_authkey_needs_knet(tmp_path):
    text = CLUSTER.replace("  crypto: none\n", "") + \
        "  transport: udpu\n  authkey: {file: /etc/reconcile/secrets/corosync.authkey}\n"
    found = problems(tmp_path, base(**{"cluster.yaml": text}))
    assert (line_of(tmp_path, "cluster.yaml", "authkey"), "spec.authkey") in {(p.line, p.field) for p in found}
    # and udpu, which Corosync never encrypts, has to say so
    assert "spec.crypto" in {p.field for p in found}


def test_a_constraint_naming_an_unknown_resource(tmp_path):
    found = problems(tmp_path, base(**{"resources.yaml": DB.replace("{with: db-vip}", "{with: nope}")}))
    [p] = found
    assert (p.file, p.line, p.field) == ("resources.yaml", line_of(tmp_path, "resources.yaml", "with: nope"),
                                         "spec.colocation[0].with")
    assert "unknown" in p.message and "'nope'" in p.message


def test_an_order_naming_an_unknown_resource(tmp_path):
    [p] = problems(tmp_path, base(**{"resources.yaml": DB.replace("startAfter: [db-vip]", "startAfter: [nope]")}))
    assert (p.file, p.line, p.field) == ("resources.yaml", line_of(tmp_path, "resources.yaml", "startAfter"),
                                         "spec.startAfter[0]")


def test_a_constraint_naming_a_keepalived_vip(tmp_path):
    keepalived = ("---\napiVersion: reconcile/v1\nkind: VirtualIP\nmetadata:\n  name: db-vip\nspec:\n"
                  "  cluster: web\n  manager: keepalived\n  address: 192.0.2.110/24\n  keepalived: {routerId: 9}\n")
    found = problems(tmp_path, base(**{"vips.yaml": keepalived}))
    assert {(p.file, p.field) for p in found} == {("resources.yaml", "spec.colocation[0].with"),
                                                  ("resources.yaml", "spec.startAfter[0]")}
    assert all("VirtualIP 'db-vip' is not a Pacemaker resource" in p.message for p in found)


def test_a_resource_and_a_pacemaker_vip_with_one_name(tmp_path):
    clash = VIP.format(name="db", address="192.0.2.111/24")
    found = problems(tmp_path, base(**{"more-vips.yaml": clash}))
    assert [(p.file, p.field) for p in found] == [("resources.yaml", "metadata.name")]
    assert found[0].line == line_of(tmp_path, "resources.yaml", "name: db")
    assert "VirtualIP 'db' is also Pacemaker resource 'db'" in found[0].message


def test_a_resource_id_must_start_with_a_letter(tmp_path):
    text = DB.replace("name: db", "name: 1db")
    found = problems(tmp_path, base(**{"resources.yaml": text}))
    assert ("resources.yaml", "metadata.name") in {(p.file, p.field) for p in found}


def test_the_ownership_marker_is_reserved(tmp_path):
    text = DB + "  meta: {reconcile-managed: \"false\"}\n"
    [p] = problems(tmp_path, base(**{"resources.yaml": text}))
    assert (p.field, p.line) == ("spec.meta.reconcile-managed", line_of(tmp_path, "resources.yaml", "meta:"))


def test_groups_cannot_nest_and_members_cannot_be_cloned(tmp_path):
    groups = DB + """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: inner
spec:
  cluster: web
  group: [db-vip]
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: outer
spec:
  cluster: web
  group: [inner, cloned]
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: cloned
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  clone: true
"""
    found = {(p.field, p.message.split(":")[0]) for p in problems(tmp_path, base(**{"resources.yaml": groups}))}
    assert ("spec.group[0]", "'inner' is a group") in found
    assert ("spec.group[1]", "'cloned' is a clone") in found


def test_a_member_in_two_groups(tmp_path):
    groups = DB + """\
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: g1
spec:
  cluster: web
  group: [db-vip]
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: g2
spec:
  cluster: web
  group: [db-vip]
"""
    found = problems(tmp_path, base(**{"resources.yaml": groups}))
    assert sorted((p.field, p.line) for p in found) == sorted([
        ("spec.group[0]", line_of(tmp_path, "resources.yaml", "group: [db-vip]", 1)),
        ("spec.group[0]", line_of(tmp_path, "resources.yaml", "group: [db-vip]", 2))])
    assert all("one group only" in p.message for p in found)


def test_a_location_on_a_node_outside_the_cluster(tmp_path):
    text = DB + "  location:\n    - {node: lb9, score: 100}\n"
    found = problems(tmp_path, base(**{"resources.yaml": text}))
    assert ("spec.location[0].node", line_of(tmp_path, "resources.yaml", "lb9")) in {(p.field, p.line) for p in found}


def test_a_pacemaker_resource_of_a_cluster_without_pacemaker(tmp_path):
    text = CLUSTER.replace("  stonithEnabled: false\n", "  stack: none\n")
    found = problems(tmp_path, base(**{"cluster.yaml": text}))
    assert {(p.file, p.field) for p in found} >= {("resources.yaml", "spec.cluster")}
