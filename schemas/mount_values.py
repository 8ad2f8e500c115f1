"""Value types of the Mount kind: mount points (never a system folder), mount options as
single tokens (never one that runs a command or holds a secret inline), rclone backend
options and flags, sshfs/cifs/nfs words. Each is one line, checked before it reaches a
mount(8) option string, an rclone config or an argv.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from schemas.common import NOT_ECHOED, PATTERN_HELP, _absolute_path

# --- mounts: mount points, mount options, rclone and ssh words ----------------------------

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


MountPoint = Annotated[str, AfterValidator(_absolute_path), AfterValidator(_mount_point)]

# --- option tokens -----------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(=[A-Za-z0-9_.:/@+%^-]+)?")
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
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r}: one option per list item, as name or name=value: a name starts with a "
                         "letter or digit, then letters, digits and _ . + - (a value also : / @ % ^); no comma (it "
                         "would start another option), space, quote or newline")
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

_RCLONE_VALUE = re.compile(r"[A-Za-z0-9_.:/@+%^,=-]([A-Za-z0-9_.:/@+%^,= -]{0,510}[A-Za-z0-9_.:/@+%^,=-])?")


def _rclone_value(value: str) -> str:
    if not _RCLONE_VALUE.fullmatch(value):
        raise ValueError(f"{value!r}: an rclone value is one line of letters, digits, single inner spaces and "
                         "_ . : / @ + % ^ , = - (no quotes, brackets, '#', ';' or newline)")
    return value


RcloneValue = Annotated[str, AfterValidator(_rclone_value)]
RCLONE_KEY = r"^[a-z][a-z0-9_]{0,63}$"
FLAG_NAME = r"^[a-z][a-z0-9-]{0,63}$"
RcloneKey = Annotated[str, StringConstraints(pattern=RCLONE_KEY)]
FlagName = Annotated[str, StringConstraints(pattern=FLAG_NAME)]

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


RcloneOption = Annotated[str, StringConstraints(pattern=RCLONE_KEY), AfterValidator(_remote_option)]
"""An rclone backend option name (given by secret reference): never one that runs a command."""
RclonePlainOption = Annotated[str, StringConstraints(pattern=RCLONE_KEY), AfterValidator(_remote_plain)]
"""An rclone backend option given inline: never a secret, never one that runs a command."""


def _no_dotdot(value: str) -> str:
    if any(p == ".." for p in value.split("/")):
        raise ValueError(f"{value!r}: '..' is not allowed in a path")
    return value


RCLONE_BACKEND = r"^[a-z][a-z0-9]{0,31}$"
RcloneBackend = Annotated[str, StringConstraints(pattern=RCLONE_BACKEND)]
"""An rclone backend as its config's `type =` names it: drive, sftp, s3, webdav, …"""
FLAG_VALUE = r"^[A-Za-z0-9_.:/@+%-]{0,128}$"
FlagValue = Annotated[str, StringConstraints(pattern=FLAG_VALUE)]
"""The value of an rclone mount flag: one word (empty for a switch)."""
CIFS_SHARE = r"^[A-Za-z0-9_.$-]{1,80}(/[A-Za-z0-9_.-]{1,255})*$"
CifsShare = Annotated[str, StringConstraints(pattern=CIFS_SHARE), AfterValidator(_no_dotdot)]
WORKGROUP = r"^[A-Za-z0-9.-]{1,253}$"
Workgroup = Annotated[str, StringConstraints(pattern=WORKGROUP)]
"""A cifs domain or workgroup: CORP, corp.example.test."""
TMPFS_SIZE = r"^[1-9][0-9]{0,12}[kmgKMG]?$|^[1-9][0-9]?%$"
TmpfsSize = Annotated[str, StringConstraints(pattern=TMPFS_SIZE)]
"""A tmpfs size: bytes with an optional k, m or g, or a percentage of RAM (10%)."""

HOST_KEY = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,2}$"
HostKey = Annotated[str, StringConstraints(pattern=HOST_KEY)]
"""A public host key as in `ssh-keyscan` or /etc/ssh/ssh_host_*_key.pub: type and base64, no comment."""
SERVER = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$"
Server = Annotated[str, StringConstraints(pattern=SERVER)]
"""A host name or IPv4 address."""
REMOTE_PATH = r"^[A-Za-z0-9_./@+-]{0,1024}$"


RemotePath = Annotated[str, StringConstraints(pattern=REMOTE_PATH), AfterValidator(_no_dotdot)]
"""A path on the remote side (relative to the login or remote root, or absolute)."""


PATTERN_HELP.update({
    RCLONE_KEY: "must be an rclone option name: lower-case letters, digits and '_', e.g. known_hosts_file",
    FLAG_NAME: "must be an rclone flag without its dashes: lower-case letters, digits and '-', e.g. vfs-cache-mode",
    FLAG_VALUE: "must be one word of letters, digits and _ . : / @ + % - (at most 128)",
    HOST_KEY: "must be a public host key: its type and base64, e.g. \"ssh-ed25519 AAAAC3Nz…\" (no comment)",
    SERVER: "must be a host name or IPv4 address: letters, digits, '.' and '-'",
    REMOTE_PATH: "must be a remote path of letters, digits and _ . / @ + -",
    RCLONE_BACKEND: "must be an rclone backend as `rclone config providers` names it, e.g. drive, sftp, s3",
    CIFS_SHARE: "must be a share name (letters, digits, _ . $ -), optionally with a folder: reports/2024",
    WORKGROUP: "must be a domain or workgroup: letters, digits, '.' and '-'",
    TMPFS_SIZE: "must be a size such as 64m, 1g or 10%",
})
