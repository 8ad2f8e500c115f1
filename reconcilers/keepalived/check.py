"""`keepalived -t` on a rendered file, with its complaints pinned on the objects that wrote them.

The file is checked before anything is installed: the scripts it would ship are staged in a
temp folder (and the file's paths to reconcile's script folder pointed there), so that
keepalived sees them as it will after the install, and an accepted rendering is remembered
by `native_check` (content digest, keepalived's build, the node and its interfaces).

keepalived names what it refuses in three ways, and each is traced back to the section
(object) that rendered it: "(Line N)" through the rendered file's line map, "(VI_1)" through
the instance's name, "[192.0.2.1]:tcp:80" through the virtual server's address. A complaint
that names none of them goes with the ones that do; alone, it refuses the whole file.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from reconcilers.base import Key, Node, Refusal, native_check
from reconcilers.keepalived.conf import Rendered
from reconcilers.keepalived.daemon import Keepalived
from reconcilers.keepalived.render import split_owner
from schemas.keepalived import MANAGED_SCRIPTS, ScriptFile

_LINE = re.compile(r"\((?:[^():]*: )?Line (\d+)\)")
_NAME = re.compile(r"^\(?([A-Za-z0-9_][A-Za-z0-9_.-]*)\)")
_VS = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(?:tcp|udp|sctp):(\d+)")
_TIMESTAMP = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ [\d:]{8} \d{4}: ")
_MISSING_INTERFACE = re.compile(r"interface (\S+) for .* doesn't exist$")
NO_INTERFACE_SUMMARY = "Non-existent interface specified in configuration"


def interfaces() -> str:
    """This network namespace's interface names: `keepalived -t` looks them up."""
    try:
        return ",".join(sorted(os.listdir("/sys/class/net")))
    except OSError:
        return ""


def check_file(node: Node, rendered: Rendered, files: list[ScriptFile]) -> list[str]:
    """keepalived -t's complaints about `rendered` with `files` in place; [] when accepted."""
    staged = "".join(f"{f.target()}:{f.mode:o}:{f.content}" for f in files)

    def run() -> list[str]:
        folder = Path(tempfile.mkdtemp(prefix="reconcile-ka-"))
        try:
            text = rendered.text
            for f in sorted(files, key=lambda f: -len(f.target())):
                target = folder / f.target()[len(MANAGED_SCRIPTS) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.content)
                target.chmod(f.mode)
                # Only the staged scripts: one already installed is checked where it is.
                text = re.sub(re.escape(f.target()) + r"(?=[\s\"']|$)", str(target), text)
            conf = folder / "keepalived.conf"
            conf.write_text(text)
            conf.chmod(0o600)
            return Keepalived(node).problems(conf)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return native_check(node, "keepalived", rendered.text, run, context=f"{interfaces()}\0{staged}")


def missing_interfaces(problems: list[str]) -> tuple[list[str], list[str]]:
    """(interfaces keepalived -t says do not exist, every other complaint): on another
    machine than the node (`validate` in CI) the node's interfaces are expected missing."""
    missing: list[str] = []
    rest: list[str] = []
    for text in problems:
        m = _MISSING_INTERFACE.search(text)
        if m:
            missing += [m.group(1)] if m.group(1) not in missing else []
        elif _TIMESTAMP.sub("", text).strip() != NO_INTERFACE_SUMMARY:
            rest.append(text)
    return missing, rest


def attribute(problems: list[str], rendered: Rendered, instances: dict[str, str],
              servers: dict[tuple[str, str], str]) -> list[Refusal]:
    """Refusals from keepalived -t's lines: each names the objects of the section it points
    at (`instances`: instance name → owner; `servers`: (address, port) → owner)."""
    by_owner: dict[str, list[str]] = {}
    loose: list[str] = []
    for text in problems:
        text = _TIMESTAMP.sub("", text).strip()
        if not text:
            continue
        owner = ""
        m = _LINE.search(text)
        if m:
            owner = rendered.owner_of(int(m.group(1)))
        if not owner:
            rest = _LINE.sub("", text).strip()
            n = _NAME.match(rest)
            if n and n.group(1) in instances:
                owner = instances[n.group(1)]
        if not owner:
            v = _VS.search(text)
            if v:
                owner = servers.get((v.group(1), v.group(2)), "")
        (by_owner.setdefault(owner, []) if owner else loose).append(text)
    # keepalived ends some complaints with a summary that names nothing ("Non-existent
    # interface specified in configuration"): it belongs to the objects named before it. The
    # rest is checked again without them, so a complaint of its own still stops the file.
    out = [Refusal(f"keepalived -t: {' | '.join(lines + loose)}", objects=tuple(keys(owner)))
           for owner, lines in by_owner.items()]
    if loose and not out:
        out.append(Refusal(f"keepalived -t: {' | '.join(loose)}"))
    return out


def keys(owner: str) -> list[Key]:
    """The objects of a section (none for reconcile's defaults: a refusal there is the file's)."""
    return [(kind, name) for kind, name in split_owner(owner) if kind in ("Keepalived", "VirtualIP", "VirtualServer")]
