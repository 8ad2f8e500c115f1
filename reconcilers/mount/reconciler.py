"""The Mount reconciler: observe, desired, apply (and validate, explain, watch).

Thin on purpose: what a mount is lives in `model`, how it is written in `render`, what is
seen in `observe`, credentials in `credentials`, the tools in `fuse`, and changes in `apply`,
as plain functions of one mount, so that the reconciler contract can change shape around
them.

Observed object (the same shape `desired` builds, see model.desired_state)::

    {"path": "/mnt/reports", "state": "mounted",      # | absent | dead | not-responding | foreign
     "type": "rclone", "source": "reports:reports", "readOnly": false,
     "options": ["vfs-cache-mode=writes"], "allowOther": false,
     "owner": "root", "group": "root", "mode": "0755",  # only when the manifest sets them
     "credentials": "<secret: in sync>",               # only for types with credentials
     "hostKeys": ["ssh-ed25519 AAAA…"],                # only when the manifest lists them
     "automount": "off"}                                # systemd nodes only
"""
from __future__ import annotations

import json
import logging
import os
import select
import time
from pathlib import Path
from typing import Any, Iterator

from reconcilers.base import (
    ApplyError, Change, CommandError, Desired, HealthReport, Node, PerObject, Refusal, native_check, systemd_running,
)
from reconcilers.mount import apply as actions
from reconcilers.mount import credentials, fuse
from reconcilers.mount.health import mount_health
from reconcilers.mount.model import Paths, desired_state, entry
from reconcilers.mount.observe import is_ours, observed_state, probe, read_mountinfo, read_records, top_mounts
from reconcilers.mount.render import fstab_line, unit_name
from schemas.mount import MountSpec

log = logging.getLogger("reconcile")
WATCH_RESCAN = 2.0  # seconds between looks for new FUSE daemons to follow


