"""Link probes: which machines answer for addresses on a link, for health checks.

A floating address must be held by exactly one node. A node sees only its own interfaces,
so it asks the link: one *probe* per address, all sent at once on raw packet sockets, and
every reply within a short window collected. For IPv4 an ARP probe (RFC 5227: sender
address 0.0.0.0), for IPv6 a neighbour solicitation as duplicate address detection sends
it (RFC 4862: source ::, to the address's solicited-node group), so no neighbour cache
anywhere learns or changes anything. Each holder of an address answers with its own MAC
(a neighbour advertisement to all nodes, for IPv6); a node never receives its own reply,
so the node's own interfaces are added by the caller. The peers' node addresses are
probed in the same burst, which maps each replying MAC to a node name.

Read-only (it sends requests, changes nothing); reported to the runner as channel
"arp-probe". Needs CAP_NET_RAW (root), as the agent has. Shared by both VIP families
(keepalived's VirtualIPs, Pacemaker's IPaddr2).
"""
from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import time
from typing import Any, Iterable

from reconcilers.base import Node

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ICMPV6, NEIGHBOUR_SOLICITATION, NEIGHBOUR_ADVERTISEMENT = 58, 135, 136
BROADCAST = b"\xff" * 6
# Seconds to collect replies. Replies come from the holders' kernels (no daemon in the
# path): 0.12 ms p50, 0.48 ms p99, 1.3 ms max over 200 probes in the lab on a 2-core machine
# at load 3.7. The window is the plan's wait for "nobody else answers" (a second holder,
# a split brain), so it is spent on every health check of a VIP; a lost frame is sent again.
WINDOW = 0.06
RETRY_AFTER = 0.02


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_probe_frame(src_mac: bytes, target: str) -> bytes:
    """An Ethernet frame with an ARP probe for `target` from `src_mac` (sender IP 0.0.0.0)."""
    ether = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, b"\0" * 4, b"\0" * 6,
                      ipaddress.IPv4Address(target).packed)
    return ether + arp


def parse_arp_reply(frame: bytes) -> tuple[str, str] | None:
    """(sender address, sender MAC) of an ARP reply as a packet socket receives it (the
    Ethernet header included), or None for anything else."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    sha, spa = frame[22:28], frame[28:32]
    return str(ipaddress.IPv4Address(spa)), mac_text(sha)


def solicited_node(target: str) -> tuple[bytes, bytes]:
    """(IPv6 group, Ethernet group) of `target`'s solicited-node multicast address."""
    low = ipaddress.IPv6Address(target).packed[-3:]
    return ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + low, b"\x33\x33\xff" + low


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ndp_probe_frame(src_mac: bytes, target: str) -> bytes:
    """An Ethernet frame with a neighbour solicitation for `target` as duplicate address
    detection sends it: source ::, to the solicited-node group, no link-layer option."""
    group, group_mac = solicited_node(target)
    source = b"\0" * 16
    icmp = struct.pack("!BBHI16s", NEIGHBOUR_SOLICITATION, 0, 0, 0, ipaddress.IPv6Address(target).packed)
    pseudo = source + group + struct.pack("!I3xB", len(icmp), ICMPV6)
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), ICMPV6, 255, source, group)
    return group_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + ip6 + icmp


def parse_neighbour_advert(frame: bytes) -> tuple[str, str] | None:
    """(target address, sender MAC) of a neighbour advertisement as a packet socket
    receives it (the Ethernet header included), or None for anything else. The MAC is the
    target link-layer address option's, else the frame's source."""
    if len(frame) < 14 + 40 + 24 or frame[12:14] != struct.pack("!H", ETH_P_IPV6):
        return None
    if frame[14 + 6] != ICMPV6 or frame[14 + 40] != NEIGHBOUR_ADVERTISEMENT:
        return None
    target = str(ipaddress.IPv6Address(frame[14 + 48:14 + 64]))
    mac = frame[6:12]
    options = frame[14 + 64:]
    while len(options) >= 8 and options[1]:
        if options[0] == 2 and options[1] == 1:  # target link-layer address
            mac = options[2:8]
            break
        options = options[options[1] * 8:]
    return target, mac_text(mac)


