"""VirtualIP: floating addresses, managed by keepalived (at-least-once) or Pacemaker (at-most-once).

`manager: keepalived`: one VirtualIP is one keepalived `vrrp_instance` (named after the
manifest, `VI_1` included), rendered on every node of the VIP with that node's priority;
VIPs sharing a `keepalived.group` share one instance. An instance whose addresses are of
both families becomes two instances, one per family (`NAME` and `NAME_v6`, or `NAME_v4`),
with the same settings (the notify programs run for the first only, and the IPv6 one runs
VRRPv3 without a password): keepalived sends VRRP for one family per instance. Everything
keepalived 2.2 offers for VRRP is here, typed where reconcile must understand it
(addresses, peers, router ids, tracking references, the programs keepalived runs, the
password) and as verbatim `extra` lines otherwise. `manager: pacemaker` becomes an IPaddr2
primitive in the ClusterResource reconciler.

The whole-tree checks make the VRRP side coherent before anything is rendered: the
addresses lie in the nodes' subnet, router ids do not collide on an interface and family
(also through the per-family split), every node has an address to send unicast adverts
from, the VIPs of one group agree, and tracked scripts/files exist on the VIP's nodes.
"""
import ipaddress
import dataclasses
from typing import Annotated, Literal, TypeVar, Union

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.common import (
    IP_MAYBE_PREFIX_PATTERN, IfName, IPAddress, IPAddressMaybePrefix, IPPrefix, Manifest, Metadata, Name, NodeName, PacemakerInterval, Placement,
    PATTERN_HELP, SecretRef, Strict, ip_maybe_prefix,
)
from schemas.keepalived import (
    Command, KeepalivedName, Line, Notify, Track, program_problems, settings_on, track_problems, typed_keywords_in,
)

DEFAULT_ADVERT_INTERVAL = 0.25
"""Seconds (VRRPv3). Master-down after 3 × 0.25 s + skew ≈ 0.9 s: under the 1.5 s failover
target with headroom for a busy node (bench/bench_keepalived.py measures it)."""


def default_priority(index: int) -> int:
    """Priority of the node at `index` (0-based, in the VIP's node order) when the manifest
    does not name it: 100, 90, 80, … and never below 1."""
    return max(1, 100 - 10 * index)


def _peer(value: str) -> str:
    if value != " ".join(value.split()):
        raise ValueError(f"{value!r}: a peer is words separated by single spaces (no tabs, line breaks or control "
                         "characters)")
    words = value.split()
    if not words:
        raise ValueError("an empty peer")
    ip_maybe_prefix(words[0])
    rest = words[1:]
    if len(rest) % 2 or any(k not in ("min_ttl", "max_ttl") or not v.isdigit() or int(v) > 255
                            for k, v in zip(rest[::2], rest[1::2])):
        raise ValueError(f"{value!r}: a peer is an address, optionally followed by min_ttl N and/or max_ttl N")
    return " ".join(words)


IP = IPAddress
Address = IPAddressMaybePrefix
PEER_PATTERN = (f"^{IP_MAYBE_PREFIX_PATTERN[1:-1]}"
                r"( (min_ttl|max_ttl) ([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])){0,2}$")
PATTERN_HELP[PEER_PATTERN] = "must be an address, optionally followed by min_ttl N and/or max_ttl N"
Peer = Annotated[str, AfterValidator(_peer), Field(json_schema_extra={"pattern": PEER_PATTERN})]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/+-]{1,64}$")]
T = TypeVar("T")
PerNode = Union[T, dict[Name, T]]
State = Literal["MASTER", "BACKUP"]


