"""The revision a tree is at: its git commit, `-dirty` when the manifests differ from it.

A plan or apply reports the revision it ran; a tree edited after the last commit (or with
manifests git does not track yet) is not that commit, so it says `<sha>-dirty`, and the
tree's content digest tells two dirty states apart. A tree outside git is named by its
digest alone (`sha256:…`).
"""
from __future__ import annotations

from pathlib import Path

from reconcilers.base import CommandError, Runner

_runner = Runner(dry_run=True, default_timeout=10.0)


def _git(root: Path, *args: str) -> str | None:
    try:
        r = _runner.run(["git", "-C", str(root), *args], read_only=True, check=False)
    except CommandError:  # git missing or hung
        return None
    return r.stdout if r.rc == 0 else None


def is_manifest(rel: str) -> bool:
    parts = rel.split("/")
    return rel.endswith((".yaml", ".yml")) and not any(p.startswith(".") for p in parts)


def dirty_manifests(porcelain: str, prefix: str) -> list[str]:
    """Manifest paths (relative to the tree) that `git status --porcelain -z` lists as
    changed, added, deleted or untracked; `prefix` is the tree's path in the repository."""
    out = []
    entries = porcelain.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            i += 1  # a rename's source path follows
        rel = path[len(prefix):] if prefix and path.startswith(prefix) else path
        if is_manifest(rel):
            out.append(rel)
    return out


def revision(root: Path, digest: str) -> str:
    """`<sha>` for a tree as committed, `<sha>-dirty` when its manifests differ from the
    commit, `sha256:<digest>` outside git."""
    return git_revision(root) or f"sha256:{digest[:12]}"


def git_revision(root: Path) -> str | None:
    """`<sha>` or `<sha>-dirty` (see revision), None outside git. Needs no digest, so the
    loader asks it while it reads the files."""
    out = _git(root, "rev-parse", "--show-prefix", "HEAD")  # the tree's path in the repository, then HEAD
    lines = out.split("\n") if out else []
    if len(lines) < 2 or len(lines[1].strip()) < 40:
        return None
    prefix, sha = lines[0].strip(), lines[1].strip()
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", ".")
    if status is None or dirty_manifests(status, prefix):
        return f"{sha}-dirty"
    return sha
