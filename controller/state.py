"""The agent's state folder: inventory of what it created, the node lock, status and history.

Everything here is written atomically (temp file, fsync, rename), so a killed agent leaves
the old file or the new one.

State files are read strictly: a file that cannot be read, is not JSON or has the wrong
shape raises `StateError`, which names the file and says what to do. Never an empty
default: an inventory read as empty would lose what reconcile owns (a removal in that run
would never be pruned), a history read as empty would hide what happened. Only a file that
does not exist yet is its default (a node's first run).

Writes fail cleanly: `write_json` raises `StateError` naming the file (ENOSPC included), and
`make_room` checks before a run changes anything that the folder can take what the run will
write, so that a full disk stops the run before the node is touched.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from reconcilers import faults

DEFAULT_STATE_DIR = Path(os.environ.get("RECONCILE_STATE_DIR", "/var/lib/reconcile"))
HISTORY_KEEP = 50
# What a run may write to the state folder besides the inventory, status and history as
# they are now (the native-validation cache, reconcilers' own records): kept free before
# a run starts changing the node.
ROOM_MARGIN = 256 * 1024


class StateError(Exception):
    """A state file cannot be read or written. The message names the file and what to do."""

    def __init__(self, path: Path, problem: str, advice: str = ""):
        self.path = Path(path)
        super().__init__(f"{path}: {problem}" + (f"; {advice}" if advice else ""))


def _write_problem(path: Path, err: OSError) -> StateError:
    if err.errno == errno.ENOSPC:
        return StateError(path, "cannot write: no space left on device",
                          f"free space in {path.parent} (nothing was recorded there by this step)")
    if err.errno == errno.EDQUOT:
        return StateError(path, "cannot write: disk quota exceeded", f"free space in {path.parent}")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StateError(path, f"cannot write: {err.strerror}", f"make {path.parent} writable for root")
    return StateError(path, f"cannot write: {err.strerror or err}")


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, atomically. Raises StateError naming the file."""
    path = Path(path)
    # One line: json's C encoder writes only unindented JSON; the pure-Python one took 0.15 s
    # for the 3 MB status of 1,000 created objects. `reconcile status` is how people read these.
    text = json.dumps(data, sort_keys=True, default=str) + "\n"
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        tmp = ""
    except OSError as err:
        raise _write_problem(path, err) from None
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    faults.step(f"state:{path}")


def read_json(path: Path, default: Any, *, shape: type | tuple[type, ...] | None = None, what: str = "") -> Any:
    """The JSON in `path`; `default` when the file does not exist. A file that cannot be
    read, is not JSON, or (with `shape`) is not of that type raises StateError naming the
    file and what to do (`what` says what the file is for, in that advice)."""
    path = Path(path)
    advice = f"move it aside to start over{f' ({what})' if what else ''}, or restore it from a backup"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise StateError(path, f"cannot be read: {reason}", advice) from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise StateError(path, f"is damaged: not JSON ({err})", advice) from None
    if shape is not None and not isinstance(data, shape):
        names = " or ".join(t.__name__ for t in (shape if isinstance(shape, tuple) else (shape,)))
        want = {"dict": "a JSON object", "list": "a JSON list"}.get(names, names)
        raise StateError(path, f"is damaged: {want} expected, found {_json_type(data)}", advice)
    return data


def _json_type(data: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(data), type(data).__name__)


def make_room(state_dir: Path, need: int = 0) -> None:
    """Check that the state folder can take what this run will write (`need` bytes on top
    of a margin), by allocating that much in a temp file and removing it. Raises StateError
    naming the folder before anything changed, rather than the run failing half-way.
    """
    state_dir = Path(state_dir)
    size = max(need, 0) + ROOM_MARGIN
    tmp = ""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".room.", suffix=".tmp", dir=state_dir)
        try:
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise StateError(state_dir, f"no room for this run's records ({size // 1024} KiB needed)",
                             "free space there") from None
        raise _write_problem(state_dir / ".room", err) from None
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def sweep_temp_files(state_dir: Path) -> list[Path]:
    """Remove the temp files a killed writer left in the state folder (a temp file exists
    only while a writer holds the node lock, so call this under the lock)."""
    removed = []
    folder = Path(state_dir)
    try:
        entries = list(folder.glob(".*.tmp"))
    except OSError:
        return removed
    for name in ("inventory.json", "status.json", "history.json", "agent.json", "applied.json"):
        entries += folder.glob(f".{name}.*")  # named so by versions before the .tmp suffix
    for entry in entries:
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


