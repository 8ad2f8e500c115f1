"""desired() is pure for every kind: from the tree and the node's name only.

No command, no file read, no host lookup: the same tree gives the same desired state for a
node whatever machine computes it (CI, another node, the node itself). Proven with Python's
audit hooks, which see every open(), subprocess, directory listing and host-name lookup.
"""
from __future__ import annotations

import socket
import sys

import pytest

from controller.cli import DEFAULT_REPO
from controller.loader import load_tree
from reconcilers import REGISTRY, reconciler_class
from reconcilers.base import Node, Runner

WATCHED = ("open", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.scandir", "os.listdir",
           "socket.gethostname", "socket.getaddrinfo", "socket.gethostbyname", "socket.connect", "glob.glob")
_seen: list[tuple[str, tuple]] | None = None


def _hook(event: str, args: tuple) -> None:
    if _seen is not None and event in WATCHED:
        _seen.append((event, args))


sys.addaudithook(_hook)


def classes() -> list[type]:
    out: list[type] = []
    for kind in REGISTRY:
        cls = reconciler_class(kind)
        if cls not in out:
            out.append(cls)
    return out


def desired_of(cls: type, tree, node_name: str, tmp_path) -> dict:
    node = Node(node_name, Runner(dry_run=True, recording=True), tmp_path)
    out = cls().desired(tree, node)
    assert node.runner.records == [], f"{cls.__name__}.desired ran {node.runner.records}"
    return {k: {n: (d.state, d.depends, d.ignore) for n, d in v.items()} for k, v in out.items()}


@pytest.mark.parametrize("cls", classes(), ids=lambda c: c.__name__)
def test_desired_reads_nothing_but_the_tree_and_the_node_name(cls, tmp_path, monkeypatch):
    global _seen
    tree = load_tree(DEFAULT_REPO)
    expected = desired_of(cls, tree, "lb1", tmp_path)  # warms imports and caches up
    monkeypatch.setattr(socket, "gethostname", lambda: "some-other-machine")
    _seen = []
    try:
        again = desired_of(cls, tree, "lb1", tmp_path)
    finally:
        seen, _seen = _seen, None
    assert seen == [], f"{cls.__name__}.desired looked outside the tree: {seen[:5]}"
    assert again == expected  # whatever machine computes it


def test_a_domain_joins_default_computer_name_is_the_nodes_name(tmp_path, monkeypatch):
    from reconcilers.domain.reconciler import DomainJoinReconciler

    monkeypatch.setattr(socket, "gethostname", lambda: "ci-runner")
    tree = load_tree(DEFAULT_REPO)
    state = DomainJoinReconciler().desired(tree, Node("lb2", Runner(dry_run=True), tmp_path))["DomainJoin"]["corp"]
    assert state.state["membership"]["computerName"] == "LB2"
