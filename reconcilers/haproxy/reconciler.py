"""The HAProxy reconciler: Frontends and Backends, one owner of haproxy.cfg and its process.

observe: one look at the file and one at the runtime (`show servers state`, `show stat`)
for both kinds. desired: the normalized state of every Frontend and Backend on the node.
apply: all of a pass's changes at once —

1. compose the new file: the sections the file has now with the batch's sections
   replaced, added or removed;
2. `haproxy -c` it once (cached per content); if it refuses, install nothing, pin the
   refusal on the objects it names and try again without them (`install_batch`);
3. install the file once (atomically);
4. one runtime-API session for every server change that needs no reload (add, remove,
   weight, address, maxconn, state, checks), removals drained together;
5. at most one hitless reload (or a start) for everything else.

A server change is made at run time and written to the file in the same pass, so that a
restart agrees; see runtime.py for which changes need no reload.
"""
from __future__ import annotations

from typing import Any, Iterator

from reconcilers.base import (
    ApplyError, Change, Desired, Held, Node, Outcomes, Reconciler, Refusal, install_batch, systemd_running, unit_notes,
)
from reconcilers.haproxy.config import KEYWORD_OF, Sections, compose, sections_of
from reconcilers.haproxy.parse import Snapshot
from reconcilers.haproxy.process import UNIT, HAProxy, Refused
from reconcilers.haproxy.render import backend_ignore, desired_sections, render_desired, render_object
from reconcilers.haproxy.runtime import REMOVE_WAIT, BackendPlan, answer_ok, plan_backend
from reconcilers.haproxy.watch import record_runtime, watch


