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
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.common import (
    NOT_ECHOED, AbsolutePath, Duration, Manifest, Placement, SecretRef, Strict, UserName, duplicates,
)

# --- the mount point ---------------------------------------------------------------------

# The system's own folders: mounting over one hides the system (or reconcile itself).
# (/home, /srv, /tmp, /mnt stay allowed: NFS homes and a tmpfs /tmp are ordinary.)
_SYSTEM = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
           "/sbin", "/sys", "/usr", "/var", "/var/lib", "/var/cache", "/var/log")
_NEVER_BELOW = ("/proc", "/sys", "/dev", "/etc", "/usr", "/boot", "/bin", "/sbin", "/lib", "/lib64", "/run",
                "/var/lib/reconcile")


def _mount_point(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: a mount point must be an absolute path, e.g. /mnt/reports")
    if value != "/" and value.endswith("/") or "//" in value or "/./" in value + "/":
        raise ValueError(f"{value!r}: write the mount point plainly, without '//', '/./' or a trailing '/'")
    if value in _SYSTEM:
        raise ValueError(f"{value!r} is a system folder: mounting over it would hide the system; "
                         "mount below it, e.g. /mnt/reports or /srv/data")
    for top in _NEVER_BELOW:
        if value.startswith(top + "/"):
            raise ValueError(f"{value!r} is inside {top}, which belongs to the system or to reconcile; "
                             "choose a mount point such as /mnt/NAME or /srv/NAME")
    return value


MountPoint = Annotated[AbsolutePath, AfterValidator(_mount_point)]

# --- option tokens -----------------------------------------------------------------------

_TOKEN = re.compile(r"^[A-Za-z0-9_.+-]+(=[A-Za-z0-9_.:/@+%^-]+)?$")
# Mount operations, not options: with one of these the option list would make another
# mount (or move one) rather than describe this one.
_OPERATIONS = {"bind", "rbind", "remount", "move", "make-private", "make-shared", "make-slave", "loop"}
# What a typed field says: the field to use instead.
_TYPED = {
    "ro": "readOnly: true", "rw": "readOnly: false", "uid": "owner", "gid": "group", "umask": "mode",
    "mode": "mode", "dir_mode": "mode", "file_mode": "mode", "allow_other": "allowOther",
    "default_permissions": "owner/group/mode with allowOther", "credentials": "cifs.password",
    "username": "cifs.user", "user": "cifs.user / sshfs.user", "domain": "cifs.domain",
    "IdentityFile": "sshfs.identity", "UserKnownHostsFile": "sshfs.hostKeys",
    "StrictHostKeyChecking": "sshfs.hostKeys (host keys are always checked)", "BatchMode": "(always on)",
    "port": "sshfs.port", "Port": "sshfs.port", "reconnect": "sshfs.reconnect", "vers": "nfs.version",
    "nfsvers": "nfs.version", "size": "tmpfs.size", "fsname": "(reconcile names the source)",
    "subtype": "(the type)", "password_stdin": "sshfs.identity",
}
# Options that run a program, or hand the mount to another helper: refused.
_RUNS_CODE = {"ssh_command", "sshfs_command", "ProxyCommand", "LocalCommand", "PermitLocalCommand",
              "KnownHostsCommand", "RemoteCommand", "ProxyJump", "Include", "Match", "directport", "passive",
              "slave", "helper", "uhelper", "command", "env", "args2env"}
_SECRET_NAMES = ("pass", "secret", "token", "credential", "key_pem", "sas_url", "account_key", "api_key")


def _looks_secret(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _SECRET_NAMES)


def _option(value: str) -> str:
    name = value.split("=", 1)[0]
    if "=" in value and _looks_secret(name):
        raise ValueError(f"option {name!r} holds a secret: give it by reference (the type's password, "
                         f"identity or secrets field, {{file: /path}} or {{env: NAME}}), never inline {NOT_ECHOED}")
    if not _TOKEN.match(value):
        raise ValueError(f"{value!r}: one option per list item, as name or name=value with letters, digits and "
                         "_ . + - (value also : / @ % ^); no comma (it would start another option), space, quote "
                         "or newline")
    if name in _OPERATIONS:
        raise ValueError(f"{value!r} is a mount operation, not an option: it would make another mount; "
                         "use type: bind for a bind mount")
    if name in _RUNS_CODE or name.startswith(("x-", "X-")):
        raise ValueError(f"{value!r} runs a command or hands the mount to another program: not allowed in a manifest")
    if name in _TYPED:
        raise ValueError(f"{value!r}: reconcile sets this from a field; use {_TYPED[name]}")
    return value


MountOption = Annotated[str, AfterValidator(_option)]
"""One mount option (`noatime`, `vers=4.2`, `cache=yes`): one token, no comma."""

_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+%^,=-]([A-Za-z0-9_.:/@+%^,= -]{0,510}[A-Za-z0-9_.:/@+%^,=-])?$")