class VipAddress(Strict):
    """One `virtual_ipaddress` line: an address and where keepalived puts it."""

    address: Address = Field(description="a.b.c.d[/n] or IPv6[/n]; keepalived takes /32 (/128) without a prefix")
    dev: IfName | None = Field(None, description="another interface than the instance's (a VIP on another device)")
    label: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,15}$")] | None = Field(
        None, description="an alias name such as eth0:vip (IPv4)")
    scope: Literal["site", "link", "host", "nowhere", "global"] | None = Field(
        None, description="the address's scope (`scope`), as ip-address(8) says")
    brd: Annotated[str, StringConstraints(pattern=r"^([0-9.]{7,15}|[+-])$")] | None = Field(
        None, description="its broadcast address (IPv4), or + / - to set or clear the host bits")
    noTrack: bool = Field(False, description="deleting the address by hand does not take the instance out of MASTER")
    options: list[Word] = Field(default_factory=list, description="other words of the line: peer X, home, -nodad, …")

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.ip).version


class Authentication(Strict):
    """VRRPv2 authentication. The password is a secret reference, never inline."""

    type: Literal["PASS", "AH"] = Field(description="PASS: a password in clear in each advert; AH: IPsec AH")
    password: SecretRef = Field(description="{file: /path} or {env: NAME}; keepalived uses its first 8 characters")


class Garp(Strict):
    """Gratuitous ARP / unsolicited NA of this instance."""

    masterDelay: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        None, description="garp_master_delay: seconds after becoming MASTER before the second burst")
    masterRepeat: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="garp_master_repeat: messages per burst")
    masterRefresh: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        None, description="garp_master_refresh: seconds between repeated bursts while MASTER (0: none)")
    masterRefreshRepeat: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="garp_master_refresh_repeat: messages per repeated burst")
    lowerPrioDelay: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        None, description="garp_lower_prio_delay: seconds before a burst after hearing a lower priority")
    lowerPrioRepeat: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="garp_lower_prio_repeat: messages per such burst")


GARP_KEYWORDS = {
    "masterDelay": "garp_master_delay", "masterRepeat": "garp_master_repeat",
    "masterRefresh": "garp_master_refresh", "masterRefreshRepeat": "garp_master_refresh_repeat",
    "lowerPrioDelay": "garp_lower_prio_delay", "lowerPrioRepeat": "garp_lower_prio_repeat",
}
INSTANCE_TYPED = {
    "state": "state", "interface": "spec.interface", "virtual_router_id": "routerId", "priority": "priority",
    "advert_int": "advertInterval", "version": "version", "nopreempt": "preempt", "preempt_delay": "preemptDelay",
    "unicast_src_ip": "unicastSrcIp", "mcast_src_ip": "mcastSrcIp", "unicast_peer": "unicastPeers",
    "mcast_dst_ip": "mcastDstIp", "authentication": "authentication", "native_ipv6": "nativeIpv6",
    "virtual_ipaddress": "spec.addresses", "virtual_ipaddress_excluded": "excludedAddresses",
    "virtual_routes": "routes", "virtual_rules": "rules", "track_interface": "track.interfaces",
    "track_script": "track.scripts", "track_file": "track.files", "track_process": "track.processes",
    "track_bfd": "track.bfd",
    **{v: f"garp.{k}" for k, v in GARP_KEYWORDS.items()},
}


