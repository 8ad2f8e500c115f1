"""What the plan says about a container, and the messages for people: conflicts (a
container reconcile did not make, a root file system moved by hand), what cannot change in
place, restarts, bridges, what Pacemaker owns, and short diffs of the files written into it.
A mixin of the Container reconciler: it reads what desired() and observe() left on it."""
from __future__ import annotations

import os
from typing import Any

from reconcilers.base import Change, Node, short_diff
from reconcilers.lxc import placed
from reconcilers.lxc.config import ADOPTED, MARKER
from reconcilers.lxc.model import restart_changes
from reconcilers.lxc.network import observed_bridge_address
from reconcilers.lxc.rootfs import RootFs, created_rootfs, stat_rootfs_file


class PlanNotes:
    """`explain` for the Container reconciler."""

    specs: dict[str, Any]
    invalid: dict[str, str]
    primitives: dict[str, str] | None
    _links: Any

    def explain(self, change: Change, node: Node) -> list[str]:
        have, want = change.observed or {}, change.desired or {}
        name = change.name
        notes: list[str] = []
        adopted = name in self.specs and self.specs[name].adopt
        if have and not have.get("managed") and not adopted:
            return [conflict(name, have.get("lxcPath", "?"))]
        if have and have.get("rootfs") != (want.get("rootfs") or created_rootfs(have.get("lxcPath", "?"), name)):
            return [rootfs_conflict(name, have.get("lxcPath", "?"), have.get("rootfs"))]
        if change.action == "create" and adopted:
            return [f"adopt: there is no container {name} in {want['lxcPath']} to adopt (reconcile does not create an "
                    "adopted container): make it, or give a template instead of adopt"]
        if have and want and have.get("idmap") != want.get("idmap") and change.action == "update":
            return notes + [immovable(name, have, want)]
        if name in self.invalid:
            notes.append(f"its config does not load: {self.invalid[name]}")
        running = have.get("state") in ("running", "frozen")
        primitive = (self.primitives or {}).get(name)
        if change.action == "create":
            if want["pacemaker"]:
                cluster = want["pacemaker"]["cluster"]
                notes.append(f"create from {want['source']} in {want['lxcPath']}, not started: Pacemaker of cluster "
                             f"{cluster} starts it on one node (ocf:heartbeat:lxc primitive {name})")
                notes.append(placed.attribute_note(name))
            else:
                notes.append(f"create from {want['source']} in {want['lxcPath']}, then {want['state']}")
        elif change.action == "delete":
            if have.get("pacemaker") and primitive and running:
                notes.append(f"destroy waits: Pacemaker runs it here (primitive {primitive}); it is destroyed once "
                             "the DC has stopped it through Pacemaker and removed that primitive (on the DC in "
                             "this run, elsewhere on a later one)")
            elif have.get("pacemaker") and primitive:
                notes.append(f"destroy: node attribute {placed.container_attribute(name)} is removed first "
                             "(Pacemaker no longer starts it here), then lxc-destroy (its root file system is deleted)")
            else:
                notes.append("released, not destroyed: it was adopted (made outside reconcile); its config keeps "
                             "its settings without reconcile's marker" if have.get("source") == ADOPTED else
                             "destroy: stop it, then lxc-destroy (its root file system is deleted)")
            return notes
        else:
            if have.get("lxcPath") != want["lxcPath"] or have.get("source") != want["source"]:
                return notes + [immovable(name, have, want)]
            notes += self._file_diffs(name, have, want)
            fields = restart_changes(have, want)
            if want["pacemaker"]:
                if not have.get("pacemaker"):
                    notes.append(f"from now on Pacemaker of cluster {want['pacemaker']['cluster']} starts and stops "
                                 "it: its run state here is left to Pacemaker")
                if fields and running:
                    notes.append(placed.restart_through_pacemaker(name, fields))
                elif fields:
                    notes.append(f"{', '.join(fields)}: taken when Pacemaker next starts it here")
                if not (have.get("pacemaker") or {}).get("mayRunHere"):
                    notes.append(placed.attribute_note(name))
                notes += self._bridge_note(want)
                return notes
            if have.get("pacemaker") and primitive:
                notes.append(f"waits until the lxc primitive {primitive} is gone from the CIB: until then its run "
                             "state is Pacemaker's")
            if fields and running and want["state"] != "stopped":
                policy = self.specs[name].restartPolicy
                if policy == "onChange":
                    notes.append(f"restart required ({', '.join(fields)}): restartPolicy onChange, "
                                 "apply stops and starts the container")
                else:
                    notes.append(f"restart required ({', '.join(fields)}): restartPolicy never, the running "
                                 "container is left alone; the change waits for its next start")
            elif fields and want["state"] != "stopped":
                notes.append(f"{', '.join(fields)}: taken at the next start")
        return notes + self._bridge_note(want)

    def _file_diffs(self, name: str, have: dict[str, Any], want: dict[str, Any]) -> list[str]:
        """What changes in each file written into the container: a short unified diff (the
        content is in git, never a secret), read from its root file system."""
        seen = have.get("files") or {}
        changed = [path for path, digest in (want.get("files") or {}).items() if seen.get(path) != digest]
        spec = self.specs.get(name)
        if not changed or spec is None:
            return []
        rootfs = RootFs(want["lxcPath"], name)  # only where reconcile created it, never through a symlink
        try:
            os.close(rootfs.open())
        except OSError:
            return []  # no root file system of ours to compare with
        out: list[str] = []
        for path in changed:
            found = stat_rootfs_file(rootfs, path)
            before = found[0].decode(errors="replace") if found is not None else None
            out += short_diff(before, spec.files[path], path)
        return out

    def _bridge_note(self, want: dict[str, Any]) -> list[str]:
        net = want.get("network") or {}
        if net.get("bridgeAddress") and self._links is not None:
            got = observed_bridge_address(self._links, net["bridge"], net["bridgeAddress"])
            if got is None:
                return [f"bridge {net['bridge']} with {net['bridgeAddress']} is created on this node"]
        return []


