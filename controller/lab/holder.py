"""PID 1 of one lab node: builds the node's private file system view, then reaps orphans.

Started by `controller.lab.lab` as
`unshare --net --mount --uts --ipc --pid --fork -- python3 holder.py NODE_DIR`
(NODE_DIR/node.json says the host name and which folders to keep), so this process is
PID 1 of fresh net, mount, UTS, IPC and PID namespaces. It:

1. makes every mount private, so nothing below leaks back to the host;
2. gives the node a sysfs of its own network namespace (keeping /sys/fs/cgroup usable for LXC);
3. lays an overlay over /etc, /var, /home and /root (upper and work dirs under NODE_DIR), and a
   fresh tmpfs over /run, /tmp, /dev/shm and /mnt: the host's copies are read through, never written;
4. mounts a /proc of the new PID namespace, makes the rest of the host's file system
   read-only (but the lab's shared folder), sets the host name, creates the run-time
   folders the daemons expect (as systemd-tmpfiles would at boot), starts the system D-Bus;
5. writes NODE_DIR/ready with its PID as the host sees it, then waits forever as the node's init.

Killing this process (SIGKILL from the host) ends every process of the node: the kernel
tears down a PID namespace with its init. Standard library only: it runs before, and
independently of, the project's own imports.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 0x1000, 0x2000, 0x4000, 0x40000
MNT_DETACH = 0x2

OVERLAID = ("/etc", "/var", "/home", "/root")
# /mnt: where an operator mounts things (Mount manifests); a tmpfs so that mount points can
# be created there while the host's file system stays read-only in the node.
TMPFS = {"/run": "0755", "/tmp": "1777", "/dev/shm": "1777", "/mnt": "0755"}
# Run-time folders a booted Debian machine has before its daemons start: systemd creates
# them from RuntimeDirectory= and tmpfiles.d; the lab has no systemd, so its init does it.
RUN_DIRS = {
    "/run/lock": 0o1777, "/run/samba": 0o755, "/run/dbus": 0o755, "/run/sssd": 0o755,
    "/run/keepalived": 0o755, "/run/crm": 0o750, "/run/lxc": 0o755, "/run/user": 0o755,
}

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or ''} {source} on {target} ({data or ''}): {os.strerror(err)}")


def _detach(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split()[4]
            points.append(raw.encode().decode("unicode_escape"))  # \040 for a space
    return points


def _detach_under(top: str, points: list[str]) -> None:
    """Detach every mount at or below `top`, deepest first (copies of the host's mounts:
    left in place, a copy of /run/netns/* would keep another lab's network alive)."""
    below = [p for p in points if p == top or p.startswith(top + "/")]
    for p in sorted(below, key=len, reverse=True):
        try:
            _detach(p)
        except OSError:
            pass  # already gone with its parent


def _host_pid() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[1])
    raise RuntimeError("no NSpid in /proc/self/status")


def _stash(path: str, stash: str) -> None:
    """Keep a view of `path` (recursive bind) aside while the folders above it are replaced."""
    os.makedirs(stash, exist_ok=True)
    _mount(path, stash, None, MS_BIND | MS_REC)


def _unstash(stash: str, path: str) -> None:
    os.makedirs(path, exist_ok=True)
    _mount(stash, path, None, MS_MOVE)
    os.rmdir(stash)


def _fresh_sysfs(node_dir: str, points: list[str]) -> None:
    """A sysfs mounted in this network namespace lists the node's own interfaces; the
    cgroup hierarchies are carried over so LXC keeps working inside the node."""
    stash = os.path.join(node_dir, "stash-cgroup")
    have_cgroup = "/sys/fs/cgroup" in points
    if have_cgroup:
        _stash("/sys/fs/cgroup", stash)
    _detach_under("/sys", points)
    _mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if have_cgroup:
        _unstash(stash, "/sys/fs/cgroup")


def _overlay(node_dir: str, path: str) -> None:
    upper = os.path.join(node_dir, "upper" + path)
    work = os.path.join(node_dir, "work" + path)
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    _mount("overlay", path, "overlay", 0, f"lowerdir={path},upperdir={upper},workdir={work}")


def build(node_dir: str, conf: dict) -> None:
    """conf: hostname; keep: host folders that must stay visible at the same path even
    under /run or /tmp (the checkout, the venv); writable: folders that stay writable when
    the rest of the host's file system is made read-only for the node."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    points = _mount_points()
    host_pid = _host_pid()  # read while /proc still is the host's
    kept = {}
    for i, path in enumerate(conf["keep"]):
        if any(path == top or path.startswith(top + "/") for top in TMPFS):
            kept[path] = os.path.join(node_dir, f"stash-{i}")
            _stash(path, kept[path])
    _fresh_sysfs(node_dir, points)
    for path in OVERLAID:
        _detach_under(path, points)
        _overlay(node_dir, path)
    for path, mode in TMPFS.items():
        _detach_under(path, points)
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")
    for path, stash in kept.items():
        _unstash(stash, path)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)  # as the rest of the host
    _detach_under("/proc", points)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Everything not overlaid or replaced above (/usr, /srv, /opt, the checkout...) is the
    # host's own: read-only in the node, so no daemon or reconciler in a node can change
    # the host. The lab's shared folder and the node's own folder stay writable.
    for path in conf["writable"]:
        _mount(path, path, None, MS_BIND | MS_REC)
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    socket.sethostname(conf["hostname"])
    for path, mode in RUN_DIRS.items():
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    if os.path.exists("/usr/bin/systemd-tmpfiles"):
        subprocess.run(["/usr/bin/systemd-tmpfiles", "--create", "--prefix=/run"],
                       stdin=subprocess.DEVNULL, check=False)
    # A booted Debian machine has a system bus (realm and keepalived's D-Bus API need it).
    # It forks; the daemon's parent becomes this init.
    if os.path.exists("/usr/bin/dbus-daemon"):
        subprocess.run(["/usr/bin/dbus-daemon", "--system", "--fork"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    tmp = os.path.join(node_dir, "ready.tmp")
    with open(tmp, "w") as f:
        json.dump({"pid": host_pid, "hostname": conf["hostname"], "time": time.time()}, f)
    os.rename(tmp, os.path.join(node_dir, "ready"))


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _exit(_signum: int, _frame: object) -> None:
    sys.exit(0)


def main(argv: list[str]) -> int:
    (node_dir,) = argv
    signal.signal(signal.SIGCHLD, _reap)
    try:
        with open(os.path.join(node_dir, "node.json")) as f:
            conf = json.load(f)
        build(node_dir, conf)
    except Exception as e:  # the host side reads this from holder.log
        print(f"lab node in {node_dir}: {e}", file=sys.stderr, flush=True)
        return 1
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    _reap(0, None)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
