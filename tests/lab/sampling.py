"""Watching a lab node's processes from the host, for tests that prove a secret never shows."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from controller.lab import Lab


class CmdlineWatcher:
    """Samples argv and environment of every process in one node, from the host, until stopped."""

    def __init__(self, lab: Lab, node: str):
        self.pidns = os.readlink(f"/proc/{lab.pid(node)}/ns/pid")
        self.seen: dict[int, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    if os.readlink(f"/proc/{entry.name}/ns/pid") != self.pidns:
                        continue
                    cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                    env = Path(f"/proc/{entry.name}/environ").read_bytes()
                except OSError:
                    continue
                self.seen[int(entry.name)] = (cmd + b"\0" + env).decode(errors="replace")
            self.samples += 1

    def __enter__(self) -> "CmdlineWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