def conflict(name: str, lxc_path: str) -> str:
    return (f"conflict: container {name} in {lxc_path} was not created by reconcile (its config has no "
            f"`{MARKER}{name}` line): it is left alone. Rename the manifest, remove the container by hand, "
            f"or adopt it as it is: `reconcile import lxc --live {name}` writes a manifest with adopt: true")


def rootfs_conflict(name: str, lxc_path: str, configured: str | None) -> str:
    return (f"conflict: the config of container {name} ({lxc_path}/{name}/config) puts its root file system at "
            f"{configured or '(nothing)'}, not at {created_rootfs(lxc_path, name)} where reconcile created it (or "
            f"a symlink is in the way): it was edited outside reconcile, so reconcile neither writes files into it "
            f"nor destroys it. Put lxc.rootfs.path back to {created_rootfs(lxc_path, name)}, or remove the "
            f"container by hand")


def immovable(name: str, have: dict[str, Any], want: dict[str, Any]) -> str:
    if have.get("lxcPath") != want.get("lxcPath"):
        what = f"it lives in {have.get('lxcPath')}, the manifest says lxcPath {want.get('lxcPath')}"
    elif have.get("idmap") != want.get("idmap"):
        what = (f"its ids map as {have.get('idmap') or 'privileged (no idmap)'}, the manifest says "
                f"{want.get('idmap') or 'privileged (no idmap)'}: every file of its root file system would change owner")
    else:
        what = f"it was created from {have.get('source')}, the manifest says {want.get('source')}"
    return (f"recreate required: {what}. LXC cannot change that in place and reconcile does not destroy a "
            f"root file system on its own: remove the manifest (apply destroys {name}), then add it back")