def probe(node: Node, interface: str, targets: Iterable[str], window: float = WINDOW) -> dict[str, set[str]]:
    """Who answers for each of `targets` (IPv4 or IPv6) on `interface`: address → the MACs
    that replied (empty: nobody). Raises OSError when the link cannot be probed (no such
    interface, no CAP_NET_RAW)."""
    wanted = sorted({_normal(t.split("/")[0]) for t in targets})
    node.runner.guard("arp-probe", [interface, *wanted], read_only=True)
    answers: dict[str, set[str]] = {t: set() for t in wanted}
    v4, v6 = [t for t in wanted if ":" not in t], [t for t in wanted if ":" in t]
    families = [(ETH_P_ARP, arp_probe_frame, parse_arp_reply, v4), (ETH_P_IPV6, ndp_probe_frame,
                                                                       parse_neighbour_advert, v6)]
    links: list[tuple[socket.socket, Any, dict[str, bytes], str]] = []  # socket, parser, frames, own MAC
    try:
        for proto, make, parse, family_targets in families:
            if not family_targets:
                continue
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            links.append((sock, parse, {}, ""))
            sock.bind((interface, proto))
            own = sock.getsockname()[4]
            links[-1] = (sock, parse, {t: make(own, t) for t in family_targets}, mac_text(own))
            for frame in links[-1][2].values():
                sock.send(frame)
        started = time.monotonic()
        retried = False
        while links and (left := started + window - time.monotonic()) > 0:
            if not retried and time.monotonic() - started >= RETRY_AFTER:
                retried = True  # one more for those that did not answer yet (a lost frame)
                for sock, _, frames, _ in links:
                    for target, frame in frames.items():
                        if not answers[target]:
                            sock.send(frame)
            ready = select.select([link[0] for link in links], [], [], min(left, RETRY_AFTER))[0]
            for sock, parse, _, own_mac in links:
                if sock in ready:
                    reply = parse(sock.recv(256))
                    if reply is not None and reply[0] in answers and reply[1] != own_mac:
                        answers[reply[0]].add(reply[1])
    finally:
        for link in links:
            link[0].close()
    return answers


def _normal(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def holders(here: bool, node: str, macs: set[str], names: dict[str, str]) -> list[str]:
    """The nodes holding an address: this one if it has it, and every MAC that answered,
    by node name where a peer's own address answered from that MAC (else the MAC)."""
    found = [node] if here else []
    found += sorted(names.get(mac, f"an unknown host ({mac})") for mac in macs)
    return found


def names_by_mac(answers: dict[str, set[str]], peers: dict[str, str]) -> dict[str, str]:
    """MAC → node name, from the replies to the peers' own addresses (peers: ip → name)."""
    out: dict[str, str] = {}
    for ip, name in peers.items():
        for mac in answers.get(_normal(ip.split("/")[0]), ()):
            out[mac] = name
    return out


def local_ips(node: Node) -> set[str]:
    """Every IPv4 address on this node's interfaces (one `ip -j addr`)."""
    out = node.run(["ip", "-j", "addr"], read_only=True).stdout
    return {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])
            if a.get("family") == "inet" and "local" in a}



def probe_interfaces(node: Node, targets: dict[str, list[str]]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """`probe` on each interface in turn: (answers, interface → why it could not be probed)."""
    answers: dict[str, set[str]] = {}
    failed: dict[str, str] = {}
    for interface, wanted in sorted(targets.items()):
        try:
            answers.update(probe(node, interface, wanted))
        except OSError as err:
            failed[interface] = f"cannot probe {interface}: {err.strerror or err}"
    return answers, failed
