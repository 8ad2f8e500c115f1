"""Container: an LXC system container on a node (or, with spec.cluster, placed by Pacemaker).

With `spec.cluster` the container is defined on every node of that cluster and Pacemaker
runs it on at most one of them (an ocf:heartbeat:lxc primitive named after it): the
cluster must run Pacemaker, and the fields that would make reconcile run it itself
(`autostart`, `startOrder`, `restartPolicy: onChange`, `state: frozen`) are refused.

Every value here reaches `lxc-create` argv, an LXC config line or a path under the
container's root file system, so each is a constrained type: the container name is a DNS
label (no `/`, `..`, spaces or shell metacharacters), init arguments are single words
without a shell, sizes and CPU sets are checked for what the kernel accepts.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import (
    AbsolutePath, CpuSet, DistroWord, Duration, FileContent, FilePath, IfName, InitArg, IPv4Prefix, Manifest,
    MemorySize, Placement, Strict,
)


class Download(Strict):
    """`lxc-create -t download -- --dist D --release R --arch A` (needs images.linuxcontainers.org)."""

    distribution: DistroWord = Field(description="The image's distribution, e.g. debian.")
    release: DistroWord = Field(description="Its release, e.g. bookworm.")
    architecture: DistroWord = Field("amd64", description="Its architecture.")


class LocalImage(Strict):
    """`lxc-create -t local -- -m metadata -f rootfs`: both tarballs xz-compressed, on the node."""

    rootfs: AbsolutePath = Field(description="rootfs tarball (.tar.xz) on the node")
    metadata: AbsolutePath = Field(description="metadata tarball (.tar.xz) holding the image's `config`")


class Limits(Strict):
    """Resource limits of the container (cgroups)."""

    memory: MemorySize | None = Field(None, description="memory limit, e.g. 256M")
    cpus: CpuSet | None = Field(None, description="CPUs the container may run on, e.g. 0 or 0-1")
    cpuWeight: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        None, description="relative CPU weight (cgroup v2 cpu.weight; 100 is the default share)")


class Network(Strict):
    """`none`: loopback only. `bridge`: one veth (eth0 inside) on `bridge`, with `address`
    and no gateway: a container never gets a default route from here."""

    type: Literal["none", "bridge"] = Field("none", description="none: loopback only; bridge: eth0 inside, on "
                                            "`bridge`.")
    bridge: IfName | None = Field(None, description="The node's bridge the container's veth joins.")
    address: IPv4Prefix | None = Field(None, description="static IPv4 address of eth0 inside, e.g. 198.51.100.11/24")
    bridgeAddress: IPv4Prefix | None = Field(
        None, description="the node's own address on `bridge`: reconcile creates the node-local bridge with "
                          "it when missing. Leave it out to use a bridge made by something else.")

    @model_validator(mode="after")
    def _bridge(self) -> "Network":
        if self.type == "bridge" and self.bridge is None:
            raise ValueError("network type bridge needs network.bridge")
        if self.type == "none" and (self.bridge or self.address or self.bridgeAddress):
            raise ValueError("network type none takes no bridge, address or bridgeAddress")
        return self


class ContainerSpec(Placement):
    """An LXC system container on each node it lands on (or, with spec.cluster, where Pacemaker runs it)."""

    template: Literal["busybox", "download", "local"] = Field(
        description="How its root file system is made: busybox (from the node's busybox), download (an image "
                    "server) or local (tarballs on the node).")
    download: Download | None = Field(None, description="The image, for template download.")
    local: LocalImage | None = Field(None, description="The tarballs, for template local.")
    state: Literal["running", "stopped", "frozen"] = Field("running", description="What it should be doing.")
    autostart: bool = Field(False, description="lxc.start.auto: started by lxc-autostart when the node boots")
    startOrder: Annotated[int, Field(ge=0, le=1000)] | None = Field(None, description="lxc.start.order")
    limits: Limits = Field(default_factory=Limits, description="Resource limits.")
    network: Network = Field(default_factory=Network, description="Its network.")
    init: Annotated[list[InitArg], Field(min_length=1)] | None = Field(
        None, description="command run as the container's init (lxc.init.cmd)")
    files: dict[FilePath, FileContent] = Field(
        default_factory=dict,
        description="files written into the container's root file system (path inside → content), "
                    "e.g. a web server's document; changing one needs no restart")
    restartPolicy: Literal["onChange", "never"] = Field(
        "onChange", description="may apply restart a running container for a change that needs it "
                                "(limits, network, init)? never: the change waits for its next start")
    stopTimeout: Duration = Field("10s", description="how long a stop waits for the init to end before killing it")
    lxcPath: AbsolutePath = Field("/var/lib/lxc", description="The LXC path holding it (Pacemaker-placed "
                                  "containers: LXC's default path, which the lxc agent uses).")

    @model_validator(mode="after")
    def _template_options(self) -> "ContainerSpec":
        if (self.template == "download") != (self.download is not None):
            raise ValueError("template download needs spec.download, and only it takes one")
        if (self.template == "local") != (self.local is not None):
            raise ValueError("template local needs spec.local, and only it takes one")
        return self


class Container(Manifest):
    kind: Literal["Container"]
    spec: ContainerSpec

    def claims(self) -> list[tuple[str, str]]:
        out = [(f"container:{self.spec.lxcPath}:{self.metadata.name}", "metadata.name")]
        if self.spec.network.address:
            out.append((f"ip:{self.spec.network.address.split('/')[0]}", "spec.network.address"))
        return out

    def check(self, tree) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = self._placed_by_pacemaker(tree) if self.spec.cluster else []
        net = self.spec.network
        if net.address and net.bridgeAddress:
            mine = ipaddress.IPv4Interface(net.address)
            bridge = ipaddress.IPv4Interface(net.bridgeAddress)
            if mine.network != bridge.network:
                problems.append(("spec.network.address", f"{net.address} is not in the bridge's subnet "
                                 f"{bridge.network} (network.bridgeAddress {net.bridgeAddress})"))
            elif mine.ip == bridge.ip:
                problems.append(("spec.network.address", f"{mine.ip} is the node's own address on {net.bridge} "
                                 "(network.bridgeAddress): give the container another one"))
        if net.address:
            iface = ipaddress.IPv4Interface(net.address)
            if iface.network.prefixlen < 31 and iface.ip in (iface.network.network_address,
                                                             iface.network.broadcast_address):
                problems.append(("spec.network.address", f"{iface.ip} is the network or broadcast address "
                                 f"of {iface.network}"))
        if net.bridgeAddress:
            problems.extend(self._bridge_agrees(tree))
        return problems

    def _placed_by_pacemaker(self, tree) -> list[tuple[str, str]]:
        """Pacemaker starts and stops a container placed with spec.cluster: reconcile only
        defines it on the cluster's nodes, so nothing here may ask reconcile to run it."""
        spec, name = self.spec, self.metadata.name
        problems: list[tuple[str, str]] = []
        owner = tree.get("Cluster", spec.cluster)
        if owner is not None and owner.spec.stack != "pacemaker":
            problems.append(("spec.cluster", f"cluster {spec.cluster!r} has stack: {owner.spec.stack}: no Pacemaker "
                             "runs there to place this container; say stack: pacemaker in that Cluster, or place "
                             "the container with spec.nodes"))
        if spec.state == "frozen":
            problems.append(("spec.state", "a container Pacemaker places cannot be frozen: the lxc agent's monitor "
                             "would find it not running and Pacemaker would recover it; say running or stopped"))
        if spec.autostart:
            problems.append(("spec.autostart", "Pacemaker starts a container placed with spec.cluster: autostart "
                             "stays off so that a node that boots does not start a second copy; leave it out"))
        if spec.startOrder is not None:
            problems.append(("spec.startOrder", "only for autostart, which a container placed with spec.cluster "
                             "does not have (Pacemaker starts it): leave it out"))
        if "restartPolicy" in spec.model_fields_set and spec.restartPolicy == "onChange":
            problems.append(("spec.restartPolicy", "Pacemaker starts and stops a container placed with spec.cluster: "
                             "reconcile never restarts it; a change that needs a restart is reported until you run "
                             f"crm_resource --restart -r {name}. Leave restartPolicy out"))
        return problems

    def _bridge_agrees(self, tree) -> list[tuple[str, str]]:
        """Containers that share a node and name the same bridge must give it one address
        (the bridge is one interface of the node), and two bridges of a node must not share
        a subnet (the node could not tell where to send it). Reported once, on the later
        name; looked up per node in `_bridges_by_node`, so the check stays linear."""
        net = self.spec.network
        index = tree.memo(_bridges_by_node)
        for node in sorted(tree.nodes_of(self)):
            first = index.first.get((node, net.bridge))
            if first is not None and first.metadata.name < self.metadata.name \
                    and first.spec.network.bridgeAddress != net.bridgeAddress:
                return [("spec.network.bridgeAddress",
                         f"bridge {net.bridge} gets {net.bridgeAddress} here but {first.spec.network.bridgeAddress} "
                         f"from Container {first.metadata.name!r} on a common node: one bridge, one address")]
        for node in sorted(tree.nodes_of(self)):
            other = index.overlaps.get((node, self.metadata.name))
            if other is not None:
                onet = other.spec.network
                return [("spec.network.bridgeAddress",
                         f"{net.bridgeAddress} on bridge {net.bridge} overlaps {onet.bridgeAddress} on bridge "
                         f"{onet.bridge} (Container {other.metadata.name!r}) on a common node: give each bridge "
                         "its own subnet")]
        return []


