"""Health of keepalived VIPs: held by exactly one node, and keepalived itself working.

Pure functions of parsed observations (the VIP's holders from an ARP probe plus this
node's interfaces, keepalived's JSON dump), so they are tested on recorded outputs and
move with the keepalived package.
"""
from __future__ import annotations

from typing import Any, Iterable

from reconcilers.base import Health


def vip_health(address: str, holders: list[str], node: str, vrrp: str | None = None) -> Health:
    """An address must be held by exactly one node: none means clients reach nothing; two
    is a split brain (each answers, clients' ARP caches pick at random), Degraded on both.

    `holders`: node names (this node first when it has the address); `vrrp`: this node's
    VRRP state for the instance, shown for context."""
    ip = address.split("/")[0]
    here = f"; this node is {vrrp}" if vrrp else ""
    if not holders:
        return Health.degraded("NotHeld", f"no node answers for {ip}{here}")
    if len(holders) > 1:
        return Health.degraded("SplitBrain", f"{ip} is held by {' and '.join(holders)}: more than one node "
                                             f"answers for it{here}")
    who = f"{holders[0]} (this node)" if holders[0] == node else holders[0]
    return Health.healthy("HeldOnce", f"held by {who}{here}")


def keepalived_health(running: bool, dump: dict[str, Any] | None, instances: Iterable[Any]) -> Health:
    """keepalived on this node: running, answering, no instance in FAULT, and no tracked
    check (HAProxy) lowering this node's priority. `dump`: instance name → RunningInstance."""
    instances = list(instances)
    if not instances:
        return Health.healthy("NothingToRun", "no keepalived VIP on this node")
    if not running:
        return Health.degraded("NotRunning", "keepalived does not run: this node cannot take over a VIP")
    if dump is None:
        return Health.degraded("NotResponding", "keepalived does not answer its JSON dump signal "
                                                "(its VRRP process may be stopped or hung)")
    problems, states = [], []
    for inst in instances:
        live = dump.get(inst.name)
        if live is None:
            problems.append(f"{inst.name} is not loaded")
            continue
        states.append(f"{inst.name} {live.state_name} (priority {live.effective_priority})")
        if live.state_name == "FAULT":
            problems.append(f"{inst.name} is in FAULT (its interface is down or a check failed)")
        elif live.effective_priority < live.base_priority:
            problems.append(f"{inst.name}: a tracked check failed (HAProxy not running here?): priority "
                            f"{live.base_priority} → {live.effective_priority}")
    if problems:
        return Health.degraded("InstanceFault", "; ".join(problems))
    return Health.healthy("Running", ", ".join(states))
