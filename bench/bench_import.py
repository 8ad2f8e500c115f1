#!/usr/bin/env python3
"""Benchmark: `reconcile import` → `reconcile render` fidelity over folders of real configs.

For each file of a tool's corpus (default ../shared/corpus/TOOL beside the checkout): the
importer (in process), the loader on its manifests (schema and tree checks), the
reconciler's rendering of them, then per file:

  imported   yes, or the importer's message (which names file:line)
  keys       the original's settings (key = value) found in the rendering with the same
             value, as the tool reads them (LXC 2 names translated, booleans and lists as
             sssd reads them); reconcile's own additions do not count against it and are
             listed
  native     the tool's own parser on the original and on the rendering (LXC: lxc-ls on a
             scratch path; sssd: sssctl config-check): the rendering must be accepted
             wherever the original is

Files that wrap the configuration (a shell heredoc, a markdown block, a `realm join`
script) are unwrapped first, placeholders (`<DOMAIN.TLD>`, `$CONTAINER_NAME`) filled with
plausible values; each hook says what it did. Prints a table and totals; asserts nothing.

    .venv/bin/python bench/bench_import.py lxc [FOLDER]
    .venv/bin/python bench/bench_import.py sssd [FOLDER]
"""
from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOOKS = {"lxc": "bench.import_lxc", "sssd": "bench.import_domain"}


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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in HOOKS:
        print(f"usage: bench_import.py TOOL [FOLDER]   (TOOL: {', '.join(HOOKS)})", file=sys.stderr)
        return 2
    tool = argv[0]
    folder = Path(argv[1]) if len(argv) > 1 else default_folder(tool)
    hook = importlib.import_module(HOOKS[tool])
    started = time.monotonic()
    rows = hook.run(folder)
    report(tool, rows, time.monotonic() - started)
    ok = all(r.imported and r.kept == r.keys and r.native_ok for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
