"""Lab nodes that boot a real systemd as PID 1 (`reconcile lab up --systemd`).

Such a node is an LXC system container (LXC's own tools, Debian's systemd 252), built so
that it is the same machine as an init-less node from the outside (name, address, bridge,
shared folder) and a freshly installed Debian machine from the inside:

- network: the lab's named network namespace `<lab>-<node>`, made with `ip netns add` and
  wired (veth to the bridge, eth0 with the node's address, no default route) *before* the
  node boots, and shared with the container (`lxc.namespace.share.net`): the container
  adds no interface anywhere, and its daemons find eth0 up at boot, as on a real host;
- files: the root is an overlay whose read-only lower layer is the host's `/` (the same
  packages, versions and configuration files as the host, no image to build) and whose
  upper layer is a tmpfs mounted by a pre-mount hook inside the container's own mount
  namespace, so the host's file system is never written and no mount exists on the host
  (it ends with the container). /tmp is a private tmpfs: with the host's / as lower
  layer, systemd-tmpfiles would otherwise walk the host's /tmp at every boot (4-5 s);
  /mnt is an empty tmpfs too, for mount points, as on init-less nodes; /dev/fuse is the
  host's device (LXC's /dev has none), so FUSE mounts work as on a real host;
- seed: the node's own /etc/hostname, /etc/hosts, /etc/machine-id, /etc/resolv.conf (and
  with a DC krb5.conf and the join password, with the SFTP server its host key and the
  client's key and password), copied into the upper layer at boot;
- units: everything the Debian packages enable stays as a fresh install has it (Corosync
  and Pacemaker start the packages' one-node cluster `debian`, HAProxy starts with Debian's
  default file, keepalived and sssd are skipped by their units' conditions until they have
  a configuration). Masked (a /dev/null link in /etc/systemd/system) are the units the host
  starts at boot that do not belong on an HA node of the lab: `masked_units()` computes
  them from /etc/systemd/system/*.wants and the SysV scripts of runlevels 2-5 without a
  native unit, minus the units of NODE_PACKAGES, targets and gettys (lxc-net would start a
  NATed bridge and dnsmasq; samba, postgresql, pcsd, ssh, timers, openipmi...). Computed at
  each `up`: other packages installed on the host later are masked too.

Names: the container is `<lab>-<node>` under the absolute LXC path
/srv/reconcile-lab/<lab>/lxc (a relative path breaks lxc-attach/lxc-info). LXC puts its
control groups at the top of each hierarchy (`lxc.payload.<lab>-<node>`,
`lxc.monitor.<lab>-<node>`), so the lab name keeps them apart from other labs, and
`leftover_cgroups()` finds those of a lab whose test run was killed.

Commands enter a node with `lxc-attach` (the container's namespaces *and* control
groups, its capability set): what the tests run there is accounted to the node like
everything systemd starts.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from controller.lab.lab import Lab

# The packages whose units a fresh HA node of this project runs as installed: the daemons
# reconcile manages, and the logging daemon Pacemaker's packages bring (cluster-glue).
NODE_PACKAGES = ("haproxy", "keepalived", "corosync", "pacemaker", "cluster-glue", "sssd-common", "sssd-ad-common")
# Boot reaches `running` in about 1 s; a loaded machine takes longer.
BOOT_TIMEOUT = 90.0

LXC_CONFIG = """\
# Lab node {node} of lab {lab}: a system container booting systemd (controller/lab/systemd_node.py)
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.uts.name = {node}
lxc.rootfs.path = overlay:/:{node_dir}/fs/upper
lxc.hook.pre-mount = {node_dir}/pre-mount
lxc.namespace.share.net = /run/netns/{netns}
lxc.apparmor.profile = unconfined
lxc.autodev = 1
# systemd mounts the cgroup hierarchies itself in a cgroup namespace, but joins cpu and
# cpuacct, which this host mounts apart: that mount fails and nested LXC (the Container
# reconciler) then finds no cpu hierarchy. LXC mounts the host's layout as it is.
lxc.mount.auto = cgroup:mixed:force
lxc.console.logfile = {node_dir}/console.log
lxc.log.file = {node_dir}/lxc.log
lxc.log.level = ERROR
lxc.mount.entry = tmpfs tmp tmpfs rw,nosuid,nodev,mode=1777,create=dir 0 0
# /mnt as on init-less nodes: an empty tmpfs for Mount manifests' mount points (the host's
# /mnt, the lower layer, is not the node's business)
lxc.mount.entry = tmpfs mnt tmpfs rw,nosuid,nodev,mode=0755,create=dir 0 0
# FUSE (rclone, sshfs) and systemd's automount units (autofs): autodev makes neither
# /dev/fuse nor /dev/autofs (without it systemd says automounts are "not supported on this
# system"); common.conf allows FUSE's device (10:229), autofs's (10:235) is allowed here.
lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file 0 0
lxc.mount.entry = /dev/autofs dev/autofs none bind,create=file 0 0
lxc.cgroup.devices.allow = c 10:235 rwm
lxc.cgroup2.devices.allow = c 10:235 rwm
lxc.mount.entry = {shared} {shared_rel} none bind,create=dir 0 0
"""
# No lxc.prlimit.*: this machine withholds CAP_SYS_RESOURCE and LXC aborts the start.

# Runs in the container's mount namespace before its root is mounted (LXC makes that
# namespace a dependent copy, so nothing here reaches the host). The tmpfs, and with it the
# node's whole upper layer, ends with the container.
PRE_MOUNT = """\
#!/bin/sh
# LXC pre-mount hook of lab node {node}: the overlay's upper layer on a tmpfs of its own.
set -eu
mount -t tmpfs -o mode=0755 reconcile-lab-{node} '{node_dir}/fs'
mkdir '{node_dir}/fs/upper' '{node_dir}/fs/work'
cp -a '{node_dir}/seed/.' '{node_dir}/fs/upper/'
"""


def container_name(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def lxc_path(lab: Lab) -> Path:
    return lab.root / "lxc"


# --- which units a node must not run ----------------------------------------------------------


def package_units(packages: Iterable[str] = NODE_PACKAGES, root: Path = Path("/")) -> set[str]:
    """Units the packages install (from dpkg's file lists, no dpkg process): unit files,
    and `NAME.service` for an init script /etc/init.d/NAME."""
    info = root / "var/lib/dpkg/info"
    units: set[str] = set()
    for package in packages:
        for listing in (info / f"{package}.list", *info.glob(f"{package}:*.list")):
            try:
                lines = listing.read_text().splitlines()
            except FileNotFoundError:
                continue
            units.update(Path(line).name for line in lines if "/systemd/system/" in line
                         and re.search(r"\.(service|socket|timer|path|mount)$", line))
            units.update(f"{Path(line).name}.service" for line in lines if line.startswith("/etc/init.d/"))
    return units


def enabled_units(root: Path = Path("/")) -> set[str]:
    """Units that start at boot on the host: the links in /etc/systemd/system/*.wants,
    and the SysV init scripts started in runlevels 2-5 that have no native unit (systemd's
    sysv generator makes a unit of each: openipmi, ipvsadm...)."""
    system = root / "etc/systemd/system"
    units = {link.name for wants in system.glob("*.wants") for link in wants.iterdir()}
    native = [system, root / "lib/systemd/system", root / "usr/lib/systemd/system"]
    for level in "2345":
        for link in (root / f"etc/rc{level}.d").glob("S[0-9][0-9]*"):
            unit = f"{link.name[3:]}.service"
            if not any((folder / unit).exists() or (folder / unit).is_symlink() for folder in native):
                units.add(unit)
    return units


def masked_units(root: Path = Path("/")) -> list[str]:
    """The host's units that start at boot but that a lab node must not run: all but those
    of NODE_PACKAGES, targets (remote-fs.target) and gettys (skipped in a container anyway)."""
    keep = package_units(NODE_PACKAGES, root)
    return sorted(u for u in enabled_units(root)
                  if u not in keep and not u.endswith(".target") and not u.startswith("getty@"))


# --- up ----------------------------------------------------------------------------------------


def prepare(lab: Lab, node: str, files: dict[str, tuple[str | bytes, int]]) -> Path:
    """Write the node's seed (its own files and the masks), LXC config and hook. The node's
    network namespace must exist already. Returns the node's folder."""
    from controller.lab.lab import prefill_file, private_dir_mode

    node_dir = lab.root / "nodes" / node
    seed = node_dir / "seed"
    (node_dir / "fs").mkdir(parents=True)
    seed.mkdir()
    for path, (text, mode) in files.items():
        prefill_file(seed, path, text, mode, dir_mode=private_dir_mode(mode))
    masked = masked_units()
    prefill_file(seed, "/etc/systemd/system/.keep", "", 0o644)  # the folder, with the host's mode
    (seed / "etc/systemd/system/.keep").unlink()
    for unit in masked:
        (seed / "etc/systemd/system" / unit).symlink_to("/dev/null")
    (node_dir / "masked-units").write_text("".join(f"{u}\n" for u in masked))
    hook = node_dir / "pre-mount"
    hook.write_text(PRE_MOUNT.format(node=node, node_dir=node_dir))
    hook.chmod(0o700)
    name = container_name(lab.name, node)
    conf_dir = lxc_path(lab) / name
    conf_dir.mkdir(parents=True)
    (conf_dir / "config").write_text(LXC_CONFIG.format(
        node=node, lab=lab.name, node_dir=node_dir, netns=f"{lab.name}-{node}", shared=lab.shared,
        shared_rel=str(lab.shared).lstrip("/")) + "".join(
        f"lxc.mount.entry = {path} {path.lstrip('/')} none bind,ro,create=dir 0 0\n" for path in _kept_under_tmpfs()))
    return node_dir


def _kept_under_tmpfs() -> list[str]:
    """The checkout and its venv when they live under /tmp or /mnt (a clone in /tmp): the
    node's own tmpfs there would hide them, and `reconcile` must run in the node. Bound
    read-only, as the rest of the host is seen."""
    import sys

    from controller.lab.lab import CHECKOUT, venv_bin
    paths = sorted({str(CHECKOUT), sys.prefix, str(venv_bin())})
    under = [p for p in paths if p.startswith(("/tmp/", "/mnt/"))]
    return [p for p in under if not any(p.startswith(q + "/") for q in under if q != p)]


def start(lab: Lab, node: str) -> None:
    """Start the container (lxc-start returns once its init runs; boot goes on)."""
    name = container_name(lab.name, node)
    r = subprocess.run(["lxc-start", "-P", str(lxc_path(lab)), "-n", name], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise _error(lab, node, f"lxc-start failed ({r.returncode}): {r.stderr.strip()}")


def init_pid(lab: Lab, node: str) -> int:
    r = subprocess.run(["lxc-info", "-P", str(lxc_path(lab)), "-n", container_name(lab.name, node), "-pH"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode or not r.stdout.strip().isdigit():
        raise _error(lab, node, f"lxc-info found no running init: {r.stderr.strip() or r.stdout.strip()}")
    return int(r.stdout.strip())


def wait_booted(lab: Lab, node: str, timeout: float = BOOT_TIMEOUT) -> float:
    """Wait until systemd in the node says `running`. Returns systemd's own boot time
    (its start to the end of boot, in seconds). `degraded` (a unit failed at boot) is an
    error naming the failed units."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        # --wait blocks until boot ends, once systemd's bus answers (at first it does not)
        state = _in_node(lab, node, ["systemctl", "is-system-running", "--wait"],
                         max(deadline - time.monotonic(), 1)).stdout.strip()
        if state == "running":
            shown = _in_node(lab, node, ["systemctl", "show", "--value", "-p", "UserspaceTimestampMonotonic",
                                         "-p", "FinishTimestampMonotonic"], 30).stdout.split()
            return (int(shown[1]) - int(shown[0])) / 1e6 if len(shown) == 2 else 0.0
        if state in ("degraded", "maintenance", "stopping"):
            failed = _in_node(lab, node, ["systemctl", "--failed", "--no-legend", "--plain"], 30).stdout
            raise _error(lab, node, f"systemd is {state} after boot; failed units:\n{failed.strip()}")
        time.sleep(0.05)
    raise _error(lab, node, f"systemd did not finish booting within {timeout:.0f}s (last state {state!r})")


def _in_node(lab: Lab, node: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(attach_argv(lab, node) + argv, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def attach_argv(lab: Lab, node: str, cwd: str = "/") -> list[str]:
    """The argv prefix that runs a command in the node, in folder `cwd` (as the node sees it)."""
    return ["lxc-attach", "-P", str(lxc_path(lab)), "-n", container_name(lab.name, node), "--keep-env", "--",
            "/usr/bin/env", f"--chdir={cwd}"]


def _error(lab: Lab, node: str, message: str) -> Exception:
    from controller.lab.lab import LabError

    log = lab.root / "nodes" / node / "lxc.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    return LabError(f"lab {lab.name!r}: systemd node {node}: {message}" + "".join(f"\n  {t}" for t in tail))


# --- down --------------------------------------------------------------------------------------


def stop_all(lab: Lab, timeout: float = 30.0) -> None:
    """Kill every systemd node of the lab, whatever state its LXC monitor is in: lxc-stop -k
    through the monitor, then SIGKILL to whatever still runs in the containers' control
    groups (a monitor killed along with a test run leaves its container running alone)."""
    lxcpath = lxc_path(lab)
    names = sorted(p.name for p in lxcpath.iterdir() if (p / "config").exists()) if lxcpath.is_dir() else []
    if not names and not leftover_cgroups(lab.name):
        return
    for name in names:
        subprocess.run(["lxc-stop", "-P", str(lxcpath), "-n", name, "-k"], capture_output=True, timeout=60)
    deadline = time.monotonic() + timeout
    while True:
        pids = lab_processes(lab.name, lxcpath)
        if not pids:
            break
        if time.monotonic() > deadline:
            from controller.lab.lab import LabError

            raise LabError(f"lab {lab.name!r}: processes of its systemd nodes did not end: {sorted(pids)}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    remove_cgroups(lab.name)


def _cgroup_roots() -> list[Path]:
    from controller.lab.lab import _cgroup_mounts

    return [Path(m) for m in _cgroup_mounts()]


FOLDER_RE = re.compile(r"^lxc\.(payload|monitor)\.(.+)-(lb\d+|dc\d+)$")


def _mine(lab: str, folder: str) -> bool:
    """Whether a top-level cgroup folder is one LXC made for a container of lab `lab`
    (`lxc.payload.<lab>-lb1`, `lxc.monitor.<lab>-lb1`). The node name is the last part,
    so lab `t1-1` never matches the folders of lab `t1-12`."""
    m = FOLDER_RE.match(folder)
    return bool(m) and m.group(2) == lab


def unrecorded_labs(base: Path) -> list[str]:
    """Labs whose systemd nodes left control groups but that have no record under `base`
    (its folder was removed by hand while they ran): `sweep_orphans` ends them too. A lab
    writes its record before it starts anything, so a lab being built is never one."""
    from controller.lab.config import NAME_RE

    found = {m.group(2) for root in _cgroup_roots() if root.is_dir() for d in os.listdir(root)
             if (m := FOLDER_RE.match(d)) and NAME_RE.match(m.group(2))}
    return sorted(lab for lab in found if not (base / lab / "lab.json").exists())


def leftover_cgroups(lab: str) -> list[Path]:
    return sorted(root / d for root in _cgroup_roots() if root.is_dir() for d in os.listdir(root)
                  if _mine(lab, d) and (root / d).is_dir())


def lab_processes(lab: str, lxcpath: Path) -> set[int]:
    """Host PIDs of the lab's LXC monitors and of everything in its containers."""
    pids: set[int] = set()
    for folder in leftover_cgroups(lab):
        for dirpath, _dirs, files in os.walk(folder):
            if "cgroup.procs" in files:
                try:
                    pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
                except OSError:
                    pass
    # The monitor of each container: `[lxc monitor] <lxcpath> <name>`.
    prefix = f"[lxc monitor] {lxcpath} ".encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "cmdline").read_bytes().startswith(prefix):
                    pids.add(int(entry.name))
            except OSError:
                pass
    return {p for p in pids if p != os.getpid()}


def remove_cgroups(lab: str, timeout: float = 10.0) -> None:
    """Remove the lab's containers' control groups, deepest first (LXC does it on a clean
    stop; a killed monitor leaves them)."""
    deadline = time.monotonic() + timeout
    for top in leftover_cgroups(lab):
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
