"""The local keepalived daemon: ask it, check a file with it, start, reload and stop it.

Facts this module relies on (keepalived 2.2.7, Debian 12; see /work/shared/notes):

- `keepalived -t -f FILE` checks a configuration, including that its interfaces and script
  files exist, so it runs on the node itself. Its messages carry "(Line N)" or the
  instance's name "(VI_1)"; any exit code other than 0 means "do not install" (warnings
  such as a truncated password give 5 too).
- The JSON dump signal (`keepalived --signum=JSON`, a real-time signal, 36 here) makes the
  VRRP process write /tmp/keepalived.json; it is read through /proc/PID/root so that it is
  found even when the agent runs with a private /tmp. Without a vrrp_instance there is no
  VRRP process and no dump.
- SIGHUP reloads. An address moved from one instance to another needs two reloads (the
  first without it, then with it), or it may end up configured on neither.
- A `virtual_server` on a kernel without IPVS makes the checker process exit with a fatal
  error, and keepalived then stops altogether, VRRP included (`ipvs_available`).
- With systemd as PID 1 the unit starts, reloads and stops it, and is enabled (it starts at
  boot, as the package installs it; a unit the operator masked, or disabled although the
  package enables it, is their hold: `Held`, unless `metadata.drift: enforce`); elsewhere
  (containers, the lab's init-less nodes) keepalived daemonizes itself with the Debian
  unit's pid files and is signalled.
"""
from __future__ import annotations

from pathlib import Path

from reconcilers.base import (
    ApplyError, CommandError, Node, UnitState, pid_alive, start_unit, systemd_running, tool_fact, unit_states,
    wait_until,
)
from reconcilers.keepalived.model import Instance
from reconcilers.keepalived.vrrp import RunningInstance, parse_json_dump

CONFIG = Path("/etc/keepalived/keepalived.conf")
PIDFILE = Path("/run/keepalived.pid")
VRRP_PIDFILE = Path("/run/keepalived_vrrp.pid")
CHECKERS_PIDFILE = Path("/run/keepalived_checkers.pid")
JSON_DUMP = "/tmp/keepalived.json"
IPVS_PROC = Path("/proc/net/ip_vs")
UNIT = "keepalived.service"


def read_config(path: Path = CONFIG) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def ipvs_available() -> bool:
    """Whether this kernel (network namespace) has IPVS, which LVS virtual servers need."""
    return IPVS_PROC.exists()


