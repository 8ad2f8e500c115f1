"""VirtualIP: a floating address, managed by keepalived (at-least-once) or Pacemaker (at-most-once).

`manager: keepalived` renders one VRRP instance per VIP (or per `keepalived.group`) on every
node of the VIP; `manager: pacemaker` becomes an IPaddr2 primitive in the ClusterResource
reconciler. The whole-tree checks here make sure the VRRP side is coherent before anything
is rendered: every node has an address to send unicast adverts from, the address lies in
the nodes' subnet, router ids do not collide on an interface, and the VIPs of one group
agree on everything their shared instance carries.
"""
from __future__ import annotations

import ipaddress
import dataclasses
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import IfName, IPv4Prefix, Manifest, Name, PacemakerInterval, Placement, Strict

DEFAULT_ADVERT_INTERVAL = 0.25
"""Seconds. Master-down after 3 × 0.25 s + skew ≈ 0.9 s: under the 1.5 s failover target
with headroom for a busy node (bench/bench_keepalived.py measures it)."""


def default_priority(index: int) -> int:
    """Priority of the node at `index` (0-based, in the VIP's node order) when the manifest
    does not name it: 100, 90, 80, … and never below 1."""
    return max(1, 100 - 10 * index)


class KeepalivedOptions(Strict):
    """How keepalived's VRRP instance for the address behaves on each node."""

    routerId: Annotated[int, Field(ge=1, le=255)] = Field(
        description="VRRP virtual router id, unique per interface (and per L2 segment)"
    )
    priority: dict[Name, Annotated[int, Field(ge=1, le=254)]] = Field(
        default_factory=dict, description="per node; unnamed nodes get 100, 90, 80… by their place in the node list"
    )
    advertInterval: Annotated[float, Field(ge=0.01, le=40.95)] = Field(
        DEFAULT_ADVERT_INTERVAL, description="VRRPv3 advertisement interval in seconds (centisecond steps)"
    )
    preempt: bool = Field(True, description="false: a higher-priority node coming back does not take the address over")
    preemptDelay: Annotated[int, Field(ge=0, le=1000)] | None = Field(
        None, description="seconds to wait before preempting a lower-priority master"
    )
    trackHaproxy: bool = Field(
        False, description="lower this node's priority below every other node's while its HAProxy is not running"
    )
    group: Name | None = Field(None, description="VIPs of one group share one VRRP instance")

    @model_validator(mode="after")
    def _checks(self) -> "KeepalivedOptions":
        if abs(self.advertInterval * 100 - round(self.advertInterval * 100)) > 1e-6:
            raise ValueError(f"advertInterval {self.advertInterval} must be a whole number of centiseconds "
                             "(VRRPv3 counts in 0.01 s), e.g. 0.25")
        if not self.preempt and self.preemptDelay is not None:
            raise ValueError("preemptDelay has no effect with preempt: false; drop one of them")
        if not self.preempt and self.trackHaproxy:
            raise ValueError("trackHaproxy needs preempt: with preempt false no other node takes the address "
                             "from a node whose HAProxy died; use preemptDelay to damp preemption instead")
        return self


class PacemakerOptions(Strict):
    """How Pacemaker runs the address (an IPaddr2 primitive)."""

    monitorInterval: PacemakerInterval = Field("10s", description="How often Pacemaker checks that the address is up.")
    preferredNode: Name | None = Field(None, description="A node it prefers (score 100) while that node is up.")


