"""The manifest files of a repository: found and read without trusting the repository.

`walk(root)` lists every `*.yaml` / `*.yml` file below the root (hidden files and folders,
such as `.git`, are skipped) and says what it could not look at; `read(path, limit)` reads
one file only if it is a regular file within the size limit, checked before reading.

    MAX_FILE_BYTES   8 MiB   one manifest file
    MAX_TREE_BYTES  64 MiB   all manifest files together (the loader counts them)
    MAX_FILES       20,000   manifest files (10,000 objects in a file each fit twice)
    MAX_ENTRIES    200,000   files and folders looked at below the root

A symbolic link is followed only to a place inside the repository that is not hidden: a
link out (`x.yaml -> /etc/shadow`, a folder linked to `/`) is an error and is never read,
so its content cannot show in an error. What cannot be read (a folder without permission,
a dangling link, a named pipe) is an error too, never skipped: skipped, its manifests would
vanish from the tree and the next apply would prune their objects. Names are shown escaped
(`escape`), so a file name cannot forge a line of the output.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

MAX_FILE_BYTES = 8 << 20
MAX_TREE_BYTES = 64 << 20
MAX_FILES = 20_000
MAX_ENTRIES = 200_000


class FileProblem(NamedTuple):
    """Why a file or folder was not read: its shown name, a line (1 for a file, 0 for a
    folder, which has none) and the message."""

    file: str
    line: int
    field: str
    message: str


def escape(text: str, backslash: bool = True) -> str:
    """`text` on one line for people: every character that is not printable (newline, CR,
    ESC, NUL, U+2028, bidi overrides, …) written as an escape; a byte of a file name that
    is not UTF-8 as \\xNN. With `backslash`, a backslash is doubled so the escape cannot be
    forged by the name itself."""
    if text.isprintable() and not (backslash and "\\" in text):
        return text
    out = []
    for ch in text:
        if ch == "\\" and backslash:
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":  # os.fsdecode's stand-in for a byte that is not UTF-8
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def shown_name(root: Path, path: Path) -> str:
    """A file's name for people: relative to the root, escaped (see `escape`)."""
    return escape(os.fsdecode(path.relative_to(root)))


def walk(root: Path) -> tuple[list[Path], list[FileProblem]]:
    """The `*.yaml` / `*.yml` files below `root`, sorted, and the problems met on the way.

    Hidden files and folders are skipped. A symbolic link is followed only when it leads to
    a place inside the root that is not hidden: a linked file is read through its link, a
    linked folder is not walked (its manifests are read where they really are). Anything
    else that may hold manifests (an unreadable folder, a link out, a named pipe) is a
    problem: skipping it would make its manifests vanish, and their objects be pruned.
    """
    files: list[Path] = []
    problems: list[FileProblem] = []
    entries = 0
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as found:
                children = list(found)
        except OSError as err:
            name = shown_name(root, folder) + "/" if folder != root else str(root)
            problems.append(FileProblem(name, 0, "", f"cannot read this folder ({err.strerror}): its manifests "
                                        "would be missing; make it readable or remove it"))
            continue
        entries += len(children)
        if entries > MAX_ENTRIES:
            problems.append(FileProblem(shown_name(root, folder) + "/", 0, "", f"more than {MAX_ENTRIES:,} files "
                                        "and folders below the repository root: not a repository of manifests?"))
            break
        for entry in children:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            manifest = entry.name.endswith((".yaml", ".yml"))
            try:
                if entry.is_symlink():
                    problem = _link_problem(root, path, manifest)
                    if problem:
                        problems.append(problem)
                    elif manifest and not os.path.isdir(path):
                        files.append(path)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                elif manifest:
                    files.append(path)
            except OSError as err:
                problems.append(FileProblem(shown_name(root, path), 1, "", f"cannot read ({err.strerror})"))
    if len(files) > MAX_FILES:
        problems.append(FileProblem(str(root), 0, "", f"{len(files):,} manifest files: more than the "
                                    f"{MAX_FILES:,} a tree may have"))
        files = []
    return sorted(files), problems


def _link_problem(root: Path, link: Path, manifest: bool) -> FileProblem | None:
    """Why a symbolic link is refused (it leads out of the repository, into a hidden folder
    or nowhere); None when it may be followed. Links named other than *.yaml that lead to
    files are never read, so they are left alone."""
    target = Path(os.path.realpath(link))
    inside = target.is_relative_to(root) and not any(p.startswith(".") for p in target.relative_to(root).parts)
    is_dir = os.path.isdir(target)
    if not manifest and not is_dir and (inside or not os.path.exists(target)):
        return None
    name = shown_name(root, link) + ("/" if is_dir else "")
    if not inside:
        return FileProblem(name, 0 if is_dir else 1, "", "a symbolic link that leads out of the repository (or into "
                           "a hidden folder): refused, and not read; commit the manifests themselves")
    if manifest and not os.path.exists(target):
        return FileProblem(name, 1, "", "a symbolic link to nothing: its manifests would be missing")
    return None


class Unread(Exception):
    """A manifest file that is not read, and why; `stop`: the tree is over its size, so
    nothing after this file is read either."""

    def __init__(self, message: str, stop: bool = False):
        super().__init__(message)
        self.stop = stop


def read(path: Path, tree_bytes_left: int) -> bytes:
    """The bytes of a regular file within MAX_FILE_BYTES and what is left of MAX_TREE_BYTES,
    its size checked before it is read (a link is read at its target, checked by walk())."""
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise Unread(f"cannot read ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unread("not a regular file (a pipe, socket or device): not read")
        limit = min(MAX_FILE_BYTES, tree_bytes_left)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(limit + 1) if info.st_size <= limit else b""
        size = max(info.st_size, len(raw))  # a file that grows while it is read is caught too
        if size > MAX_FILE_BYTES:
            raise Unread(f"{size:,} bytes: over the size limit of {MAX_FILE_BYTES >> 20} MiB a file, not read")
        if size > limit:
            raise Unread(f"the manifests are over the size limit of {MAX_TREE_BYTES >> 20} MiB in all: this file "
                         "and the ones after it were not read", stop=True)
        return raw
    except OSError as err:
        raise Unread(f"cannot read ({err.strerror})") from None
    finally:
        os.close(fd)
