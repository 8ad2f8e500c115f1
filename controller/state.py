"""The agent's state folder: inventory of what it created, the node lock, status and history.

Everything here is written atomically (temp file, fsync, rename), so a killed agent leaves
the old file or the new one.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(os.environ.get("RECONCILE_STATE_DIR", "/var/lib/reconcile"))
HISTORY_KEEP = 50


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError):
        return default


class Inventory:
    """What the agent created on this node: `Kind/name` → {revision, hash, applied}.

    Only objects in the inventory are ever deleted when their manifest leaves git.
    """

    def __init__(self, state_dir: Path | None):
        self.path = Path(state_dir) / "inventory.json" if state_dir is not None else None
        data = read_json(self.path, {}) if self.path is not None else {}
        self.objects: dict[str, dict[str, Any]] = dict(data.get("objects", {}))

    @classmethod
    def empty(cls) -> "Inventory":
        """An inventory of nothing, never saved: for validating another node's rendering."""
        return cls(None)

    @staticmethod
    def key(kind: str, name: str) -> str:
        return f"{kind}/{name}"

    def names(self, kind: str) -> set[str]:
        prefix = f"{kind}/"
        return {k[len(prefix):] for k in self.objects if k.startswith(prefix)}

    def kinds(self) -> set[str]:
        return {k.split("/", 1)[0] for k in self.objects}

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(self.key(kind, name))

    def record(self, kind: str, name: str, revision: str, state_hash: str | None) -> None:
        """Remember an object as ours. `state_hash` None: about to be created, not yet
        converged (so a difference is never taken for drift)."""
        entry = self.objects.setdefault(self.key(kind, name), {"created": _now()})
        entry.update(revision=revision, hash=state_hash, applied=_now())

    def forget(self, kind: str, name: str) -> None:
        self.objects.pop(self.key(kind, name), None)

    def save(self) -> None:
        if self.path is None:
            raise RuntimeError("an empty inventory is not saved")
        write_json(self.path, {"version": 1, "objects": self.objects})

    def __len__(self) -> int:
        return len(self.objects)


class LockHeld(Exception):
    pass


class NodeLock:
    """One writer per node: an flock on `<state>/lock`, holding the owner's PID.

    The kernel drops an flock when its process dies, so a lock left by a killed process
    is never stale; the PID in the file is only for the message.
    """

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "lock"
        self.fd: int | None = None

    def acquire(self) -> "NodeLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockHeld(f"another reconcile (pid {holder}) holds {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "NodeLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


HISTORY_FIELDS = ("revision", "mode", "started", "seconds", "result", "counts", "errors")
# Extra fields the agent adds to a run (what triggered it); absent from a CLI run.
HISTORY_OPTIONAL = ("trigger",)


def save_run(state_dir: Path, record: dict[str, Any], *, collapse: bool = False) -> None:
    """The last run as status.json, and the last runs in history.json.

    With `collapse`, a run that ends like the newest history entry (same revision, result,
    counts and errors: an agent's idle resyncs) replaces it and counts as a repeat, so that
    history keeps what happened rather than fifty identical lines.
    """
    state_dir = Path(state_dir)
    write_json(state_dir / "status.json", record)
    summary = {k: record.get(k) for k in HISTORY_FIELDS}
    summary.update({k: record[k] for k in HISTORY_OPTIONAL if k in record})
    append_history(state_dir, summary, collapse=collapse)


def append_history(state_dir: Path, summary: dict[str, Any], *, collapse: bool = False) -> None:
    """Put `summary` first in history.json (at most HISTORY_KEEP entries)."""
    path = Path(state_dir) / "history.json"
    history = read_json(path, [])
    if not isinstance(history, list):
        history = []
    same = ("revision", "mode", "result", "counts", "errors")
    if collapse and history and isinstance(history[0], dict) \
            and all(history[0].get(k) == summary.get(k) for k in same):
        summary = dict(summary, repeats=int(history[0].get("repeats", 1)) + 1,
                       first=history[0].get("first", history[0].get("started")))
        history = history[1:]
    history = ([summary] + history)[:HISTORY_KEEP]
    write_json(path, history)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
