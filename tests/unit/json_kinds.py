"""A tiny kind of state, JSON files in one folder, and real reconcilers for it.

The engine and agent tests drive the real engine with these: they write real files through
AtomicWriter (so the dry-run guard holds), and a test registers them by monkeypatching
`reconcilers.REGISTRY`. `use_store(monkeypatch, folder)` points them at the test's folder.
Each test module adds the Backend reconciler it needs (failing, crashing, slow, watched).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from reconcilers.base import AtomicWriter, Change, Desired, Node, PerObject, Reconciler

STORE = Path("/nonexistent")

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
"""


def use_store(monkeypatch: Any, store: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "STORE", store)


def read_objects(prefix: str) -> dict[str, dict]:
    """Every `<prefix>-<name>.json` in the store, by name."""
    return {p.stem.split("-", 1)[1]: json.loads(p.read_text()) for p in STORE.glob(f"{prefix}-*.json")}


def write_object(prefix: str, change: Change, node: Node) -> None:
    """Apply one change to `<prefix>-<name>.json`."""
    path = STORE / f"{prefix}-{change.name}.json"
    if change.action == "delete":
        AtomicWriter(node).remove(path)
    else:
        AtomicWriter(node).write(path, json.dumps(change.desired))


class JsonFrontends(PerObject):
    """Frontends as <store>/frontend-<name>.json; each depends on its default backend."""

    kind = "Frontend"
    after = ("Backend",)

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"backend": m.spec.defaultBackend},
                                         depends=(("Backend", m.spec.defaultBackend),))
                for m in tree.on_node("Frontend", node.name)}}

    def observe(self, node):
        return {self.kind: read_objects("frontend")}

    def apply_one(self, change, node):
        write_object("frontend", change, node)


class GroupCluster(Reconciler):
    """A `stack: none` cluster is a group of nodes: nothing to run."""

    kind = "Cluster"

    def desired(self, tree, node):
        return {self.kind: {}}

    def observe(self, node):
        return {self.kind: {}}
