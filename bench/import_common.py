"""What bench_import.py's own-table hooks (LXC, sssd) share: a row per file and the table.

A setting of the original is kept when the rendering has it with the same value as the tool
reads it (each hook says its normalization); reconcile's own additions are listed, never
counted against the file.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    file: str
    imported: bool
    keys: int = 0  # settings of the original
    kept: int = 0  # of them found in the rendering, same value
    native_original: str = ""
    native_rendered: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def native_ok(self) -> bool:
        return self.native_original != "ok" or self.native_rendered == "ok"


def checked_manifest(document: Any, name: str, row: Row) -> tuple[Any, Any] | None:
    """An imported document as a manifest and a one-manifest tree, both checked; None (the
    reason in the row's notes) when the schema or the tree checks refuse it."""
    from controller.loader import Loaded, Source, Tree, check_tree, parse_document

    manifest = parse_document(document, Source(name, 1, {}))
    if isinstance(manifest, list):
        row.notes.append("schema: " + "; ".join(str(p) for p in manifest))
        return None
    tree = Tree(Path("/nonexistent"), [Loaded(manifest, Source(name, 1, {}))], "bench")
    problems = check_tree(tree)
    if problems:
        row.notes.append("tree: " + "; ".join(str(p) for p in problems))
        return None
    return manifest, tree


def default_folder(tool: str) -> Path:
    for base in (ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")):
        if (base / tool).is_dir():
            return base / tool
    return ROOT.parent / "shared" / "corpus" / tool


def report(tool: str, rows: list[Row], seconds: float) -> None:
    print(f"{'file':46} {'imported':>8} {'keys':>5} {'kept':>5}  native original → rendered")
    for r in rows:
        print(f"{r.file[:46]:46} {'yes' if r.imported else 'NO':>8} {r.keys:5d} {r.kept:5d}  "
              f"{r.native_original[:38]} → {r.native_rendered[:38]}")
        for note in r.notes:
            print(f"{'':48}{note[:160]}")
    n = len(rows)
    imported = sum(r.imported for r in rows)
    keys, kept = sum(r.keys for r in rows), sum(r.kept for r in rows)
    passing = [r for r in rows if r.native_original == "ok"]
    print()
    print(f"{tool}: {n} files; imported {imported}/{n} ({imported / n if n else 1:.0%}); key fidelity {kept}/{keys} "
          f"({kept / keys if keys else 1:.1%}); native parser accepts {sum(r.native_rendered == 'ok' for r in passing)}"
          f"/{len(passing)} renderings whose original it accepts ({sum(r.native_rendered == 'ok' for r in rows)}/{n} "
          f"overall); {seconds:.1f}s")


def main(tool: str, run: Callable[[Path], list[Row]], folders: list[Path]) -> int:
    started = time.monotonic()
    rows = [row for folder in folders for row in run(folder)]
    report(tool, rows, time.monotonic() - started)
    return 0 if all(r.imported and r.kept == r.keys and r.native_ok for r in rows) else 1


__all__ = ["Row", "main", "report", "default_folder", "sys"]
