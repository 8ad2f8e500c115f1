"""Frontend: an HAProxy frontend on this node: where it listens and which backend gets
which request.

Every Frontend change is structural: the file is rendered, checked with `haproxy -c`,
installed atomically and loaded by a hitless reload through the master (or HAProxy is
started if it does not run). A bind to a VirtualIP address carries `transparent`, so it
works on the node that does not hold the address right now. See reconcilers/haproxy.py.
"""
from __future__ import annotations

from typing import Any, Iterator

from reconcilers.base import Change, Desired, Node, Reconciler, systemd_running, unit_notes
from reconcilers.haproxy import UNIT, HAProxy, desired_sections, enforce_unit, render_frontend, watch


class FrontendReconciler(Reconciler):
    """HAProxy frontends on this node (kind Frontend)."""

    kind = "Frontend"
    after = ("Backend", "VirtualIP")
    enforce = False

    def desired(self, tree: Any, node: Node) -> dict[str, Desired]:
        frontends, _ = desired_sections(tree, node.name)
        self.enforce = enforce_unit(tree, node.name)
        # With systemd each Frontend also says that HAProxy starts at boot (`units`).
        units = {"units": {"haproxy": "enabled"}} if systemd_running() else {}
        out = {}
        for manifest in tree.on_node("Frontend", node.name):
            spec = manifest.spec
            backends = dict.fromkeys([spec.defaultBackend, *(r.backend for r in spec.rules)])
            out[manifest.metadata.name] = Desired(frontends[manifest.metadata.name] | units,
                                                  depends=tuple(("Backend", b) for b in backends))
        return out

    def observe(self, node: Node) -> dict[str, dict[str, Any]]:
        return HAProxy(node).snapshot().frontends()

    # validate(): the Backend reconciler checks the whole file, frontends included (a
    # Frontend always lands with the Backends it names; the tree checks make sure).

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            return ["reload HAProxy (hitless) to remove the frontend"]
        notes = []
        if not (change.action == "update" and _config(change.observed) == _config(change.desired)):
            notes = HAProxy(node).preview("to load the frontend")
        if ((change.observed or {}).get("units") or {}).get("haproxy", "enabled") != "enabled" or \
                (change.action == "create" and systemd_running()):  # stopped: held back, or started?
            notes += unit_notes(node, [UNIT], self.enforce)
        return notes

    def apply(self, change: Change, node: Node) -> None:
        haproxy = HAProxy(node, enforce=self.enforce)
        snap = haproxy.snapshot()
        section = render_frontend(change.name, change.desired) if change.desired is not None else None
        haproxy.install(snap, haproxy.compose(snap, "frontend", change.name, section))
        if not snap.running:
            if change.desired is not None:
                haproxy.start()
            return
        observed = snap.frontends().get(change.name)
        if _config(observed) != _config(change.desired):
            new_binds = [b for b in (change.desired or {}).get("bind", []) if b not in (observed or {}).get("bind", [])]
            haproxy.reload_or_restore(snap, new_binds)
        if change.desired is not None and (observed or {}).get("units") != change.desired.get("units"):
            haproxy.enable()

    def watch(self, node: Node) -> Iterator[str]:  # type: ignore[override]
        """Yield when the managed file changes (the Backend watch also follows servers)."""
        return watch(node, servers=False)


def _config(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Frontend's state without whether HAProxy starts at boot: what a reload loads."""
    return None if state is None else {k: v for k, v in state.items() if k != "units"}
