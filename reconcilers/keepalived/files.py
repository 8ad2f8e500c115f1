"""Scripts shipped from git: installed below /etc/keepalived/reconcile with their mode and owner.

reconcile owns that folder: what is in it and not in the manifests is removed. The plan
compares each file's digest, mode and owner, never its content.
"""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from reconcilers.base import ApplyError, AtomicWriter, Node
from schemas.keepalived import MANAGED_SCRIPTS, ScriptFile


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def files_state(files: list[ScriptFile]) -> dict[str, dict[str, Any]]:
    return {f.target(): {"mode": f"{f.mode:04o}", "owner": f.owner, "group": f.group,
                         "sha256": _digest(f.content.encode())} for f in files}


def _name(lookup: Any, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def observed_files(folder: Path = Path(MANAGED_SCRIPTS)) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(folder.rglob("*"))
    except OSError:
        return out
    for path in entries:
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            data = path.read_bytes()
        except OSError:
            continue
        out[str(path)] = {"mode": f"{st.st_mode & 0o7777:04o}", "owner": _name(pwd.getpwuid, st.st_uid),
                          "group": _name(grp.getgrgid, st.st_gid), "sha256": _digest(data)}
    return out


def install_files(node: Node, files: list[ScriptFile], folder: Path = Path(MANAGED_SCRIPTS)) -> None:
    """Make the folder hold exactly `files` (each written atomically with its mode and owner)."""
    writer = AtomicWriter(node)
    wanted = set()
    if files:
        node.runner.guard("write", [str(folder)], read_only=False)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
    for f in files:
        try:
            uid, gid = pwd.getpwnam(f.owner).pw_uid, grp.getgrnam(f.group).gr_gid
        except KeyError as err:
            raise ApplyError(f"{f.target()}: no such user or group on this node ({err.args[0]})") from None
        target = Path(f.target())
        target.parent.mkdir(parents=True, exist_ok=True)
        writer.write(target, f.content, mode=f.mode, owner=(uid, gid))
        st = target.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):  # same content, other owner: only chown
            node.runner.guard("chown", [str(target)], read_only=False)
            os.chown(target, uid, gid)
        wanted.add(str(target))
    for path in observed_files(folder):
        if path not in wanted:
            writer.remove(path)
