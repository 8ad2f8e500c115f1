"""Services under systemd: whether systemd runs, units' states (`systemctl show`), the
boot note an observed daemon status carries when its unit does not start at boot, and
enabling/starting a unit, which an operator's hold (masked, or disabled although its
package enables it) stops unless the manifest says `metadata.drift: enforce`.

Part of the reconciler contract (reconcilers/base.py re-exports these names).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reconcilers.base import Held, Node


def systemd_running() -> bool:
    """True when systemd is PID 1 (a normal host, a lab node of `lab up --systemd`). In
    init-less lab nodes and plain containers it is not, and daemons are started directly."""
    return Path("/run/systemd/system").is_dir()


# What `systemctl is-enabled` says of a unit that starts at boot, or that cannot be enabled
# or disabled (started by another unit): nothing to do for reconcile.
ENABLED = ("enabled", "enabled-runtime", "static", "indirect", "generated", "alias")


@dataclass(frozen=True)
class UnitState:
    """What systemd says about one unit (`systemctl show`)."""

    name: str
    load: str = ""  # loaded | masked | not-found
    active: str = ""  # active | inactive | failed | activating | deactivating | reloading
    enabled: str = ""  # UnitFileState: enabled | disabled | masked | static | ...
    preset: str = ""  # UnitFilePreset: what the distribution enables at install

    @property
    def held(self) -> str | None:
        """Why the node's operator holds this unit back, or None: masked, or disabled
        while its vendor preset enables it (Debian enables every packaged daemon at
        install, so on Debian a disabled daemon was disabled by someone)."""
        if self.load == "masked" or self.enabled.startswith("masked"):
            return f"{self.name} is masked on this node"
        if self.enabled == "disabled" and self.preset == "enabled":
            return f"{self.name} is disabled on this node (its package enables it)"
        return None


def unit_states(node: Node, units: Sequence[str]) -> dict[str, UnitState]:
    """One read-only `systemctl show` for several units: name → UnitState. In a plan whose
    snapshot asked systemd about every reconciler's `units` at once, taken from there."""
    snapshot = node.runner.snapshot
    if snapshot is not None and snapshot.units is not None:
        try:
            known = snapshot.units.wait()
        except Exception:
            known = {}
        if all(u in known for u in units):
            return {u: known[u] for u in units}
    return read_units(node, units)


def read_units(node: Node, units: Sequence[str]) -> dict[str, UnitState]:
    """`systemctl show` for these units, always asked (unit_states may answer from a plan's snapshot)."""
    r = node.run(["systemctl", "show", "--property=Id,LoadState,ActiveState,UnitFileState,UnitFilePreset",
                  "--", *units], read_only=True, check=False, timeout=30, shared=True)
    return parse_unit_states(r.stdout, units)


def parse_unit_states(text: str, units: Sequence[str]) -> dict[str, UnitState]:
    """`systemctl show` output: one block of KEY=value lines per unit, in the order asked."""
    out: dict[str, UnitState] = {}
    for unit, block in zip(units, text.strip().split("\n\n")):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[unit] = UnitState(unit, props.get("LoadState", ""), props.get("ActiveState", ""),
                              props.get("UnitFileState", ""), props.get("UnitFilePreset", ""))
    return out


def unit_field(states: dict[str, UnitState]) -> dict[str, str]:
    """The `units` field of an observed state: short unit name → `systemctl is-enabled`."""
    return {name.removesuffix(".service"): s.enabled or "unknown" for name, s in states.items()}


NOT_AT_BOOT = "not started at boot"


def boot_note(state: UnitState | None) -> str:
    """What an observed daemon status ("running", "stopped") gets appended when systemd does
    not start the daemon's unit at boot: " (keepalived.service is disabled on this node (its
    package enables it): not started at boot)"; "" when it does, or without systemd (None).
    desired() says the plain status on every machine (it stays pure): the note is the drift."""
    if state is None or state.enabled in ENABLED:
        return ""
    why = state.held or f"{state.name} is {state.enabled or state.load or 'unknown'}"
    return f" ({why}: {NOT_AT_BOOT})"


def starts_at_boot(observed: Any) -> bool:
    """Whether an observed daemon status has nothing against starting at boot (boot_note)."""
    return NOT_AT_BOOT not in str(observed or "")


def without_boot_note(observed: Any) -> Any:
    """An observed daemon status without its boot_note."""
    return observed.split(" (", 1)[0] if isinstance(observed, str) and not starts_at_boot(observed) else observed


def enable_unit(node: Node, state: UnitState, enforce: bool) -> None:
    """Make a unit start at boot, as its package does at install. A unit the operator holds
    (see UnitState.held) raises Held, unless `enforce` (metadata.drift: enforce): it is
    then unmasked and enabled."""
    why = state.held
    if why and not enforce:
        raise Held(f"{why}: reconcile leaves it so (an operator's hold); `systemctl unmask`/`enable` it, "
                   "or set metadata.drift: enforce on the manifest to have it done")
    if state.load == "masked" or state.enabled.startswith("masked"):
        node.run(["systemctl", "unmask", state.name])
    if state.enabled not in ENABLED:
        node.run(["systemctl", "enable", state.name])


def unit_notes(node: Node, units: Sequence[str], enforce: bool) -> list[str]:
    """Plan notes for units that do not start at boot: what apply will do about each."""
    notes = []
    for state in unit_states(node, units).values():
        if state.enabled in ENABLED:
            continue
        why = state.held or f"{state.name} is {state.enabled or 'unknown'}"
        if state.held and not enforce:
            notes.append(f"{why}: an operator's hold, reported and left so (metadata.drift: enforce undoes it)")
        else:
            notes.append(f"{why}: {'unmasked and ' if 'masked' in why else ''}enabled by apply")
    return notes


def start_unit(node: Node, unit: str, enforce: bool, timeout: float = 60.0) -> None:
    """`systemctl start` a unit after making sure it is enabled (see `enable_unit`): a unit
    the operator stopped *and* holds (disable --now, mask) is not started again."""
    enable_unit(node, unit_states(node, [unit])[unit], enforce)
    node.run(["systemctl", "start", unit], timeout=timeout)


def pid_alive(pidfile: str | Path) -> int | None:
    """The PID in `pidfile` if that process is alive, else None."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
    return pid