def _rclone_value(value: str) -> str:
    if not _VALUE.match(value):
        raise ValueError(f"{value!r}: an rclone value is one line of letters, digits, single inner spaces and "
                         "_ . : / @ + % ^ , = - (no quotes, brackets, '#', ';' or newline)")
    return value


RcloneValue = Annotated[str, AfterValidator(_rclone_value)]
RcloneKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]

# rclone mount flags reconcile sets itself, or that would run code / open a control port.
_RCLONE_OWNED = {
    "config": "reconcile writes the config", "cache-dir": "reconcile gives each mount its own",
    "daemon": "reconcile runs the daemon", "daemon-wait": "reconcile runs the daemon",
    "read-only": "readOnly", "allow-other": "allowOther", "uid": "owner", "gid": "group", "umask": "mode",
    "dir-perms": "mode", "file-perms": "mode", "default-permissions": "owner/group/mode with allowOther",
    "devname": "reconcile names the source", "option": "options are not passed through to libfuse",
    "password-command": "runs a command", "rc": "opens a remote control port",
    "log-file": "a detached rclone logging to a file keeps the mount command waiting on its output",
    "config-dir": "reconcile writes the config",
}


def _rclone_flag(name: str) -> str:
    base = name.removeprefix("no-")
    if base in _RCLONE_OWNED or base.startswith("rc-"):
        why = _RCLONE_OWNED.get(base, "opens a remote control port")
        raise ValueError(f"rclone flag {name!r} is not allowed here: {why}")
    if _looks_secret(name):
        raise ValueError(f"rclone flag {name!r} holds a secret: put it in rclone.remote.secrets by reference")
    return name


RcloneFlag = Annotated[FlagName, AfterValidator(_rclone_flag)]


def _remote_option(name: str) -> str:
    if name.endswith("_command") or name in ("ssh", "command"):
        raise ValueError(f"rclone option {name!r} runs a command: not allowed in a manifest")
    return name


# rclone options whose names sound secret but are not (OAuth endpoints, a switch).
_NOT_SECRET = {"token_url", "auth_url", "client_credentials"}


def _remote_plain(name: str) -> str:
    name = _remote_option(name)
    if _looks_secret(name) and name not in _NOT_SECRET:
        raise ValueError(f"rclone option {name!r} holds a secret: move it to rclone.remote.secrets as "
                         f"{{file: /path}} or {{env: NAME}}, never inline {NOT_ECHOED}")
    return name


def _mode(value: str) -> str:
    if not re.fullmatch(r"[0-7]{4}", value):
        raise ValueError(f"{value!r}: a mode is four octal digits in quotes, e.g. \"0755\", \"0750\" or \"1777\"")
    return value


HostKey = Annotated[str, StringConstraints(
    pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,2}$")]
"""A public host key as in `ssh-keyscan` or /etc/ssh/ssh_host_*_key.pub: type and base64, no comment."""
Host = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")]
"""A host name or IPv4 address."""
RemotePath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./@+-]{0,1024}$")]
"""A path on the remote side (relative to the login or remote root, or absolute)."""