class Keepalived:
    """Start, reload, stop and question the local keepalived, through the node's runner.
    Mutating calls are not read-only, so a dry-run refuses them."""

    _signum: dict[str, int] = {}

    def __init__(self, node: Node):
        self.node = node

    def pid(self) -> int | None:
        return pid_alive(PIDFILE)

    def unit_state(self) -> UnitState | None:
        """keepalived.service as systemd sees it (one read-only `systemctl show`); None without systemd."""
        return unit_states(self.node, [UNIT])[UNIT] if systemd_running() else None

    # -- reading

    def signum(self, name: str) -> int:
        """keepalived's signal number for `name` (build dependent, so asked once per
        build: remembered in the state folder, see tool_fact)."""
        if name not in self._signum:
            def ask() -> str:
                out = self.node.run(["keepalived", f"--signum={name}"], read_only=True).stdout.strip()
                if not out.isdigit():
                    raise ApplyError(f"`keepalived --signum={name}` gave {out!r}: this keepalived has no {name} dump")
                return out

            out = tool_fact(self.node, "keepalived", f"--signum={name}", ask)
            if not out.isdigit():  # a damaged record: asked again
                out = ask()
            self._signum[name] = int(out)
        return self._signum[name]

    def dump(self, pid: int, timeout: float = 2.0) -> dict[str, RunningInstance] | None:
        """keepalived's view of its instances, fresh (asked for now), or None when it does
        not answer within `timeout` (a stopped or hung VRRP process, or none)."""
        path = Path(f"/proc/{pid}/root{JSON_DUMP}")
        before = signature(path)
        if self.node.run(["kill", "-s", str(self.signum("JSON")), str(pid)], read_only=True, check=False).rc != 0:
            return None  # it has just exited

        def fresh() -> dict[str, RunningInstance] | None:
            if signature(path) == before:
                return None
            try:
                return parse_json_dump(path.read_text())
            except (OSError, ValueError, KeyError):
                return None  # being written: read again

        return wait_until(fresh, timeout, interval=0.01) or None

    def check(self, path: Path) -> None:
        """`keepalived -t` on a candidate file; ApplyError with keepalived's words if refused."""
        problems = self.problems(path)
        if problems:
            raise ApplyError("keepalived -t refused it: " + " | ".join(problems))

    def problems(self, path: Path) -> list[str]:
        """keepalived -t's complaints about a file (empty when it exits 0)."""
        r = self.node.run(["keepalived", "-t", "-f", str(path)], read_only=True, check=False, timeout=30)
        if r.rc == 0:
            return []
        lines = [line.strip() for line in (r.stderr + r.stdout).splitlines() if line.strip()]
        return lines or [f"exit {r.rc} without a message"]

    # -- changing

    def start(self, vrrp: bool, timeout: float = 10.0, enforce: bool = False) -> int:
        """Start keepalived and wait until it runs (and, with VRRP instances, answers). With
        systemd its unit is enabled first: an operator's hold raises Held (base.start_unit)
        and nothing is started, unless `enforce`."""
        # A VRRP process whose parent was killed is still sending its goodbye (priority 0)
        # and releasing its addresses; a new keepalived refuses to start next to it.
        orphan = pid_alive(VRRP_PIDFILE)
        if orphan is not None and not wait_until(lambda: pid_alive(VRRP_PIDFILE) is None, 5.0):
            raise ApplyError(f"the VRRP process of a previous keepalived (pid {orphan}) is still running "
                             "without its parent; end it, then apply again")
        if systemd_running():
            start_unit(self.node, UNIT, enforce)
        else:
            # keepalived forks into the background itself and closes its output.
            self.node.run(["keepalived", "--use-file", str(CONFIG), "--pid", str(PIDFILE),
                           "--vrrp_pid", str(VRRP_PIDFILE), "--checkers_pid", str(CHECKERS_PIDFILE)])

        def up() -> int | None:
            pid = self.pid()
            if pid is None:
                return None
            return pid if not vrrp or self.dump(pid, timeout=0.5) is not None else None

        pid = wait_until(up, timeout)
        if not pid:
            raise ApplyError(f"keepalived did not come up within {timeout:.0f}s (no live pid in {PIDFILE}"
                             f"{' answering its JSON dump' if vrrp else ''}); look at its log "
                             "(syslog / journalctl -u keepalived)")
        return pid

    def reload(self, pid: int) -> None:
        if systemd_running():
            self.node.run(["systemctl", "reload", UNIT])
        else:
            self.node.run(["kill", "-s", "HUP", str(pid)])

    def stop(self, pid: int, timeout: float = 15.0) -> None:
        """Stop keepalived; it releases its addresses as it goes."""
        if systemd_running():
            self.node.run(["systemctl", "stop", UNIT])
        else:
            self.node.run(["kill", "-s", "TERM", str(pid)])
        if not wait_until(lambda: self.pid() is None, timeout):
            raise ApplyError(f"keepalived (pid {pid}) did not stop within {timeout:.0f}s")

    def wait_loaded(self, instances: list[Instance], timeout: float = 5.0) -> dict[str, RunningInstance] | None:
        """Wait until the running keepalived runs exactly `instances` (after a reload)."""
        if not instances:
            return {}
        names = {i.name for i in instances}
        seen: dict[str, RunningInstance] | None = None

        def loaded() -> dict[str, RunningInstance] | None:
            nonlocal seen
            pid = self.pid()
            seen = self.dump(pid, timeout=0.5) if pid else None
            if seen is not None and set(seen) == names and all(seen[i.name].runs(i) for i in instances):
                return seen
            return None

        running = wait_until(loaded, timeout)
        if not running:
            have = ", ".join(sorted(seen)) if seen else "no answer"
            raise ApplyError(f"keepalived did not load the new configuration within {timeout:.0f}s "
                             f"(running instances: {have}); it keeps the previous one")
        return running

    def remove_address(self, address: str, interface: str) -> None:
        try:
            self.node.run(["ip", "addr", "del", address, "dev", interface])
        except CommandError as err:
            if "Cannot assign requested address" not in err.stderr:  # already gone: fine
                raise
