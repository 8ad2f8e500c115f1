"""A container's root file system, and files written into it without following a symlink.

Reconcile writes files only into the root file system it created (`LXCPATH/NAME/rootfs`,
reached without a symlink), never into a path read from the config: a config edited by
hand could name /etc, and a process in the container controls every symlink below it.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from reconcilers.base import ApplyError, Node


def canonical_rootfs(value: str | None) -> str | None:
    """lxc.rootfs.path with its backing store said (`/x` is `dir:/x`), as lxc-create -B dir writes it."""
    if value is None or ":" in value:
        return value
    return f"dir:{value}"


def created_rootfs(lxc_path: str, name: str) -> str:
    """Where `lxc-create -B dir` puts a container's root file system: the only place
    reconcile writes files into or lets `lxc-destroy` delete."""
    return f"dir:{lxc_path.rstrip('/')}/{name}/rootfs"


@dataclass(frozen=True)
class RootFs:
    """A container's root file system where reconcile created it (`LXCPATH/NAME/rootfs`),
    never a path read from its config: a config edited by hand could name /etc. The LXC
    path is the manifest's; NAME and rootfs below it are opened without following a
    symlink, so that nothing there leads out of it."""

    lxc_path: str
    name: str

    def open(self) -> int:
        return _descend(os.open(self.lxc_path, os.O_RDONLY | os.O_DIRECTORY), (self.name, "rootfs"), create=False)

    def __str__(self) -> str:
        return created_rootfs(self.lxc_path, self.name).removeprefix("dir:")


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _descend(fd: int, parts: Iterable[str], create: bool, owner: tuple[int, int] | None = None) -> int:
    """Open each folder of `parts` in turn below the open folder `fd`, never through a
    symlink (making missing ones if `create`) → the last one's fd. `fd` is closed."""
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
                if owner is not None:
                    os.fchown(nxt, *owner)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _walk(rootfs: "Path | RootFs", inner: str, create: bool, owner: tuple[int, int] | None = None) -> tuple[int, str]:
    """Open the folder holding `inner` below `rootfs` without following any symlink (a
    process in the container controls those) → (dir fd, file name)."""
    parts = [p for p in inner.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise OSError(f"not a file below the root file system: {inner!r}")
    fd = rootfs.open() if isinstance(rootfs, RootFs) else os.open(rootfs, _DIR_NOFOLLOW)
    return _descend(fd, parts[:-1], create, owner), parts[-1]


def read_rootfs_file(rootfs: "Path | RootFs", inner: str) -> bytes | None:
    """The content of a regular file below `rootfs`, or None (absent, not a regular file,
    or reached only through a symlink)."""
    found = stat_rootfs_file(rootfs, inner)
    return None if found is None else found[0]


def stat_rootfs_file(rootfs: "Path | RootFs", inner: str) -> tuple[bytes, int, int, int] | None:
    """(content, mode, uid, gid) of a regular file below `rootfs`, or None."""
    try:
        fd, leaf = _walk(rootfs, inner, create=False)
    except OSError:
        return None
    try:  # O_NONBLOCK: a FIFO planted there must not hang the agent
        f = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(f, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return fh.read(), st.st_mode & 0o7777, st.st_uid, st.st_gid


def write_rootfs_file(node: Node, rootfs: "Path | RootFs", inner: str, data: bytes, mode: int = 0o644,
                      owner: tuple[int, int] = (0, 0)) -> bool:
    """Install `data` at `inner` in the container's root file system: temp file, fsync,
    rename, with no symlink followed on the way; `owner` as the node sees it (an
    unprivileged container's root is its mapped id), folders made on the way too. False
    when it was already there."""
    if stat_rootfs_file(rootfs, inner) == (data, mode, *owner):
        return False
    node.runner.guard("write", [f"{rootfs}{inner}"], read_only=False)
    try:
        fd, leaf = _walk(rootfs, inner, create=True, owner=owner)
    except OSError as err:
        raise ApplyError(f"files: cannot create the folder of {inner} in {rootfs}: {err.strerror} "
                         "(a symlink or a file is in the way)") from None
    tmp = f".{leaf}.reconcile.tmp"
    try:
        f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            os.write(f, data)
            os.fchown(f, *owner)
            os.fchmod(f, mode)
            os.fsync(f)
        finally:
            os.close(f)
        os.rename(tmp, leaf, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
    except OSError as err:
        try:
            os.unlink(tmp, dir_fd=fd)
        except OSError:
            pass
        raise ApplyError(f"files: cannot write {inner} in {rootfs}: {err.strerror}") from None
    finally:
        os.close(fd)
    return True


def rootfs_in_place(lxc_path: str, name: str) -> bool:
    """Whether LXCPATH/NAME/rootfs is a folder reached without a symlink (or is gone)."""
    try:
        os.close(RootFs(lxc_path, name).open())
    except FileNotFoundError:
        return True  # nothing there to delete in the wrong place
    except OSError:
        return False
    return True
