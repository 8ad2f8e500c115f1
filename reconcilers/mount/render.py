"""Text and argv for one mount: systemd units, an fstab line, the mount commands, and the
files the tools read (rclone config, ssh known hosts, cifs credentials).

Every value placed here was validated by the schema as one token (no comma, space or
newline), so a rendered line is always exactly one option list, one unit line, one config
line. Secrets appear only in the content of 0600 files, never in an Entry, a unit or argv.
"""
from __future__ import annotations

import json
import re
from typing import Any

from reconcilers.base import GENERATED_HEADER, UnsafeValue, one_line
from reconcilers.mount.model import DAEMON_WAIT, Entry
from schemas.common import unsafe_character

MARKER = "# reconcile-managed: Mount/{name}"

# --- the quoting functions, one per format (the schema refused these values first) ---------

_OPTION = re.compile(r"[A-Za-z0-9_.:/@+%^=-]+")
_KNOWN_HOSTS_WORD = re.compile(r"[A-Za-z0-9_.:/@+=\[\]-]+")


def mount_option(value: str) -> str:
    """One item of a mount option list (`mount -o`, fstab's fourth field, a unit's
    Options=, `sshfs -o`): a comma would start another option, a blank end the field, a
    quote be taken away by a mount helper (rclone's un-quotes), a backslash escape."""
    text = one_line(value, "mount options")
    if not _OPTION.fullmatch(text):
        raise UnsafeValue(f"mount options: refused to write {text!r}: one option is letters, digits and "
                          "_ . : / @ + % ^ = - (no comma, blank, quote or backslash)")
    return text


def unit_value(value: str) -> str:
    """A value on a systemd unit line: one line, no blank at either end (systemd strips
    them), no backslash at the end (it continues the line), '%' doubled (systemd expands
    '%' specifiers in What=, Where=, Options=)."""
    text = one_line(value, "systemd unit")
    if text != text.strip() or text.endswith("\\"):
        raise UnsafeValue(f"systemd unit: refused to write {text!r}: blanks at an end or a final backslash "
                          "change the line")
    return text.replace("%", "%%")


def fstab_field(value: str) -> str:
    """One field of an fstab line: blanks, backslashes and '#' written as octal escapes
    (fstab(5): `\\040` for a space), so the field stays one field."""
    text = one_line(value, "fstab")
    return "".join(f"\\{ord(c):03o}" if c in " \t\\#" else c for c in text)


def rclone_value(key: str, value: str, secret: bool = False) -> str:
    """A value of rclone's config file (`key = value`): one line, no blank at either end
    and no leading quote (rclone's parser strips both). A secret's refusal names the key,
    never the value."""
    bad = unsafe_character(value) is not None or value != value.strip() or value[:1] in "\"'`"
    if bad or len(value) > 65536:
        shown = f"the secret for {key}" if secret else repr(value)
        raise UnsafeValue(f"rclone config: refused to write {shown}: one line without blanks at its ends or a "
                          "leading quote")
    return value


def known_hosts_word(value: str) -> str:
    """A host or key word of a known_hosts line: no blank (the next field), no ',' (another
    host), no '*', '?' or '!' (patterns)."""
    text = one_line(value, "known_hosts")
    if not _KNOWN_HOSTS_WORD.fullmatch(text):
        raise UnsafeValue(f"known_hosts: refused to write {text!r}: not one plain word")
    return text


def credentials_value(key: str, value: str, secret: bool = False) -> str:
    """A value of mount.cifs's credentials file (`key=value` lines): one line. A secret's
    refusal names the key, never the value."""
    if unsafe_character(value) is not None or value != value.strip():
        shown = f"the secret for {key}" if secret else repr(value)
        raise UnsafeValue(f"cifs credentials: refused to write {shown}: one line without blanks at its ends")
    return value



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
    options = ",".join(mount_option(o) for o in e.options) or "defaults"
    return " ".join(fstab_field(f) for f in (e.what, e.where, e.fstype, options)) + " 0 0"


