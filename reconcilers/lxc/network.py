"""The node's side of a container's network: the bridges on the node (one `ip -j -d addr
show`), a node-local bridge reconcile makes when the manifest gives its address, and the
host end of the container's veth.

A bridge reconcile creates carries the link alias `reconcile-managed`; a bridge without it
is only used, never changed. No route and no NAT is ever set up here: a container reaches
the node's bridge subnet and nothing beyond it unless the node routes it.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field

from reconcilers.base import ApplyError, Node

BRIDGE_ALIAS = "reconcile-managed"


@dataclass
class Link:
    name: str
    kind: str | None  # "bridge", "veth", …
    master: str | None
    up: bool
    ours: bool  # carries our alias
    ipv4: list[str] = field(default_factory=list)  # "a.b.c.d/n"


def parse_links(ip_json: str) -> dict[str, Link]:
    """`ip -j -d addr show` → {ifname: Link}."""
    links: dict[str, Link] = {}
    for entry in json.loads(ip_json or "[]"):
        name = entry.get("ifname")
        if not name:
            continue
        links[name] = Link(
            name=name,
            kind=(entry.get("linkinfo") or {}).get("info_kind"),
            master=entry.get("master"),
            up="UP" in entry.get("flags", []),
            ours=entry.get("ifalias") == BRIDGE_ALIAS,
            ipv4=[f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if a.get("family") == "inet"],
        )
    return links



def observed_bridge_address(links: dict[str, Link], bridge: str, want: str) -> str | None:
    """What the node has where the manifest wants `want` on `bridge`: `want` itself when the
    bridge is up with it, else what is there instead (None: no such bridge)."""
    link = links.get(bridge)
    if link is None:
        return None
    if link.kind != "bridge":
        return f"(not a bridge: {link.kind or 'unknown'})"
    if want in link.ipv4:
        return want if link.up else f"{want} (link down)"
    return ",".join(link.ipv4) or "(no address)"



def veth_pair_name(name: str) -> str:
    """The host side of the container's veth (≤ 15 characters), fixed so that apply can put
    it back on a bridge that was deleted and made again while the container ran."""
    if len(name) <= 12:
        return f"rc-{name}"
    return f"rc-{name[:6]}-{hashlib.sha256(name.encode()).hexdigest()[:5]}"




def read_links(node: Node) -> dict[str, Link]:
    return parse_links(node.run(["ip", "-j", "-d", "addr", "show"], read_only=True).stdout)


def ensure_bridge(node: Node, bridge: str, address: str | None, attached: dict[str, str]) -> None:
    """`bridge` exists before a container on it starts: made here (node-local, marked ours)
    when the manifest gives its `address`, else it must exist already. `attached`: veth
    host ends → the bridge they belong on (a bridge deleted and made again lost its ports:
    running containers are put back on it)."""
    links = read_links(node)
    link = links.get(bridge)
    if address is None:
        if link is None or link.kind != "bridge":
            raise ApplyError(f"bridge {bridge} does not exist on this node: create it, or give "
                             f"network.bridgeAddress so that reconcile makes a node-local bridge")
        return
    if link is not None and link.kind != "bridge":
        raise ApplyError(f"{bridge} exists on this node but is a {link.kind or 'non-bridge'} link")
    if link is not None and not link.ours and (address not in link.ipv4 or not link.up):
        raise ApplyError(f"bridge {bridge} exists but was not made by reconcile and lacks "
                         f"{address} (or is down): it is left alone; add the address by hand, "
                         "or use another bridge name")
    if link is None or address not in link.ipv4:
        subnet = ipaddress.IPv4Interface(address).network
        for other in links.values():
            clash = [a for a in other.ipv4 if ipaddress.IPv4Interface(a).network.overlaps(subnet)]
            if other.name != bridge and clash:
                raise ApplyError(f"{address} for bridge {bridge} overlaps {clash[0]} on "
                                 f"{other.name}: this node could not tell where to send {subnet}; give the "
                                 "bridge its own subnet")
    dev = ["dev", bridge]
    if link is None:
        node.run(["ip", "link", "add", "name", bridge, "type", "bridge"])
        node.run(["ip", "link", "set", *dev, "alias", BRIDGE_ALIAS])
        link = Link(bridge, "bridge", None, False, True)
    if link.ours:
        for addr in link.ipv4:
            if addr != address:
                node.run(["ip", "addr", "del", addr, *dev])
        if address not in link.ipv4:
            node.run(["ip", "addr", "add", address, *dev])
        if not link.up:
            node.run(["ip", "link", "set", *dev, "up"])
    for pair_name, wanted_bridge in attached.items():
        pair = links.get(pair_name)
        if wanted_bridge == bridge and pair is not None and pair.master != bridge:
            node.run(["ip", "link", "set", "dev", pair.name, "master", bridge])


def drop_bridge(node: Node, bridge: str) -> None:
    """Delete a bridge we made once nothing is on it any more."""
    links = read_links(node)
    link = links.get(bridge)
    if link is None or not link.ours or link.kind != "bridge":
        return
    if any(other.master == bridge for other in links.values()):
        return
    node.run(["ip", "link", "del", "dev", bridge])