class HAProxyReconciler(Reconciler):
    """HAProxy frontends and backends on this node (kinds Backend and Frontend)."""

    kinds = ("Backend", "Frontend")
    after = ("Container", "VirtualIP")

    def __init__(self) -> None:
        self.frontends: dict[str, dict] = {}
        self.backends: dict[str, dict] = {}
        self.ignored: dict[str, set[str]] = {}
        self._preview: tuple[str, list[str]] | None = None
        self.enforce = False  # metadata.drift: enforce on a Frontend or Backend here: unmask/enable the unit

    # -- desired and observed

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.frontends, self.backends = desired_sections(tree, node.name)
        self.enforce = any(m.metadata.drift == "enforce" for kind in self.kinds for m in tree.on_node(kind, node.name))
        # With systemd each Frontend also says that HAProxy starts at boot.
        units = {"units": {"haproxy": "enabled"}} if systemd_running() else {}
        backends, frontends = {}, {}
        for manifest in tree.on_node("Backend", node.name):
            name = manifest.metadata.name
            self.ignored[name] = set(manifest.spec.ignore)
            backends[name] = Desired(self.backends[name], ignore=backend_ignore(manifest.spec))
        for manifest in tree.on_node("Frontend", node.name):
            spec = manifest.spec
            names = dict.fromkeys([spec.defaultBackend, *(r.backend for r in spec.rules)])
            frontends[manifest.metadata.name] = Desired(self.frontends[manifest.metadata.name] | units,
                                                        depends=tuple(("Backend", b) for b in names))
        return {"Backend": backends, "Frontend": frontends}

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        snap = HAProxy(node).snapshot()
        return {"Backend": snap.backends(), "Frontend": snap.frontends()}

    def validate(self, node: Node) -> list[Refusal | str]:
        """`haproxy -c` on the whole file this node would run; refusals name the objects."""
        if not self.backends and not self.frontends:
            return []
        refusals = HAProxy(node).check(render_desired(self.frontends, self.backends))
        return [r if r.objects else f"node {node.name}: haproxy -c refused the configuration: {r.message}"
                for r in refusals]

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.kind == "Backend" and change.action == "update":  # observed: HAProxy runs
            plan = plan_backend(change.name, change.observed, change.desired or {}, self.ignored.get(change.name, set()))
            out = [f"reload HAProxy (hitless): {', '.join(plan.reload)}"] if plan.reload else []
            return out + [f"runtime API, no reload: {op.server}: {op.describe()}" for op in plan.ops]
        held = []
        if change.kind == "Frontend" and systemd_running() and change.action != "delete" and \
                (change.action == "create" or _units(change.observed) != _units(change.desired)):
            held = unit_notes(node, [UNIT], self.enforce)  # masked or disabled: started, or held?
            if change.action == "update" and _config(change.observed) == _config(change.desired):
                return held  # only whether HAProxy starts at boot differs: no reload
        if self._preview is None:  # one look for the whole plan
            self._preview = HAProxy(node).preview()
        how, notes = self._preview
        what = {"create": "load", "delete": "remove", "update": "change"}[change.action]
        if how == "reload":
            return [f"reload HAProxy (hitless) to {what} the {change.kind.lower()}", *notes, *held]
        return [f"start HAProxy to {what} the {change.kind.lower()} (it does not run)", *notes, *held]

    # -- apply

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        haproxy = HAProxy(node, enforce=self.enforce)
        snap = haproxy.snapshot()
        try:
            haproxy.check_owned(snap)
        except ApplyError as err:
            return {c.key: err for c in changes}
        current = sections_of(snap.file)

        def attempt(batch: list[Change]) -> list[Refusal]:
            try:
                haproxy.install(snap, compose(with_changes(current, batch)))
            except Refused as refused:
                return refused.refusals
            return []

        outcomes = install_batch(changes, attempt)
        landed = [c for c in changes if outcomes.get(c.key) is None]
        if not landed:
            return outcomes
        listens = any(key[0] == "frontend" for key in with_changes(current, landed))
        if not snap.running or not listens:
            try:
                if listens:
                    haproxy.start()
                elif snap.running:
                    haproxy.stop()  # the last frontend is gone: nothing left to serve
                elif any(c.desired is not None for c in landed):
                    raise ApplyError("HAProxy is not started: it would have nothing to listen on "
                                     "(no Frontend lands on this node)")
            except (ApplyError, Held) as err:
                outcomes.update({c.key: err for c in landed})
            return outcomes
        outcomes.update(self._converge_running(haproxy, snap, current, landed))
        record_runtime(node)
        enabling = [c for c in landed if c.kind == "Frontend" and c.desired is not None and outcomes.get(c.key) is None
                    and _units(c.observed) != _units(c.desired)]
        if enabling:  # running, but not started at boot: enabled, unless an operator's hold
            try:
                haproxy.enable()
            except (ApplyError, Held) as err:
                outcomes.update({c.key: err for c in enabling})
        return outcomes

    def _converge_running(self, haproxy: HAProxy, snap: Snapshot, current: Sections,
                          landed: list[Change]) -> Outcomes:
        """The running HAProxy after the new file landed: one runtime-API session for the
        server changes, then at most one reload for the rest."""
        outcomes: Outcomes = {}
        reload: list[Change] = []
        runtime: list[tuple[Change, BackendPlan]] = []
        backends = snap.backends()
        for change in landed:
            if change.kind == "Backend" and change.action == "update":
                plan = plan_backend(change.name, backends.get(change.name), change.desired or {},
                                    self.ignored.get(change.name, set()), snap.servers.get(change.name))
                runtime.append((change, plan))
                if plan.reload:
                    reload.append(change)
            elif not (change.kind == "Frontend" and change.action == "update"
                      and _config(change.observed) == _config(change.desired)):  # not only `units`
                reload.append(change)
        failed = self._run_server_ops(haproxy, runtime)
        outcomes.update(failed)
        if reload:
            binds = [b for c in reload if c.kind == "Frontend"
                     for b in (c.desired or {}).get("bind", []) if b not in (c.observed or {}).get("bind", [])]
            # If HAProxy refuses the new file, what goes back is the old file plus the
            # server changes made at run time (they did land).
            kept = [c for c, plan in runtime if not plan.reload and c.key not in failed]
            previous = compose(with_changes(current, kept)) if kept else snap.file.text
            try:
                haproxy.reload_or_restore(previous, binds)
            except ApplyError as err:
                outcomes.update({c.key: err for c in reload if c.key not in failed})
        elif runtime:
            haproxy.save_server_state()
        return outcomes

    def _run_server_ops(self, haproxy: HAProxy, runtime: list[tuple[Change, BackendPlan]]) -> Outcomes:
        """Every runtime server command of the batch on one admin-socket session; removals
        drained together and deleted once idle. A refused command fails its backend only."""
        failed: Outcomes = {}
        removals: dict[str, tuple[Change, list[str]]] = {}
        if not any(plan.ops for _, plan in runtime):
            return failed
        with haproxy.api.session() as cli:
            for change, plan in runtime:
                try:
                    for op in plan.ops:
                        for command in op.commands:
                            cli.checked(command, answer_ok(command))
                except ApplyError as err:
                    failed[change.key] = err
                    continue
                gone = [op.server for op in plan.ops if op.action == "remove"]
                if gone:
                    removals[change.name] = (change, gone)
            for backend, (change, servers) in removals.items():
                for server in servers:
                    cli.checked(f"set server {backend}/{server} state drain")
        for backend, (change, servers) in removals.items():
            try:
                self._remove(haproxy, backend, servers)
            except ApplyError as err:
                failed[change.key] = err
        return failed

    @staticmethod
    def _remove(haproxy: HAProxy, backend: str, servers: list[str]) -> None:
        """Wait (bounded) for drained servers' requests to end, then maint and delete:
        HAProxy refuses to delete a server with connections, and we do not cut them."""
        busy = haproxy.wait_idle(backend, servers, REMOVE_WAIT)
        refused = []
        with haproxy.api.session() as cli:
            for server in (s for s in servers if s not in busy):
                cli.checked(f"set server {backend}/{server} state maint")
                answer = ""
                for _ in range(40):  # a connection may still be on its way back to the pool; retry briefly
                    answer = cli.command(f"del server {backend}/{server}", read_only=False).strip()
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
        """Yield when the managed file changes or HAProxy's server state changes (a server
        disabled by hand), and when HAProxy stops or starts; not for reconcile's own
        writes."""
        return watch(node)


def with_changes(sections: Sections, batch: list[Change]) -> Sections:
    """`sections` with each change's section rendered in (or removed, for a delete)."""
    out = dict(sections)
    for change in batch:
        key = (KEYWORD_OF[change.kind], change.name)
        if change.desired is None:
            out.pop(key, None)
        else:
            out[key] = render_object(change.kind, change.name, change.desired)
    return out


def _units(state: dict[str, Any] | None) -> Any:
    return (state or {}).get("units")


def _config(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Frontend's state without whether HAProxy starts at boot: what a reload loads."""
    return None if state is None else {k: v for k, v in state.items() if k != "units"}
