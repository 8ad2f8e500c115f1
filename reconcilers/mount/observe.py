"""What is mounted: one read of /proc/self/mountinfo for every mount, one `stat` for every
mount point reconcile cares about, and the records reconcile keeps of what it mounted.

A mount at a path is *ours* only when reconcile's record says so: without systemd the
record holds the mount's id (unique while it is mounted), with systemd the unit file
reconcile wrote must carry its marker and describe the live mount. Anything else mounted
there is `foreign`, reported and never touched.

A FUSE mount whose daemon died stays in the mount table; only touching it tells: `stat`
fails with "Transport endpoint is not connected" (`dead`). A mount whose server or daemon
hangs makes `stat` hang: it runs under the runner's timeout, and a mount that does not
answer is `not-responding` (reported, not torn down).
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcilers.base import CommandError, Node
from reconcilers.mount.model import FSTYPES, KERNEL_FLAGS

STAT_TIMEOUT = 10.0
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo (proc(5))."""

    id: int
    parent: int
    root: str  # the folder of the file system shown here (bind mounts: not "/")
    point: str
    flags: frozenset[str]  # per-mount options: ro/rw, nosuid, nodev, noexec, noatime, …
    fstype: str
    source: str
    super_options: frozenset[str]  # the file system's options (FUSE: allow_other, user_id=…)


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountInfo]:
    out = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        f, t = head.split(), tail.split()
        if len(f) < 6 or len(t) < 3:
            continue
        out.append(MountInfo(int(f[0]), int(f[1]), _unescape(f[3]), _unescape(f[4]), frozenset(f[5].split(",")),
                             t[0], _unescape(t[1]), frozenset(t[2].split(","))))
    return out


def top_mounts(mounts: list[MountInfo]) -> dict[str, MountInfo]:
    """The mount a path shows (the last one stacked on it), by mount point."""
    top: dict[str, MountInfo] = {}
    for m in mounts:  # the kernel lists mounts in the order they were made
        top[m.point] = m
    return top


def read_mountinfo() -> list[MountInfo]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


# --- touching the mount points ---------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What `stat` saw at a path: its owner, group, mode and inode, or the error."""

    uid: int = -1
    gid: int = -1
    mode: int = 0
    dev: int = 0
    ino: int = 0
    error: str = ""  # "dead" | "not-responding" | "missing" | other text


def parse_stat(stdout: str, stderr: str, paths: list[str]) -> dict[str, Probe]:
    """`stat -c '%u %g %a %d %i %n' PATHS` output → Probe per path."""
    out: dict[str, Probe] = {}
    for line in stdout.splitlines():
        parts = line.split(" ", 5)
        if len(parts) == 6:
            uid, gid, mode, dev, ino, name = parts
            out[name] = Probe(int(uid), int(gid), int(mode, 8), int(dev), int(ino))
    for line in stderr.splitlines():
        for p in paths:
            if f"'{p}'" in line and p not in out:
                # ENOTCONN, or ECONNABORTED for a request the dying daemon left unanswered
                if "Transport endpoint is not connected" in line or "Software caused connection abort" in line:
                    out[p] = Probe(error="dead")
                elif "No such file or directory" in line:
                    out[p] = Probe(error="missing")
                else:
                    out[p] = Probe(error=line.split(": ", 2)[-1].strip())
    return out


def probe(node: Node, paths: list[str]) -> dict[str, Probe]:
    """One `stat` for all paths; a hung mount makes it time out, and then each path is
    asked alone (with a short timeout) to find the one that does not answer."""
    if not paths:
        return {}
    # --cached=never: a FUSE mount whose daemon died answers from the attribute cache for
    # a while; a forced getattr reaches the (dead) connection at once.
    argv = ["stat", "--cached=never", "-c", "%u %g %a %d %i %n", "--", *paths]
    try:
        r = node.run(argv, read_only=True, check=False, timeout=STAT_TIMEOUT)
        return parse_stat(r.stdout, r.stderr, paths)
    except CommandError as err:
        if err.rc is not None:
            raise
    out = {}
    for p in paths:
        try:
            r = node.run(["stat", "--cached=never", "-c", "%u %g %a %d %i %n", "--", p], read_only=True, check=False,
                         timeout=2.0)
            out.update(parse_stat(r.stdout, r.stderr, [p]))
        except CommandError:
            out[p] = Probe(error="not-responding")
    return out


# --- reconcile's own records -----------------------------------------------------------------


def read_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every record of a mount reconcile made on this node: {name: record}."""
    out = {}
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return {}
    for f in files:
        try:
            out[f.stem] = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
    return out


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_ours(record: dict[str, Any] | None, live: MountInfo | None, unit_text: str | None) -> bool:
    """Whether the mount at the record's path is the one reconcile made."""
    if record is None or live is None:
        return False
    if record.get("systemd"):
        # systemd made it from our unit: the unit must still be ours and describe this mount
        # (or, with an automount not yet used, be systemd's autofs trigger at the path)
        if live.fstype == "autofs" and any(u.endswith(".automount") for u in record.get("units", [])):
            return bool(unit_text) and f"Mount/{record.get('name')}" in unit_text
        return bool(unit_text) and f"Mount/{record.get('name')}" in unit_text \
            and live.fstype in FSTYPES.get(record.get("type", ""), (live.fstype,)) \
            and (record.get("type") == "bind" or live.source == record.get("source"))
    if record.get("pending"):
        # Recorded before its mount command ran, and the run died before it wrote the mount
        # id: ours if this boot's mount at the path is what that command mounts.
        return record.get("boot") == boot_id() and live.source == record.get("source") \
            and (live.fstype in FSTYPES.get(record.get("type", ""), ()) or record.get("type") == "bind")
    # Mount ids are reused as soon as a mount goes: the id alone would take a mount made by
    # hand after ours for ours. What the kernel shows of the mount must match too.
    return record.get("boot") == boot_id() and record.get("mountId") == live.id \
        and record.get("fs") == fs_identity(live)


