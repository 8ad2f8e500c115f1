"""What one Mount is, as data: its paths, the options it mounts with, its desired state.

Pure functions of the manifest (and, for numeric ids, of a resolver the caller passes in):
no command runs here. `Entry` is the mount as an fstab line sees it — what, where, type,
options — and is rendered by `render` into a systemd unit or into the mount command's argv.

Secrets never enter an Entry: its options name the 0600 files reconcile writes (the rclone
config, an ssh identity, a cifs credentials file), never their content.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from schemas.mount import FUSE, OWNER_MODE_TYPES, MountSpec

SECRET_IN_SYNC, SECRET_DIFFERS = "<secret: in sync>", "<secret: differs>"
# Per-mount flags the kernel shows for every mount in /proc/self/mountinfo: a token of this
# set in the manifest is checked against the live mount, not only against what was asked.
KERNEL_FLAGS = ("nosuid", "nodev", "noexec", "noatime", "nodiratime")
# How mountinfo names each type's file system.
FSTYPES = {"rclone": ("fuse.rclone",), "sshfs": ("fuse.sshfs",), "nfs": ("nfs", "nfs4"),
           "cifs": ("cifs", "smb3"), "tmpfs": ("tmpfs",)}
SSH_ALIVE = ["ServerAliveInterval=15", "ServerAliveCountMax=3"]
DAEMON_WAIT = "30s"  # rclone --daemon: how long the parent waits for the mount to appear


@dataclass(frozen=True)
class Paths:
    """Where the node keeps what this kind writes (tests point these at a temp folder)."""

    config: Path = Path("/etc/reconcile/mount")  # one 0700 folder per mount: rclone.conf, identity, …
    cache: Path = Path("/var/cache/reconcile/mount")  # rclone's VFS cache, one folder per mount
    units: Path = Path("/etc/systemd/system")
    known_hosts: Path = Path("/etc/ssh/ssh_known_hosts")
    rclone_helper: Path = Path("/sbin/mount.rclone")  # rclone's documented mount helper link

    def folder(self, name: str) -> Path:
        return self.config / name

    def rclone_conf(self, name: str) -> Path:
        return self.folder(name) / "rclone.conf"

    def digest(self, name: str) -> Path:
        """sha256 of the secrets and the config rendered from them (0600): tells a rotated
        secret apart from rclone's own rewrites of its config (refreshed OAuth tokens)."""
        return self.folder(name) / "secrets.sha256"

    def identity(self, name: str) -> Path:
        return self.folder(name) / "identity"

    def host_keys(self, name: str) -> Path:
        return self.folder(name) / "known_hosts"

    def cifs_credentials(self, name: str) -> Path:
        return self.folder(name) / "cifs.credentials"


@dataclass
class Entry:
    """One mount as fstab sees it. `options` are complete and secret-free; `tool` is how
    it is mounted without systemd (rclone / sshfs / mount)."""

    name: str
    kind: str  # rclone | sshfs | nfs | cifs | bind | tmpfs
    what: str  # fstab's first field / systemd What= / the tool's source argument
    where: str
    fstype: str  # mount -t / systemd Type=
    options: list[str] = field(default_factory=list)
    source: str = ""  # what /proc/self/mountinfo shows as the source

    @property
    def fuse(self) -> bool:
        return self.kind in FUSE


Ids = Callable[[str | None, str | None], tuple[int | None, int | None]]
"""(owner, group) names → (uid, gid); None where the manifest names none."""


def source_of(name: str, spec: MountSpec) -> str:
    """The source as mountinfo shows it (bind: the source folder, compared by inode)."""
    t = spec.type
    if t == "rclone":
        return f"{name}:{spec.rclone.path}"
    if t == "sshfs":
        return f"{spec.sshfs.user}@{spec.sshfs.host}:{spec.sshfs.path}"
    if t == "nfs":
        return f"{spec.nfs.server}:{spec.nfs.export}"
    if t == "cifs":
        return f"//{spec.cifs.server}/{spec.cifs.share}"
    if t == "bind":
        return spec.bind.source
    return "tmpfs"


def user_options(spec: MountSpec) -> list[str]:
    """The manifest's own options as one list: rclone flags as `name=value`, else tokens."""
    if spec.type == "rclone":
        return [f"{k}={v}" if v else k for k, v in spec.rclone.flags.items()]
    return list(spec.options)


def has_credentials(spec: MountSpec) -> bool:
    return spec.type in ("sshfs", "cifs") or (spec.type == "rclone" and bool(spec.rclone.remote.secrets))


def desired_state(name: str, spec: MountSpec, systemd: bool) -> dict[str, Any]:
    """The normalized object the plan compares with what `observe` sees."""
    if spec.state == "absent":
        return {"path": spec.path, "state": "absent"}
    state: dict[str, Any] = {
        "path": spec.path, "state": "mounted", "type": spec.type, "source": source_of(name, spec),
        "readOnly": spec.readOnly, "options": user_options(spec),
    }
    if spec.type in FUSE:
        state["allowOther"] = spec.allowOther
    if spec.type in OWNER_MODE_TYPES:
        state.update({k: getattr(spec, k) for k in ("owner", "group", "mode") if getattr(spec, k) is not None})
    if has_credentials(spec):
        state["credentials"] = SECRET_IN_SYNC
    if systemd:
        state["automount"] = (spec.automount.idleTimeout or "on") if spec.automount else "off"
    return state


