"""Making one mount so, and taking it away: plain functions the reconciler calls per change.

Without systemd a mount is made by its tool directly (`rclone mount --daemon`, `sshfs`,
`mount`) and its identity (the mount id) is recorded in reconcile's state folder. With
systemd reconcile writes a .mount (and .automount) unit and lets systemd mount it, so it
comes back at boot. Either way:

- a mount reconcile did not make is never unmounted or mounted over (ApplyError);
- a dead FUSE mount is unmounted and mounted again; lazily only if it is busy, since
  nothing works through a dead endpoint anyway;
- a live mount in use is never lazily detached unless the manifest said `onBusy: lazy`
  (remembered in the record, so a removal from git honours it too);
- only per-mount flags changed (read-only, nosuid, …): a bind remount, no unmount.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import tempfile
from pathlib import Path
from typing import Any

from reconcilers.base import ApplyError, AtomicWriter, CommandError, Node, unit_states, wait_until
from reconcilers.mount import credentials, fuse
from reconcilers.mount.model import (
    FSTYPES, KERNEL_FLAGS, Entry, Paths, desired_state, entry, flags_only, rclone_options, user_options,
)
from reconcilers.mount.observe import (
    MountInfo, boot_id, fs_identity, is_ours, read_mountinfo, top_mounts, users_of,
)
from reconcilers.mount.render import (
    MARKER, automount_unit, mount_argv, mount_unit, record_json, remount_flags_argv, umount_argv, unit_name,
)
from schemas.mount import NETWORK, MountSpec


def resolve_ids(owner: str | None, group: str | None) -> tuple[int | None, int | None]:
    """Names → numeric ids, as the node knows them. A group defaults to the owner's."""
    uid = gid = None
    try:
        if owner is not None:
            pw = pwd.getpwnam(owner)
            uid, gid = pw.pw_uid, pw.pw_gid
        if group is not None:
            gid = grp.getgrnam(group).gr_gid
    except KeyError as err:
        raise ApplyError(f"{err.args[0].split(':')[-1].strip()} (spec.owner / spec.group) is not known on this node") from None
    return uid, gid


def record_path(node: Node, name: str) -> Path:
    return Path(node.state_dir) / "mount" / f"{name}.json"


def read_record(node: Node, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(node, name).read_text())
    except (OSError, ValueError):
        return None


def _live(path: str) -> MountInfo | None:
    return top_mounts(read_mountinfo()).get(path)


def _systemctl(node: Node, *args: str) -> None:
    node.run(["systemctl", *args], timeout=90)


# --- mounting ---------------------------------------------------------------------------------


