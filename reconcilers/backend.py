"""Backend: an HAProxy backend on this node, its balance algorithm, health check and servers.

Observed from HAProxy itself (servers from `show servers state`, algorithm and mode from
`show stat`) and from the managed file (timeouts, health check). A server change (add,
remove, weight, address, maxconn, ready/drain/maint, checks on/off) is done through the
runtime API with no reload, and the file is rewritten in the same step; any other change
is a reload through the master, which keeps every connection. See reconcilers/haproxy.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from reconcilers.base import ApplyError, Change, Desired, Node, Reconciler
from reconcilers.haproxy import (
    EDITED, IN_SYNC, HAProxy, RuntimeServer, backend_ignore, desired_sections, enforce_unit, render_backend,
    render_desired, server_args, watch,
)

REMOVE_WAIT = 10.0  # seconds a drained server may take to finish its requests before deletion
CHECK_CONFIGURED = 0x02  # srv_check_state: CHK_ST_CONFIGURED (`check` was given)


@dataclass
class ServerOp:
    """One server's runtime change: `commands` in order, or a drain-and-delete (`remove`)."""

    server: str
    action: str  # add | update | remove
    commands: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.commands) if self.commands else f"drain, then del server (waits up to {REMOVE_WAIT:.0f}s)"


@dataclass
class BackendPlan:
    """How one Backend change is carried out: why a reload is needed (empty: none), and
    the runtime API operations."""

    reload: list[str] = field(default_factory=list)
    ops: list[ServerOp] = field(default_factory=list)


def plan_backend(
    name: str,
    observed: dict[str, Any] | None,
    desired: dict[str, Any],
    ignored: set[str] = frozenset(),  # type: ignore[assignment]
    runtime: dict[str, RuntimeServer] | None = None,
) -> BackendPlan:
    """Split the difference into runtime server operations and reasons to reload.

    `ignored` holds server fields an operator may change at run time (`spec.ignore`): they
    are set when a server is added, never corrected afterwards.
    """
    plan = BackendPlan()
    if observed is None:
        plan.reload.append(f"backend {name} is not loaded")
        return plan
    for key in ("mode", "balance", "healthCheck", "timeouts"):
        if observed.get(key) != desired[key]:
            plan.reload.append(f"{key} changed")
    if observed.get("config") != IN_SYNC:
        plan.reload.append("the file was edited by hand" if str(observed.get("config")).startswith(EDITED)
                           else str(observed.get("config")))
    have, want = observed.get("servers", {}), desired["servers"]
    check = desired["healthCheck"]
    # Adds first and removals last, so capacity never dips below what both agree on.
    for server in sorted(set(want) - set(have)):
        w = want[server]
        commands = [f"add server {name}/{server} {' '.join(server_args(w, check))}"]
        if w["check"] and check["type"] != "none":
            commands.append(f"enable health {name}/{server}")
        commands.append(f"set server {name}/{server} state {w['state']}")  # dynamic servers start in maint
        plan.ops.append(ServerOp(server, "add", commands))
    for server in sorted(set(want) & set(have)):
        h, w = have[server], want[server]
        commands = []
        if h["backup"] != w["backup"]:
            plan.reload.append(f"servers.{server}.backup changed")
        if (h["address"], h["port"]) != (w["address"], w["port"]):
            commands.append(f"set server {name}/{server} addr {w['address']} port {w['port']}")
        if h["weight"] != w["weight"] and "weight" not in ignored:
            commands.append(f"set server {name}/{server} weight {w['weight']}")
        if h.get("maxconn") != w.get("maxconn"):
            commands.append(f"set maxconn server {name}/{server} {w.get('maxconn', 0)}")
        if h["check"] != w["check"]:
            configured = runtime is None or server not in runtime or runtime[server].check_state & CHECK_CONFIGURED
            if w["check"] and not configured:
                plan.reload.append(f"servers.{server} needs health checks configured")
            else:
                commands.append(f"{'enable' if w['check'] else 'disable'} health {name}/{server}")
        if h["state"] != w["state"] and "state" not in ignored:
            commands.append(f"set server {name}/{server} state {w['state']}")
        if commands:
            plan.ops.append(ServerOp(server, "update", commands))
    for server in sorted(set(have) - set(want)):
        plan.ops.append(ServerOp(server, "remove"))
    if plan.reload:
        # The reload loads servers from the new file; only changes to servers that stay
        # are made at run time first, so the saved state carries them over.
        plan.ops = [op for op in plan.ops if op.action == "update"]
    return plan


