"""VirtualIP: a floating address, managed by keepalived (at-least-once) or Pacemaker (at-most-once)."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import IfName, IPv4Prefix, Manifest, Name, Placement, Strict


class KeepalivedOptions(Strict):
    routerId: Annotated[int, Field(ge=1, le=255)]
    priority: dict[Name, Annotated[int, Field(ge=1, le=254)]] = Field(
        default_factory=dict, description="per node; unnamed nodes get 100, 90, 80… in cluster order"
    )
    advertInterval: Annotated[float, Field(ge=0.01, le=40.95)] = Field(
        0.25, description="VRRPv3 advertisement interval in seconds (centisecond steps)"
    )
    preempt: bool = True
    preemptDelay: Annotated[int, Field(ge=0, le=1000)] | None = None
    trackHaproxy: bool = Field(False, description="give the address away while the local HAProxy is not running")
    group: Name | None = Field(None, description="VIPs of one group share one VRRP instance")


class PacemakerOptions(Strict):
    monitorInterval: Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m)$")] = "10s"
    preferredNode: Name | None = None


class VirtualIPSpec(Placement):
    address: IPv4Prefix
    interface: IfName = "eth0"
    manager: Literal["keepalived", "pacemaker"]
    keepalived: KeepalivedOptions | None = None
    pacemaker: PacemakerOptions | None = None

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

    def claims(self) -> list[tuple[str, str]]:
        out = [(f"ip:{self.ip}", "spec.address")]
        ka = self.spec.keepalived
        if ka is not None:
            out.append((f"vrrp:{self.spec.interface}:{ka.routerId}", "spec.keepalived.routerId"))
        return out

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
        if ka is not None:
            for node in ka.priority:
                if node not in nodes:
                    problems.append((f"spec.keepalived.priority.{node}", f"node {node!r} is not a node of this VIP"))
        return problems