def mount(name: str, spec: MountSpec, have: dict[str, Any] | None, node: Node, paths: Paths, systemd: bool) -> list[str]:
    """Converge one mount to `spec` (state mounted). Returns notes for the run record."""
    notes: list[str] = []
    why = fuse.tool_missing(node, spec.type)
    if why:
        raise ApplyError(why)
    if have and have.get("state") == "foreign" and have.get("path") == spec.path:
        raise ApplyError(_foreign(spec.path, have))
    if have and have.get("state") == "not-responding":
        raise ApplyError(f"the mount at {have['path']} does not answer (its server or FUSE daemon hangs): "
                         "left alone; unmount it by hand (umount -l) if it must go")
    e = entry(name, spec, paths, resolve_ids)
    record = read_record(node, name)
    creds_changed = credentials.install(name, spec, paths, node)
    if systemd:
        return _mount_systemd(name, spec, e, have, record, creds_changed, node, paths)
    want = desired_state(name, spec, systemd=False)
    old = record.get("path") if record else None
    live = _live(old) if old else None
    if old and is_ours(record, live, None):
        if old == spec.path and not creds_changed and flags_only(want, record, have or {}):
            flags = [o for o in user_options(spec) if o in KERNEL_FLAGS]
            node.run(remount_flags_argv(spec.path, flags, spec.readOnly))
            return ["per-mount flags changed back with a bind remount (not unmounted)"]
        dead = (have or {}).get("state") == "dead"
        unmount_path(node, old, lazy=spec.onBusy == "lazy", dead=dead)
        notes.append("the FUSE daemon had gone: unmounted and mounted again" if dead else "unmounted to mount anew")
    occupant = _live(spec.path)
    if occupant is not None:
        raise ApplyError(_foreign(spec.path, {"type": occupant.fstype, "source": occupant.source}))
    created = make_mount_point(spec, node, record)
    argv = mount_argv(e, rclone_options(name, spec, paths, resolve_ids) if spec.type == "rclone" else None)
    made = {"name": name, "path": spec.path, "type": spec.type, "source": e.source, "options": user_options(spec),
            "onBusy": spec.onBusy, "createdDir": created, "systemd": False, "boot": boot_id()}
    # Recorded before the command runs: a run killed right after it must leave a mount that
    # the next run knows as ours (and unmounts once its manifest is gone), not a foreign one.
    write_record(node, name, {**made, "mountId": None, "pending": True})
    try:
        node.run(argv, timeout=90)
    except CommandError as err:
        # The command failed or hung, yet the mount may be there (a daemon that kept the
        # command's output open): what this call just mounted at our path is ours, and is
        # recorded so, or no later run would ever touch it.
        live = _live(spec.path)
        if live is not None and live.source == e.source and _is_type(live, spec.type):
            write_record(node, name, {**made, "mountId": live.id, "fs": fs_identity(live)})
        raise ApplyError(f"mounting {e.what} at {spec.path} failed: {fuse.describe_error(err)}") from None
    live = _wait_mounted(spec.path, e)
    write_record(node, name, {**made, "mountId": live.id, "fs": fs_identity(live)})
    return notes


def _is_type(live: MountInfo, kind: str) -> bool:
    return live.fstype in FSTYPES.get(kind, ()) or kind == "bind"


def _wait_mounted(path: str, e: Entry, timeout: float = 5.0) -> MountInfo:
    """The new mount in the mount table (a detached FUSE daemon may need a moment)."""
    live = wait_until(lambda: _live(path), timeout)
    if live is None:
        raise ApplyError(f"{e.what} was mounted at {path} but is not in the mount table: its daemon may have "
                         "exited at once (check the server, the credentials and the remote path)")
    return live


def _foreign(path: str, have: dict[str, Any]) -> str:
    return (f"{path} has a mount reconcile did not make ({have.get('type')} {have.get('source')}): never touched; "
            "unmount it by hand or choose another mount point")


def make_mount_point(spec: MountSpec, node: Node, record: dict[str, Any] | None) -> bool:
    """Create the mount point (with owner/group/mode) when missing. True when this call or an
    earlier one of reconcile created it (then it is removed with the mount)."""
    point = Path(spec.path)
    if point.is_dir():
        return bool(record and record.get("path") == spec.path and record.get("createdDir"))
    if point.exists() or point.is_symlink():
        raise ApplyError(f"{spec.path} exists and is not a folder: cannot mount there")
    node.runner.guard("mkdir", [spec.path], read_only=False)
    point.mkdir(parents=True, mode=0o755)
    uid, gid = resolve_ids(spec.owner, spec.group)
    if uid is not None or gid is not None:
        os.chown(point, -1 if uid is None else uid, -1 if gid is None else gid)
    if spec.mode:
        point.chmod(int(spec.mode, 8))
    return True


