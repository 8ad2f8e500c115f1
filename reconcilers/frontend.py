"""Frontend: an HAProxy frontend on this node: where it listens and which backend gets
which request.

Every Frontend change is structural: the file is rendered, checked with `haproxy -c`,
installed atomically and loaded by a hitless reload through the master (or HAProxy is
started if it does not run). A bind to a VirtualIP address carries `transparent`, so it
works on the node that does not hold the address right now. See reconcilers/haproxy.py.
"""
from __future__ import annotations

from typing import Any, Iterator

from reconcilers.base import NODE, Change, Desired, HealthReport, Node, PerObject
from reconcilers.haproxy import HAProxy, desired_sections, render_frontend, watch
from reconcilers.haproxy_health import frontend_health, haproxy_health


class FrontendReconciler(PerObject):
    """HAProxy frontends on this node (kind Frontend)."""

    kind = "Frontend"
    after = ("Backend", "VirtualIP")

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        frontends, _ = desired_sections(tree, node.name)
        out = {}
        for manifest in tree.on_node("Frontend", node.name):
            spec = manifest.spec
            backends = dict.fromkeys([spec.defaultBackend, *(r.backend for r in spec.rules)])
            out[manifest.metadata.name] = Desired(frontends[manifest.metadata.name],
                                                  depends=tuple(("Backend", b) for b in backends))
        return {self.kind: out}

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        return {self.kind: HAProxy(node).snapshot().frontends()}

    # validate(): the Backend reconciler checks the whole file, frontends included (a
    # Frontend always lands with the Backends it names; the tree checks make sure).

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            return ["reload HAProxy (hitless) to remove the frontend"]
        return HAProxy(node).preview("to load the frontend")

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Each frontend loaded and listening, from one `show stat`."""
        wanted = desired.get(self.kind, {})
        if not wanted:
            return {}
        rows = HAProxy(node).stat_rows()
        out = {n: frontend_health(n, rows, d.state.get("bind", [])) for n, d in wanted.items()}
        return {self.kind: out, NODE: {"haproxy": haproxy_health(rows is not None, True)}}

    def apply_one(self, change: Change, node: Node) -> None:
        haproxy = HAProxy(node)
        snap = haproxy.snapshot()
        section = render_frontend(change.name, change.desired) if change.desired is not None else None
        haproxy.install(snap, haproxy.compose(snap, "frontend", change.name, section))
        if not snap.running:
            if change.desired is not None:
                haproxy.start()
            return
        observed = snap.frontends().get(change.name)
        if observed == change.desired:  # already done (idempotent)
            return
        new_binds = [b for b in (change.desired or {}).get("bind", []) if b not in (observed or {}).get("bind", [])]
        haproxy.reload_or_restore(snap, new_binds)

    def watch(self, node: Node) -> Iterator[str]:  # type: ignore[override]
        """Yield when the managed file changes (the Backend watch also follows servers)."""
        return watch(node, servers=False)
