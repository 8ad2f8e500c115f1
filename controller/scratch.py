"""A private temp folder for each reconcile process, and removal of those of dead ones.

Reconcilers make temp files for the native validators and previews (`haproxy -c` on a
candidate, a candidate CIB for `crm_simulate`, a shadow CIB, an LXC config to check). A run
killed with kill -9 cannot remove them. So every plan, apply and agent process puts its
temp files in its own folder, `<tmp>/reconcile.<pid>.<start>.XXXX` (Python's
`tempfile.tempdir`; child processes keep their own TMPDIR, so that a daemon started by
reconcile never depends on this folder), removed when the process exits; and each new
process removes the folders of processes that no longer run (the PID and its start time,
so a recycled PID is not mistaken for the owner).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "reconcile."
_NAME = re.compile(r"reconcile\.(\d+)\.(\d+)\.[^/]+")


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def sweep(base: Path) -> list[Path]:
    """Remove the private temp folders in `base` whose process is gone."""
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.fullmatch(entry.name)
        if not m or not entry.is_dir() or entry.is_symlink():
            continue
        pid, start = int(m.group(1)), int(m.group(2))
        if _start_time(pid) == start:
            continue  # its process still runs
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def use_private_tmp() -> Path:
    """Make this process's temp files go to a folder of its own (removed at exit), after
    removing those that dead reconcile processes left. Returns the folder."""
    if tempfile.tempdir and _NAME.fullmatch(Path(tempfile.tempdir).name):
        return Path(tempfile.tempdir)  # already set up (the CLI started the agent)
    base = Path(tempfile.gettempdir())
    sweep(base)
    me = os.getpid()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{me}.{_start_time(me)}.", dir=base))
    tempfile.tempdir = str(path)

    def remove() -> None:
        if os.getpid() == me:  # not in a forked child
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path