class BackendReconciler(Reconciler):
    """HAProxy backends on this node (kind Backend)."""

    kind = "Backend"
    after = ("Container",)

    def __init__(self) -> None:
        self.enforce = False  # metadata.drift: enforce on a Frontend or Backend here
        self.frontends: dict[str, dict] = {}
        self.backends: dict[str, dict] = {}
        self.ignored: dict[str, set[str]] = {}

    # -- desired and observed

    def desired(self, tree: Any, node: Node) -> dict[str, Desired]:
        self.frontends, self.backends = desired_sections(tree, node.name)
        self.enforce = enforce_unit(tree, node.name)
        out = {}
        for manifest in tree.on_node("Backend", node.name):
            name = manifest.metadata.name
            self.ignored[name] = set(manifest.spec.ignore)
            out[name] = Desired(self.backends[name], ignore=backend_ignore(manifest.spec))
        return out

    def observe(self, node: Node) -> dict[str, dict[str, Any]]:
        return HAProxy(node).snapshot().backends()

    def validate(self, node: Node) -> list[str]:
        """`haproxy -c` on the whole file this node would run (frontends too: they are one
        file; the Frontend reconciler leaves this check to us)."""
        if not self.backends and not self.frontends:
            return []
        return HAProxy(node).validate_text(render_desired(self.frontends, self.backends))

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            return ["reload HAProxy (hitless) to remove the backend"]
        if change.action == "create":
            return HAProxy(node).preview("to load the backend")
        plan = plan_backend(change.name, change.observed, change.desired or {}, self.ignored.get(change.name, set()))
        notes = [f"reload HAProxy (hitless): {', '.join(plan.reload)}"] if plan.reload else []
        notes += [f"runtime API, no reload: {op.server}: {op.describe()}" for op in plan.ops]
        return notes

    # -- apply

    def apply(self, change: Change, node: Node) -> None:
        haproxy = HAProxy(node, enforce=self.enforce)
        snap = haproxy.snapshot()
        name = change.name
        section = render_backend(name, change.desired) if change.desired is not None else None
        text = haproxy.compose(snap, "backend", name, section)
        if not snap.running:
            haproxy.install(snap, text)
            if change.desired is not None:
                haproxy.start()
            return
        observed = snap.backends().get(name)
        if change.desired is None:
            if observed is not None or name in snap.file.of("backend"):
                haproxy.install(snap, text)
                haproxy.reload_or_restore(snap)
            return
        plan = plan_backend(name, observed, change.desired, self.ignored.get(name, set()), snap.servers.get(name))
        changed = haproxy.install(snap, text)  # first: a file HAProxy refuses stops us before any change
        if plan.reload:
            self._run(haproxy, name, plan.ops)
            haproxy.reload_or_restore(snap)
        elif plan.ops:
            self._run(haproxy, name, plan.ops)
            haproxy.save_server_state()
        elif changed:
            haproxy.save_server_state()

    def _run(self, haproxy: HAProxy, backend: str, ops: list[ServerOp]) -> None:
        for op in ops:
            for command in op.commands:
                ok = r"^New server registered\." if command.startswith("add server") else \
                    r"^$|changed from|no need to change"
                haproxy.api.checked(command, ok)
        removals = [op.server for op in ops if op.action == "remove"]
        if removals:
            self._remove(haproxy, backend, removals)

    @staticmethod
    def _remove(haproxy: HAProxy, backend: str, servers: list[str]) -> None:
        """Drain, wait (bounded, all at once) for their requests to end, then maint and
        delete: HAProxy refuses to delete a server with connections, and we do not cut them."""
        api = haproxy.api
        for server in servers:
            api.checked(f"set server {backend}/{server} state drain")
        busy = haproxy.wait_idle(backend, servers, REMOVE_WAIT)
        refused = []
        for server in (s for s in servers if s not in busy):
            api.checked(f"set server {backend}/{server} state maint")
            answer = ""
            for _ in range(40):  # a connection may still be on its way back to the pool; retry briefly
                answer = api.command(f"del server {backend}/{server}", read_only=False).strip()
                if answer.startswith(("Server deleted", "No such server")):
                    break
                haproxy.wait_idle(backend, [server], 0.05)
            else:
                refused.append(f"`del server {backend}/{server}`: {answer}")
        if busy:
            left = ", ".join(f"{s} ({n})" for s, n in sorted(busy.items()))
            raise ApplyError(f"server(s) of {backend} still have connections after {REMOVE_WAIT:.0f}s of drain: {left}; "
                             f"they stay drained and are removed on the next run")
        if refused:
            raise ApplyError(f"HAProxy refused {'; '.join(refused)}")

    # -- watch

    def watch(self, node: Node) -> Iterator[str]:  # type: ignore[override]
        """Yield when HAProxy's server state changes (a server disabled by hand), when
        HAProxy stops or starts, and when the managed file changes."""
        return watch(node, servers=True)
