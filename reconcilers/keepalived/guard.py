"""The split-brain guard, and the repair of a master's missing address.

The guard: keepalived is dead, the addresses it left on the interfaces are nobody's. A
`kill -9` of every keepalived process (an OOM kill, `systemctl kill -s KILL`) leaves them
behind, and then two nodes may answer for one address. Until a peer has taken an address
over this node is the only one answering for it (clients' ARP caches still point here), so
the copy is removed once a peer's advert shows it is master, or after a backup's
master-down interval at the latest. Removed earlier, the address would be nowhere for most
of a failover.

The repair: keepalived says MASTER but an address is missing (removed by hand). keepalived
2.2 restores it by itself within a few hundred milliseconds; if it did not, a reload does.
"""
from __future__ import annotations

from reconcilers.base import ApplyError, Node, wait_until
from reconcilers.keepalived.daemon import Keepalived
from reconcilers.keepalived.model import Instance, master_down_seconds
from reconcilers.keepalived.vrrp import MASTER, RunningInstance, holders, listen_for_masters, parse_ip_addr, \
    with_prefix

# The longest the guard waits for a peer to take a stale address over (long advert intervals).
STALE_WAIT_LIMIT = 10.0


def node_addresses(node: Node) -> dict[str, set[str]]:
    return parse_ip_addr(node.run(["ip", "-j", "addr"], read_only=True).stdout)


def stale(instances: list[Instance], addrs: dict[str, set[str]]) -> list[tuple[Instance, str, str]]:
    """(instance, address, interface) of the managed addresses present on the node."""
    return [(inst, address, interface) for inst in instances for address in inst.addresses + inst.excluded
            for interface in sorted(holders(addrs, address))]


def remove_stale_addresses(node: Node, daemon: Keepalived, instances: list[Instance],
                           addrs: dict[str, set[str]]) -> list[str]:
    """Remove the addresses a dead keepalived left, once peers have taken them over (or
    their master-down time has passed). Returns what was removed."""
    found = stale(instances, addrs)
    if not found:
        return []
    node.runner.guard("vrrp-listen", sorted({i.name for i, _, _ in found}), read_only=True)
    waiting = list({inst.name: inst for inst, _, _ in found}.values())
    bound = max(master_down_seconds(i) + 2 * i.advert_interval for i in waiting)
    own = {a.split("/")[0] for a in addrs}
    listen_for_masters(waiting, own, timeout=min(bound, STALE_WAIT_LIMIT))
    removed = []
    for inst, address, interface in found:
        # Checked again right before each removal: keepalived may have been started since
        # observe, and then the address is its business.
        if daemon.pid() is not None:
            break
        full = with_prefix(addrs, address, interface)
        daemon.remove_address(full, interface)
        removed.append(full)
    return removed


def restore_master_addresses(node: Node, daemon: Keepalived, instances: list[Instance],
                             running: dict[str, RunningInstance] | None) -> None:
    """Reload keepalived when it is MASTER for an instance whose address is missing."""
    pid = daemon.pid()
    if pid is None or not running:
        return

    def missing() -> list[str]:
        addrs = node_addresses(node)
        return [a for inst in instances if (live := running.get(inst.name)) and live.state == MASTER
                for a in inst.addresses if not holders(addrs, a)]

    gone = missing()
    if not gone:
        return
    daemon.reload(pid)
    if not wait_until(lambda: not missing(), 3.0):
        raise ApplyError(f"keepalived is MASTER but {', '.join(gone)} did not come back after a reload")