def mount_unit(e: Entry, *, network: bool, lazy: bool, automount: bool) -> str:
    """A systemd .mount unit. With an automount the .automount unit is what is enabled, so
    the mount unit has no [Install] section."""
    v = unit_value
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=e.name), "[Unit]",
             f"Description=reconcile Mount {v(e.name)} ({v(e.kind)})"]
    if network:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    options = [mount_option(o) for o in e.options] + (["_netdev"] if network else [])
    lines += ["", "[Mount]", f"What={v(e.what)}", f"Where={v(e.where)}", f"Type={v(e.fstype)}",
              f"Options={v(','.join(options))}", "TimeoutSec=60"]
    if lazy:
        lines.append("LazyUnmount=yes")
    if not automount:
        target = "remote-fs.target" if network else "local-fs.target"
        lines += ["", "[Install]", f"WantedBy={target}"]
    return "\n".join(lines) + "\n"


def automount_unit(e: Entry, *, idle: str | None, network: bool) -> str:
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=e.name), "[Unit]",
             f"Description=reconcile Mount {unit_value(e.name)}: mounted on first access"]
    if network:
        lines.append("After=network-online.target")
    lines += ["", "[Automount]", f"Where={unit_value(e.where)}"]
    if idle:
        lines.append(f"TimeoutIdleSec={unit_value(idle)}")
    target = "remote-fs.target" if network else "local-fs.target"
    lines += ["", "[Install]", f"WantedBy={target}"]
    return "\n".join(lines) + "\n"


def mount_argv(e: Entry, rclone_flags: list[tuple[str, str | None]] | None = None) -> list[str]:
    """The command that mounts `e` without systemd. Both FUSE tools detach themselves once
    the mount is in place (rclone --daemon waits for it, sshfs forks after mounting), so
    the command's exit status is the mount's."""
    # `--flag=value` as one argument: a value can never be taken for a flag of its own
    if e.kind == "rclone":
        argv = ["rclone", "mount", e.what, e.where]
        for k, v in rclone_flags or []:
            argv.append(f"--{mount_option(k)}" if v is None else f"--{mount_option(k)}={one_line(v, 'rclone argv')}")
        return argv + ["--daemon", f"--daemon-wait={DAEMON_WAIT}"]
    options = ",".join(mount_option(o) for o in e.options)
    if e.kind == "sshfs":
        return ["sshfs", e.what, e.where, "-o", options]
    if e.kind == "bind":
        return ["mount", "-o", options, e.what, e.where]
    argv = ["mount", "-t", e.fstype]
    if e.options:
        argv += ["-o", options]
    return argv + [e.what, e.where]


def umount_argv(where: str, lazy: bool = False) -> list[str]:
    return ["umount", "-l", where] if lazy else ["umount", where]


def remount_flags_argv(where: str, flags: list[str], read_only: bool) -> list[str]:
    """Change only the per-mount flags of a live mount (read-only, nosuid, …): works for any
    file system, FUSE included, and never unmounts."""
    opts = ["remount", "bind", "ro" if read_only else "rw", *(mount_option(f) for f in flags)]
    return ["mount", "-o", ",".join(opts), where]


# --- files the tools read ---------------------------------------------------------------------


def rclone_conf(name: str, remote_type: str, values: dict[str, str], secrets: frozenset[str] = frozenset()) -> str:
    """One rclone remote as rclone's own config file writes it. `values` hold plain options
    and the values of the keys in `secrets` (already obscured where rclone wants that)."""
    lines = [f"# {GENERATED_HEADER}", MARKER.format(name=name), f"[{rclone_value('name', name)}]",
             f"type = {rclone_value('type', remote_type)}"]
    lines += [f"{rclone_value('key', k)} = {rclone_value(k, v, k in secrets)}" for k, v in values.items()]
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
    pattern = known_hosts_word(host if port == 22 else f"[{host}]:{port}")
    return "".join(f"{pattern} {' '.join(known_hosts_word(w) for w in k.split(' '))}\n" for k in keys)


def cifs_credentials(user: str, password: str, domain: str | None) -> str:
    """mount.cifs's credentials file (credentials=): read by the helper, never in argv."""
    text = f"username={credentials_value('username', user)}\npassword={credentials_value('password', password, True)}\n"
    return text + (f"domain={credentials_value('domain', domain)}\n" if domain else "")


def record_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
