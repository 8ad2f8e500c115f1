"""Corosync, corosync-qdevice and Pacemaker on this node: running?, start, stop, and the
untouched default cluster a fresh Debian node comes with.

With systemd as PID 1, the packages' units are used (`systemctl start corosync`, ...), and
corosync and pacemaker start at boot as the packages install them (`boot`; a unit the
operator masked, or disabled although its package enables it, is their hold: `Held`,
unless `metadata.drift: enforce`); without systemd (the lab's init-less nodes, containers)
the daemons are started directly, with the environment their units would give them.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from reconcilers.base import (
    ENABLED, ApplyError, Node, UnitState, enable_unit, pid_alive, start_unit, systemd_running, unit_states, wait_until,
)
from reconcilers.pacemaker import tools

COROSYNC_CONF = Path("/etc/corosync/corosync.conf")
COROSYNC_PIDFILE = Path("/run/corosync.pid")
QDEVICE_PIDFILE = Path("/run/corosync-qdevice/corosync-qdevice.pid")
PACEMAKERD_PIDFILE = Path("/run/pacemakerd.pid")
PACEMAKERD = "/usr/sbin/pacemakerd"
PACEMAKER_DEFAULTS = Path("/etc/default/pacemaker")
CIB_DIR = Path("/var/lib/pacemaker/cib")
DPKG_STATUS = Path("/var/lib/dpkg/status")
START_WAIT_SECONDS = 20.0
STOP_WAIT_SECONDS = 600.0  # Pacemaker moves every resource away before it ends
UNITS = {"corosync": "corosync", "pacemaker": "pacemaker", "qdevice": "corosync-qdevice"}
COMMS = {"corosync": "corosync", "pacemaker": "pacemakerd", "qdevice": "corosync-qdevice"}
PIDFILES = {"corosync": COROSYNC_PIDFILE, "pacemaker": PACEMAKERD_PIDFILE, "qdevice": QDEVICE_PIDFILE}


def _process_running(comm: str) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() == comm[:15]:
                    return True
            except OSError:
                continue
    return False


BOOT = ("corosync", "pacemaker")  # what the packages enable at install; qdevice is the cluster's choice


def units(node: Node) -> dict[str, UnitState] | None:
    """The daemons' units as systemd sees them (one read-only `systemctl show`), daemon →
    state; None without systemd."""
    if not systemd_running():
        return None
    states = unit_states(node, [f"{u}.service" for u in UNITS.values()])
    return {d: states[f"{u}.service"] for d, u in UNITS.items()}


def running(node: Node, states: dict[str, UnitState] | None = None) -> dict[str, bool]:
    """Whether corosync, pacemaker and corosync-qdevice run on this node (`states`: from
    `units`, when the caller asked systemd already)."""
    states = states if states is not None else units(node)
    if states is not None:
        return {d: s.active in ("active", "reloading") for d, s in states.items()}
    return {d: pid_alive(PIDFILES[d]) is not None or _process_running(COMMS[d]) for d in UNITS}


def boot(node: Node, enforce: bool) -> None:
    """corosync and pacemaker start at boot, as the packages install them (systemd only):
    an operator's hold raises Held, unless `enforce`."""
    for daemon, state in (units(node) or {}).items():
        if daemon in BOOT and state.enabled not in ENABLED:
            enable_unit(node, state, enforce)


def environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines of /etc/default/pacemaker, as systemd's EnvironmentFile= reads them."""
    env: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return env
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    return env


def start_corosync(node: Node, enforce: bool = False) -> None:
    if systemd_running():
        start_unit(node, "corosync.service", enforce)  # enabled first: an operator's hold raises Held
    else:
        node.run(["corosync"], timeout=60)  # forks into the background, writes /run/corosync.pid

    def up() -> bool:
        return node.run(["corosync-cfgtool", "-s"], read_only=True, check=False, timeout=10).rc == 0

    if not wait_until(up, START_WAIT_SECONDS, interval=0.2):
        raise ApplyError(f"Corosync did not come up within {START_WAIT_SECONDS:.0f}s on {node.name} "
                         "(see /var/log/corosync/corosync.log)")


def start_qdevice(node: Node) -> None:
    """corosync-qdevice: it reads quorum.device from Corosync, so Corosync runs first."""
    if systemd_running():
        node.run(["systemctl", "start", "corosync-qdevice"], timeout=60)
        return
    Path("/run/corosync-qdevice").mkdir(exist_ok=True)
    node.run(["corosync-qdevice"], timeout=30)  # daemonizes

    def up() -> bool:
        return node.run(["corosync-qdevice-tool", "-s"], read_only=True, check=False, timeout=10).rc == 0

    if not wait_until(up, START_WAIT_SECONDS, interval=0.2):
        raise ApplyError(f"corosync-qdevice did not come up within {START_WAIT_SECONDS:.0f}s on {node.name}")


