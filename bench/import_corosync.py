"""bench_import.py --tool corosync: see bench/import_pacemaker.py (run_corosync)."""
from __future__ import annotations

from pathlib import Path

from bench import import_pacemaker
from bench.import_common import Row


def run(folder: Path) -> list[Row]:
    return import_pacemaker.run_corosync(folder)
