"""Subordinate ids of an unprivileged container: /etc/subuid and /etc/subgid give root the
host ranges its `lxc.idmap` uses (what LXC's tools and newuidmap check), and ids inside the
container mapped to ids on the node (for the files reconcile writes into it).

Reconcile adds a line `root:START:COUNT` where no root range covers the map, remembers in
its state folder which lines it added, and takes them away when no container of this node
needs them any more; lines it did not add are never touched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconcilers.base import AtomicWriter, Node

FILES = {"u": Path("/etc/subuid"), "g": Path("/etc/subgid")}
RECORD = "container-subids.json"  # under the state folder: the lines reconcile added


def parse(text: str) -> list[tuple[str, int, int]]:
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def needed(idmap: list[str], files: dict[str, Path] = FILES) -> list[str]:
    """`idmap` lines (`u 0 100000 65536`) → the subordinate lines they need, as
    `root:100000:65536 in /etc/subuid`."""
    out = []
    for entry in idmap:
        kind, _, host, count = entry.split()
        line = f"root:{host}:{count} in {files[kind]}"
        if line not in out:
            out.append(line)
    return out


def covered(lines: list[str]) -> list[str]:
    """The lines of `needed()` that a root (or uid 0) range of the files covers now."""
    out = []
    texts: dict[str, list[tuple[str, int, int]]] = {}
    for line in lines:
        entry, _, path = line.partition(" in ")
        _, start, count = entry.split(":")
        if path not in texts:
            try:
                texts[path] = parse(Path(path).read_text())
            except OSError:
                texts[path] = []
        lo, hi = int(start), int(start) + int(count)
        if any(owner in ("root", "0") and s <= lo and hi <= s + n for owner, s, n in texts[path]):
            out.append(line)
    return out


def ensure(node: Node, lines: list[str], container: str) -> None:
    """Add the lines no range covers yet; remember them as added for `container`."""
    record = _read_record(node)
    for line in lines:
        if line in covered([line]):
            continue
        entry, _, path = line.partition(" in ")
        target = Path(path)
        try:
            text = target.read_text()
        except FileNotFoundError:
            text = ""
        new = text + ("" if not text or text.endswith("\n") else "\n") + entry + "\n"
        AtomicWriter(node).write(target, new, mode=0o644)
        record.setdefault(line, [])
    for line in lines:
        if line in record and container not in record[line]:
            record[line].append(container)
    _write_record(node, record)


def release(node: Node, container: str, still_needed: set[str]) -> None:
    """Take away the lines reconcile added that no container of this node needs any more."""
    record = _read_record(node)
    changed = False
    for line, users in list(record.items()):
        if container in users:
            users.remove(container)
            changed = True
        if not users and line not in still_needed:
            entry, _, path = line.partition(" in ")
            target = Path(path)
            try:
                kept = [ln for ln in target.read_text().splitlines() if ln.strip() != entry]
                AtomicWriter(node).write(target, "\n".join(kept) + ("\n" if kept else ""), mode=0o644)
            except FileNotFoundError:
                pass
            del record[line]
            changed = True
    if changed:
        _write_record(node, record)


def host_id(idmap: list[str], kind: str, inside: int) -> int | None:
    """The id on the node of id `inside` of the container (None: not mapped). No map: the
    same id (a privileged container)."""
    ranges = [entry.split() for entry in idmap if entry.split()[0] == kind]
    if not ranges:
        return inside
    for _, c, h, n in ranges:
        if int(c) <= inside < int(c) + int(n):
            return int(h) + inside - int(c)
    return None


def inside_id(idmap: list[str], kind: str, host: int) -> int | None:
    """The container's view of id `host` of the node (None: not mapped)."""
    ranges = [entry.split() for entry in idmap if entry.split()[0] == kind]
    if not ranges:
        return host
    for _, c, h, n in ranges:
        if int(h) <= host < int(h) + int(n):
            return int(c) + host - int(h)
    return None


def _read_record(node: Node) -> dict[str, Any]:
    try:
        data = json.loads((node.state_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(node: Node, record: dict[str, Any]) -> None:
    AtomicWriter(node).write(node.state_dir / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n", mode=0o600)