class KeepalivedOptions(Strict):
    """How keepalived's VRRP instance for the address behaves on each node."""

    routerId: Annotated[int, Field(ge=1, le=255)] = Field(
        description="VRRP virtual router id, unique per interface and address family (and per L2 segment)"
    )
    priority: dict[NodeName, Annotated[int, Field(ge=1, le=254)]] = Field(
        default_factory=dict, description="per node; unnamed nodes get 100, 90, 80… by their place in the node list"
    )
    version: Literal[2, 3] = Field(3, description="VRRP version; IPv6 instances always run version 3")
    advertInterval: Annotated[float, Field(ge=0.01, le=40.95)] | None = Field(
        None, description="seconds: 0.25 by default with VRRPv3 (centisecond steps), 1 with VRRPv2 (whole seconds)"
    )
    state: PerNode[State] = Field("BACKUP", description="initial state (per node, or for all)")
    preempt: bool = Field(True, description="false: a higher-priority node coming back does not take the address over")
    preemptDelay: Annotated[float, Field(ge=0, le=1000)] | None = Field(
        None, description="seconds to wait before preempting a lower-priority master"
    )
    trackHaproxy: bool = Field(
        False, description="lower this node's priority below every other node's while its HAProxy is not running"
    )
    group: KeepalivedName | None = Field(None, description="VIPs of one group share one VRRP instance")
    multicast: bool = Field(False, description="send adverts to the VRRP multicast group instead of unicast peers")
    unicastPeers: list[Peer] | None = Field(
        None, description="default: the other nodes' Cluster addresses (IPv4); a node's own address is left out. "
                          "An entry may add `min_ttl N` / `max_ttl N`")
    unicastSrcIp: PerNode[Address] | None = Field(None, description="default: the node's Cluster address")
    mcastSrcIp: PerNode[Address] | None = Field(None, description="the source address of adverts (`mcast_src_ip`)")
    mcastDstIp: IP | None = Field(None, description="another multicast group for the adverts (`mcast_dst_ip`)")
    authentication: Authentication | None = Field(None, description="VRRPv2 authentication (version: 2)")
    nativeIpv6: bool = Field(False, description="`native_ipv6`: an IPv6 instance even without IPv6 addresses")
    excludedAddresses: list[VipAddress] = Field(default_factory=list, description="virtual_ipaddress_excluded")
    routes: list[Line] = Field(default_factory=list, description="virtual_routes lines, e.g. `0.0.0.0/0 via 192.0.2.1`")
    rules: list[Line] = Field(default_factory=list, description="virtual_rules lines, e.g. `from 192.0.2.0/24 table 1`")
    track: Track = Field(default_factory=Track, description="what moves this instance's priority or puts it in "
                                                            "FAULT")
    notify: Notify = Field(default_factory=Notify, description="programs run on this instance's state changes")
    garp: Garp = Field(default_factory=Garp, description="gratuitous ARP / unsolicited NA settings")
    extra: list[Line] = Field(default_factory=list, description="any other vrrp_instance directive, as written")

    def interval(self) -> float:
        return self.advertInterval if self.advertInterval is not None else (
            DEFAULT_ADVERT_INTERVAL if self.version == 3 else 1.0)

    @model_validator(mode="after")
    def _checks(self) -> "KeepalivedOptions":
        interval = self.interval()
        if self.version == 2 and interval != int(interval):
            raise ValueError(f"advertInterval {interval} must be whole seconds with VRRPv2 (keepalived rounds it); "
                             "use version: 3 for fractions")
        if abs(interval * 100 - round(interval * 100)) > 1e-6:
            raise ValueError(f"advertInterval {interval} must be a whole number of centiseconds "
                             "(VRRPv3 counts in 0.01 s), e.g. 0.25")
        if not self.preempt and self.preemptDelay is not None:
            raise ValueError("preemptDelay has no effect with preempt: false; drop one of them")
        if not self.preempt and self.trackHaproxy:
            raise ValueError("trackHaproxy needs preempt: with preempt false no other node takes the address "
                             "from a node whose HAProxy died; use preemptDelay to damp preemption instead")
        if self.authentication is not None and self.version != 2:
            raise ValueError("authentication exists in VRRPv2 only (RFC 5798 dropped it): set version: 2")
        if self.multicast and (self.unicastPeers or self.unicastSrcIp):
            raise ValueError("multicast: true sends no unicast adverts: drop unicastPeers/unicastSrcIp")
        if self.unicastSrcIp is not None and self.mcastSrcIp is not None:
            raise ValueError("unicastSrcIp and mcastSrcIp set the same source address: give one")
        problems = typed_keywords_in(self.extra, INSTANCE_TYPED, "extra")
        if problems:
            raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
        return self


