"""Mount: a file system mounted at a path on a node (FUSE: rclone, sshfs; kernel: nfs, cifs,
bind, tmpfs), or kept unmounted.

Every value here reaches a mount command's argv, a `-o` option list, a systemd unit line or
an rclone config line, so each is one validated token: no comma (it would start another
option), no space or newline (another fstab field or config line), no quote (rclone's mount
helper un-quotes), no `=` in names. Options whose meaning reconcile needs are typed fields
(`readOnly`, `owner`/`group`/`mode`, `allowOther`, the credentials), and the option list
refuses those names, the mount operations that would make a second mount (`bind`, `remount`,
`move`), and the options that run a command (`ssh_command`, `ProxyCommand`, rclone's
`*_command`). Credentials are references only (`{file:}`/`{env:}`); a password written
inline in an option is refused without being echoed.
"""
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import AbsolutePath, Duration, Manifest, Mode, Placement, Port, SecretRef, Strict, UserName, duplicates
from schemas.mount_values import (
    CifsShare, FlagValue, HostKey, MountOption, MountPoint, RcloneBackend, RcloneFlag, RcloneOption, RclonePlainOption,
    RcloneValue, RemotePath, Server, TmpfsSize, Workgroup,
)

# --- the types ---------------------------------------------------------------------------


class RcloneRemote(Strict):
    """An rclone remote, written by reconcile to its own 0600 config file (one section named
    after the Mount). `rclone config providers` is the native validator of type and options."""

    type: RcloneBackend = Field(
        description="the rclone backend: drive, sftp, s3, webdav, onedrive, …")
    options: dict[RclonePlainOption, RcloneValue] = Field(
        default_factory=dict, description="backend options that are not secret, e.g. {host: files.example, user: app}")
    secrets: dict[RcloneOption, SecretRef] = Field(
        default_factory=dict,
        description="backend options read from a secret at apply time, e.g. {pass: {file: /etc/reconcile/secrets/x}} "
                    "or {token: {file: ...}}; rclone's password options are obscured by reconcile")

    @model_validator(mode="after")
    def _disjoint(self) -> "RcloneRemote":
        both = sorted(set(self.options) & set(self.secrets))
        if both:
            raise ValueError(f"{', '.join(both)}: give each option either in options or in secrets, not both")
        return self


class RcloneMount(Strict):
    """An rclone remote mounted with `rclone mount` (FUSE)."""

    remote: RcloneRemote
    path: RemotePath = Field("", description="folder inside the remote (empty: its root)")
    flags: dict[RcloneFlag, FlagValue] = Field(
        default_factory=dict, description="`rclone mount` flags without the dashes, e.g. {vfs-cache-mode: writes, "
                                          "dir-cache-time: 1m}; an empty value is a switch")
    hostKeys: list[HostKey] = Field(
        default_factory=list, description="sftp remotes: the server's public host keys (default: the node's "
                                          "/etc/ssh/ssh_known_hosts); host keys are always checked")


class SshfsMount(Strict):
    """A folder of an SSH server mounted with sshfs (FUSE)."""

    host: Server = Field(description="The SSH server: a host name or IPv4 address.")
    port: Port = Field(22, description="Its SSH port.")
    user: UserName = Field(description="The user to log in as.")
    path: RemotePath = Field("", description="remote folder (relative to the user's home, or absolute)")
    identity: SecretRef = Field(description="the private key; written 0600 where ssh reads it")
    hostKeys: list[HostKey] = Field(
        default_factory=list, description="the server's public host keys (default: the node's /etc/ssh/ssh_known_hosts)")
    reconnect: bool = Field(True, description="reconnect after a dropped connection (ServerAliveInterval 15 s)")


class NfsMount(Strict):
    """An NFS export."""

    server: Server = Field(description="The NFS server: a host name or IPv4 address.")
    export: AbsolutePath = Field(description="The exported folder on the server, e.g. /srv/reports.")
    version: Literal["3", "4", "4.1", "4.2"] = Field("4.2", description="The NFS protocol version (nfsvers).")


class CifsMount(Strict):
    """An SMB/CIFS share."""

    server: Server = Field(description="The SMB server: a host name or IPv4 address.")
    share: CifsShare = Field(description="The share, optionally with a folder in it: reports/2024.")
    user: UserName = Field(description="The user to log in as.")
    domain: Workgroup | None = Field(None, description="Its domain or workgroup.")
    password: SecretRef


class BindMount(Strict):
    """A folder of the node shown again at the mount point."""

    source: AbsolutePath = Field(description="the folder shown again at the mount point")


class TmpfsMount(Strict):
    """A file system in memory."""

    size: TmpfsSize | None = Field(
        None, description="e.g. 64M, 1G or 10% (of RAM); default: half of RAM")


class MountAutomount(Strict):
    idleTimeout: Duration | None = Field(None, description="unmount after this long unused (TimeoutIdleSec)")


FUSE = ("rclone", "sshfs")
NETWORK = ("rclone", "sshfs", "nfs", "cifs")
# Types whose mounted root takes an owner and mode from mount options.
OWNER_MODE_TYPES = ("rclone", "sshfs", "cifs", "tmpfs")