class Inventory:
    """What the agent created on this node: `Kind/name` → {revision, hash, applied}.

    Only objects in the inventory are ever deleted when their manifest leaves git.
    """

    def __init__(self, state_dir: Path | None):
        self.path = Path(state_dir) / "inventory.json" if state_dir is not None else None
        self.objects: dict[str, dict[str, Any]] = self._read(self.path) if self.path is not None else {}

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        """The objects of an inventory file, checked entry by entry: a damaged inventory
        is an error (StateError), never an empty one, since an object missing from it
        would never be pruned."""
        what = "reconcile then owns nothing it created before: remove what it made by hand"
        data = read_json(path, {"version": 1, "objects": {}}, shape=dict, what=what)
        objects = data.get("objects")
        advice = f"move it aside to start over ({what}), or restore it from a backup"
        if not isinstance(objects, dict):
            raise StateError(path, f"is damaged: \"objects\" is {_json_type(objects)}, not an object", advice)
        for key, entry in objects.items():
            kind, _, name = key.partition("/")
            if not kind or not name or not isinstance(entry, dict) \
                    or not isinstance(entry.get("hash"), (str, type(None))):
                raise StateError(path, f"is damaged: entry {key!r} is not a Kind/name with its revision and hash",
                                 advice)
        return dict(objects)

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

    def size(self) -> int:
        """About how many bytes the saved inventory takes (for `make_room`)."""
        return 200 * (len(self.objects) + 1)

    def __len__(self) -> int:
        return len(self.objects)


class LockHeld(Exception):
    pass


class NodeLock:
    """One writer per node: an flock on the state folder itself, and the owner's PID in
    `<state>/lock` (for people and `reconcile status`).

    The kernel drops an flock when its process dies, so a lock left by a killed process is
    never stale. The folder is what is locked, not the file: a lock file deleted by hand
    (or by a cleanup script) would let the next process lock a new file of the same name
    while the first one still runs; a folder that holds the node's state is not removed
    that casually (and cannot be while it is not empty). The lock file is flocked too, so
    that tools that look for the lock where older versions put it still find it.

    Taking the lock also removes the temp files a killed writer left in the state folder.
    """

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.path = self.dir / "lock"
        self.fd: int | None = None
        self.dir_fd: int | None = None

    def acquire(self) -> "NodeLock":
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise _write_problem(self.dir, err) from None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dir_fd)
            raise LockHeld(f"another reconcile (pid {self._holder()}) holds {self.path}") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            os.close(dir_fd)
            raise _write_problem(self.path, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an older reconcile that locks only the file
            os.close(fd)
            os.close(dir_fd)
            raise LockHeld(f"another reconcile (pid {self._holder()}) holds {self.path}") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the PID is only for the message; the flock is what counts
        self.fd, self.dir_fd = fd, dir_fd
        sweep_temp_files(self.dir)
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        for fd in (self.fd, self.dir_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self.dir_fd = None

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


HISTORY_WHAT = "the record of past runs starts again"


def read_history(state_dir: Path) -> list[dict[str, Any]]:
    """history.json, newest first; StateError if it is damaged (not a list of objects)."""
    path = Path(state_dir) / "history.json"
    history = read_json(path, [], shape=list, what=HISTORY_WHAT)
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise StateError(path, f"is damaged: entry {i + 1} is {_json_type(entry)}, not an object",
                             f"move it aside to start over ({HISTORY_WHAT})")
    return history


def read_last_run(state_dir: Path) -> dict[str, Any] | None:
    """status.json (the last run); None before the first; StateError if damaged."""
    return read_json(Path(state_dir) / "status.json", None, shape=dict,
                     what="it is written again by the next run")


def append_history(state_dir: Path, summary: dict[str, Any], *, collapse: bool = False) -> None:
    """Put `summary` first in history.json (at most HISTORY_KEEP entries)."""
    path = Path(state_dir) / "history.json"
    history = read_history(state_dir)
    same = ("revision", "mode", "result", "counts", "errors")
    if collapse and history and all(history[0].get(k) == summary.get(k) for k in same):
        repeats = history[0].get("repeats", 1)
        summary = dict(summary, repeats=(repeats if isinstance(repeats, int) else 1) + 1,
                       first=history[0].get("first", history[0].get("started")))
        history = history[1:]
    history = ([summary] + history)[:HISTORY_KEEP]
    write_json(path, history)


def check_state(state_dir: Path, inventory: "Inventory | None" = None) -> None:
    """Before a run changes anything: every state file it will update can be read (a
    damaged one raises StateError naming it) and the folder has room for what the run
    writes (`make_room`). A run that fails here has changed nothing."""
    state_dir = Path(state_dir)
    inventory = inventory if inventory is not None else Inventory(state_dir)
    history = read_history(state_dir)
    read_last_run(state_dir)
    sizes = 0
    for name in ("status.json", "history.json", "agent.json", "applied.json"):
        try:
            sizes += (state_dir / name).stat().st_size
        except OSError:
            pass
    make_room(state_dir, 2 * (inventory.size() + sizes) + 1024 * len(history))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
