"""The rollout policy of a Cluster: defaults, and bad input refused with file, line and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.base import Node, Runner
from reconcilers.pacemaker.rollout import coordinator_for

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {{name: web}}
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
    - {{name: lb3, id: 3, address: 192.0.2.13/24}}
  stack: {stack}
{pacemaker}  rollout:
{rollout}"""
PACEMAKER = "  crypto: none\n  stonithEnabled: false\n"


def tree_of(tmp_path: Path, rollout: str, stack: str = "pacemaker"):
    (tmp_path / "cluster.yaml").write_text(CLUSTER.format(stack=stack, pacemaker=PACEMAKER if stack == "pacemaker"
                                                          else "", rollout=rollout))
    return load_tree(tmp_path)


def problems(tmp_path: Path, rollout: str, stack: str = "pacemaker") -> list[str]:
    with pytest.raises(TreeError) as err:
        tree_of(tmp_path, rollout, stack)
    return [str(p) for p in err.value.problems]


def line_of(tmp_path: Path, text: str) -> int:
    return next(i + 1 for i, line in enumerate((tmp_path / "cluster.yaml").read_text().splitlines()) if text in line)


def test_an_empty_policy_takes_the_defaults_and_the_nodes_order_serving_nodes_last(tmp_path):
    tree = tree_of(tmp_path, "    {}\n")
    coord = coordinator_for(tree, Node("lb2", Runner(dry_run=True), tmp_path))
    assert coord is not None
    assert coord.policy == {"order": ["lb1", "lb2", "lb3"], "servingLast": True, "maxUnavailable": 1, "soak": "0s",
                            "onFailure": "halt", "turnTimeout": "30s", "healthGate": {"timeout": "60s", "probes": []}}
    assert coord.addresses == {"lb1": "192.0.2.11", "lb2": "192.0.2.12", "lb3": "192.0.2.13"}


def test_a_node_outside_the_cluster_gets_no_coordinator(tmp_path):
    tree = tree_of(tmp_path, "    {}\n")
    assert coordinator_for(tree, Node("lb9", Runner(dry_run=True), tmp_path)) is None


def test_a_full_policy_is_kept_as_written(tmp_path):
    tree = tree_of(tmp_path, """\
    order: [lb3, lb1, lb2]
    maxUnavailable: 2
    soak: 30s
    onFailure: rollback
    turnTimeout: 1m
    healthGate:
      timeout: 2m
      probes:
        - {type: http, address: 192.0.2.100, port: 80, path: /health, expectStatus: [200, 204]}
        - {type: tcp, port: 443, timeout: 500ms}
""")
    policy = coordinator_for(tree, Node("lb1", Runner(dry_run=True), tmp_path)).policy
    assert policy["order"] == ["lb3", "lb1", "lb2"] and policy["onFailure"] == "rollback"
    assert policy["servingLast"] is False  # an order written is followed as written
    assert policy["healthGate"]["probes"][0] == {"type": "http", "address": "192.0.2.100", "port": 80,
                                                 "path": "/health", "expectStatus": [200, 204], "timeout": "2s"}
    assert policy["healthGate"]["probes"][1]["address"] is None  # the node's own address


def test_the_order_must_name_every_node_of_the_cluster_once(tmp_path):
    found = problems(tmp_path, "    order: [lb1, lb9, lb1]\n")
    line = line_of(tmp_path, "order:")
    assert f"cluster.yaml:{line}: spec.rollout.order[2]: duplicate node 'lb1' (first at index 0)" in found
    assert f"cluster.yaml:{line}: spec.rollout.order[1]: node 'lb9' is not in this cluster" in found
    assert any(p.startswith(f"cluster.yaml:{line}: spec.rollout.order: names every node once; missing: lb2, lb3")
               for p in found), found


def test_max_unavailable_may_not_take_the_whole_cluster_down(tmp_path):
    [p] = problems(tmp_path, "    maxUnavailable: 3\n")
    assert p.startswith(f"cluster.yaml:{line_of(tmp_path, 'maxUnavailable')}: spec.rollout.maxUnavailable: 3 of 3 "
                        "nodes would let a rollout take the whole cluster down: at most 2")


def test_a_rollout_needs_pacemaker_to_coordinate_through(tmp_path):
    found = problems(tmp_path, "    {}\n", stack="none")
    assert any("spec.rollout: a rollout needs stack: pacemaker" in p for p in found), found


@pytest.mark.parametrize("rollout, field, words", [
    ("    onFailure: retry\n", "spec.rollout.onFailure", "halt"),
    ("    soak: forever\n", "spec.rollout.soak", ""),
    ("    turnTimeout: 1s\n", "spec.rollout.turnTimeout", "at least 3s"),
    ("    healthGate: {probes: [{type: tcp, port: 80, path: /x}]}\n", "spec.rollout.healthGate.probes[0]",
     "path and expectStatus are for http probes"),
    ("    healthGate: {probes: [{type: http, port: 80, path: 'x; rm -rf /'}]}\n",
     "spec.rollout.healthGate.probes[0].path", ""),
    ("    healthGate: {probes: [{type: http, port: 80, address: example.test}]}\n",
     "spec.rollout.healthGate.probes[0].address", "address"),
    ("    healthGate: {probes: [{type: http, port: 80, expectStatus: [700]}]}\n",
     "spec.rollout.healthGate.probes[0].expectStatus[0]", ""),
    ("    maxUnavailable: 0\n", "spec.rollout.maxUnavailable", ""),
    ("    surge: 1\n", "spec.rollout.surge", ""),
])
def test_bad_values_are_refused_with_the_field(tmp_path, rollout, field, words):
    found = problems(tmp_path, rollout)
    assert any(f": {field}: " in p and words in p for p in found), found