class MountSpec(Placement):
    """A file system mounted at a folder of the node: remote (rclone, sshfs, NFS, SMB), a bind or tmpfs."""

    path: MountPoint = Field(description="the mount point, e.g. /mnt/reports")
    state: Literal["mounted", "absent"] = Field("mounted", description="absent: reconcile unmounts what it mounted there")
    type: Literal["rclone", "sshfs", "nfs", "cifs", "bind", "tmpfs"] = Field(
        description="What is mounted; the options of that type go in the field of the same name.")
    rclone: RcloneMount | None = Field(None, description="For type rclone.")
    sshfs: SshfsMount | None = Field(None, description="For type sshfs.")
    nfs: NfsMount | None = Field(None, description="For type nfs.")
    cifs: CifsMount | None = Field(None, description="For type cifs.")
    bind: BindMount | None = Field(None, description="For type bind.")
    tmpfs: TmpfsMount | None = Field(None, description="For type tmpfs.")
    readOnly: bool = Field(False, description="Mount it read-only.")
    owner: UserName | None = Field(None, description="owner of the mounted root (FUSE, cifs, tmpfs) and of the folder")
    group: UserName | None = Field(None, description="group of the mounted root (FUSE, cifs, tmpfs) and of the folder")
    mode: Mode | None = Field(
        None, description="permissions of the mounted root, four octal digits, e.g. \"0750\" (tmpfs also \"1777\")")
    allowOther: bool = Field(False, description="FUSE: users other than root may use the mount")
    options: list[MountOption] = Field(default_factory=list, description="other mount options, one per item")
    automount: MountAutomount | None = Field(
        None, description="systemd nodes: an automount unit mounts on first access (and unmounts when idle)")
    onBusy: Literal["refuse", "lazy"] = Field(
        "refuse", description="unmounting a mount in use: refuse (report the users) or detach it lazily (umount -l)")

    @model_validator(mode="after")
    def _type_block(self) -> "MountSpec":
        blocks = ("rclone", "sshfs", "nfs", "cifs", "bind", "tmpfs")
        extra = [b for b in blocks if b != self.type and getattr(self, b) is not None]
        if extra:
            raise ValueError(f"type {self.type} takes no {', '.join(extra)} block")
        if self.type not in ("tmpfs",) and getattr(self, self.type) is None:
            raise ValueError(f"type {self.type} needs spec.{self.type}")
        return self


class Mount(Manifest):
    kind: Literal["Mount"]
    spec: MountSpec

    def claims(self) -> list[tuple[str, str]]:
        return [(f"mount point:{self.spec.path}", "spec.path")]

    def check(self, tree: object) -> list[tuple[str, str]]:
        spec, problems = self.spec, []
        if spec.type not in FUSE and spec.allowOther:
            problems.append(("spec.allowOther", f"only FUSE mounts (rclone, sshfs) take allowOther; a {spec.type} "
                             "mount is open to every user its mode allows"))
        if spec.type not in OWNER_MODE_TYPES:
            for f in ("owner", "group", "mode"):
                if getattr(spec, f) is not None:
                    problems.append((f"spec.{f}", f"a {spec.type} mount shows the {'source folder' if spec.type == 'bind' else 'server'}'s "
                                     f"{f}: set it there, not here"))
        if spec.mode is not None and spec.mode[0] != "0" and spec.type != "tmpfs":
            problems.append(("spec.mode", f"{spec.mode}: setuid, setgid and sticky bits are for a tmpfs root only; "
                             f"a {spec.type} mount takes permission bits (e.g. \"0{spec.mode[1:]}\")"))
        if spec.type == "rclone" and spec.options:
            problems.append(("spec.options", "rclone takes its mount settings as rclone.flags"))
        if spec.type == "rclone" and spec.rclone and spec.rclone.hostKeys and spec.rclone.remote.type != "sftp":
            problems.append(("spec.rclone.hostKeys", "host keys are for sftp remotes"))
        if spec.automount is not None and spec.state == "absent":
            problems.append(("spec.automount", "an absent mount has no automount; leave it out"))
        if spec.type == "bind" and spec.bind and (spec.bind.source == spec.path
                                                   or spec.path.startswith(spec.bind.source + "/")):
            problems.append(("spec.bind.source", f"{spec.bind.source} contains the mount point {spec.path}: "
                             "a bind mount of a folder onto itself or below itself loops"))
        problems += duplicates([o.split("=", 1)[0] for o in spec.options], "spec.options.{}", "option")
        problems += self._nesting(tree)
        return problems

    def _nesting(self, tree) -> list[tuple[str, str]]:
        """A mount point inside another Mount of a common node would be mounted into (or
        hidden by) that one depending on order: refused."""
        mine = tree.nodes_of(self)
        for other in tree.of_kind("Mount"):
            if other is self or not (mine & tree.nodes_of(other)):
                continue
            if self.spec.path.startswith(other.spec.path + "/"):
                return [("spec.path", f"{self.spec.path} is inside Mount {other.metadata.name!r} ({other.spec.path}) "
                         "on a common node: nested mount points are not supported; mount it elsewhere")]
        return []


__all__ = ["Mount", "MountSpec", "FUSE", "NETWORK", "OWNER_MODE_TYPES"]
