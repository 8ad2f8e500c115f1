"""Health of keepalived's kinds: VIPs held by exactly one node, keepalived itself working,
virtual servers with real servers in IPVS.

Pure functions of parsed observations (the addresses' holders from link probes plus this
node's interfaces, keepalived's JSON dump, the kernel's IPVS table), so they are tested on
recorded outputs; the reconciler gathers the observations in one batch (health() in
reconciler.py).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from reconcilers.base import Health

DRAINED = "drained for maintenance (`reconcile undrain` on this node): its instances are in FAULT on purpose"


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


def addresses_health(found: list[tuple[str, list[str], str | None]], node: str) -> Health:
    """A VirtualIP's health from each of its addresses (address, holders, this node's VRRP
    state): each must be held once. A split brain outranks an address held by nobody; the
    message names every address that is wrong (or, when all are right, who holds them)."""
    if len(found) == 1:
        return vip_health(*found[0][:2], node, found[0][2])
    each = [(address, vip_health(address, holders, node, vrrp)) for address, holders, vrrp in found]
    for reason in ("SplitBrain", "NotHeld"):
        wrong = [(a, h) for a, h in each if h.reason == reason]
        if wrong:
            return Health.degraded(reason, "; ".join(f"{a.split('/')[0]}: {h.message}" if reason != "SplitBrain"
                                                     else h.message for a, h in wrong))
    together: dict[str, list[str]] = {}  # "held by lb1; this node is BACKUP" → its addresses
    for address, health in each:
        together.setdefault(health.message, []).append(address.split("/")[0])
    return Health.healthy("HeldOnce", "; ".join(f"{', '.join(ips)} {message}" for message, ips in together.items()))


def keepalived_health(running: bool, dump: dict[str, Any] | None, instances: Iterable[Any],
                      drained: bool = False) -> Health:
    """keepalived on this node: running, answering, not drained, no instance in FAULT, and
    no tracked check (HAProxy) lowering this node's priority. `dump`: instance name →
    RunningInstance."""
    instances = list(instances)
    if not instances:
        return Health.healthy("NothingToRun", "no keepalived VIP on this node")
    daemon = daemon_health(running, dump, True, drained)
    if daemon.status != "Healthy":
        return daemon
    problems, states = [], []
    for inst in instances:
        live = dump.get(inst.name) if dump else None
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


def daemon_health(running: bool, dump: dict[str, Any] | None, has_instances: bool, drained: bool = False) -> Health:
    """The keepalived daemon alone (the Keepalived object: what the node's keepalived
    carries): running, answering its dump signal when it has VRRP instances, not drained."""
    if not running:
        return Health.degraded("NotRunning", "keepalived does not run: this node cannot take over a VIP")
    if has_instances and dump is None:
        return Health.degraded("NotResponding", "keepalived does not answer its JSON dump signal "
                                                "(its VRRP process may be stopped or hung)")
    if drained:
        return Health.degraded("Drained", DRAINED)
    return Health.healthy("Running", "keepalived runs" + (f" {len(dump)} VRRP instance(s)" if dump else ""))


# --- LVS ---------------------------------------------------------------------------------------

Service = tuple[str, str]  # (protocol or "FWM", "address:port" or the mark), as `service_key` writes them


def parse_ip_vs(text: str) -> dict[Service, list[tuple[str, int]]]:
    """The kernel's IPVS table (/proc/net/ip_vs): virtual service → its real servers as
    ("address:port", weight). Addresses are the kernel's hex (IPv4 "C0000264:0050") or
    bracketed IPv6, turned into the usual notation."""
    out: dict[Service, list[tuple[str, int]]] = {}
    current: Service | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("IP", "Prot") or words[:2] == ["->", "RemoteAddress:Port"]:
            continue
        if words[0] == "->" and current is not None and len(words) >= 4:
            out[current].append((_endpoint(words[1]), int(words[3])))
        elif words[0] in ("TCP", "UDP", "SCTP") and len(words) >= 2:
            current = (words[0], _endpoint(words[1]))
            out[current] = []
        elif words[0] == "FWM" and len(words) >= 2:
            current = ("FWM", str(int(words[1], 16)))
            out[current] = []
    return out


def _endpoint(text: str) -> str:
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return f"[{ipaddress.IPv6Address(host.strip('[]'))}]:{int(port, 16)}"
    return f"{ipaddress.IPv4Address(int(host, 16))}:{int(port, 16)}"


def service_key(address: str | None, port: int | None, protocol: str, fwmark: int | None) -> Service:
    """The key `parse_ip_vs` files a manifest's virtual server under."""
    if fwmark is not None:
        return ("FWM", str(fwmark))
    ip = ipaddress.ip_address(address or "0.0.0.0")
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return (protocol.upper(), f"{host}:{port or 0}")


def virtual_server_health(service: Service, configured: int, table: dict[Service, list[tuple[str, int]]] | None,
                          keepalived_running: bool) -> Health:
    """A virtual server works when IPVS has it with at least one real server taking
    connections (weight > 0); keepalived's checkers remove (or, with inhibit_on_failure,
    zero) a real server whose check fails, so fewer than `configured` is Degraded."""
    name = " ".join(service)
    if table is None:
        return Health.degraded("NoIPVS", "this node's kernel has no IPVS (/proc/net/ip_vs): the virtual server "
                                         "cannot run here")
    if not keepalived_running:
        return Health.degraded("NotRunning", "keepalived does not run: nobody checks the real servers")
    if service not in table:
        return Health.degraded("NotInIPVS", f"IPVS has no service {name} (keepalived has not set it up)")
    up = [dest for dest, weight in table[service] if weight > 0]
    if not up:
        return Health.degraded("NoServerUp", f"{name}: no real server takes connections "
                                             f"({len(table[service])} in IPVS of {configured} configured)")
    if len(up) < configured:
        return Health.degraded("ServersDown", f"{name}: {len(up)} of {configured} real servers take connections "
                                              f"({', '.join(up)})")
    return Health.healthy("ServersUp", f"{name}: {len(up)} real server(s) take connections")