class PacemakerOptions(Strict):
    """How Pacemaker runs the address (an IPaddr2 primitive)."""

    monitorInterval: PacemakerInterval = Field("10s", description="How often Pacemaker checks that the address is up.")
    preferredNode: NodeName | None = Field(None, description="A node it prefers (score 100) while that node is up.")


class VirtualIPSpec(Placement):
    """A floating address and who keeps it up: keepalived (at least once) or Pacemaker (at most once)."""

    address: IPPrefix | None = Field(
        None, description="The address with its prefix length, e.g. 192.0.2.100/24 (shorthand for addresses).")
    addresses: list[VipAddress] = Field(default_factory=list, description="keepalived: the instance's addresses")
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
        if self.manager == "pacemaker":
            if self.keepalived is not None:
                raise ValueError("spec.keepalived is for manager keepalived")
            if self.cluster is None:
                raise ValueError("manager pacemaker needs spec.cluster")
            if self.address is None or self.addresses:
                raise ValueError("manager pacemaker takes one IPv4 address: spec.address")
            if ipaddress.ip_interface(self.address).version != 4:
                raise ValueError("manager pacemaker manages IPv4 addresses (IPaddr2) only")
        if self.manager == "keepalived" and self.pacemaker is not None:
            raise ValueError("spec.pacemaker is for manager pacemaker")
        if self.address is not None and self.addresses:
            raise ValueError("give spec.address or spec.addresses, not both")
        return self


class VirtualIPMetadata(Metadata):
    """What the VIP is called (its VRRP instance's name) and how the agent treats changes
    made outside git."""

    name: KeepalivedName = Field(  # type: ignore[assignment]
        description="Its name, unique among VirtualIPs: letters, digits and _ . - (at most 63); keepalived's "
                    "vrrp_instance takes it as it is (VI_1).")


