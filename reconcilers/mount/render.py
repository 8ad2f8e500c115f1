"""Text and argv for one mount: systemd units, an fstab line, the mount commands, and the
files the tools read (rclone config, ssh known hosts, cifs credentials).

Every value placed here was validated by the schema as one token (no comma, space or
newline), so a rendered line is always exactly one option list, one unit line, one config
line. Secrets appear only in the content of 0600 files, never in an Entry, a unit or argv.
"""
from __future__ import annotations

import json
from typing import Any

from reconcilers.base import GENERATED_HEADER
from reconcilers.mount.model import DAEMON_WAIT, Entry

MARKER = "# reconcile-managed: Mount/{name}"


def unit_name(path: str, suffix: str) -> str:
    """`systemd-escape --path --suffix=SUFFIX PATH`: the only unit name systemd accepts
    for a mount at PATH."""
    trimmed = path.strip("/")
    if not trimmed:
        return f"-.{suffix}"
    out = []
    for i, ch in enumerate(trimmed):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out) + "." + suffix


def fstab_line(e: Entry) -> str:
    """The line an operator would put in /etc/fstab for this mount (shown in plans)."""
    return f"{e.what} {e.where} {e.fstype} {','.join(e.options) or 'defaults'} 0 0"


def mount_unit(e: Entry, *, network: bool, lazy: bool, automount: bool) -> str:
    """A systemd .mount unit. With an automount the .automount unit is what is enabled, so
    the mount unit has no [Install] section."""
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=e.name), "[Unit]",
             f"Description=reconcile Mount {e.name} ({e.kind})"]
    if network:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    options = list(e.options) + (["_netdev"] if network else [])
    lines += ["", "[Mount]", f"What={e.what}", f"Where={e.where}", f"Type={e.fstype}",
              f"Options={','.join(options)}", "TimeoutSec=60"]
    if lazy:
        lines.append("LazyUnmount=yes")
    if not automount:
        target = "remote-fs.target" if network else "local-fs.target"
        lines += ["", "[Install]", f"WantedBy={target}"]
    return "\n".join(lines) + "\n"


def automount_unit(e: Entry, *, idle: str | None, network: bool) -> str:
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=e.name), "[Unit]",
             f"Description=reconcile Mount {e.name}: mounted on first access"]
    if network:
        lines.append("After=network-online.target")
    lines += ["", "[Automount]", f"Where={e.where}"]
    if idle:
        lines.append(f"TimeoutIdleSec={idle}")
    target = "remote-fs.target" if network else "local-fs.target"
    lines += ["", "[Install]", f"WantedBy={target}"]
    return "\n".join(lines) + "\n"


def mount_argv(e: Entry, rclone_flags: list[tuple[str, str | None]] | None = None) -> list[str]:
    """The command that mounts `e` without systemd. Both FUSE tools detach themselves once
    the mount is in place (rclone --daemon waits for it, sshfs forks after mounting), so
    the command's exit status is the mount's."""
    if e.kind == "rclone":
        argv = ["rclone", "mount", e.what, e.where]
        for k, v in rclone_flags or []:
            argv += [f"--{k}"] if v is None else [f"--{k}", v]
        return argv + ["--daemon", "--daemon-wait", DAEMON_WAIT]
    if e.kind == "sshfs":
        return ["sshfs", e.what, e.where, "-o", ",".join(e.options)]
    if e.kind == "bind":
        return ["mount", "-o", ",".join(e.options), e.what, e.where]
    argv = ["mount", "-t", e.fstype]
    if e.options:
        argv += ["-o", ",".join(e.options)]
    return argv + [e.what, e.where]


def umount_argv(where: str, lazy: bool = False) -> list[str]:
    return ["umount", "-l", where] if lazy else ["umount", where]


def remount_flags_argv(where: str, flags: list[str], read_only: bool) -> list[str]:
    """Change only the per-mount flags of a live mount (read-only, nosuid, …): works for any
    file system, FUSE included, and never unmounts."""
    opts = ["remount", "bind", "ro" if read_only else "rw", *flags]
    return ["mount", "-o", ",".join(opts), where]


# --- files the tools read ---------------------------------------------------------------------


def rclone_conf(name: str, remote_type: str, values: dict[str, str]) -> str:
    """One rclone remote as rclone's own config file writes it. `values` hold plain options
    and secret values (already obscured where rclone wants them obscured)."""
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=name), f"[{name}]", f"type = {remote_type}"]
    lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def parse_rclone_conf(text: str) -> dict[str, dict[str, str]]:
    """Sections of an rclone config: {remote: {key: value}} (comments dropped)."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = out.setdefault(line[1:-1], {})
        elif current is not None and "=" in line:
            k, _, v = line.partition("=")
            current[k.strip()] = v.strip()
    return out


def known_hosts(host: str, port: int, keys: list[str]) -> str:
    """known_hosts lines for one server (`[host]:port` when the port is not 22)."""
    pattern = host if port == 22 else f"[{host}]:{port}"
    return "".join(f"{pattern} {k}\n" for k in keys)


def cifs_credentials(user: str, password: str, domain: str | None) -> str:
    """mount.cifs's credentials file (credentials=): read by the helper, never in argv."""
    text = f"username={user}\npassword={password}\n"
    return text + (f"domain={domain}\n" if domain else "")


def record_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
