#!/usr/bin/env python3
"""Benchmark: import fidelity over a folder of real configurations.

For each file: imported (the importer wrote manifests and `reconcile validate` without
native checks accepts them), directive fidelity of import → render (share of the original's
directives found in the rendering), and the native validator on the original and on the
rendering (every rendered file must be accepted wherever the original is). Each tool has
a hook module `bench/import_TOOL.py` with `run(folder) -> list[Row]` and its default folder.

Usage: bench_import.py TOOL [FOLDER]       (TOOL: keepalived; default folder
                                            ../shared/corpus/TOOL beside the checkout)
"""
from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOOKS = {"keepalived": "bench.import_keepalived"}


@dataclass
class Row:
    file: str
    imported: bool
    directives: int = 0
    keywords: float = 0.0  # share of the original's keywords kept, in place
    values: float = 0.0  # share kept with their values
    native_original: str = ""  # "ok" or the validator's first complaint
    native_rendered: str = ""
    notes: list[str] = field(default_factory=list)
    new_complaints: int = 0  # the native validator's complaints about the rendering only

    @property
    def native_ok(self) -> bool:
        """The rendering is accepted wherever the original is."""
        return self.native_original != "ok" or self.native_rendered == "ok"


def default_folder(tool: str) -> Path:
    for base in (ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")):
        if (base / tool).is_dir():
            return base / tool
    return ROOT.parent / "shared" / "corpus" / tool


def report(tool: str, rows: list[Row], seconds: float) -> None:
    print(f"{'file':44} {'imported':>8} {'dirs':>5} {'keyw':>6} {'values':>6}  native original → rendered")
    for r in rows:
        print(f"{r.file[:44]:44} {'yes' if r.imported else 'NO':>8} {r.directives:5d} {r.keywords:6.1%} "
              f"{r.values:6.1%}  {r.native_original[:40]} → {r.native_rendered[:40]}")
        for note in r.notes:
            print(f"{'':46}{note[:150]}")
    n = len(rows)
    imported = sum(r.imported for r in rows)
    total = sum(r.directives for r in rows)
    kw = sum(r.keywords * r.directives for r in rows) / total if total else 1.0
    val = sum(r.values * r.directives for r in rows) / total if total else 1.0
    passing = [r for r in rows if r.native_original == "ok"]
    print()
    print(f"{tool}: {n} files; imported {imported}/{n} ({imported / n if n else 1:.0%}); "
          f"keyword fidelity {kw:.1%}, value fidelity {val:.1%} over {total} directives; "
          f"native check accepts {sum(r.native_rendered == 'ok' for r in passing)}/{len(passing)} rendered files "
          f"whose original it accepts ({sum(r.native_rendered == 'ok' for r in rows)}/{n} overall); "
          f"renderings with a complaint the original has not: {sum(r.new_complaints > 0 for r in rows)}; "
          f"{seconds:.1f}s")


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
    ok = all(r.imported for r in rows) and all(r.native_ok for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
