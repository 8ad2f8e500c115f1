"""Unit and fuzz tests never change this machine.

They drive real reconcilers and the real engine, and a test that forgets to point one at
its temporary folder (or a registry patched for one kind of a reconciler that owns two)
would otherwise write /etc/haproxy or /var/lib/reconcile on the host, as happened once.
This guard makes such a test fail instead: files are written only below the temporary
folder, commands that change state are refused, and the state folder defaults to a
temporary one. The lab tests, which do change nodes, do not use it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

import controller.state
from reconcilers.base import AtomicWriter, Runner

TEMP = Path(tempfile.gettempdir()).resolve()
# Programs unit tests run through the Runner itself (its own tests, a GnuPG home in a
# temporary folder); anything else that is not declared read-only is refused.
HARMLESS = {"echo", "cat", "sleep", "sh", "true", "false", "gpg", "git"}


def _inside_temp(path: Any) -> bool:
    resolved = Path(path).resolve()
    return resolved == TEMP or TEMP in resolved.parents


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setattr(controller.state, "DEFAULT_STATE_DIR", state)
    monkeypatch.setenv("RECONCILE_STATE_DIR", str(state))  # a Node made without a state folder
    write, remove, run = AtomicWriter.write, AtomicWriter.remove, Runner.run

    def guarded_write(self: AtomicWriter, path: Any, *args: Any, **kw: Any) -> bool:
        if not _inside_temp(path):
            raise AssertionError(f"a unit test would write {path} on this machine")
        return write(self, path, *args, **kw)

    def guarded_remove(self: AtomicWriter, path: Any) -> bool:
        if not _inside_temp(path):
            raise AssertionError(f"a unit test would remove {path} on this machine")
        return remove(self, path)

    def guarded_run(self: Runner, argv: Any, *args: Any, read_only: bool = False, **kw: Any) -> Any:
        if isinstance(argv, (list, tuple)) and argv and not read_only and not self.dry_run \
                and Path(str(argv[0])).name not in HARMLESS:
            raise AssertionError(f"a unit test would run {list(argv)!r}, which changes this machine")
        return run(self, argv, *args, read_only=read_only, **kw)

    monkeypatch.setattr(AtomicWriter, "write", guarded_write)
    monkeypatch.setattr(AtomicWriter, "remove", guarded_remove)
    monkeypatch.setattr(Runner, "run", guarded_run)
