"""The HAProxy reconciler: the HAProxy kind, Frontends and Backends, one owner of
haproxy.cfg and its process.

observe: one look at the file and one at the runtime (`show servers state`, `show stat`,
and `show ssl cert`/`show map` for what reconcile manages) for every kind. desired: every
object rendered (state.py). apply: all of a pass's changes at once —

1. compose the new file: the sections it has now, with the batch's replaced, added or
   removed; write the files new sections refer to (certificates, 0600);
2. `haproxy -c` it once (cached per content); if it refuses, install nothing, pin the
   refusal on the objects it names and try again without them (`install_batch`);
3. install the file once (atomically; 0600 when it holds a secret);
4. one runtime-API session: server changes (add, remove, weight, address, maxconn,
   state, checks), certificates (`set ssl cert` + `commit ssl cert`), map and ACL files
   (`prepare`, `add`, `commit`) — none needs a reload;
5. at most one hitless reload (or a start) for everything else.

validate: the node's policy (directives that run code), the references (secrets and files
that must exist on the node), then `haproxy -c` on the whole file; each refusal names
`file:line: field` or the objects `haproxy -c` names.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

from reconcilers.base import (
    NODE, ApplyError, Change, Desired, Health, HealthReport, Held, Key, Node, NodeNote, Outcomes, Reconciler, Refusal,
    Skipped, Unproven, install_batch, unit_notes,
)
from reconcilers.haproxy import files as managed
from reconcilers.haproxy.config import KIND_OF, SECRET_MARK, ConfigFile, SectionKey, Sections, compose, line_changes, \
    sections_of
from reconcilers.haproxy.health import backend_health, check_timing, checks_pending, frontend_health, haproxy_health
from reconcilers.haproxy.parse import Snapshot
from reconcilers.haproxy.process import UNIT, HAProxy, Refused
from reconcilers.haproxy.render import SecretLine
from reconcilers.haproxy.runtime import REMOVE_WAIT, BackendPlan, Session, answer_ok, plan_backend
from reconcilers.haproxy.state import Model, desired_state, observed_states
from reconcilers.haproxy.watch import record_runtime, watch
from reconcilers.policy import load_policy
from schemas.haproxy_lang import CAPABILITIES, capability, words

RUNTIME_KEYS = {"Backend": {"servers", "files"}, "Frontend": {"files"}, "HAProxy": {"files", "maps", "acls"}}


class HAProxyReconciler(Reconciler):
    """HAProxy on this node: kinds HAProxy, Backend and Frontend."""

    kinds = ("HAProxy", "Backend", "Frontend")
    after = ("Container", "VirtualIP")
    units = (UNIT,)

    def __init__(self) -> None:
        self.model = Model()
        self.tree: Any = None
        self.ignored: dict[str, set[str]] = {}
        self._preview: tuple[str, list[str]] | None = None
        self.changed: dict[str, float] = {}  # backend → when this run changed it (monotonic), for health
        self.enforce = False  # metadata.drift: enforce on an object here: unmask/enable haproxy.service

    # -- desired and observed

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.tree = tree
        self.model = Model.build(tree, node.name)
        out: dict[str, dict[str, Desired]] = {"HAProxy": {}, "Backend": {}, "Frontend": {}}
        shared = tuple(key for key in self.model.objects if key[0] == "HAProxy")
        backends = {name for kind, name in self.model.objects if kind == "Backend"}
        self.enforce = any(m.metadata.drift == "enforce" for m in self.model.sources.values())
        # With systemd each Frontend also says that HAProxy starts at boot.
        units = {"units": {"haproxy": "enabled"}} if node.systemd else {}
        for key, manifest in self.model.sources.items():
            kind, name = key
            state = desired_state(self.model, key)
            ignore: tuple[str, ...] = ()
            depends: tuple[Key, ...] = shared if kind != "HAProxy" else ()
            if kind == "Backend":
                self.ignored[name] = set(manifest.spec.ignore)
                ignore = tuple(f"/servers/*/{field}" for field in manifest.spec.ignore)
            elif kind == "Frontend":
                named = [manifest.spec.defaultBackend, *(r.backend for r in manifest.spec.rules)]
                named += [w[1] for line in state["lines"] if (w := words(line))[:1] in (["default_backend"], ["use_backend"])
                          and len(w) > 1 and "%[" not in w[1]]
                depends += tuple(("Backend", b) for b in dict.fromkeys(named) if b in backends)
                state = state | units
            out[kind][name] = Desired(state, ignore=ignore, depends=depends)
        return out

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        return observed_states(self.model, HAProxy(node).snapshot(), node)

    def render(self, node: Node) -> dict[str, str | bytes]:
        """The files this node would get (haproxy.cfg, certificates, maps, ACL files), with
        secrets read on this machine. Read-only."""
        out: dict[str, str | bytes] = {}
        if not self.model.objects:
            return out
        out[str(HAProxy(node).config)] = self.config_text(fill=self._filler(node))
        for r in self.model.objects.values():
            for path, f in r.files.items():
                out[path] = managed.read_source(f.ref, node)
            out.update({p: managed.map_text(e) for p, e in r.maps.items()})
            out.update({p: managed.acl_text(e) for p, e in r.acls.items()})
        return out

    def config_text(self, fill: Any = None) -> str:
        """haproxy.cfg as `desired` wants it; secrets stay references unless `fill` (a
        SecretLine → line function) puts their values in. Pure."""
        return self._text(self.model.all_sections(fill=fill))[0]

    # -- validate

    def validate(self, node: Node) -> list[Refusal | str]:
        """The node's policy and the references first (each a `file:line: field:` problem
        that refuses the revision on this node), then `haproxy -c` on the whole file.

        For another node than this machine (`validate` in CI), the policy file and the
        files secrets are read from are that node's: what they decide is reported as
        skipped, and `haproxy -c` runs only if every reference can be read here."""
        if not self.model.objects:
            return []
        skipped: list[Refusal | str] = []
        if node.local:
            problems: list[Refusal | str] = [*self._policy(node), *self._references(node)]
            if problems:
                return problems
        else:
            skipped += [Skipped(f"{where}: {what}: allowed only by {node.name}'s own node policy, not checked on "
                                "this machine") for where, need, what in self._needs()]
            missing = self._references(node)
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                return [*skipped, Skipped(f"haproxy -c not run for {node.name}: a file it names is {node.name}'s and "
                                          f"not on this machine: {missing[0]}{more}")]
        text, owners = self._text(self.model.all_sections(fill=self._filler(node)))
        with _StandIns(self.model, node) as paths:
            for path, stand_in in paths.items():  # certificates not installed yet: check with their sources
                text = text.replace(path, stand_in)
            refusals = HAProxy(node).check(text, owners)
        return skipped + [r if r.objects else f"node {node.name}: haproxy -c refused the configuration: {r.message}"
                          for r in refusals]

    def _needs(self) -> Iterator[tuple[str, str, str]]:
        """(where, capability, what) of every directive that needs the node policy's leave."""
        for (kind, name), manifest in self.model.sources.items():
            for field, section, text in _directives(kind, manifest):
                need = capability(text, section)
                if need:
                    yield f"{self._where(kind, name, field)}: {_show(field)}", need, \
                        f"`{' '.join(words(text)[:2])}` {CAPABILITIES[need]}"

    def _policy(self, node: Node) -> list[str]:
        policy = load_policy()
        return [f"{where}: {policy.refusal('haproxy', need, what)}" for where, need, what in self._needs()
                if not policy.allows("haproxy", need)]

    def _references(self, node: Node) -> list[str]:
        out = []
        for (kind, name), manifest in self.model.sources.items():
            for field, ref in _references(manifest.spec):
                try:
                    managed.read_source(ref, node)
                except ApplyError as err:
                    out.append(f"{self._where(kind, name, field)}: {_show(field)}: {err}")
        return out

    def _where(self, kind: str, name: str, field: str) -> str:
        item = next((i for i in self.tree.loaded(kind) if i.name == name), None) if self.tree else None
        return item.where(field) if item else f"{kind}/{name}"

    def explain(self, change: Change, node: Node) -> list[str]:
        notes = []
        for path, token in (change.desired or {}).get("files", {}).items():
            if (change.observed or {}).get("files", {}).get(path) != token:
                notes.append(self._certificate_note(change.key, path, node))
        if change.action == "update":
            notes += _line_notes(change)
        if change.kind == "Backend" and change.action == "update":  # observed: HAProxy runs
            plan = plan_backend(change.name, change.observed, change.desired or {}, self.ignored.get(change.name, set()))
            out = [f"reload HAProxy (hitless): {', '.join(plan.reload)}"] if plan.reload else []
            return notes + out + [f"runtime API, no reload: {op.server}: {op.describe()}" for op in plan.ops]
        held = []
        if change.kind == "Frontend" and node.systemd and change.action != "delete" and \
                (change.action == "create" or _units(change.observed) != _units(change.desired)):
            held = unit_notes(node, [UNIT], self.enforce)  # masked or disabled: started, or held?
            if change.action == "update" and not _needs_reload(self.model, change):
                return notes + held  # only whether HAProxy starts at boot differs: no reload
        if change.action == "update" and not _needs_reload(self.model, change):
            return notes + ["runtime API, no reload"]
        if self._preview is None:  # one look for the whole plan
            self._preview = self._haproxy(node).preview()
        how, extra = self._preview
        # One reload (or start) loads every change of the pass: said once for the node.
        said = NodeNote("HAProxy will be reloaded (hitless) with the new configuration" if how == "reload"
                        else "HAProxy will be started (it does not run)")
        return [*notes, said, *(NodeNote(f"HAProxy: {n}") for n in extra), *held]

    def disruption(self, change: Change, node: Node) -> str | None:
        """For rollouts (controller/rollout.py): None when the change is provably hitless —
        a Backend update made only of runtime-API server changes that keep every server
        where it was (weight, maxconn, admin state, removals, which HAProxy drains first).
        `Unproven` when HAProxy runs and the change is a reload (the master hands the
        listening sockets to the new workers, the old ones finish their connections) or a
        server added or sent elsewhere over the runtime API: no connection is dropped, only
        the new destination or configuration is untried. A start (HAProxy does not run
        here) is disruptive."""
        if change.kind == "Backend" and change.action == "update":
            plan = plan_backend(change.name, change.observed, change.desired or {},
                                self.ignored.get(change.name, set()))
            if plan.reload or _needs_reload(self.model, change, ignore_servers=True):
                why = f"Backend {change.name}: reload ({', '.join(plan.reload) or 'configuration'})"
            else:
                for op in plan.ops:
                    if op.action == "add":
                        return Unproven(f"Backend {change.name}: new server {op.server}")
                    if any(" addr " in c for c in op.commands):
                        return Unproven(f"Backend {change.name}: server {op.server} moves to another address/port")
                return None
        else:
            why = f"{change.kind} {change.name}: {change.action} (a reload of HAProxy)"
        if self._preview is None:
            self._preview = self._haproxy(node).preview()
        if self._preview[0] != "reload":
            return f"{change.kind} {change.name}: {change.action} (HAProxy starts: it does not run)"
        return Unproven(why)

    def connections(self, node: Node) -> int | None:
        """Client connections HAProxy holds here now, over every worker (old ones still
        finishing theirs after a reload included; the CLI's own are not counted); None
        when reconcile's HAProxy does not run here. Rollouts wait for 0 after a drain."""
        haproxy = self._haproxy(node)
        if not haproxy.running():
            return None
        try:
            return haproxy.client_connections()
        except (ApplyError, OSError) as err:
            raise ApplyError(f"cannot count HAProxy's connections: {err}") from None

    def _certificate_note(self, key: Key, path: str, node: Node) -> str:
        r = self.model.objects.get(key)
        f = r.files.get(path) if r else None
        if f is None:
            return f"{path}: removed"
        try:
            data = managed.read_source(f.ref, node)
        except ApplyError as err:
            return f"{path}: {err}"
        if not f.certificate:
            return f"{path}: written from {f.ref.describe()} (0600)"
        return f"certificate {path} from {f.ref.describe()}: {managed.describe_certificate(data)}"

    # -- health

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Frontends listening and each backend's servers as HAProxy's checks see them,
        from one `show stat`; a backend changed in this run is Unknown until its checks
        have had time to judge the change. The HAProxy object is healthy when HAProxy
        runs and its admin socket answers."""
        if not any(desired.get(kind) for kind in self.kinds):
            return {}
        rows = self._haproxy(node).stat_rows()
        running = haproxy_health(rows is not None, True)
        out_b: dict[str, Health] = {}
        for name, d in desired.get("Backend", {}).items():
            health = backend_health(name, rows, d.state, "state" in self.ignored.get(name, set()))
            timing = check_timing(d.state.get("servers", {}), self._default_server(("Backend", name), d.state))
            left = checks_pending(self.changed.get(name), timing)
            if left and health.status == "Healthy":
                health = Health.unknown("ChecksPending", f"changed {left:.1f}s too recently for HAProxy's checks "
                                                         "to have judged it (fall × interval)")
            out_b[name] = health
        out_f = {n: frontend_health(n, rows, _binds(d.state)) for n, d in desired.get("Frontend", {}).items()}
        out_h = {n: running for n in desired.get("HAProxy", {})}
        return {"HAProxy": out_h, "Backend": out_b, "Frontend": out_f, NODE: {"haproxy": running}}

    def _default_server(self, key: Key, state: dict[str, Any]) -> list[str]:
        """The `default-server` words a proxy's servers take: from its defaults section,
        then its own `default-server` lines."""
        source = self.model.sources.get(key)
        inherited = self.model.inherited_default_server(source.spec.defaults) if source is not None else []
        return [*inherited, *(w for line in state.get("lines", []) if (ws := words(line))[:1] == ["default-server"]
                              for w in ws[1:])]

    # -- apply

    def _haproxy(self, node: Node) -> HAProxy:
        labels = self.model.haproxy.metadata.labels if self.model.haproxy is not None else {}
        return HAProxy(node, adopt=labels.get("imported-from"), enforce=self.enforce)

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        now = time.monotonic()
        self.changed.update({c.name: now for c in changes if c.kind == "Backend" and c.action != "delete"})
        haproxy = self._haproxy(node)
        snap = haproxy.snapshot()
        try:
            haproxy.check_owned(snap)
        except ApplyError as err:
            return {c.key: err for c in changes}
        fill = self._filler(node)

        def attempt(batch: list[Change]) -> list[Refusal]:
            try:
                sections = self._compose(snap.file, batch, fill, haproxy.adopts(snap.file))
                self._write_new_files(batch, node)
                text, owners = self._text(sections)
                haproxy.install(snap, text, owners, secret=_holds_secret(self.model, batch, snap.file))
            except Refused as refused:
                return refused.refusals
            return []

        outcomes = install_batch(changes, attempt)
        landed = [c for c in changes if outcomes.get(c.key) is None]
        if not landed:
            return outcomes
        adopted = haproxy.adopts(snap.file)
        proxies = self._compose(snap.file, landed, fill, adopted)
        listens = any(k[0] in ("frontend", "listen") for k in proxies)
        if not snap.running or not listens:
            try:
                if listens:
                    self._write_changed_files(landed, node)
                    haproxy.start()
                elif snap.running:
                    haproxy.stop()  # the last frontend is gone: nothing left to serve
                elif any(c.desired is not None and c.kind != "HAProxy" for c in landed):
                    raise ApplyError("HAProxy is not started: it would have nothing to listen on "
                                     "(no Frontend lands on this node)")
            except (ApplyError, Held) as err:
                outcomes.update({c.key: err for c in landed})
            return outcomes
        outcomes.update(self._converge_running(haproxy, snap, landed, fill, node))
        record_runtime(node)
        enabling = [c for c in landed if c.kind == "Frontend" and c.desired is not None and outcomes.get(c.key) is None
                    and _units(c.observed) != _units(c.desired)]
        if enabling:  # running, but not started at boot: enabled, unless an operator's hold
            try:
                haproxy.enable()
            except (ApplyError, Held) as err:
                outcomes.update({c.key: err for c in enabling})
        return outcomes

    def _converge_running(self, haproxy: HAProxy, snap: Snapshot, landed: list[Change], fill: Any,
                          node: Node) -> Outcomes:
        """The running HAProxy after the new file landed: one runtime-API session for what
        needs no reload, then at most one reload for the rest."""
        outcomes: Outcomes = {}
        reload: list[Change] = []
        runtime: list[tuple[Change, BackendPlan]] = []
        for change in landed:
            if change.kind == "Backend" and change.action == "update":
                plan = plan_backend(change.name, change.observed, change.desired or {},
                                    self.ignored.get(change.name, set()), snap.servers.get(change.name))
                runtime.append((change, plan))
                if plan.reload or _needs_reload(self.model, change, ignore_servers=True):
                    reload.append(change)
            elif change.action != "update" or _needs_reload(self.model, change):
                reload.append(change)
        with haproxy.api.session() as cli:
            outcomes.update(self._run_server_ops(cli, runtime))
            for change in landed:
                if change not in reload and change.key not in outcomes:
                    try:
                        self._runtime_files(cli, change, node)
                    except ApplyError as err:
                        outcomes[change.key] = err
        outcomes.update(self._removals(haproxy, runtime, outcomes))
        if reload:
            self._write_changed_files(reload, node)
            binds = [b for c in reload if c.kind in ("Frontend", "Backend")
                     for b in _binds(c.desired) if b not in _binds(c.observed)]
            # If HAProxy refuses the new file, what goes back is the old file plus what
            # landed at run time (it did land).
            kept = [c for c in landed if c not in reload and c.key not in outcomes]
            previous, _ = self._text(self._compose(snap.file, kept, fill, haproxy.adopts(snap.file))) if kept \
                else (snap.file.text, {})
            try:
                haproxy.reload_or_restore(previous, binds)
            except ApplyError as err:
                outcomes.update({c.key: err for c in reload if c.key not in outcomes})
        elif runtime:
            haproxy.save_server_state()
        return outcomes

    @staticmethod
    def _run_server_ops(cli: Session, runtime: list[tuple[Change, BackendPlan]]) -> Outcomes:
        """Every runtime server command of the batch on one session; removals drained
        together. A refused command fails its backend only."""
        failed: Outcomes = {}
        for change, plan in runtime:
            try:
                for op in plan.ops:
                    for command in op.commands:
                        cli.checked(command, answer_ok(command))
                for op in plan.ops:
                    if op.action == "remove":
                        cli.checked(f"set server {change.name}/{op.server} state drain")
            except ApplyError as err:
                failed[change.key] = err
        return failed

    def _removals(self, haproxy: HAProxy, runtime: list[tuple[Change, BackendPlan]], failed: Outcomes) -> Outcomes:
        out: Outcomes = {}
        for change, plan in runtime:
            servers = [op.server for op in plan.ops if op.action == "remove"]
            if servers and change.key not in failed:
                try:
                    self._remove(haproxy, change.name, servers)
                except ApplyError as err:
                    out[change.key] = err
        return out

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

    def _runtime_files(self, cli: Session, change: Change, node: Node) -> None:
        """Certificates, maps and ACL files of a change that needs no reload."""
        r = self.model.objects.get(change.key)
        if r is None:
            return
        have, want = change.observed or {}, change.desired or {}
        for path, f in r.files.items():
            if f.certificate and have.get("files", {}).get(path) != want.get("files", {}).get(path):
                data = managed.read_source(f.ref, node)
                managed.replace_certificate(cli, path, data)  # in the same step as the file
                managed.write_file(node, path, data)
        for what, entries, text in (("map", r.maps, managed.map_text), ("acl", r.acls, managed.acl_text)):
            for path, value in entries.items():
                if have.get(what + "s", {}).get(path) != value:
                    rows = list(value.items()) if isinstance(value, dict) else [(p, "") for p in value]
                    if managed.running_map(cli.api, what, path) is not None:
                        managed.replace_entries(cli, what, path, rows)
                    managed.write_file(node, path, text(value).encode())  # type: ignore[arg-type]

    # -- the file

    def _compose(self, file: ConfigFile, batch: list[Change], fill: Any, adopted: bool = False) -> Sections:
        """The sections of the file with `batch` applied and every other object as it is."""
        current = sections_of(file, adopted)
        keys = {c.key for c in batch}
        has_shared = any(k[0] == "global" for k in current)
        if self.model.haproxy is None or not has_shared or any(k[0] == "HAProxy" for k in keys):
            # the shared sections are the HAProxy object's (or reconcile's own)
            current = {k: v for k, v in current.items() if k[0] in ("frontend", "backend", "listen")}
            current.update(self.model.shared_sections(fill))
        for change in batch:
            if change.kind == "HAProxy":
                continue
            r = self.model.objects.get(change.key)
            for keyword in ("frontend",) if change.kind == "Frontend" else ("backend", "listen"):
                current.pop((keyword, change.name), None)
            if change.desired is not None and r is not None:
                current.update(self.model.object_sections(change.key, fill))
        return current

    def _text(self, sections: Sections) -> tuple[str, dict[SectionKey, Key]]:
        """The file, and which object owns each section (for pinning haproxy -c's refusals)."""
        order = [k[1] for k in sections if k[0] == "defaults"]
        wanted = [d for d in self.model.defaults_order() if d in order]
        text = compose(sections, wanted + [d for d in order if d not in wanted])
        owner = next((k for k in self.model.objects if k[0] == "HAProxy"), None)
        owners: dict[SectionKey, Key] = {}
        for key in sections:
            if key[0] in KIND_OF:
                owners[key] = (KIND_OF[key[0]], key[1])
            elif owner is not None:
                owners[key] = owner
        return text, owners

    def _filler(self, node: Node) -> Any:
        def fill(line: SecretLine) -> str:
            try:
                return line.fill(managed.read_source(line.ref, node).decode().rstrip("\n"))
            except ValueError:
                raise ApplyError(f"{line.ref.describe()}: a secret written into haproxy.cfg must be one line") from None
        return fill

    def _write_new_files(self, batch: list[Change], node: Node) -> None:
        """Files that sections of the batch refer to and that are not there yet (haproxy -c
        needs them); a changed certificate is replaced later, with HAProxy's own copy."""
        for change in batch:
            r = self.model.objects.get(change.key)
            if r is None or change.desired is None:
                continue
            for path, f in r.files.items():
                if not Path(path).exists():
                    managed.write_file(node, path, managed.read_source(f.ref, node))
            for entries, text in ((r.maps, managed.map_text), (r.acls, managed.acl_text)):
                for path, value in entries.items():
                    if not Path(path).exists():
                        managed.write_file(node, path, text(value).encode())  # type: ignore[arg-type]

    def _write_changed_files(self, changes: list[Change], node: Node) -> None:
        """Files of changes that are loaded by a reload or start (not at run time)."""
        for change in changes:
            r = self.model.objects.get(change.key)
            for path, f in (r.files.items() if r and change.desired is not None else ()):
                managed.write_file(node, path, managed.read_source(f.ref, node))
            for entries, text in ((r.maps, managed.map_text), (r.acls, managed.acl_text)) if r else ():
                for path, value in entries.items():
                    managed.write_file(node, path, text(value).encode())  # type: ignore[arg-type]

    # -- watch

    def watch(self, node: Node) -> Iterator[str]:  # type: ignore[override]
        """Yield when the managed file changes or HAProxy's server state changes (a server
        disabled by hand), and when HAProxy stops or starts; not for reconcile's own
        writes."""
        return watch(node)


# --- helpers ----------------------------------------------------------------------------------


def _show(field: str) -> str:
    """A field path as the loader shows it: spec.directives.0 → spec.directives[0]."""
    return re.sub(r"\.(\d+)", r"[\1]", field)


def _needs_reload(model: Model, change: Change, ignore_servers: bool = False) -> bool:
    """Whether an update changes anything the runtime API cannot: any top-level field but
    the runtime ones (servers, a certificate HAProxy has loaded, maps, ACL files), and
    but whether HAProxy starts at boot (`units`: systemctl enable, never a reload)."""
    have, want = change.observed or {}, change.desired or {}
    runtime = RUNTIME_KEYS[change.kind] if ignore_servers or change.kind != "Backend" else {"files"}
    runtime = runtime | {"units"}
    if any(have.get(k) != want.get(k) for k in set(have) | set(want) if k not in runtime):
        return True
    r = model.objects.get(change.key)
    files_have, files_want = have.get("files", {}), want.get("files", {})
    for path in set(files_have) | set(files_want):
        if files_have.get(path) != files_want.get(path):
            f = r.files.get(path) if r else None
            if f is None or not f.certificate or path not in files_have or files_have[path] == "<not written>":
                return True
    return False


def _line_notes(change: Change) -> list[str]:
    out = []
    have, want = change.observed or {}, change.desired or {}
    if have.get("lines") != want.get("lines") and isinstance(want.get("lines"), list):
        out += [f"lines: {c}" for c in line_changes(have.get("lines", []), want["lines"])[:8]]
    if have.get("global") != want.get("global") and isinstance(want.get("global"), list):
        out += [f"global: {c}" for c in line_changes(have.get("global", []), want["global"])[:8]]
    return out


def _binds(state: dict[str, Any] | None) -> list[str]:
    return [line.split()[1] for line in (state or {}).get("lines", []) if line.split()[:1] == ["bind"]
            and len(line.split()) > 1]


def _holds_secret(model: Model, batch: list[Change], file: ConfigFile) -> bool:
    if any(isinstance(line, SecretLine) for r in model.objects.values() for body in r.sections.values() for line in body):
        return True
    return bool(file.text and SECRET_MARK in file.text)


def _directives(kind: str, manifest: Any) -> Iterator[tuple[str, str, str]]:
    """(field path, section type, line) of a manifest's own directives."""
    spec = manifest.spec
    if kind == "HAProxy":
        for i, d in enumerate(spec.global_):
            yield f"spec.global.{i}", "global", d if isinstance(d, str) else d.line
        for j, section in enumerate(spec.defaults):
            for i, d in enumerate(section.directives):
                yield f"spec.defaults.{j}.directives.{i}", "defaults", d if isinstance(d, str) else d.line
        for j, section in enumerate(spec.sections):
            for i, d in enumerate(section.directives or [""]):
                yield f"spec.sections.{j}" + (f".directives.{i}" if section.directives else ""), section.type, \
                    (d if isinstance(d, str) else d.line) or "command"
        return
    keyword = "frontend" if kind == "Frontend" else spec.section
    for i, d in enumerate(spec.directives):
        yield f"spec.directives.{i}", keyword, d if isinstance(d, str) else d.line


def _references(spec: Any) -> Iterator[tuple[str, Any]]:
    """(field path, reference) of every secret and file a spec names."""
    # The fields are looked up in the model's field table: a getattr/hasattr that misses on
    # a pydantic model raises inside and costs ~20 µs (25 ms of validate at 1,000 Backends).
    fields = type(spec).model_fields
    field = lambda name, default: getattr(spec, name) if name in fields else default  # noqa: E731
    for i, b in enumerate(field("bind", None) or []):
        if b.tls is not None:
            yield f"spec.bind.{i}.tls.certificate", b.tls.certificate
    stats = field("stats", None)
    for i, u in enumerate(stats.auth if stats else []):
        yield f"spec.stats.auth.{i}.password", u.password
    for i, s in enumerate(field("servers", None) or []):
        if s.tls is not None and s.tls.ca is not None:
            yield f"spec.servers.{i}.tls.ca", s.tls.ca
    lists = [("spec.directives", field("directives", None) or [])]
    if "global_" in fields:
        lists = [("spec.global", spec.global_)]
        lists += [(f"spec.defaults.{j}.directives", d.directives) for j, d in enumerate(spec.defaults)]
        lists += [(f"spec.sections.{j}.directives", s.directives) for j, s in enumerate(spec.sections)]
    for prefix, directives in lists:
        for i, d in enumerate(directives):
            if not isinstance(d, str):
                yield f"{prefix}.{i}.{'secret' if d.secret else 'file'}", d.ref


class _StandIns:
    """For `haproxy -c` before anything is installed: each managed file's path replaced by
    a temp copy of its source (removed afterwards)."""

    def __init__(self, model: Model, node: Node):
        self.model, self.node = model, node
        self.temps: list[str] = []

    def __enter__(self) -> dict[str, str]:
        import os
        import tempfile

        out = {}
        for r in self.model.objects.values():
            contents = {path: (lambda f=f: managed.read_source(f.ref, self.node)) for path, f in r.files.items()}
            contents.update({path: (lambda e=e: managed.map_text(e).encode()) for path, e in r.maps.items()})
            contents.update({path: (lambda e=e: managed.acl_text(e).encode()) for path, e in r.acls.items()})
            for path, content in contents.items():
                if Path(path).exists():
                    continue
                fd, tmp = tempfile.mkstemp(prefix="reconcile-check-", suffix=Path(path).suffix)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content())
                self.temps.append(tmp)
                out[path] = tmp
        return out

    def __exit__(self, *exc: Any) -> None:
        for tmp in self.temps:
            Path(tmp).unlink(missing_ok=True)


def _units(state: dict[str, Any] | None) -> Any:
    """A Frontend's `units` field (systemd: whether HAProxy starts at boot)."""
    return (state or {}).get("units")