class VirtualIPSpec(Placement):
    """A floating address and who keeps it up: keepalived (at least once) or Pacemaker (at most once)."""

    address: IPv4Prefix = Field(description="The address with its prefix length, e.g. 192.0.2.100/24.")
    interface: IfName = Field("eth0", description="The interface the address is put on.")
    manager: Literal["keepalived", "pacemaker"] = Field(
        description="keepalived: VRRP keeps it on at least one node (services run everywhere); pacemaker: "
                    "Pacemaker runs it on at most one node (shared resources).")
    keepalived: KeepalivedOptions | None = Field(None, description="VRRP options, for manager keepalived.")
    pacemaker: PacemakerOptions | None = Field(None, description="Pacemaker options, for manager pacemaker.")

    @model_validator(mode="after")
    def _checks(self) -> "VirtualIPSpec":
        if self.manager == "keepalived" and self.keepalived is None:
            raise ValueError("manager keepalived needs spec.keepalived (at least routerId)")
        if self.manager == "pacemaker" and self.keepalived is not None:
            raise ValueError("spec.keepalived is for manager keepalived")
        if self.manager == "pacemaker" and self.cluster is None:
            raise ValueError("manager pacemaker needs spec.cluster")
        if self.manager == "keepalived" and self.pacemaker is not None:
            raise ValueError("spec.pacemaker is for manager pacemaker")
        return self


class VirtualIP(Manifest):
    kind: Literal["VirtualIP"]
    spec: VirtualIPSpec

    @property
    def ip(self) -> str:
        return self.spec.address.split("/")[0]

    def instance_name(self) -> str:
        """The keepalived vrrp_instance carrying this VIP: its group, or the VIP itself."""
        ka = self.spec.keepalived
        return ka.group if ka is not None and ka.group else self.metadata.name

    def node_order(self, tree) -> list[str]:
        """The VIP's nodes in a stable order: the Cluster's order, the `nodes` list, or
        (placed everywhere) every Cluster's nodes in turn. Default priorities follow it."""
        spec = self.spec
        if spec.node is not None:
            return [spec.node]
        if spec.nodes is not None:
            return list(spec.nodes)
        if spec.cluster is None:
            return list(tree.memo(_every_cluster_node))
        cluster = tree.get("Cluster", spec.cluster)
        return list(dict.fromkeys(n.name for n in cluster.spec.nodes)) if cluster is not None else []

    def priorities(self, tree) -> dict[str, int]:
        """Node → VRRP priority: the manifest's, else the default for the node's place."""
        ka = self.spec.keepalived
        named = ka.priority if ka is not None else {}
        return {n: named.get(n, default_priority(i)) for i, n in enumerate(self.node_order(tree))}

    def claims(self) -> list[tuple[str, str]]:
        # Router ids are checked in check(): the VIPs of one group share theirs on purpose.
        return [(f"ip:{self.ip}", "spec.address")]

    def check(self, tree) -> list[tuple[str, str]]:
        problems = []
        vip = ipaddress.IPv4Interface(self.spec.address)
        nodes = tree.nodes_of(self)
        for node in sorted(nodes):
            addr = tree.node_address(node)
            if addr and vip.ip not in ipaddress.IPv4Interface(addr).network:
                problems.append(("spec.address", f"{vip.ip} is outside the subnet of {node}'s "
                                 f"{self.spec.interface} ({ipaddress.IPv4Interface(addr).network})"))
                break
        if addr_is_node := [n for n in nodes if (a := tree.node_address(n)) and a.split("/")[0] == str(vip.ip)]:
            problems.append(("spec.address", f"{vip.ip} is the fixed address of node {addr_is_node[0]}"))
        ka = self.spec.keepalived
        if ka is None:
            return problems
        for node in ka.priority:
            if node not in nodes:
                problems.append((f"spec.keepalived.priority.{node}", f"node {node!r} is not a node of this VIP"))
        if no_address := sorted(n for n in nodes if not tree.node_address(n)):
            problems.append(("spec.keepalived", f"node {no_address[0]} has no address in any Cluster: keepalived "
                             "sends its unicast adverts from each node's cluster address"))
        problems += self._check_against_others(tree, nodes)
        return problems

    def _check_against_others(self, tree, nodes: frozenset[str]) -> list[tuple[str, str]]:
        """Router ids per interface, and the agreement of a group's VIPs. Each problem is
        reported once, on the later of the two manifests; looked up in an index of the tree
        (see `_vrrp_index`), so that 10,000 VIPs are checked in linear time."""
        ka = self.spec.keepalived
        index = tree.memo(_vrrp_index)
        mine = index.order[id(self)]

        def earlier(other: "VirtualIP | None") -> bool:
            return other is not None and index.order[id(other)] < mine

        problems: list[tuple[str, str]] = []
        if ka.group is not None:
            first = index.group_first[ka.group]
            if earlier(first):
                problems += self._check_group_member(tree, first, nodes, tree.nodes_of(first))
            clash = index.ungrouped.get(ka.group)
        else:
            clash = index.group_first.get(self.metadata.name)
        if clash is not None and earlier(clash):
            problems.append(("spec.keepalived.group" if ka.group else "metadata.name",
                             f"VRRP instance name {self.instance_name()!r} is also used by VirtualIP "
                             f"{clash.metadata.name!r}: a group may not share its name with an ungrouped VIP"))
        for node in sorted(nodes):
            other = index.router.get((self.spec.interface, ka.routerId, node))
            if other is not None and earlier(other) and (ka.group is None or other.spec.keepalived.group != ka.group):
                problems.append(("spec.keepalived.routerId",
                                 f"router id {ka.routerId} on {self.spec.interface} is already used by VirtualIP "
                                 f"{other.metadata.name!r} on node {node}: every VRRP instance on an "
                                 "interface needs its own router id"))
                break
        return problems

    def _check_group_member(self, tree, first: "VirtualIP", nodes: frozenset[str],
                            first_nodes: frozenset[str]) -> list[tuple[str, str]]:
        ka, fka = self.spec.keepalived, first.spec.keepalived
        why = f"the VIPs of group {ka.group!r} share one VRRP instance (VirtualIP {first.metadata.name!r} says {{}})"
        if nodes != first_nodes:
            return [("spec", why.format(f"nodes {', '.join(sorted(first_nodes))}"))]
        if self.spec.interface != first.spec.interface:
            return [("spec.interface", why.format(f"interface {first.spec.interface}"))]
        for field in ("routerId", "advertInterval", "preempt", "preemptDelay", "trackHaproxy"):
            if getattr(ka, field) != getattr(fka, field):
                return [(f"spec.keepalived.{field}", why.format(f"{field} {getattr(fka, field)}"))]
        if self.priorities(tree) != first.priorities(tree):
            return [("spec.keepalived.priority", why.format(f"priority {first.priorities(tree)}"))]
        return []