def stop_qdevice(node: Node) -> None:
    if systemd_running():
        node.run(["systemctl", "stop", "corosync-qdevice"], timeout=60)
        return
    pid = pid_alive(QDEVICE_PIDFILE)
    if pid is not None:
        node.runner.guard("signal", [f"TERM corosync-qdevice {pid}"], read_only=False)
        os.kill(pid, 15)
        wait_until(lambda: pid_alive(QDEVICE_PIDFILE) is None, 30)


def start_pacemaker(node: Node, enforce: bool = False) -> None:
    if systemd_running():
        start_unit(node, "pacemaker.service", enforce, timeout=120)
        return
    # pacemakerd always stays in the foreground: start-stop-daemon detaches it, with
    # the environment systemd would give it from /etc/default/pacemaker.
    node.run(["start-stop-daemon", "--start", "--quiet", "--background", "--make-pidfile",
              "--pidfile", str(PACEMAKERD_PIDFILE), "--exec", PACEMAKERD],
             env=environment_file(PACEMAKER_DEFAULTS), timeout=30)
    deadline = time.monotonic() + START_WAIT_SECONDS
    while True:
        try:
            tools.cluster_status(node)
            return
        except tools.CibUnavailable as err:
            if pid_alive(PACEMAKERD_PIDFILE) is None:
                raise ApplyError(f"pacemakerd exited right after its start on {node.name} "
                                 "(see /var/log/pacemaker/pacemaker.log)") from None
            if time.monotonic() > deadline:
                raise ApplyError(f"Pacemaker did not answer within {START_WAIT_SECONDS:.0f}s on {node.name}: "
                                 f"{err}") from None
        time.sleep(0.3)


def stop_all(node: Node, now: dict[str, bool]) -> None:
    """Stop Pacemaker (its resources move away first), qdevice and Corosync on this node."""
    if now.get("pacemaker"):
        if systemd_running():
            node.run(["systemctl", "stop", "pacemaker"], timeout=STOP_WAIT_SECONDS)
        else:  # a request: resources move away first, then the daemons end
            node.run(["pacemakerd", "--shutdown"], timeout=60)
            _wait_stopped(node, "pacemaker")
    if now.get("qdevice"):
        stop_qdevice(node)
    if now.get("corosync"):
        if systemd_running():
            node.run(["systemctl", "stop", "corosync"], timeout=120)
        else:
            node.run(["corosync-cfgtool", "-H"], timeout=60)
            _wait_stopped(node, "corosync")


def _wait_stopped(node: Node, daemon: str) -> None:
    if not wait_until(lambda: not running(node)[daemon], STOP_WAIT_SECONDS, interval=0.3):
        raise ApplyError(f"{daemon} did not stop within {STOP_WAIT_SECONDS:.0f}s on {node.name}")


# --- the distribution's default cluster ------------------------------------------------------


def packaged_md5(path: Path, status: Path = DPKG_STATUS) -> str | None:
    """The MD5 dpkg recorded for a conffile as the package shipped it."""
    try:
        text = status.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(rf"^ {re.escape(str(path))} ([0-9a-f]{{32}})(?: obsolete)?$", text, re.MULTILINE)
    return m.group(1) if m else None


def untouched_default(node: Node, conf: Path = COROSYNC_CONF, status: Path = DPKG_STATUS) -> bool:
    """Whether this node's only cluster is the untouched one-node cluster its packages
    started (Debian's `debian` cluster): corosync.conf is byte for byte the packaged file,
    and its Pacemaker (if it answers) runs no resource. Such a cluster holds nothing and may
    be replaced without asking; any other is an operator's and is refused."""
    try:
        data = conf.read_bytes()
    except OSError:
        return False
    shipped = packaged_md5(conf, status)
    if shipped is None or hashlib.md5(data).hexdigest() != shipped:
        return False
    try:
        resources = tools.query_cib(node, scope="resources", local=True)
    except tools.CibUnavailable:
        return True  # Pacemaker does not run: nothing can run on it
    return len(resources) == 0


def retire_default(node: Node, now: dict[str, bool]) -> None:
    """Stop the default cluster and put its CIB aside (kept in cib.debian-default/), so the
    node starts the manifest's cluster from a clean Pacemaker state."""
    stop_all(node, now)
    if not CIB_DIR.is_dir():
        return
    files = [p for p in CIB_DIR.iterdir() if p.is_file()]
    if not files:
        return
    node.runner.guard("move", [str(CIB_DIR), "→ cib.debian-default"], read_only=False)
    aside = CIB_DIR.parent / "cib.debian-default"
    aside.mkdir(mode=0o750, exist_ok=True)
    for p in files:
        shutil.move(str(p), aside / p.name)