def fs_identity(live: MountInfo) -> dict[str, str]:
    """What identifies a mount besides its (reusable) id: type, source, and the folder of
    its file system it shows (a bind mount of another folder differs here)."""
    return {"type": live.fstype, "source": live.source, "root": live.root}


# --- one object --------------------------------------------------------------------------------


def _name_of(uid: int, table: str) -> str:
    try:
        return (pwd.getpwuid(uid).pw_name if table == "passwd" else grp.getgrgid(uid).gr_name)
    except KeyError:
        return str(uid)


def kind_of(live: MountInfo, record: dict[str, Any] | None) -> str:
    for kind, fstypes in FSTYPES.items():
        if live.fstype in fstypes:
            return kind
    return "bind" if record and record.get("type") == "bind" else live.fstype


def observed_state(want: dict[str, Any] | None, record: dict[str, Any] | None, live: MountInfo | None,
                   probe_: Probe | None, source_probe: Probe | None, ours: bool,
                   extra: dict[str, Any] | None = None, units_left: bool = False) -> dict[str, Any] | None:
    """The normalized object for one mount, in `desired_state`'s shape; None when there is
    nothing to report (nothing mounted, no record, nothing desired). `extra` holds what the
    caller compared itself (credentials, automount); only keys `want` has are reported.
    `units_left`: the mount's systemd units (reconcile's) are still in place."""
    path = (want or {}).get("path") or (record or {}).get("path")
    if live is None and units_left and (want is None or want["state"] == "absent"):
        # Nothing mounted (stopped by hand, failed to start), but our enabled units would
        # mount it again at boot: not absent until they are gone.
        return {"path": path, "state": "unmounted"}
    if live is None:
        # Nothing mounted: in sync for `absent`; for `mounted` a create (the engine tells
        # drift from a first mount by its inventory), and a record without a mount is done.
        return {"path": path, "state": "absent"} if want is not None and want["state"] == "absent" else None
    if not ours:
        return {"path": path, "state": "foreign", "type": kind_of(live, None), "source": live.source}
    if live.fstype == "autofs":
        # an automount not used yet: systemd mounts it on first access, with our unit's
        # options (in sync as far as anyone can tell before it is mounted); what reconcile
        # compares itself (its units, the credentials) is compared all the same
        state = dict(want) if want else {"path": path, "state": "mounted"}
        state.update({k: v for k, v in (extra or {}).items() if want is not None and k in want})
        return state
    kind = kind_of(live, record)
    state: dict[str, Any] = {"path": path, "state": "mounted", "type": kind,
                             "source": live.source, "readOnly": "ro" in live.flags}
    if kind == "bind":  # a bind mount's source is the folder whose inode the mount point shows
        same = probe_ and source_probe and not probe_.error and not source_probe.error \
            and (probe_.dev, probe_.ino) == (source_probe.dev, source_probe.ino)
        state["source"] = record.get("source") if same else f"{live.source}:{live.root}"
    recorded = list(record.get("options", []))
    state["options"] = [o for o in recorded if o not in KERNEL_FLAGS or o in live.flags]
    if kind in ("rclone", "sshfs"):
        state["allowOther"] = "allow_other" in live.super_options
    state.update({k: v for k, v in (extra or {}).items() if want is not None and k in want})
    if probe_ is not None and probe_.error in ("dead", "not-responding"):
        state["state"] = probe_.error
        # Owner and mode cannot be read through a dead mount: `state` carries the drift.
        state.update({k: want[k] for k in ("owner", "group", "mode") if want is not None and k in want})
    elif probe_ is not None and not probe_.error and want is not None:
        seen = {"owner": _name_of(probe_.uid, "passwd"), "group": _name_of(probe_.gid, "group"),
                "mode": f"{probe_.mode & 0o7777:04o}"}
        state.update({k: v for k, v in seen.items() if k in want})
    return state


def users_of(path: str, limit: int = 5) -> list[str]:
    """Processes using a mount (working folder, root or an open file below `path`), as
    "comm (pid)", for the message that refuses to unmount it. Read from /proc only."""
    found = []
    prefix = path.rstrip("/") + "/"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        links = [f"{entry.path}/cwd", f"{entry.path}/root"]
        try:
            links += [f"{entry.path}/fd/{fd}" for fd in os.listdir(f"{entry.path}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == path or target.startswith(prefix):
                try:
                    comm = Path(entry.path, "comm").read_text().strip()
                except OSError:
                    comm = "?"
                found.append(f"{comm} ({entry.name})")
                break
        if len(found) >= limit:
            break
    return found