def _no_dotdot(value: str) -> str:
    if any(p == ".." for p in value.split("/")):
        raise ValueError(f"{value!r}: '..' is not allowed in a path")
    return value


# --- the types ---------------------------------------------------------------------------


class RcloneRemote(Strict):
    """An rclone remote, written by reconcile to its own 0600 config file (one section named
    after the Mount). `rclone config providers` is the native validator of type and options."""

    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,31}$")] = Field(
        description="the rclone backend: drive, sftp, s3, webdav, onedrive, …")
    options: dict[Annotated[RcloneKey, AfterValidator(_remote_plain)], RcloneValue] = Field(
        default_factory=dict, description="backend options that are not secret, e.g. {host: files.example, user: app}")
    secrets: dict[Annotated[RcloneKey, AfterValidator(_remote_option)], SecretRef] = Field(
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
    remote: RcloneRemote
    path: Annotated[RemotePath, AfterValidator(_no_dotdot)] = Field(
        "", description="folder inside the remote (empty: its root)")
    flags: dict[RcloneFlag, Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/@+%-]{0,128}$")]] = Field(
        default_factory=dict, description="`rclone mount` flags without the dashes, e.g. {vfs-cache-mode: writes, "
                                          "dir-cache-time: 1m}; an empty value is a switch")
    hostKeys: list[HostKey] = Field(
        default_factory=list, description="sftp remotes: the server's public host keys (default: the node's "
                                          "/etc/ssh/ssh_known_hosts); host keys are always checked")


class SshfsMount(Strict):
    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: UserName
    path: Annotated[RemotePath, AfterValidator(_no_dotdot)] = Field(
        "", description="remote folder (relative to the user's home, or absolute)")
    identity: SecretRef = Field(description="the private key; written 0600 where ssh reads it")
    hostKeys: list[HostKey] = Field(
        default_factory=list, description="the server's public host keys (default: the node's /etc/ssh/ssh_known_hosts)")
    reconnect: bool = Field(True, description="reconnect after a dropped connection (ServerAliveInterval 15 s)")


class NfsMount(Strict):
    server: Host
    export: AbsolutePath
    version: Literal["3", "4", "4.1", "4.2"] = "4.2"


class CifsMount(Strict):
    server: Host
    share: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.$-]{1,80}(/[A-Za-z0-9_.-]{1,255})*$")]
    user: UserName
    domain: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}$")] | None = None
    password: SecretRef


class BindMount(Strict):
    source: AbsolutePath = Field(description="the folder shown again at the mount point")


class TmpfsMount(Strict):
    size: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,12}[kmgKMG]?$|^[1-9][0-9]?%$")] | None = Field(
        None, description="e.g. 64M, 1G or 10% (of RAM); default: half of RAM")


class MountAutomount(Strict):
    idleTimeout: Duration | None = Field(None, description="unmount after this long unused (TimeoutIdleSec)")


FUSE = ("rclone", "sshfs")
NETWORK = ("rclone", "sshfs", "nfs", "cifs")
# Types whose mounted root takes an owner and mode from mount options.
OWNER_MODE_TYPES = ("rclone", "sshfs", "cifs", "tmpfs")


class MountSpec(Placement):
    path: MountPoint = Field(description="the mount point, e.g. /mnt/reports")
    state: Literal["mounted", "absent"] = Field("mounted", description="absent: reconcile unmounts what it mounted there")
    type: Literal["rclone", "sshfs", "nfs", "cifs", "bind", "tmpfs"]
    rclone: RcloneMount | None = None
    sshfs: SshfsMount | None = None
    nfs: NfsMount | None = None
    cifs: CifsMount | None = None
    bind: BindMount | None = None
    tmpfs: TmpfsMount | None = None
    readOnly: bool = False
    owner: UserName | None = Field(None, description="owner of the mounted root (FUSE, cifs, tmpfs) and of the folder")
    group: UserName | None = Field(None, description="group of the mounted root (FUSE, cifs, tmpfs) and of the folder")
    mode: Annotated[str, AfterValidator(_mode)] | None = Field(
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
