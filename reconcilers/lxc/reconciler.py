"""Container: LXC system containers on this node, reconciled with the lxc-* tools.

observe
    One `lxc-ls -f -F NAME,STATE,PID -P PATH` per LXC path in use (normally one,
    /var/lib/lxc) gives every container's state in one process; each container's
    `PATH/NAME/config` is then read as a file (no process), and one `ip -j -d addr show`
    tells the node-local bridges (and, with Pacemaker-placed containers, one
    `cibadmin --query --local` their primitives and this node's attributes).

desired
    Containers placed on this node by `spec.node`/`spec.nodes` (or everywhere), and
    containers placed by Pacemaker (`spec.cluster`) on every node of their cluster
    (placed.py says how those differ: their run state is Pacemaker's).

apply
    create: `lxc-create` (busybox, download or local template, `dir` backing store), our
    block of config keys, the declared files in the root file system, then the state.
    update: rewrite our block of the config, files, then start/stop/freeze/thaw. A change
    of limits, network or init only takes effect when the container starts again: with
    `restartPolicy: onChange` apply stops and starts it; with `never` it leaves the running
    container and its config alone, does the rest, and reports the object `deferred`
    ("restart required") — the change is applied when the container is next found stopped.
    The config on disk therefore always says what the running container runs with.
    delete: stop, `lxc-destroy`; a node-local bridge this reconciler made goes with the
    last container on it.

watch
    `lxc-monitor` on our LXC paths: every state change (a container stopped or frozen by
    hand) makes the agent plan again. Hand edits of a config are found by the next plan.

Ownership: our config block starts with `# reconcile-managed: Container/NAME`. A container
whose config lacks that line for its own name (made by hand, or copied) is never
reconfigured, started, stopped or destroyed: the plan and apply report a conflict. To adopt
one, add the line to its config by hand.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from reconcilers.base import (
    ApplyError, AtomicWriter, Change, Deferred, Desired, HealthReport, Node, PerObject, Refusal, Skipped,
    UnsafeValue, read_secret,
)
from reconcilers.lxc import placed, policy, subids, tools
from reconcilers.lxc.health import container_health, init_of
from reconcilers.lxc.notes import PlanNotes, conflict, immovable, rootfs_conflict
from reconcilers.lxc.config import (
    ADOPTED, CLUSTER_TAG, LIVE_KEYS, STOP_TAG, CgroupLayout, config_path,
    last_value, lxc_value, marker_name, merge_config, parse_config, release_block, render_block, restart_settings_of, tag_value,
)
from reconcilers.lxc.model import (
    INVALID, create_argv, desired_state, file_state, observed_from_config, owned_by, render_settings,
    restart_changes, stop_seconds, unmanaged,
)
from reconcilers.lxc.network import Link, drop_bridge, ensure_bridge, observed_bridge_address, read_links, veth_pair_name
from reconcilers.lxc.rootfs import (
    RootFs, canonical_rootfs, created_rootfs, rootfs_in_place, stat_rootfs_file, write_rootfs_file,
)
from schemas.common import SecretRef

DEFAULT_LXC_PATH = "/var/lib/lxc"
PATHS_FILE = "container-lxc-paths.json"  # LXC paths we created containers in, under the state dir


class ContainerReconciler(PlanNotes, PerObject):
    """LXC containers placed on this node: create, configure, run/stop/freeze, destroy; for
    containers Pacemaker places (spec.cluster), everything but their run state."""

    kind = "Container"

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}  # name → ContainerSpec of what lands here
        self.wanted: dict[str, dict[str, Any]] = {}  # name → normalized desired state
        self.cluster_placed: set[str] = set()  # Pacemaker runs them: their run state is not ours
        self.invalid: dict[str, str] = {}  # name → why LXC refuses its config
        self.instances: dict[str, str] = {}  # name → "PID:start" of a running container's init
        self.primitives: dict[str, str] | None = None  # container → its lxc primitive (None: no CIB)
        self._links: dict[str, Link] | None = None
        self.tree: Any = None
        self.subid_files = dict(subids.FILES)
        self._layout: CgroupLayout | None = None

    @property
    def layout(self) -> CgroupLayout:
        if self._layout is None:
            self._layout = CgroupLayout.detect()
        return self._layout

    # --- desired ---------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.tree = tree
        self.cluster_placed = {m.metadata.name for m in tree.of_kind("Container") if m.spec.cluster is not None}
        out: dict[str, Desired] = {}
        for m in tree.on_node("Container", node.name):
            name, spec = m.metadata.name, m.spec
            state = desired_state(name, spec)
            self.specs[name] = spec
            self.wanted[name] = state
            ignore = unmanaged(spec)  # the fields the manifest leaves to the template
            if spec.idmap and spec.subordinateIds:
                state["subids"] = subids.needed(state["idmap"], self.subid_files)
            if spec.cluster is not None:  # Pacemaker decides where it runs: its run state is not drift
                out[name] = Desired(state, ignore=("/state", *ignore), depends=(("Cluster", spec.cluster),))
            else:
                out[name] = Desired(state, ignore=ignore)
        return {self.kind: out}

    def render(self, node: Node) -> dict[str, str]:
        """Reconcile's block of each container's config (the template's lines around it are
        lxc-create's; an adopted container's manifest is its whole config), and the files
        written into its root file system. Environment secrets as tokens."""
        out: dict[str, str] = {}
        for name, want in sorted(self.wanted.items()):
            spec = self.specs[name]
            out[config_path(spec.lxcPath, name)] = render_block(
                name, want["source"], stop_seconds(spec), render_settings(name, want, self.layout),
                placed.cluster_of(want))
            root = (spec.rootfs or f"{spec.lxcPath.rstrip('/')}/{name}/rootfs")
            out.update({f"{root}{path}": str(content) for path, content in spec.files.items()})
        return out

    # --- observe ---------------------------------------------------------------------------

    def lxc_paths(self, node: Node) -> list[str]:
        """The LXC paths to look in: the desired ones first, the default, and every path we
        ever created a container in (so a manifest removed from git is still found)."""
        paths = [s.lxcPath for s in self.specs.values()] + [DEFAULT_LXC_PATH]
        try:
            paths += json.loads((node.state_dir / PATHS_FILE).read_text())
        except (OSError, ValueError):
            pass
        return list(dict.fromkeys(p for p in paths if isinstance(p, str)))

    def links(self, node: Node, fresh: bool = False) -> dict[str, Link]:
        if self._links is None or fresh:
            self._links = read_links(node)
        return self._links

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, Any]] = {}
        self.invalid = {}
        for lxc_path in self.lxc_paths(node):
            for name, obs in self._observe_path(node, lxc_path).items():
                out.setdefault(name, obs)
        if any(n["bridgeAddress"] for w in self.wanted.values() for n in _interfaces(w)):
            links = self.links(node, fresh=True)
            for name, obs in out.items():
                want = self.wanted.get(name)
                for mine, wanted in zip(_interfaces(obs), _interfaces(want) if want else []):
                    if wanted["bridgeAddress"] and mine["bridge"]:
                        mine["bridgeAddress"] = observed_bridge_address(links, mine["bridge"], wanted["bridgeAddress"])
        self.primitives = None
        if any(o["pacemaker"] for o in out.values()) or any(w["pacemaker"] for w in self.wanted.values()):
            attributes = self._read_cib(node)
            for name, obs in out.items():
                if obs["pacemaker"]:
                    value = attributes.get(placed.container_attribute(name))
                    obs["pacemaker"]["mayRunHere"] = value == placed.ALLOWED
        return {self.kind: out}

    def _read_cib(self, node: Node) -> dict[str, str]:
        """The lxc primitives (`self.primitives`) and this node's transient attributes."""
        self.primitives, attributes = placed.read_cib(node)
        return attributes

    def _observe_path(self, node: Node, lxc_path: str) -> dict[str, dict[str, Any]]:
        root = Path(lxc_path)
        try:
            defined = sorted(e.name for e in os.scandir(root) if e.is_dir() and (root / e.name / "config").is_file())
        except OSError:
            return {}  # no such folder: no containers there
        if not defined:
            return {}
        listed, why = tools.list_states(node, lxc_path)
        out: dict[str, dict[str, Any]] = {}
        for name in defined:
            try:
                text = (root / name / "config").read_text(errors="replace")
            except OSError:
                continue
            want = self.wanted.get(name)
            if marker_name(text) != name and (want is None or want["lxcPath"] != lxc_path):
                continue  # not ours, and not in the way of one we want: not our business
            state, pid = listed.get(name, (None, None))
            if state is None:  # lxc-ls skips a container whose config does not load
                state = INVALID
                self.invalid[name] = tools.why_invalid(why, name)
            instance = tools.instance_of(pid)
            if instance is not None:
                self.instances[name] = instance
            else:
                self.instances.pop(name, None)
            obs = observed_from_config(name, lxc_path, placed.running_view(text, instance), state)
            if obs["rootfs"] == created_rootfs(lxc_path, name) and not rootfs_in_place(lxc_path, name):
                obs["rootfs"] += " (reached through a symlink)"
            if want and want["files"] and (obs["managed"] or self.specs[name].adopt):
                if obs["rootfs"] == created_rootfs(lxc_path, name):
                    obs["files"] = self._observe_files(name, lxc_path, obs)
                else:  # not read from wherever the config points
                    obs["files"] = {p: "(not looked at: root file system elsewhere)" for p in want["files"]}
            if want and "subids" in want:
                obs["subids"] = subids.covered(want["subids"])
            if want:
                self._mask_secrets(node, name, obs)
            out[name] = obs
        return out

    def _observe_files(self, name: str, lxc_path: str, obs: dict[str, Any]) -> dict[str, Any]:
        """Digests (and, where the manifest says them, mode and owner as the container sees
        them) of the declared files, read without following a symlink."""
        spec, rootfs = self.specs[name], RootFs(lxc_path, name)
        out = {}
        for path in self.wanted[name]["files"]:
            found = stat_rootfs_file(rootfs, path)
            if found is None or path not in spec.fileModes:
                out[path] = file_state(found[0] if found else None)
                continue
            data, mode, uid, gid = found
            owner = (subids.inside_id(obs["idmap"], "u", uid), subids.inside_id(obs["idmap"], "g", gid))
            out[path] = file_state(data, None, owner, mode)  # type: ignore[arg-type]
        return out

    def _mask_secrets(self, node: Node, name: str, obs: dict[str, Any]) -> None:
        """Environment values the manifest gives by reference: never in a plan, only whether
        they are the referenced one."""
        for var, value in (self.specs[name].environment or {}).items():
            if isinstance(value, SecretRef) and var in obs["environment"]:
                try:
                    same = obs["environment"][var] == read_secret(value, node)
                except ApplyError:
                    same = False
                obs["environment"][var] = f"<secret: {value.describe()}>" if same else \
                    "<secret: not the referenced one>"

    # --- health ------------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Running as git says, and its init alive and not stopped (from observe's lxc-ls
        and the init's /proc entry: no process of its own)."""
        seen = observed.get(self.kind, {})
        return {self.kind: {name: container_health(d.state, seen.get(name), init_of(self.instances.get(name)))
                            for name, d in desired.get(self.kind, {}).items()}}

    # --- validate and explain ----------------------------------------------------------------

    def validate(self, node: Node) -> list[Refusal | str]:
        """What the node's policy does not allow (hooks, mounts of system paths, the node's
        network: the object is held back, file:line: field says where), then LXC itself
        parses every rendered config block: one `lxc-ls` over a temp LXC path. A container
        Pacemaker places must live in LXC's default path (`lxc-config`)."""
        if not self.wanted:
            return []
        problems: list[Refusal | str] = []
        if not node.local:  # the policy is a file on that node, not on this machine
            problems.append(Skipped(f"lxc: what {node.name}'s policy allows (hooks, mounts of system paths, the "
                                    "node's network) is checked on that node; the configs were checked here"))
        for name, spec in sorted(self.specs.items()) if node.local else ():
            found = [f"{self._where(name, field_path)}: {why}" for field_path, why in policy.problems(spec)]
            if found:  # one refusal per object: the engine keeps one message per object
                problems.append(Refusal("; ".join(found), ((self.kind, name),)))
        if any(w["pacemaker"] for w in self.wanted.values()) and node.local:
            r = node.run(["lxc-config", "lxc.lxcpath"], read_only=True, check=False)
            default = r.stdout.strip() or DEFAULT_LXC_PATH
            problems += [p for name, w in sorted(self.wanted.items()) if w["pacemaker"]
                         for p in [placed.lxc_path_problem(name, w["lxcPath"], default)] if p]
        rendered: dict[str, str] = {}
        for name, state in sorted(self.wanted.items()):
            try:
                rendered[name] = f"lxc.uts.name = {lxc_value(name)}\n" + \
                    render_block(name, state["source"], 0, render_settings(name, state, self.layout))
            except UnsafeValue as err:
                problems.append(f"{name}: {err}")
        if not rendered:
            return problems
        refused = tools.check_configs(node, rendered)
        return problems + [f"{name}: LXC refuses the rendered config: {why}" for name, why in refused.items()]

    def _where(self, name: str, field_path: str) -> str:
        """`file:line: field` of a field of a manifest, as the loader says it (spec.mounts[0].source)."""
        item = next((i for i in self.tree.loaded(self.kind) if i.name == name), None) if self.tree else None
        shown = re.sub(r"\.([0-9]+)", r"[\1]", field_path)
        return f"{item.where(field_path)}: {shown}" if item else f"Container {name}: {shown}"

    # --- apply -------------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        if change.action == "delete":
            self._destroy(change, node)
            return
        spec = self.specs[change.name]
        config = Path(spec.lxcPath) / change.name / "config"
        if change.observed is None and not config.exists():
            self._create(change, node)
        else:
            self._update(change, node)

    def _create(self, change: Change, node: Node) -> None:
        name, want, spec = change.name, change.desired or {}, self.specs[change.name]
        self._refuse_by_policy(name)
        if spec.adopt:
            raise ApplyError(f"adopt: there is no container {name} in {spec.lxcPath} to adopt (reconcile does not "
                             "create an adopted container)")
        self._ensure_bridge(node, name)
        self._subids(node, name)  # before lxc-create: the template maps the root file system with them
        settings = self._settings(node, name)
        fd, seed = tempfile.mkstemp(prefix=f"reconcile-lxc-{name}-", suffix=".conf")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(render_block(name, want["source"], stop_seconds(spec), settings, placed.cluster_of(want)))
            node.run(create_argv(name, spec.lxcPath, spec, seed),
                     timeout=900 if spec.template == "download" else 300)
        finally:
            os.unlink(seed)
        self._remember_path(node, spec.lxcPath)
        self._write_config(node, name, settings)
        self._write_files(node, name)
        if want["pacemaker"]:
            placed.allow_here(node, name)  # complete here: from now on Pacemaker may start it on this node
        else:
            self._set_state(node, name, "stopped", want["state"])

    def _update(self, change: Change, node: Node) -> None:
        name, want, spec = change.name, change.desired or {}, self.specs[change.name]
        self._refuse_by_policy(name)
        have = change.observed or self._observe_one(node, name)
        if not have.get("managed") and not spec.adopt:
            raise ApplyError(conflict(name, have.get("lxcPath", spec.lxcPath)))
        if have.get("lxcPath") == want["lxcPath"] and have.get("rootfs") != want["rootfs"]:
            raise ApplyError(rootfs_conflict(name, want["lxcPath"], have.get("rootfs")))
        if have.get("lxcPath") != want["lxcPath"] or (have.get("source") != want["source"] and not spec.adopt) \
                or have.get("idmap") != want.get("idmap"):
            raise ApplyError(immovable(name, have, want))
        self._subids(node, name)
        if want["pacemaker"]:
            self._update_placed(node, name, have, want)
            return
        if have.get("pacemaker"):  # placed by Pacemaker until now
            primitive = self._primitive_for(node, name)
            if primitive:
                raise Deferred(f"the lxc primitive {primitive} is still in the CIB: {name}'s run state stays "
                               "Pacemaker's until the DC has removed it; applied on a later run")
            placed.forbid_here(node, name)
        if have["state"] == INVALID:  # fix our part of the config first, then look again
            self._write_config(node, name, self._settings(node, name))
            have = self._observe_one(node, name)
        self._ensure_bridge(node, name)
        now = have["state"]
        fields = restart_changes(have, want)
        running = now in ("running", "frozen")
        if running and (want["state"] == "stopped" or (fields and spec.restartPolicy == "onChange")):
            self._stop(node, name)
            now = "stopped"
        deferred = None
        if fields and now in ("running", "frozen"):
            # restartPolicy never: keep what the running container runs with
            live = [kv for kv in self._settings(node, name) if kv[0] in LIVE_KEYS]
            existing = (Path(spec.lxcPath) / name / "config").read_text()
            self._write_config(node, name, live + restart_settings_of(existing))
            deferred = (f"restart required ({', '.join(fields)}), restartPolicy: never: the running container "
                        f"was left alone; the change is applied when it is next found stopped "
                        f"(e.g. lxc-stop -n {name} -P {spec.lxcPath}) or with restartPolicy: onChange")
        else:
            self._write_config(node, name, self._settings(node, name))
        self._write_files(node, name)
        self._set_state(node, name, now, want["state"])
        self._drop_old_bridge(node, have)
        if deferred:
            raise Deferred(deferred)

    def _update_placed(self, node: Node, name: str, have: dict[str, Any], want: dict[str, Any]) -> None:
        """A container Pacemaker places: its config, files, bridge and node attribute, never
        its run state. Settings that need a restart go into the config at once (the next
        start, on any node, takes them); where Pacemaker runs it now, our block also keeps
        what that instance runs with, and the change is reported deferred until Pacemaker
        restarts it."""
        if have["state"] == INVALID:
            self._write_config(node, name, self._settings(node, name))
            have = self._observe_one(node, name)
        self._ensure_bridge(node, name)
        fields = restart_changes(have, want)
        held = None
        if fields and have["state"] not in ("stopped", INVALID):
            self._observe_one(node, name)  # the instance running now (Pacemaker may have restarted it)
            instance = self.instances.get(name)
            if instance is not None:
                existing = Path(config_path(want["lxcPath"], name)).read_text()
                held = (instance, placed.running_settings(existing, instance))
        self._write_config(node, name, self._settings(node, name), running=held)
        self._write_files(node, name)
        if not (have.get("pacemaker") or {}).get("mayRunHere"):
            placed.allow_here(node, name)
        self._drop_old_bridge(node, have)
        if held:
            raise Deferred(placed.restart_through_pacemaker(name, fields))

    def _destroy(self, change: Change, node: Node) -> None:
        have, name = change.observed or {}, change.name
        lxc_path = have.get("lxcPath", DEFAULT_LXC_PATH)
        config = Path(lxc_path) / name / "config"
        try:
            text = config.read_text(errors="replace")
        except FileNotFoundError:
            return  # already gone
        if marker_name(text) != name:
            raise ApplyError(conflict(name, lxc_path))
        if have.get("source") == ADOPTED:  # made outside reconcile: let go of it, never destroy it
            AtomicWriter(node).write(config, release_block(text), validate=lambda tmp: tools.check_config(node, name, tmp))
            return
        # lxc-destroy deletes the root file system its config names: only ever the one we
        # created, reached without a symlink (a config edited to say dir:/etc would empty /etc).
        configured = canonical_rootfs(last_value(parse_config(text), "lxc.rootfs.path"))
        if configured != created_rootfs(lxc_path, name) or not rootfs_in_place(lxc_path, name):
            raise ApplyError(rootfs_conflict(name, lxc_path, configured))
        state = have.get("state")
        if have.get("pacemaker") or tag_value(text, CLUSTER_TAG):
            primitive = self._primitive_for(node, name)
            waits = Deferred(f"Pacemaker runs {name} here (lxc primitive {primitive}): it is destroyed once that "
                             "primitive is gone from the CIB (the DC removes it, stopping it first) and "
                             "Pacemaker has stopped it")
            if primitive and self._state_now(node, name, lxc_path) != "stopped":
                raise waits
            placed.forbid_here(node, name)  # Pacemaker must not start it here while it goes
            state = self._state_now(node, name, lxc_path)
            if primitive and state != "stopped":  # Pacemaker started it here just now
                raise waits
        if state != "stopped":
            self._stop(node, name, lxc_path, _stop_tag(config))
        node.run(["lxc-destroy", "-n", name, "-P", lxc_path])
        self._drop_old_bridge(node, have)
        subids.release(node, name, {line for n, w in self.wanted.items() if n != name for line in w.get("subids", [])})

    # --- apply helpers -------------------------------------------------------------------------

    def _observe_one(self, node: Node, name: str) -> dict[str, Any]:
        spec = self.specs[name]
        found = self._observe_path(node, spec.lxcPath).get(name)
        if found is None:
            raise ApplyError(f"container {name} is not in {spec.lxcPath} any more")
        return found

    def _settings(self, node: Node, name: str) -> list[tuple[str, str]]:
        """Our block's keys, environment secrets read now (never kept in a state)."""
        env = self.specs[name].environment or {}
        refs = {var: ref for var, ref in env.items() if isinstance(ref, SecretRef)}
        return render_settings(name, self.wanted[name], self.layout, secret=lambda var: read_secret(refs[var], node))

    def _refuse_by_policy(self, name: str) -> None:
        found = policy.problems(self.specs[name])
        if found:  # validate() held it back already; the policy file may have changed since
            raise ApplyError("; ".join(f"{self._where(name, f)}: {why}" for f, why in found))

    def _subids(self, node: Node, name: str) -> None:
        wanted = self.wanted[name].get("subids")
        if wanted:
            subids.ensure(node, wanted, name)

    def _write_config(self, node: Node, name: str, settings: list[tuple[str, str]],
                      running: tuple[str, list[tuple[str, str]]] | None = None) -> None:
        spec, want = self.specs[name], self.wanted[name]
        path = Path(spec.lxcPath) / name / "config"
        block = render_block(name, want["source"], stop_seconds(spec), settings, placed.cluster_of(want),
                             running)
        text = merge_config(path.read_text(), block, owned_by(want, spec.adopt))
        # the environment may hold secrets: the config is then for root only
        mode = 0o600 if any(isinstance(v, SecretRef) for v in (spec.environment or {}).values()) else None
        AtomicWriter(node).write(path, text, mode=mode, validate=lambda tmp: tools.check_config(node, name, tmp))

    def _state_now(self, node: Node, name: str, lxc_path: str) -> str:
        return tools.list_states(node, lxc_path)[0].get(name, (INVALID, None))[0]

    def _drop_old_bridge(self, node: Node, have: dict[str, Any]) -> None:
        """A bridge we made goes once no container wants it (moved off it, or destroyed)."""
        wanted = {n["bridge"] for w in self.wanted.values() for n in _interfaces(w)}
        for bridge in {n.get("bridge") for n in _interfaces(have)} - wanted - {None}:
            drop_bridge(node, bridge)

    # --- apply helpers: Pacemaker ----------------------------------------------------------------

    def _primitive_for(self, node: Node, name: str) -> str | None:
        """The id of an lxc primitive in the CIB that runs this container (ours or made by
        hand), read now; None when there is none or Pacemaker does not run here."""
        self._read_cib(node)
        return (self.primitives or {}).get(name)

    def _write_files(self, node: Node, name: str) -> None:
        spec = self.specs[name]
        if not spec.files:
            return
        # The config is read again here, just before writing: what observe saw may be old.
        configured = canonical_rootfs(last_value(parse_config(Path(config_path(spec.lxcPath, name)).read_text()),
                                            "lxc.rootfs.path"))
        if configured != created_rootfs(spec.lxcPath, name):
            raise ApplyError(rootfs_conflict(name, spec.lxcPath, configured))
        rootfs = RootFs(spec.lxcPath, name)
        idmap = self.wanted[name]["idmap"]
        for inner, content in sorted(spec.files.items()):
            want = spec.fileModes.get(inner)
            inside = (want.owner, want.group) if want else (0, 0)
            owner = (subids.host_id(idmap, "u", inside[0]), subids.host_id(idmap, "g", inside[1]))
            if None in owner:
                raise ApplyError(f"files: {inner}: owner {inside[0]}:{inside[1]} is not mapped by spec.idmap")
            write_rootfs_file(node, rootfs, inner, content.encode(), int(want.mode, 8) if want else 0o644,
                              owner)  # type: ignore[arg-type]

    def _remember_path(self, node: Node, lxc_path: str) -> None:
        path = node.state_dir / PATHS_FILE
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = []
        if lxc_path != DEFAULT_LXC_PATH and lxc_path not in known:
            AtomicWriter(node).write(path, json.dumps(sorted(set(known) | {lxc_path})) + "\n")

    def _set_state(self, node: Node, name: str, now: str, want: str) -> None:
        lxc_path = self.specs[name].lxcPath
        base = ["-n", name, "-P", lxc_path]
        if now not in ("running", "stopped", "frozen"):  # starting, stopping, thawed…: let it settle
            node.run(["lxc-wait", *base, "-s", "RUNNING|STOPPED|FROZEN", "-t", "30"], check=False)
            now = self._observe_one(node, name)["state"]
        if now == want:
            return
        if want == "stopped":
            self._stop(node, name)
            return
        if now == "stopped":
            self._start(node, name)
            now = "running"
        if now == "frozen" and want == "running":
            node.run(["lxc-unfreeze", *base])
        elif now == "running" and want == "frozen":
            node.run(["lxc-freeze", *base])

    def _start(self, node: Node, name: str) -> None:
        tools.start(node, name, self.specs[name].lxcPath)  # its bridge was ensured by the caller

    def _stop(self, node: Node, name: str, lxc_path: str | None = None, seconds: int | None = None) -> None:
        if lxc_path is None:
            lxc_path, seconds = self.specs[name].lxcPath, stop_seconds(self.specs[name])
        tools.stop(node, name, lxc_path, seconds)

    def _ensure_bridge(self, node: Node, name: str) -> None:
        """The container's bridges exist before it starts (network.py)."""
        attached = {veth_pair_name(other): state["network"]["bridge"] for other, state in self.wanted.items()
                    if state["network"]["bridge"]}
        for net in self.specs[name].interfaces():
            if net.type == "bridge":
                ensure_bridge(node, net.bridge, net.bridgeAddress, attached)
        self._links = None

    # --- watch ---------------------------------------------------------------------------------

    def watch(self, node: Node) -> Iterator[str]:
        """Yields on every state change of a container in our LXC paths (`lxc-monitor`),
        except those of containers Pacemaker places: it starts and stops them, and their run
        state is not drift (the watch runs without `desired`: our block's cluster line says so)."""
        paths = [p for p in self.lxc_paths(node) if Path(p).is_dir()]
        if not paths:
            return  # nothing to watch yet; the agent calls again later
        argv = ["lxc-monitor", "-n", ".*"]
        for lxc_path in paths:
            argv += ["-P", lxc_path]
        proc = node.runner.stream(argv)
        try:
            for line in proc.stdout or ():
                event = tools.parse_monitor_line(line)
                if event and event[0] not in self.cluster_placed and not placed.placed_by_pacemaker(paths, event[0]):
                    yield f"container {event[0]}: {event[1]}"
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _interfaces(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [state["network"], *state.get("networks", [])] if state.get("network") else []


# --- messages for people ---------------------------------------------------------------------


def _stop_tag(config: Path) -> int | None:
    try:
        value = tag_value(config.read_text(errors="replace"), STOP_TAG)
        return int(value) if value is not None else None
    except (OSError, ValueError):
        return None
