"""The whole-tree checks look conflicts up in per-tree indexes (by interface and router id,
port and node, bridge and node, claim and node) instead of comparing every pair of
manifests. On random small trees, each rule must still find a conflict exactly when a plain
comparison of every pair finds one (which manifest of a pair reports it may differ)."""
from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree

NODES = ["lb1", "lb2", "lb3"]
CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
    - {name: lb3, id: 3, address: 192.0.2.13/24}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: be}
spec: {mode: http, cluster: web}
"""


def placement(rng: random.Random) -> tuple[str, frozenset[str]]:
    r = rng.random()
    if r < 0.3:
        return "cluster: web", frozenset(NODES)
    if r < 0.6:
        node = rng.choice(NODES)
        return f"node: {node}", frozenset([node])
    nodes = sorted(rng.sample(NODES, rng.randint(1, 3)))
    return f"nodes: [{', '.join(nodes)}]", frozenset(nodes)


def random_tree(rng: random.Random) -> tuple[str, list[dict]]:
    docs, objects = [CLUSTER], []
    for i in range(rng.randint(2, 7)):
        place, nodes = placement(rng)
        group = rng.choice([None, None, "g1", "g2"])
        vip = {"kind": "VirtualIP", "name": f"vip{i}", "nodes": nodes, "ip": f"192.0.2.{rng.randint(100, 104)}",
               "iface": rng.choice(["eth0", "eth1"]), "rid": rng.randint(1, 3), "group": group}
        objects.append(vip)
        docs.append(f"apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {{name: vip{i}}}\nspec:\n  {place}\n"
                    f"  manager: keepalived\n  address: {vip['ip']}/24\n  interface: {vip['iface']}\n"
                    f"  keepalived: {{routerId: {vip['rid']}{', group: ' + group if group else ''}}}\n")
    for i in range(rng.randint(1, 6)):
        place, nodes = placement(rng)
        binds = sorted({(rng.choice(["0.0.0.0", "127.0.0.1", "192.0.2.100", "192.0.2.101"]), rng.choice([80, 443]))
                        for _ in range(rng.randint(1, 2))})
        objects.append({"kind": "Frontend", "name": f"fe{i}", "nodes": nodes, "binds": binds})
        docs.append(f"apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: fe{i}}}\nspec:\n  {place}\n"
                    f"  bind: [{', '.join(f'{{address: {a}, port: {p}}}' for a, p in binds)}]\n  defaultBackend: be\n")
    for i in range(rng.randint(1, 6)):
        node = rng.choice(NODES)
        bridge = rng.choice(["br0", "br1", "br2"])
        gateway = ipaddress.IPv4Interface(rng.choice(["10.0.0.1/24", "10.0.0.2/24", "10.0.0.1/16", "10.1.0.1/24",
                                                      "10.0.1.1/24"]))
        address = f"{gateway.network.network_address + rng.randint(50, 51)}/{gateway.network.prefixlen}"
        objects.append({"kind": "Container", "name": f"ct{i}", "nodes": frozenset([node]), "bridge": bridge,
                        "gateway": gateway, "ip": address.split("/")[0]})
        docs.append(f"apiVersion: reconcile/v1\nkind: Container\nmetadata: {{name: ct{i}}}\nspec:\n  node: {node}\n"
                    f"  template: busybox\n  network: {{type: bridge, bridge: {bridge}, address: {address}, "
                    f"bridgeAddress: {gateway}}}\n")
    return "---\n".join(docs), objects


def pairs(objects: list[dict], kind: str):
    of_kind = [o for o in objects if o["kind"] == kind]
    for i, a in enumerate(of_kind):
        for b in of_kind[i + 1:]:
            if a["nodes"] & b["nodes"]:
                yield a, b


RULES = {
    "router id": lambda objs: any(
        a["iface"] == b["iface"] and a["rid"] == b["rid"] and not (a["group"] and a["group"] == b["group"])
        for a, b in pairs(objs, "VirtualIP")),
    "overlaps Frontend": lambda objs: any(
        pa == pb and aa != ab and "0.0.0.0" in (aa, ab)
        for a, b in pairs(objs, "Frontend") for aa, pa in a["binds"] for ab, pb in b["binds"]),
    # one problem per container and bridge: an address disagreement or an overlapping subnet
    ("one bridge, one address", "its own subnet"): lambda objs: any(
        a["gateway"] != b["gateway"] if a["bridge"] == b["bridge"] else a["gateway"].network.overlaps(b["gateway"].network)
        for a, b in pairs(objs, "Container")),
    "both claim ip": lambda objs: any(
        a["ip"] == b["ip"] for kind in ("VirtualIP", "Container") for a, b in pairs(objs, kind))
    or any(v["ip"] == c["ip"] and v["nodes"] & c["nodes"]
           for v in objs if v["kind"] == "VirtualIP" for c in objs if c["kind"] == "Container"),
}


@pytest.mark.parametrize("seed", range(0, 300, 30))
def test_indexed_checks_find_a_conflict_exactly_when_some_pair_conflicts(tmp_path, seed):
    for case in range(seed, seed + 30):
        rng = random.Random(case)
        text, objects = random_tree(rng)
        root = tmp_path / f"t{case}"
        root.mkdir()
        (root / "tree.yaml").write_text(text)
        try:
            load_tree(root)
            messages = []
        except TreeError as err:
            messages = [p.message for p in err.problems]
        for rule, expected in RULES.items():
            found = any(words in m for m in messages for words in ((rule,) if isinstance(rule, str) else rule))
            assert found == expected(objects), f"seed {case}, rule {rule!r}: {messages}\n{text}"


def test_a_member_of_two_groups_is_found_through_the_index(tmp_path):
    cluster = CLUSTER.replace("stack: none", "stack: pacemaker\n  crypto: none\n  stonithEnabled: false").split("---")[0]
    docs = [cluster] + [
        f"apiVersion: reconcile/v1\nkind: ClusterResource\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
        f"  {spec}\n" for name, spec in [("a", "agent: ocf:heartbeat:Dummy"), ("b", "agent: ocf:heartbeat:Dummy"),
                                         ("g1", "group: [a, b]"), ("g2", "group: [b]"), ("g3", "group: [a]")]]
    (tmp_path / "r.yaml").write_text("---\n".join(docs))
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    found = sorted((p.line, p.field, p.message.split(":")[0]) for p in err.value.problems)
    assert [(f, m) for _, f, m in found] == [
        ("spec.group[0]", "'a' is also a member of group 'g3'"),  # g1
        ("spec.group[1]", "'b' is also a member of group 'g2'"),
        ("spec.group[0]", "'b' is also a member of group 'g1'"),  # g2
        ("spec.group[0]", "'a' is also a member of group 'g1'"),  # g3
    ]


def test_claims_on_disjoint_nodes_do_not_conflict_and_everywhere_meets_everything(tmp_path):
    docs = [CLUSTER] + [
        f"apiVersion: reconcile/v1\nkind: Container\nmetadata: {{name: c{i}}}\nspec:\n  {place}\n  template: busybox\n"
        f"  network: {{type: bridge, bridge: br0, address: 10.0.0.5/24}}\n"
        for i, place in enumerate(["node: lb1", "node: lb2", "nodes: [lb3]"])]
    (tmp_path / "c.yaml").write_text("---\n".join(docs))
    load_tree(tmp_path)
    (tmp_path / "d.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {name: v}\nspec:\n  nodes: [\"*\"]\n  manager: keepalived\n"
        "  address: 10.0.0.5/24\n  keepalived: {routerId: 1}\n")
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    claims = [p for p in err.value.problems if "both claim ip 10.0.0.5" in p.message]
    assert [(p.file, p.message.split(" at ")[0]) for p in claims] == [("d.yaml", "conflicts with Container 'c0'")]
