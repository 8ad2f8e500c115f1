"""Validated trees remembered by content, so that planning an unchanged tree builds no validator.

Validating a tree is a function of two things only: the bytes of its manifest files (with
their paths) and the code that validates them (the schemas, the loader, the YAML reader,
pydantic, Python). Most of a small tree's load is not the validation itself but pydantic
building each kind's validator (~0.1 s for desired-state/), paid again by every CLI call.
So a tree that validated is stored under `<state>/cache/tree/`, named by a digest of
both, and a later load of the same bytes with the same code takes its manifests from there:

- the key: the loader's digest of every manifest file it read (path and content), and
  `code_digest()`: the source of every module that takes part in validation, and the
  versions of pydantic, pydantic-core, PyYAML (with libyaml or not) and Python. Any other
  byte or any other code is another key: a stored verdict can never stand for a changed
  file or a changed rule. The walk (which files there are, links, limits), the reading and
  the git revision are done afresh on every load; only parsing and validation are skipped;
- only valid trees are stored, and only by runs that change the node (apply once it is
  past its refusals, the agent): a dry-run reads the cache and leaves nothing behind, as
  with native_check;
- the entries are pickles, which run code when loaded: one is read only if this user
  owns it, nobody else may write it, and it is not a link (the state folder is root's);
  one that cannot be read is a miss, never an error. At most KEEP trees are kept.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.loader import Tree

log = logging.getLogger("reconcile")

KEEP = 8
FORMAT = b"reconcile-tree-cache/1"
_ROOT = Path(__file__).resolve().parent.parent
# Every module whose code a validation runs (schemas import nothing else of reconcile's).
_CODE = ("controller/loader.py", "controller/yaml_lines.py", "controller/tree_files.py", "controller/tree_cache.py")
_code_digest: str | None = None


def code_digest() -> str:
    """Digest of the validating code (sources and library versions), once per process."""
    global _code_digest
    if _code_digest is None:
        import pydantic
        import pydantic_core
        import yaml

        h = hashlib.sha256(FORMAT)
        for part in (sys.version, pydantic.VERSION, pydantic_core.__version__, yaml.__version__,
                     str(getattr(yaml, "__with_libyaml__", False)), str(pickle.HIGHEST_PROTOCOL)):
            h.update(part.encode() + b"\0")
        sources = [_ROOT / p for p in _CODE] + sorted((_ROOT / "schemas").glob("*.py"))
        for path in sources:
            h.update(path.relative_to(_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _code_digest = h.hexdigest()
    return _code_digest


def folder_of(state_dir: Path) -> Path:
    """Where a node's validated trees are kept."""
    return Path(state_dir) / "cache" / "tree"


class TreeCache:
    """The validated trees in one folder. `load_tree` reads it; a run that may change the
    node, once it is sure to run (past its refusals), calls `put` with the tree it loaded."""

    def __init__(self, state_dir: Path):
        self.folder = folder_of(state_dir)

    def _path(self, digest: str) -> Path | None:
        try:
            code = code_digest()
        except OSError as err:  # the sources cannot be read (a packaging without them): no cache
            log.debug("tree cache: off: %s", err)
            return None
        return self.folder / hashlib.sha256(f"{code}:{digest}".encode()).hexdigest()

    def get(self, digest: str) -> Any:
        """What `put` stored for this tree digest and this code, or None."""
        path = self._path(digest)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                log.debug("tree cache: %s is not this user's alone: not read", path)
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                stored_key, value = pickle.load(f)
            if stored_key != path.name:
                return None
        except Exception as err:  # damaged, or written by other code: a miss
            log.debug("tree cache: %s not read: %s", path, err)
            return None
        finally:
            os.close(fd)
        return value

    def put(self, tree: "Tree") -> None:
        """Remember a tree `load_tree` validated (its manifests, under its digest); a tree
        that came from the cache is marked recently used. Never raises."""
        path = self._path(tree.digest)
        if path is None:
            return
        if tree.from_cache:
            try:
                os.utime(path)  # kept longest
            except OSError:
                pass
            return
        value = tree.items
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump((path.name, value), f, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(temp, path)
            except BaseException:
                os.unlink(temp)
                raise
            entries = sorted(self.folder.iterdir(), key=lambda p: p.stat().st_mtime)
            stored = [p for p in entries if not p.name.startswith(".")]
            # and the temp files of writers killed before their rename (not another's, in flight)
            stale = [p for p in entries if p.name.startswith(".tmp-") and p.stat().st_mtime < time.time() - 60]
            for old in stored[:-KEEP] + stale:
                old.unlink(missing_ok=True)
        except Exception as err:  # a cache that cannot be written only costs time
            log.debug("tree cache: %s not written: %s", path, err)