def _every_cluster_node(tree) -> tuple[str, ...]:
    """Every Cluster's nodes in turn, each once: the order of a VIP placed everywhere."""
    return tuple(dict.fromkeys(n.name for c in tree.of_kind("Cluster") for n in c.spec.nodes))


@dataclasses.dataclass
class _VrrpIndex:
    """The keepalived VIPs of a tree, indexed for `VirtualIP._check_against_others`."""

    order: dict[int, int] = dataclasses.field(default_factory=dict)  # id(vip) → place in the tree
    group_first: dict[str, VirtualIP] = dataclasses.field(default_factory=dict)  # group → its first VIP
    ungrouped: dict[str, VirtualIP] = dataclasses.field(default_factory=dict)  # instance (VIP) name → VIP
    router: dict[tuple[str, int, str], VirtualIP] = dataclasses.field(default_factory=dict)  # (interface, id, node) → first


def _vrrp_index(tree) -> _VrrpIndex:
    index = _VrrpIndex()
    for place, vip in enumerate(tree.of_kind("VirtualIP")):
        ka = vip.spec.keepalived
        if ka is None:
            continue
        index.order[id(vip)] = place
        if ka.group is not None:
            index.group_first.setdefault(ka.group, vip)
        else:
            index.ungrouped.setdefault(vip.metadata.name, vip)
        for node in tree.nodes_of(vip):
            index.router.setdefault((vip.spec.interface, ka.routerId, node), vip)
    return index
