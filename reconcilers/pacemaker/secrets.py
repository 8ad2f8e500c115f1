"""Resource parameters kept out of the CIB, the way Pacemaker's `cibsecret` keeps them.

Pacemaker's executor and fencer replace a parameter whose CIB value is `lrm://` with the
content of `/var/lib/pacemaker/lrm/secrets/RESOURCE/PARAM` (first line, trailing blanks
removed, at most 254 characters), after checking it against the MD5 in `PARAM.sign`
(lib/common/cib_secrets.c). `cibsecret` writes those files on the node it runs on and
copies them to the others with pssh, pdsh or ssh: it needs root ssh between the nodes,
and it takes the value on its command line. reconcile needs neither: the agent on every
node writes that node's files itself (the same layout, root-only, atomically), from the
manifest's `{file:}`/`{env:}` reference, and the DC writes `lrm://` into the CIB. The
value is never in the CIB, git, a plan, argv or a log.

Observed per node, for the plan: `<secret: in sync>`, `<secret: changed>` (this node's file
holds another value: drift), `<secret: missing>`, or `<secret: inline in the CIB>` when the
CIB holds a value instead of `lrm://` (never shown).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from reconcilers.base import ApplyError, AtomicWriter, Node, read_secret

SECRETS_DIR = Path("/var/lib/pacemaker/lrm/secrets")
MAX_LENGTH = 254  # Pacemaker reads a secret with fgets() into 255 bytes
IN_SYNC, CHANGED, MISSING, INLINE = ("<secret: in sync>", "<secret: changed>", "<secret: missing>",
                                     "<secret: inline in the CIB>")
UNREADABLE = "<secret: unreadable here>"


def secret_path(resource: str, param: str, root: Path = SECRETS_DIR) -> Path:
    return root / resource / param


def checked_value(ref: Any, node: Node, resource: str, param: str) -> str:
    """The secret's value, read (and registered for redaction) and checked against what
    Pacemaker can read back: one line, no trailing blank, at most 254 characters."""
    value = read_secret(ref, node)
    where = f"{resource} parameter {param} ({ref.describe()})"
    if "\n" in value or "\r" in value:
        raise ApplyError(f"{where}: a secret parameter is one line; Pacemaker reads only the first")
    if value != value.rstrip():
        raise ApplyError(f"{where}: a secret parameter may not end in a blank (Pacemaker strips it)")
    if not value:
        raise ApplyError(f"{where}: the secret is empty")
    if len(value.encode()) > MAX_LENGTH:
        raise ApplyError(f"{where}: a secret parameter is at most {MAX_LENGTH} bytes (Pacemaker reads no more)")
    return value


def _read(path: Path) -> str | None:
    try:
        return path.read_text().splitlines()[0].rstrip() if path.stat().st_size else ""
    except (FileNotFoundError, IndexError):
        return None
    except OSError:
        return None


def observe(resource: str, param: str, cib_value: str | None, ref: Any, node: Node,
            root: Path = SECRETS_DIR) -> str:
    """The token the plan shows for one secret parameter on this node."""
    if cib_value is None:
        return MISSING
    if cib_value != "lrm://":
        return INLINE
    stored = _read(secret_path(resource, param, root))
    sign = _read(secret_path(resource, param, root).with_name(param + ".sign"))
    if stored is None or sign is None:
        return MISSING
    try:
        wanted = read_secret(ref, node)
    except ApplyError:
        return UNREADABLE
    if stored != wanted or sign != hashlib.md5(stored.encode()).hexdigest():
        return CHANGED
    return IN_SYNC


def write(resource: str, param: str, value: str, node: Node, root: Path = SECRETS_DIR) -> bool:
    """Store one secret as cibsecret does: the value and its MD5, root-only. True when a
    file changed."""
    folder = secret_path(resource, param, root).parent
    if not node.dry_run:
        for d in (root, folder):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
    writer = AtomicWriter(node)
    changed = writer.write(folder / param, value + "\n", mode=0o600, owner=(0, 0))
    changed |= writer.write(folder / (param + ".sign"), hashlib.md5(value.encode()).hexdigest() + "\n", mode=0o600,
                            owner=(0, 0))
    return changed


def remove(resource: str, param: str, node: Node, root: Path = SECRETS_DIR) -> None:
    """Forget one secret (its parameter left the manifest, or its resource the CIB)."""
    folder = secret_path(resource, param, root).parent
    writer = AtomicWriter(node)
    writer.remove(folder / param)
    writer.remove(folder / (param + ".sign"))
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            node.runner.guard("remove", [str(folder)], read_only=False)
            folder.rmdir()
    except OSError:
        pass


def stored_params(resource: str, root: Path = SECRETS_DIR) -> list[str]:
    """The parameters this node stores secrets for, for one resource."""
    folder = root / resource
    try:
        return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".sign") and not p.name.startswith("."))
    except OSError:
        return []