def write_record(node: Node, name: str, data: dict[str, Any]) -> None:
    path = record_path(node, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    AtomicWriter(node).write(path, record_json(data), mode=0o600)


# --- unmounting -------------------------------------------------------------------------------


def unmount_path(node: Node, path: str, *, lazy: bool, dead: bool = False) -> str | None:
    """Unmount `path`. A busy mount is detached lazily only when `lazy` (the manifest said
    so) or `dead` (a FUSE mount without its daemon: nothing works through it anyway);
    otherwise ApplyError names who uses it. Returns a note when it detached lazily."""
    r = node.run(umount_argv(path), check=False, timeout=60)
    if r.rc == 0 or _live(path) is None:
        return None
    if "busy" not in (r.stderr + r.stdout):
        raise ApplyError(f"umount {path} failed: {(r.stderr or r.stdout).strip()}")
    if lazy or dead:
        node.run(umount_argv(path, lazy=True), timeout=60)
        return f"{path} was busy: detached lazily ({'its FUSE daemon had gone' if dead else 'spec.onBusy: lazy'})"
    users = users_of(path)
    raise ApplyError(f"{path} is busy (used by {', '.join(users) or 'an open file or a mount below it'}): not "
                     "unmounted; stop those users, or set spec.onBusy: lazy to detach it anyway")


def unmount(name: str, have: dict[str, Any] | None, node: Node, paths: Paths, systemd: bool,
            spec: MountSpec | None = None) -> list[str]:
    """Take away what reconcile mounted for `name` (state absent, or removed from git): the
    mount, its units, its credentials, its cache, and the mount point if reconcile made it.
    A busy mount is detached lazily only if the manifest (`spec`, for state absent) or, once
    the manifest is gone, the record of its last mount says `onBusy: lazy`."""
    notes: list[str] = []
    record = read_record(node, name)
    if record is None:
        credentials.remove(name, paths, node)
        return notes
    path = record["path"]
    lazy = (spec.onBusy if spec is not None else record.get("onBusy")) == "lazy"
    dead = (have or {}).get("state") == "dead"
    if record.get("systemd"):
        notes += _remove_units(node, paths, record, lazy=lazy, dead=dead)
    elif is_ours(record, _live(path), None):
        note = unmount_path(node, path, lazy=lazy, dead=dead)
        notes += [note] if note else []
    if record.get("createdDir") and _live(path) is None:
        try:
            os.rmdir(path)  # only when empty: never a file of someone else's
        except OSError:
            pass
    credentials.remove(name, paths, node)
    AtomicWriter(node).remove(record_path(node, name))
    return notes


# --- systemd ------------------------------------------------------------------------------------


def _mount_systemd(name: str, spec: MountSpec, e: Entry, have: dict[str, Any] | None, record: dict[str, Any] | None,
                   creds_changed: bool, node: Node, paths: Paths) -> list[str]:
    """Units that systemd mounts (and mounts again at boot); reconcile writes and starts them."""
    notes: list[str] = []
    moved = bool(record) and record.get("path") != spec.path
    if moved:  # the old units go first (`have` describes the mount at the old path)
        notes += _remove_units(node, paths, record, lazy=record.get("onBusy") == "lazy",
                               dead=(have or {}).get("state") == "dead")
    if spec.type == "rclone" and fuse.ensure_rclone_helper(node, paths.rclone_helper):
        notes.append(f"created rclone's mount helper {paths.rclone_helper}")
    auto = spec.automount is not None
    units = units_for(name, spec, e)
    problems = verify_units(node, units)
    if problems:
        raise ApplyError("systemd-analyze refuses the units: " + " | ".join(problems))
    writer, changed = AtomicWriter(node), False
    for unit, text in units.items():
        current = _read(paths.units / unit)
        if current is not None and MARKER.format(name=name) not in current:
            raise ApplyError(f"{paths.units / unit} exists and was not written by reconcile: never overwritten")
        changed |= writer.write(paths.units / unit, text, mode=0o644)
    stale_auto = paths.units / unit_name(spec.path, "automount")
    if not auto and stale_auto.exists() and MARKER.format(name=name) in (_read(stale_auto) or ""):
        _systemctl(node, "disable", "--now", stale_auto.name)
        writer.remove(stale_auto)
        changed = True
    if changed:
        _systemctl(node, "daemon-reload")
    mount_u = unit_name(spec.path, "mount")
    state = (have or {}).get("state") if not moved else None
    if state == "dead":
        # first: the mount point of a dead FUSE mount cannot even be stat'ed (ENOTCONN).
        # systemd still calls the unit mounted; once unmounted it is started again below.
        unmount_path(node, spec.path, lazy=spec.onBusy == "lazy", dead=True)
        notes.append("the FUSE daemon had gone: unmounted and mounted again")
    created = make_mount_point(spec, node, record)
    # Recorded before systemd is asked: units that then fail to start are still ours, and
    # go with the manifest (enabled, they would try again at every boot).
    write_record(node, name, {
        "name": name, "path": spec.path, "type": spec.type, "source": e.source, "options": user_options(spec),
        "onBusy": spec.onBusy, "createdDir": created, "systemd": True, "units": sorted(units),
    })
    if state == "mounted" and (changed or creds_changed):
        _systemctl(node, "restart", mount_u)
    start = unit_name(spec.path, "automount") if auto else mount_u
    # `systemctl enable` reloads systemd (0.3 s) even for an enabled unit: only when needed
    enabled = {u: s.enabled for u, s in unit_states(node, sorted({mount_u, start})).items()}
    if auto and enabled.get(mount_u) == "enabled":  # its automount starts it now, not the boot
        node.run(["systemctl", "disable", mount_u], check=False, timeout=90)
    if enabled.get(start) != "enabled":
        _systemctl(node, "enable", start)  # comes back at boot
    try:
        node.run(["systemctl", "start", start], timeout=90)
    except CommandError as err:
        raise ApplyError(f"systemd could not mount {e.what} at {spec.path}: {fuse.describe_error(err)}") from None
    return notes


def units_for(name: str, spec: MountSpec, e: Entry) -> dict[str, str]:
    """{unit file name: text} of one mount: its .mount, and its .automount when asked."""
    network, auto = spec.type in NETWORK, spec.automount is not None
    units = {unit_name(spec.path, "mount"): mount_unit(e, network=network, lazy=spec.onBusy == "lazy", automount=auto)}
    if auto:
        units[unit_name(spec.path, "automount")] = automount_unit(e, idle=spec.automount.idleTimeout, network=network)
    return units


def verify_units(node: Node, units: dict[str, str]) -> list[str]:
    """systemd's own check of rendered units (`systemd-analyze verify`), in a temp folder
    (the file name must be the unit name); read-only."""
    with tempfile.TemporaryDirectory(prefix="reconcile-units-") as folder:
        for unit, text in units.items():
            Path(folder, unit).write_text(text)
        r = node.run(["systemd-analyze", "verify", *(str(Path(folder, u)) for u in units)],
                     read_only=True, check=False, timeout=60)
    if r.rc == 0:
        return []
    return [line.replace(folder + "/", "") for line in (r.stderr or r.stdout).strip().splitlines()[:5]]


def _remove_units(node: Node, paths: Paths, record: dict[str, Any], *, lazy: bool, dead: bool) -> list[str]:
    """Stop, disable and delete the units of the recorded mount. What is mounted at its path
    is unmounted only when it is ours; stopping a mount unit unmounts whatever is mounted at
    its path, so a foreign mount there keeps its place: our units are only disabled."""
    notes = []
    writer = AtomicWriter(node)
    path, marker = record["path"], MARKER.format(name=record.get("name"))
    live = _live(path)
    ours = live is not None and is_ours(record, live, _read(paths.units / unit_name(path, "mount")))
    for suffix in ("automount", "mount"):
        unit = paths.units / unit_name(path, suffix)
        text = _read(unit)
        if text is None or marker not in text:
            continue
        if suffix == "mount" and ours and _live(path) is not None:
            note = unmount_path(node, path, lazy=lazy, dead=dead)  # the same busy rule as without systemd
            notes += [note] if note else []
        stop = ["--now"] if ours or live is None else []
        node.run(["systemctl", "disable", *stop, unit.name], check=False, timeout=90)
        writer.remove(unit)
    _systemctl(node, "daemon-reload")
    return notes


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
