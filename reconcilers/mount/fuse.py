"""The FUSE tools: what rclone knows (its backends, their options, its mount flags), rclone's
password obscuring, and finding the daemon that serves a FUSE mount.

rclone is its own native validator: `rclone config providers` lists every backend with its
options and says which ones are passwords (rclone wants those obscured in its config), and
`rclone mount --help` lists the mount flags. Both are read once per process.

`rclone obscure` reads the password on stdin (`-`), so neither the password nor its obscured
form (which rclone can reveal, so it is as secret) appears in argv; both are registered with
the runner for redaction.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from reconcilers.base import ApplyError, CommandError, Node
from schemas.mount import MountSpec

_PROVIDERS: dict[str, dict[str, dict[str, bool]]] = {}
# rclone makes ~/.config/rclone whenever it runs, even for a help text: a read-only call
# names no config file, so a dry-run leaves the home folder as it was
NO_CONFIG = ["--config", "/dev/null"]
_FLAGS: dict[str, set[str]] = {}


def providers(node: Node) -> dict[str, dict[str, bool]]:
    """{backend prefix: {option: is_password}} from `rclone config providers`."""
    if "all" not in _PROVIDERS:
        r = node.run(["rclone", "config", "providers", *NO_CONFIG], read_only=True)
        _PROVIDERS["all"] = parse_providers(r.stdout)
    return _PROVIDERS["all"]


def parse_providers(text: str) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for p in json.loads(text):
        opts = {o["Name"]: bool(o.get("IsPassword")) for o in p.get("Options") or []}
        out[p["Prefix"]] = opts
        out.setdefault(p["Name"], opts)
    return out


def mount_flags(node: Node) -> set[str]:
    """Every flag `rclone mount` takes (its own and the global ones), without dashes."""
    if "all" not in _FLAGS:
        r = node.run(["rclone", "mount", "--help", *NO_CONFIG], read_only=True)
        _FLAGS["all"] = parse_mount_flags(r.stdout)
    return _FLAGS["all"]


def parse_mount_flags(text: str) -> set[str]:
    return set(re.findall(r"^\s+(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)", text, re.M))


def check_rclone(spec: MountSpec, backends: dict[str, dict[str, bool]], flags: set[str]) -> list[str]:
    """rclone's own view of the manifest (`backends` from `providers`, `flags` from
    `mount_flags`): the backend exists, each option is one of its options, passwords are
    given as secrets, each mount flag is a flag of `rclone mount`."""
    remote, problems = spec.rclone.remote, []
    known = backends.get(remote.type)
    if known is None:
        return [f"spec.rclone.remote.type: rclone has no backend {remote.type!r} (see `rclone config providers`)"]
    for key in [*remote.options, *remote.secrets]:
        if key not in known:
            problems.append(f"spec.rclone.remote: rclone's {remote.type} backend has no option {key!r}")
    for key in remote.options:
        if known.get(key):
            problems.append(f"spec.rclone.remote.options.{key}: a password: give it in secrets by reference")
    for flag in spec.rclone.flags:
        if flag not in flags:
            problems.append(f"spec.rclone.flags.{flag}: `rclone mount` has no flag --{flag}")
    return problems


def is_password(spec: MountSpec, key: str, node: Node) -> bool:
    return providers(node).get(spec.rclone.remote.type, {}).get(key, False)


def obscure(node: Node, value: str) -> str:
    """`rclone obscure -` with the password on stdin; the result is as secret as the input."""
    if "\n" in value:
        raise ApplyError("a password for rclone must be one line (rclone obscure reads the first line only)")
    r = node.run(["rclone", "obscure", "-", *NO_CONFIG], read_only=True, input=value + "\n", secrets=[value])
    out = r.stdout.strip()
    node.runner.add_secret(out)
    return out


def config_value(key: str, value: str) -> str:
    """A secret as one rclone config line: a JSON token compacted, a PEM key with its line
    ends written as `\\n` (rclone's key_pem), anything else must already be one line."""
    value = value.strip()
    if value.startswith("{"):
        try:
            return json.dumps(json.loads(value), separators=(",", ":"))
        except ValueError:
            pass
    if "\n" in value:
        if key == "key_pem":
            return value.replace("\r", "").replace("\n", "\\n")
        raise ApplyError(f"the secret for rclone option {key!r} has several lines; rclone config values are one line")
    return value


# --- daemons and the mount helper ------------------------------------------------------------


# Program names of the processes that serve a FUSE mount: the tools run directly, and as the
# mount helpers systemd's mount units run (mount(8) runs /sbin/mount.fuse.sshfs, which is
# sshfs itself and keeps that name; rclone's helper runs `rclone mount` again).
DAEMONS = ("rclone", "sshfs", "mount.rclone", "mount.sshfs", "mount.fuse.sshfs")


def daemon_pids(paths: set[str]) -> dict[str, int]:
    """{mount point: PID} of the rclone / sshfs processes serving these mount points (the
    mount point is an argument of each). Read from /proc: no process is started."""
    out: dict[str, int] = {}
    if not paths:
        return out
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        path = served_path(argv, paths)
        if path is not None:
            out[path] = int(entry.name)
    return out


def served_path(argv: list[str], paths: set[str]) -> str | None:
    """The mount point of `paths` that a process with this argv serves, if it is a FUSE
    daemon (see DAEMONS) of one of them."""
    if not argv or os.path.basename(argv[0]) not in DAEMONS:
        return None
    return next((a for a in argv[1:] if a in paths), None)


def ensure_rclone_helper(node: Node, link: Path) -> bool:
    """rclone's documented mount helper (`/sbin/mount.rclone` → rclone), which systemd's
    mount units of Type=rclone run. Created when missing; one that exists is left alone."""
    if link.exists() or link.is_symlink():
        return False
    node.runner.guard("symlink", [str(link)], read_only=False)
    target = None
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        if Path(folder, "rclone").exists():
            target = Path(folder, "rclone")
            break
    if target is None:
        raise ApplyError("rclone is not installed on this node (apt-get install rclone)")
    link.symlink_to(target)
    return True


def tool_missing(node: Node, kind: str) -> str | None:
    """Why the node cannot mount this type, or None. FUSE tools must be installed; kernel
    types need their helper (mount.nfs, mount.cifs) or the file system in the kernel."""
    need = {"rclone": "rclone", "sshfs": "sshfs"}.get(kind)
    if need:
        found = any(Path(d, need).exists() for d in ("/usr/bin", "/usr/local/bin", "/bin"))
        if not Path("/dev/fuse").exists():
            return "this node has no /dev/fuse (the fuse module is not loaded)"
        return None if found else f"{need} is not installed on this node (apt-get install {need})"
    helper = {"nfs": ("mount.nfs", "nfs-common"), "cifs": ("mount.cifs", "cifs-utils")}.get(kind)
    if helper and not any(Path(d, helper[0]).exists() for d in ("/sbin", "/usr/sbin")):
        return f"{helper[0]} is missing: this node does not support {kind} mounts (apt-get install {helper[1]})"
    return None


def describe_error(err: CommandError) -> str:
    """The useful line of a failed mount, for people."""
    text = (err.stderr or err.stdout or "").strip().splitlines()
    lines = [t for t in text if t.strip()]
    return lines[-1] if lines else str(err)