def flags_only(want: dict[str, Any], recorded: dict[str, Any], have: dict[str, Any]) -> bool:
    """True when the live mount differs from `want` only in per-mount flags (read-only,
    nosuid, …) while it was mounted with the options `want` has: a bind remount repairs
    that without unmounting (a busy mount stays up)."""
    if recorded.get("options") != want.get("options") or have.get("state") != "mounted":
        return False
    same = {"path", "state", "type", "source", "allowOther", "owner", "group", "mode", "credentials", "automount"}
    return all(want.get(k) == have.get(k) for k in same)


# --- the options each type mounts with ------------------------------------------------------


def _ownership(spec: MountSpec, ids: Ids) -> tuple[int | None, int | None, int | None]:
    uid, gid = ids(spec.owner, spec.group)
    mode = int(spec.mode, 8) if spec.mode else None
    return uid, gid, mode


def rclone_options(name: str, spec: MountSpec, paths: Paths, ids: Ids) -> list[tuple[str, str | None]]:
    """`rclone mount` settings as (flag, value): `--flag value` on the command line, or
    `flag=value` in a systemd unit's Options= (rclone's mount-helper mode)."""
    out: list[tuple[str, str | None]] = [("config", str(paths.rclone_conf(name))),
                                         ("cache-dir", str(paths.cache / name))]
    if spec.readOnly:
        out.append(("read-only", None))
    if spec.allowOther:
        out.append(("allow-other", None))
    uid, gid, mode = _ownership(spec, ids)
    if mode is not None and spec.allowOther:
        out.append(("default-permissions", None))  # the kernel enforces the mode for other users
    if uid is not None:
        out.append(("uid", str(uid)))
    if gid is not None:
        out.append(("gid", str(gid)))
    if mode is not None:
        out += [("umask", "0"), ("dir-perms", f"{mode:04o}"), ("file-perms", f"{mode & 0o666:04o}")]
    out += [(k, v or None) for k, v in spec.rclone.flags.items()]
    return out


def sshfs_options(name: str, spec: MountSpec, paths: Paths, ids: Ids) -> list[str]:
    s = spec.sshfs
    known = paths.host_keys(name) if s.hostKeys else paths.known_hosts
    out = [f"IdentityFile={paths.identity(name)}", "IdentitiesOnly=yes", f"UserKnownHostsFile={known}",
           "StrictHostKeyChecking=yes", "BatchMode=yes"]
    if s.port != 22:
        out.append(f"port={s.port}")
    if s.reconnect:
        out += ["reconnect", *SSH_ALIVE]
    out += _fuse_access(spec, ids)
    return out + list(spec.options)


def _fuse_access(spec: MountSpec, ids: Ids) -> list[str]:
    out = ["ro"] if spec.readOnly else []
    uid, gid, mode = _ownership(spec, ids)
    if spec.allowOther:
        out.append("allow_other")
        if mode is not None:
            out.append("default_permissions")
    if uid is not None:
        out.append(f"uid={uid}")
    if gid is not None:
        out.append(f"gid={gid}")
    if mode is not None:
        out.append(f"umask={0o777 & ~mode:03o}")
    return out


def kernel_options(name: str, spec: MountSpec, paths: Paths, ids: Ids) -> list[str]:
    t = spec.type
    out: list[str] = ["bind"] if t == "bind" else []
    out += ["ro"] if spec.readOnly else []
    if t == "nfs":
        out.append(f"vers={spec.nfs.version}")
    uid, gid, mode = _ownership(spec, ids)
    if t == "cifs":
        out.append(f"credentials={paths.cifs_credentials(name)}")
        if mode is not None:
            out += [f"dir_mode={mode:04o}", f"file_mode={mode & 0o666:04o}"]
    if t == "tmpfs":
        if spec.tmpfs and spec.tmpfs.size:
            out.append(f"size={spec.tmpfs.size}")
        if mode is not None:
            out.append(f"mode={mode:04o}")
    if t in ("cifs", "tmpfs"):
        out += [f"uid={uid}"] if uid is not None else []
        out += [f"gid={gid}"] if gid is not None else []
    return out + list(spec.options)


def entry(name: str, spec: MountSpec, paths: Paths, ids: Ids) -> Entry:
    """The mount as an fstab line: what, where, type, options."""
    t, source = spec.type, source_of(name, spec)
    if t == "rclone":
        opts = [f"{k}={v}" if v is not None else k for k, v in rclone_options(name, spec, paths, ids)]
        return Entry(name, t, source, spec.path, "rclone", opts, source)
    if t == "sshfs":
        return Entry(name, t, source, spec.path, "fuse.sshfs", sshfs_options(name, spec, paths, ids), source)
    fstype = {"bind": "none", "nfs": "nfs"}.get(t, t)
    return Entry(name, t, source, spec.path, fstype, kernel_options(name, spec, paths, ids), source)