class VirtualIP(Manifest):
    """A floating address: keepalived (VRRP, at least once) or Pacemaker (IPaddr2, at most once)."""

    kind: Literal["VirtualIP"]
    metadata: VirtualIPMetadata
    spec: VirtualIPSpec

    # --- what it is ---

    def vips(self) -> list[VipAddress]:
        """The instance's addresses (`address` is shorthand for one on the instance's interface)."""
        if self.spec.address is not None:
            return [VipAddress(address=self.spec.address)]
        return list(self.spec.addresses)

    @property
    def ip(self) -> str:
        """The first address (a Frontend binds it); empty for an instance without addresses."""
        vips = self.vips()
        return vips[0].ip if vips else ""

    def ips(self) -> list[str]:
        ka = self.spec.keepalived
        return [v.ip for v in self.vips()] + ([v.ip for v in ka.excludedAddresses] if ka else [])

    def instance_name(self) -> str:
        """The keepalived vrrp_instance carrying this VIP: its group, or the VIP itself."""
        ka = self.spec.keepalived
        return ka.group if ka is not None and ka.group else self.metadata.name

    def families(self) -> list[int]:
        """The address families of its VRRP instances, the instance's own first. An instance
        without addresses is of the family of its peers (IPv4 unless `nativeIpv6`)."""
        ka = self.spec.keepalived
        out: list[int] = []
        for v in self.vips():
            if v.family not in out:
                out.append(v.family)
        if not out:
            out = [6 if ka is not None and ka.nativeIpv6 else 4]
        return out

    def instance_names(self) -> list[str]:
        """One instance per address family: NAME for the first, NAME_v6 / NAME_v4 for the other."""
        base = self.instance_name()
        families = self.families()
        return [base] + [f"{base}_v{f}" for f in families[1:]]

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

    def derives_peers(self) -> bool:
        """Whether its IPv4 unicast peers come from the Cluster's node addresses."""
        ka = self.spec.keepalived
        return ka is not None and not ka.multicast and ka.unicastPeers is None and 4 in self.families()

    def claims(self) -> list[tuple[str, str]]:
        # Router ids are checked in check(): the VIPs of one group share theirs on purpose.
        if self.spec.address is not None:
            return [(f"ip:{self.ip}", "spec.address")]
        out = [(f"ip:{v.ip}", f"spec.addresses.{i}.address") for i, v in enumerate(self.spec.addresses)]
        ka = self.spec.keepalived
        if ka is not None:
            out += [(f"ip:{v.ip}", f"spec.keepalived.excludedAddresses.{i}.address")
                    for i, v in enumerate(ka.excludedAddresses)]
        return out

    # --- whole-tree checks ---

    def check(self, tree) -> list[tuple[str, str]]:
        problems = self._check_subnets(tree)
        ka = self.spec.keepalived
        if ka is None:
            return problems
        nodes = tree.nodes_of(self)
        for node in ka.priority:
            if node not in nodes:
                problems.append((f"spec.keepalived.priority.{node}", f"node {node!r} is not a node of this VIP"))
        for field in ("state", "unicastSrcIp", "mcastSrcIp"):
            value = getattr(ka, field)
            for node in (value if isinstance(value, dict) else {}):
                if node not in nodes:
                    problems.append((f"spec.keepalived.{field}.{node}", f"node {node!r} is not a node of this VIP"))
        if self.derives_peers():
            if no_address := sorted(n for n in nodes if not tree.node_address(n)):
                problems.append(("spec.keepalived", f"node {no_address[0]} has no address in any Cluster: keepalived "
                                 "sends its unicast adverts from each node's cluster address (or give "
                                 "unicastPeers, or multicast: true)"))
        settings = settings_on(tree, nodes)
        problems += track_problems(ka.track, "spec.keepalived.track", settings)
        for node in sorted(nodes):
            mine = settings_on(tree, frozenset({node}))
            for i, ref in enumerate(ka.track.scripts):
                if settings and not any(ref.name in k.spec.scripts for k in mine) and \
                        any(ref.name in k.spec.scripts for k in settings):
                    problems.append((f"spec.keepalived.track.scripts.{i}.name",
                                     f"script {ref.name!r} is not defined on node {node} (the Keepalived manifest "
                                     "defining it does not land there)"))
        problems += program_problems(self.commands(), tree, nodes)
        problems += self._check_against_others(tree, nodes)
        return problems

    def commands(self) -> list[tuple[str, Command]]:
        """The programs this VIP makes keepalived run (its notify scripts)."""
        ka = self.spec.keepalived
        if ka is None:
            return []
        return [(f"spec.keepalived.notify.{key}", cmd) for key, cmd in ka.notify.commands().items()]

    def _check_subnets(self, tree) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        nodes = tree.nodes_of(self)
        fields = ["spec.address"] if self.spec.address is not None else [
            f"spec.addresses.{i}.address" for i in range(len(self.spec.addresses))]
        for field, vip in zip(fields, self.vips()):
            if vip.dev not in (None, self.spec.interface):
                continue  # another device: its subnet is not known here
            ip = ipaddress.ip_address(vip.ip)
            for node in sorted(nodes):
                addr = tree.node_address(node)
                if not addr or ipaddress.ip_interface(addr).version != ip.version:
                    continue
                network = ipaddress.ip_interface(addr).network
                if addr.split("/")[0] == vip.ip:
                    problems.append((field, f"{vip.ip} is the fixed address of node {node}"))
                    break
                if ip not in network and "/" in vip.address:
                    problems.append((field, f"{vip.ip} is outside the subnet of {node}'s {self.spec.interface} "
                                     f"({network})"))
                    break
        return problems

    def _check_against_others(self, tree, nodes: frozenset[str]) -> list[tuple[str, str]]:
        """Router ids per interface and family, instance names and the agreement of a group's
        VIPs. Each problem is reported once, on the later of the two manifests; looked up in an
        index of the tree (see `_vrrp_index`), so that 10,000 VIPs are checked in linear time."""
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
        for name in self.instance_names():  # the group's or its own, and the other family's
            other = index.names.get(name)
            if other is not None and earlier(other) and not _same_group(self, other):
                problems.append(("spec.keepalived.group" if ka.group else "metadata.name",
                                 f"VRRP instance name {name!r} is also used by VirtualIP {other.metadata.name!r}: "
                                 "a group may not share its name with another instance"))
                break
        families = self.families()
        for node in sorted(nodes):
            clash = next(((other, family) for family in families
                          for other in index.router.get((self.spec.interface, family, ka.routerId, node), [])
                          if earlier(other) and not _same_group(self, other)
                          and not _disjoint_unicast(ka, other.spec.keepalived)), None)
            if clash is not None:
                other, family = clash
                split = " (its per-family instance)" if len(other.families()) > 1 or len(families) > 1 else ""
                problems.append(("spec.keepalived.routerId",
                                 f"router id {ka.routerId} on {self.spec.interface} (IPv{family}) is already used by "
                                 f"VirtualIP {other.metadata.name!r}{split} on node {node}: every VRRP instance "
                                 "of an interface and address family needs its own router id"))
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
        mine, theirs = ka.model_dump(exclude={"priority"}), fka.model_dump(exclude={"priority"})
        for field in KeepalivedOptions.model_fields:
            if field in mine and mine[field] != theirs[field]:
                return [(f"spec.keepalived.{field}", why.format(f"{field} {theirs[field]}"))]
        if self.priorities(tree) != first.priorities(tree):
            return [("spec.keepalived.priority", why.format(f"priority {first.priorities(tree)}"))]
        if self.families() != first.families():
            return [("spec", why.format("addresses of other families"))]
        return []