class MountReconciler(PerObject):
    """Mounts on this node: FUSE (rclone, sshfs) and kernel (nfs, cifs, bind, tmpfs). Mounts
    share no artifact: each change is applied on its own (`apply_one`)."""

    kind = "Mount"

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths()
        self.systemd = systemd_running()
        self.specs: dict[str, MountSpec] = {}
        self.wanted: dict[str, dict[str, Any]] = {}
        self._orphans: set[str] = set()

    # --- desired -------------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        out: dict[str, Desired] = {}
        for m in tree.on_node("Mount", node.name):
            name, spec = m.metadata.name, m.spec
            state = desired_state(name, spec, self.systemd)
            keys = credentials.host_keys(spec)
            if keys and spec.state == "mounted":
                state["hostKeys"] = keys
            self.specs[name], self.wanted[name] = spec, state
            out[name] = Desired(state)
        return {"Mount": out}

    # --- observe -------------------------------------------------------------------------------

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        records = read_records(Path(node.state_dir) / "mount")
        top = top_mounts(read_mountinfo())
        where: dict[str, str] = {}
        for name in set(self.wanted) | set(records):
            rec = records.get(name)
            where[name] = rec["path"] if rec else self.wanted[name]["path"]
        units = {name: self._unit(path) for name, path in where.items()} if self.systemd else {}
        ours = {n: is_ours(records.get(n), top.get(p), units.get(n)) for n, p in where.items()}
        look = [p for n, p in where.items() if ours[n]]
        look += [records[n]["source"] for n in look_bind(records, ours)]
        probes = probe(node, sorted(set(look)))
        out: dict[str, dict[str, Any]] = {}
        for name, path in where.items():
            want, rec, live = self.wanted.get(name), records.get(name), top.get(path)
            if want is not None and want["state"] == "absent" and not ours[name]:
                live = None  # absent means "none of ours": a mount someone else made is theirs
            src = probes.get(rec["source"]) if rec and rec.get("type") == "bind" else None
            extra = self._extra(name, path, node) if ours[name] and want is not None else {}
            state = observed_state(want, rec, live, probes.get(path), src, ours[name], extra)
            if state is not None:
                out[name] = state
        return {"Mount": out}

    # --- health ------------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Readable as git says: from observe's mount table and `stat` probe (a dead FUSE
        daemon, a hung server, someone else's mount on the point), no command of its own."""
        seen = observed.get("Mount", {})
        return {"Mount": {name: mount_health(d.state, seen.get(name)) for name, d in desired.get("Mount", {}).items()}}

    def _unit(self, path: str) -> str | None:
        try:
            return (self.paths.units / unit_name(path, "mount")).read_text()
        except OSError:
            return None

    def _extra(self, name: str, path: str, node: Node) -> dict[str, Any]:
        """What only reconcile can compare: credentials (secrets are read here and never
        leave), host keys, and on systemd whether an automount unit is in place."""
        spec, extra = self.specs[name], {}
        want = self.wanted[name]
        if "credentials" in want:
            extra["credentials"] = credentials.credentials_state(name, spec, self.paths, node)
        if "hostKeys" in want:
            extra["hostKeys"] = credentials.written_host_keys(name, self.paths)
        if self.systemd:
            text = self._read(self.paths.units / unit_name(path, "automount")) or ""
            idle = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("TimeoutIdleSec=")]
            extra["automount"] = "off" if f"Mount/{name}" not in text else (idle[0] if idle else "on")
        return extra

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None

    # --- apply ---------------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        spec = self.specs.get(change.name)
        if change.action == "delete" or spec is None or spec.state == "absent":
            notes = actions.unmount(change.name, change.observed, node, self.paths, self.systemd, spec)
        else:
            notes = actions.mount(change.name, spec, change.observed, node, self.paths, self.systemd)
        for note in notes:
            log.info("Mount %s: %s", change.name, note)

    # --- validate, explain, watch (read-only) ---------------------------------------------------

    def validate(self, node: Node) -> list[Refusal | str]:
        """rclone checks each rclone mount's backend, options and flags; systemd-analyze each
        mount's units on a systemd node. A refusal holds back only the mount it names."""
        problems: list[Refusal | str] = []
        for name, spec in self.specs.items():
            found: list[str] = []
            if spec.type == "rclone":
                what = json.dumps({"type": spec.rclone.remote.type, "options": sorted(spec.rclone.remote.options),
                                   "secrets": sorted(spec.rclone.remote.secrets), "flags": sorted(spec.rclone.flags)})
                try:
                    found += native_check(node, "rclone", what, lambda spec=spec: fuse.check_rclone(
                        spec, fuse.providers(node), fuse.mount_flags(node)))
                except CommandError as err:
                    found.append(f"cannot ask rclone: {err}")
            if self.systemd and spec.state == "mounted":
                try:
                    units = actions.units_for(name, spec, entry(name, spec, self.paths, actions.resolve_ids))
                    text = "".join(units.values())
                    found += native_check(node, "systemd-analyze", text, lambda units=units: actions.verify_units(node, units))
                except ApplyError as err:
                    found.append(str(err))
            problems += [Refusal(f"Mount {name}: {p}", objects=(("Mount", name),)) for p in found]
        return problems

    def explain(self, change: Change, node: Node) -> list[str]:
        have = change.observed or {}
        spec = self.specs.get(change.name)
        notes = []
        if have.get("state") == "dead":
            notes.append("its FUSE daemon is gone (Transport endpoint is not connected): unmount, mount again")
        if have.get("state") == "foreign":
            notes.append(f"{have['path']} has a mount reconcile did not make: left alone, the change fails")
        if have.get("state") == "not-responding":
            notes.append(f"{have['path']} does not answer: left alone")
        if spec is not None and spec.state == "mounted" and change.action != "delete":
            try:
                e = entry(change.name, spec, self.paths, actions.resolve_ids)
            except Exception as err:  # an unknown owner: apply will say so
                notes.append(f"(no preview: {err})")
            else:
                where = f"units {unit_name(spec.path, 'mount')}" if self.systemd else "mounted directly"
                notes.append(f"fstab: {fstab_line(e)}  ({where})")
        return notes

    def watch(self, node: Node) -> Iterator[str]:
        """Yields when the mount table changes (a mount or unmount in this namespace), when a
        FUSE daemon serving one of reconcile's mounts exits (pidfd: at once), and when one
        of them is found with no daemon at all (it died before it was followed)."""
        table = open("/proc/self/mountinfo")
        table.read()
        followed: dict[int, tuple[int, str]] = {}  # pidfd → (pid, path)
        orphans: set[str] = set()  # reported once per episode
        last_scan = 0.0
        try:
            while True:
                if time.monotonic() - last_scan > WATCH_RESCAN:
                    for path in self._follow_daemons(node, followed) - orphans:
                        yield f"no FUSE daemon serves {path}"
                        orphans.add(path)
                    orphans &= self._orphans
                    last_scan = time.monotonic()
                poller = select.poll()
                poller.register(table.fileno(), select.POLLPRI | select.POLLERR)
                for fd in followed:
                    poller.register(fd, select.POLLIN)
                for fd, _event in poller.poll(WATCH_RESCAN * 1000):
                    if fd == table.fileno():
                        table.seek(0)
                        table.read()
                        last_scan = 0.0  # a new mount has a new daemon to follow: look now
                        yield "mount table changed"
                    elif fd in followed:
                        pid, path = followed.pop(fd)
                        os.close(fd)
                        yield f"FUSE daemon {pid} of {path} exited"
        finally:
            table.close()
            for fd in followed:
                os.close(fd)

    def _follow_daemons(self, node: Node, followed: dict[int, tuple[int, str]]) -> set[str]:
        """Follow the daemons of reconcile's FUSE mounts; return the mounted ones that have none."""
        records = read_records(Path(node.state_dir) / "mount")
        top = top_mounts(read_mountinfo())
        paths = {r["path"] for r in records.values() if r.get("type") in ("rclone", "sshfs")
                 and r["path"] in top and top[r["path"]].fstype.startswith("fuse.")}
        daemons = fuse.daemon_pids(paths)
        known = {pid for pid, _ in followed.values()}
        for path, pid in daemons.items():
            if pid not in known:
                try:
                    followed[os.pidfd_open(pid)] = (pid, path)
                except OSError:
                    continue
        self._orphans = paths - set(daemons)
        return self._orphans


def look_bind(records: dict[str, dict[str, Any]], ours: dict[str, bool]) -> list[str]:
    """Names of our bind mounts, whose source folder is stat'ed beside the mount point."""
    return [n for n, ok in ours.items() if ok and records.get(n, {}).get("type") == "bind"]
