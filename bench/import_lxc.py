"""bench_import.py --tool lxc: unwrap → `reconcile import lxc` → load → render → compare →
LXC's own parser (lxc-ls over a scratch LXC path) on the original and on the rendering.

A setting of the original is kept when the rendering has it with the same value as LXC
reads them: LXC 2 names translated (the importer says which), `lxc.cgroup.*` and
`lxc.cgroup2.*` of one controller alike (reconcile writes the node's cgroup version), a
memory limit in any unit the kernel reads alike (536870912 is 512M), a capability list
counted word by word, a MAC address in either case, a value's inner blanks folded.
"""
from __future__ import annotations

import re
from pathlib import Path

from bench.import_common import Row, checked_manifest
from reconcilers.base import Node, Runner
from reconcilers.importing import ImportProblem
from reconcilers.lxc import tools
from reconcilers.lxc.config import canonical_memory, config_lines, scope_lines
from reconcilers.lxc.importer import import_text, read_lines
from reconcilers.lxc.reconciler import ContainerReconciler

PLACEHOLDERS = {"CONTAINER_NAME": "c1", "CONTAINER_HOME": "/var/lib/lxc"}


def unwrap(path: Path) -> tuple[str, list[str]]:
    """The LXC config a published file holds: itself, a markdown code block, or a shell
    heredoc (its $VARIABLES filled with plausible values)."""
    text = path.read_text()
    notes = []
    if path.suffix == ".md":
        m = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
        if m:
            text, notes = m.group(1), ["unwrapped the markdown code block"]
    elif path.suffix == ".sh":
        m = re.search(r"<<\s*'?EOF'?\n(.*?)\nEOF", text, re.S)
        if m:
            text, notes = m.group(1), ["unwrapped the shell heredoc"]
        for var, value in PLACEHOLDERS.items():
            if f"${var}" in text or f"${{{var}}}" in text:
                text = text.replace(f"${{{var}}}", value).replace(f"${var}", value)
                notes.append(f"${var} = {value}")
    return text, notes


def settings(text: str) -> list[tuple[str, str]]:
    """key = value pairs as LXC reads them, normalized for comparing."""
    out = []
    for key, value in text:
        key = key.replace("lxc.cgroup2.", "lxc.cgroup.")
        if key.startswith("lxc.cap."):
            out += [(key, w) for w in value.split()]
        elif key == "lxc.rootfs.path":
            out.append((key, value.removeprefix("dir:").rstrip("/")))
        elif key.endswith(".hwaddr"):
            out.append((key, value.lower()))
        elif key in ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup.memory.max"):
            out.append((key, canonical_memory(value)))  # 536870912 and 512M are one limit to the kernel
        else:
            out.append((key, " ".join(value.split())))
    return out


def run(folder: Path) -> list[Row]:
    rows = []
    node = Node("lb1", Runner())
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".tmpl")
                       and p.name not in ("SOURCES.tsv", "README.md")):
        text, notes = unwrap(path)
        row = Row(path.name, False, notes=notes)
        rows.append(row)
        try:
            imported = import_text(text, str(path), {"node": "lb1"}, Path("/tmp/bench-import-secrets"))
        except ImportProblem as err:
            row.notes.append(f"import: {err}")
            continue
        checked = checked_manifest(imported.documents[0], path.name, row)
        if checked is None:
            continue
        manifest, tree = checked
        row.imported = True
        rec = ContainerReconciler()
        rec.desired(tree, node)
        rendered = next(iter(rec.render(node).values()))
        name = manifest.metadata.name
        original = settings([(k, v) for _, k, v in read_lines(text, str(path))[0]])
        mine = settings(scope_lines(rendered))
        if not any(k == "lxc.rootfs.path" for k, _ in mine):  # typed: where reconcile created it
            mine.append(("lxc.rootfs.path", rec.wanted[name]["rootfs"].removeprefix("dir:")))
        left = list(mine)
        row.keys = len(original)
        for setting in original:
            if setting in left:
                left.remove(setting)
                row.kept += 1
            else:
                row.notes.append(f"not kept: {setting[0]} = {setting[1]}")
        added = [f"{k} = {v}" for k, v in left]
        if added:
            row.notes.append("reconcile adds: " + "; ".join(added))
        row.native_original = native(node, name, text)
        row.native_rendered = native(node, name, rendered)
    return rows


def native(node: Node, name: str, text: str) -> str:
    refused = tools.check_configs(node, {name: text})
    return "ok" if not refused else refused[name]


__all__ = ["run", "unwrap", "config_lines"]
