"""sssd, the daemon: running, started after its configuration was last written, restarted
at most once per pass. With systemd through systemctl; without it (lab nodes, plain
containers) as a daemon of its own with its pid file."""
from __future__ import annotations

import os
from pathlib import Path

from reconcilers.base import ApplyError, Node, pid_alive, systemd_running, wait_until


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


def status(pidfile: Path, conf: Path) -> str:
    """running | stopped | stale: started before its configuration was last written."""
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


def restart(node: Node, pidfile: Path, flush_cache: bool) -> None:
    """(Re)start sssd so it reads the current sssd.conf."""
    if systemd_running():
        node.run(["systemctl", "enable", "sssd"])
        node.run(["systemctl", "restart", "sssd"])
    else:
        stop(node, pidfile)
        # --logger=files: without journald, sssd's default logger would drop everything
        node.run(["sssd", "-D", "--logger=files"])
        if not wait_until(lambda: pid_alive(pidfile) is not None, 15):
            raise ApplyError(f"sssd did not start (no live pid in {pidfile} after 15s; see /var/log/sssd)")
    if flush_cache:
        # entries cached under the old settings (home, names) would outlive the change
        node.run(["sss_cache", "-E"], check=False)


def stop(node: Node, pidfile: Path) -> None:
    if systemd_running():
        node.run(["systemctl", "disable", "--now", "sssd"], check=False)
        return
    pid = pid_alive(pidfile)
    if pid is None:
        return
    node.run(["kill", "-TERM", str(pid)], check=False)
    if not wait_until(lambda: pid_alive(pidfile) != pid, 15):
        raise ApplyError(f"sssd (pid {pid}) did not stop within 15s")