def _disjoint_unicast(a: KeepalivedOptions, b: KeepalivedOptions) -> bool:
    """keepalived allows one router id twice on an interface when both instances are
    unicast to explicitly given peers that do not overlap."""
    def addresses(peers: list[str]) -> set[str]:
        return {p.split()[0].split("/")[0] for p in peers}

    return bool(a.unicastPeers and b.unicastPeers and not addresses(a.unicastPeers) & addresses(b.unicastPeers))


def _same_group(a: VirtualIP, b: VirtualIP) -> bool:
    ga, gb = a.spec.keepalived.group, b.spec.keepalived.group
    return a is b or (ga is not None and ga == gb)


def _every_cluster_node(tree) -> tuple[str, ...]:
    """Every Cluster's nodes in turn, each once: the order of a VIP placed everywhere."""
    return tuple(dict.fromkeys(n.name for c in tree.of_kind("Cluster") for n in c.spec.nodes))


@dataclasses.dataclass
class _VrrpIndex:
    """The keepalived VIPs of a tree, indexed for `VirtualIP._check_against_others`."""

    order: dict[int, int] = dataclasses.field(default_factory=dict)  # id(vip) → place in the tree
    group_first: dict[str, VirtualIP] = dataclasses.field(default_factory=dict)  # group → its first VIP
    names: dict[str, VirtualIP] = dataclasses.field(default_factory=dict)  # instance name → first VIP using it
    # (interface, family, router id, node) → the VIPs using it, in tree order
    router: dict[tuple[str, int, int, str], list[VirtualIP]] = dataclasses.field(default_factory=dict)


def _vrrp_index(tree) -> _VrrpIndex:
    index = _VrrpIndex()
    for place, vip in enumerate(tree.of_kind("VirtualIP")):
        ka = vip.spec.keepalived
        if ka is None:
            continue
        index.order[id(vip)] = place
        if ka.group is not None:
            index.group_first.setdefault(ka.group, vip)
        for name in vip.instance_names():
            index.names.setdefault(name, vip)
        for node in tree.nodes_of(vip):
            for family in vip.families():
                index.router.setdefault((vip.spec.interface, family, ka.routerId, node), []).append(vip)
    return index
