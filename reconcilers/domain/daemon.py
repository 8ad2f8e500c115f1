"""sssd, the daemon: running, started after its configuration was last written, restarted
at most once per pass. With systemd through systemctl, and started at boot (sssd.service
enabled, as the package installs it; an operator's hold — masked, or disabled although the
package enables it — is reported and left unless `metadata.drift: enforce`); without it
(lab nodes, plain containers) as a daemon of its own with its pid file."""
from __future__ import annotations

import os
from pathlib import Path

from reconcilers.base import (
    ApplyError, Node, UnitState, boot_note, enable_unit, pid_alive, starts_at_boot, systemd_running, unit_states,
    wait_until,
)  # starts_at_boot: the reconciler asks it here, beside status()

UNIT = "sssd.service"


def process_start_time(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (from /proc; None if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def unit_state(node: Node) -> UnitState | None:
    """sssd.service as systemd sees it (one read-only `systemctl show`); None without systemd."""
    return unit_states(node, [UNIT])[UNIT] if systemd_running() else None


def status(pidfile: Path, conf: Path, unit: UnitState | None = None) -> str:
    """running | stopped | stale: started before its configuration was last written. With
    systemd (`unit`), a unit that does not start at boot says so: "running" is all of it."""
    return _process_status(pidfile, conf) + boot_note(unit)


def _process_status(pidfile: Path, conf: Path) -> str:
    pid = pid_alive(pidfile)
    if pid is None:
        return "stopped"
    started = process_start_time(pid)
    try:
        written = conf.stat().st_mtime
    except FileNotFoundError:
        return "running"
    # boot time is whole seconds: allow one second before calling it stale
    if started is not None and written > started + 1.0:
        return "stale (sssd.conf changed after sssd started)"
    return "running"


def restart(node: Node, pidfile: Path, flush_cache: bool, enforce: bool = False) -> None:
    """(Re)start sssd so it reads the current sssd.conf. With systemd an operator's hold on
    sssd.service raises Held before anything is restarted (base.enable_unit)."""
    if systemd_running():
        enable(node, enforce)
        node.run(["systemctl", "restart", UNIT])
    else:
        stop(node, pidfile)
        # --logger=files: without journald, sssd's default logger would drop everything
        node.run(["sssd", "-D", "--logger=files"])
        if not wait_until(lambda: pid_alive(pidfile) is not None, 15):
            raise ApplyError(f"sssd did not start (no live pid in {pidfile} after 15s; see /var/log/sssd)")
    if flush_cache:
        # entries cached under the old settings (home, names) would outlive the change
        node.run(["sss_cache", "-E"], check=False)


def enable(node: Node, enforce: bool = False) -> None:
    """sssd.service starts at boot (systemd), unless the operator holds it (raises Held)."""
    state = unit_state(node)
    if state is not None:
        enable_unit(node, state, enforce)


def stop(node: Node, pidfile: Path) -> None:
    if systemd_running():
        # Stopped, not disabled: as the package leaves it, enabled and skipped at boot by
        # its unit's condition once sssd.conf is gone (so a new join is not "held").
        node.run(["systemctl", "stop", UNIT], check=False)
        return
    pid = pid_alive(pidfile)
    if pid is None:
        return
    node.run(["kill", "-TERM", str(pid)], check=False)
    if not wait_until(lambda: pid_alive(pidfile) != pid, 15):
        raise ApplyError(f"sssd (pid {pid}) did not stop within 15s")
