"""Health of LXC containers: running as git says, and its init alive and answering.

An init that is stopped (SIGSTOP, a debugger), a zombie or gone leaves `lxc-ls` saying
RUNNING while nothing in the container works: its state letter in /proc/PID/stat says
it (R running, S/I sleeping and answering signals; T/t stopped; Z/X dead). Pure functions
of parsed observations, tested on recorded files; they move with the lxc package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcilers.base import Health

DEAD = {"Z": "a zombie", "X": "dead"}
STOPPED = {"T": "stopped by a signal", "t": "stopped by a debugger"}


def parse_proc_stat(text: str) -> tuple[str, str]:
    """(command name, state letter) from the text of /proc/PID/stat."""
    comm = text[text.index("(") + 1:text.rindex(")")]
    return comm, text[text.rindex(")") + 1:].split()[0]


def init_of(instance: str | None, proc: str = "/proc") -> tuple[int, str, str] | None:
    """(PID, command, state letter) of a running container's init ("PID:start time" as
    observe recorded it); None when that process is gone or is another one now."""
    if not instance:
        return None
    pid, _, start = instance.partition(":")
    try:
        text = Path(proc, pid, "stat").read_text()
    except OSError:
        return None
    comm, state = parse_proc_stat(text)
    if start and text[text.rindex(")") + 1:].split()[19] != start:
        return None  # the PID was reused
    return int(pid), comm, state


def container_health(want: dict[str, Any], have: dict[str, Any] | None,
                     init: tuple[int, str, str] | None) -> Health:
    """`want`/`have`: the Container's desired and observed states; `init`: from init_of."""
    if have is None:
        return Health.degraded("NotDefined", "not defined on this node")
    state = have.get("state")
    if state == "invalid":
        return Health.degraded("InvalidConfig", "LXC cannot load its configuration")
    wanted = want.get("state")
    if wanted is None:  # Pacemaker places it: running here or not is Pacemaker's call
        if state != "running":
            return Health.healthy("DefinedHere", f"defined here, {state}; Pacemaker decides where it runs")
        return _running(init, "runs here (placed by Pacemaker)")
    if wanted == "running":
        if state == "frozen":
            return Health.degraded("Frozen", "frozen: its processes do not run")
        if state != "running":
            return Health.degraded("NotRunning", f"{state}, should be running")
        return _running(init, "running")
    if state == wanted:
        return Health.healthy(f"{wanted.capitalize()}AsIntended", f"{state}, as git says")
    return Health.degraded("NotAsIntended", f"{state}, should be {wanted}")


def _running(init: tuple[int, str, str] | None, what: str) -> Health:
    if init is None:
        return Health.degraded("InitGone", f"{what} as LXC says, but its init process is gone")
    pid, comm, letter = init
    if letter in DEAD:
        return Health.degraded("InitDead", f"{what}, but its init ({comm}, pid {pid}) is {DEAD[letter]}")
    if letter in STOPPED:
        return Health.degraded("InitStopped", f"{what}, but its init ({comm}, pid {pid}) is {STOPPED[letter]}: "
                                              "nothing in the container answers")
    return Health.healthy("Running", f"{what}, init {comm} (pid {pid}) answering")