@dataclasses.dataclass
class _BridgeIndex:
    # (node, bridge) → the container of the smallest name that gives the bridge an address
    first: dict[tuple[str, str | None], Container] = dataclasses.field(default_factory=dict)
    # (node, container name) → a container of a smaller name whose bridge's subnet overlaps
    overlaps: dict[tuple[str, str], Container] = dataclasses.field(default_factory=dict)


def _bridges_by_node(tree) -> _BridgeIndex:
    index = _BridgeIndex()
    with_address = sorted((c for c in tree.of_kind("Container") if c.spec.network.bridgeAddress),
                          key=lambda c: c.metadata.name)
    per_node: dict[str, list[Container]] = {}
    for c in with_address:
        for node in tree.nodes_of(c):
            if (node, c.spec.network.bridge) not in index.first:
                index.first[(node, c.spec.network.bridge)] = c
                per_node.setdefault(node, []).append(c)
    # One bridge per node from here on: sorted by where its subnet starts, a subnet that
    # starts before the furthest end seen so far overlaps the one that reached it.
    for node, containers in per_node.items():
        spans = sorted(((ipaddress.IPv4Interface(c.spec.network.bridgeAddress).network, c) for c in containers),
                       key=lambda span: (span[0].network_address, -span[0].prefixlen))
        reach: tuple[ipaddress.IPv4Network, Container] | None = None
        for subnet, c in spans:
            if reach is not None and subnet.network_address <= reach[0].broadcast_address:
                earlier, later = sorted((reach[1], c), key=lambda x: x.metadata.name)
                index.overlaps.setdefault((node, later.metadata.name), earlier)
            if reach is None or subnet.broadcast_address > reach[0].broadcast_address:
                reach = (subnet, c)
    return index
