"""ARP probes: which machines answer for IPv4 addresses on a link, for health checks.

A floating address must be held by exactly one node. A node sees only its own interfaces,
so it asks the link: one ARP *probe* (RFC 5227: sender address 0.0.0.0, so no neighbour
cache anywhere learns or changes anything) per address, all sent at once on one raw
socket, and every reply within a short window collected. Each holder of an address
answers with its own MAC; a node never receives its own reply, so the node's own
interfaces are added by the caller. The peers' node addresses are probed in the same
burst, which maps each replying MAC to a node name.

Read-only (it sends requests, changes nothing); reported to the runner as channel
"arp-probe". Needs CAP_NET_RAW (root), as the agent has.
"""
from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import time
from typing import Iterable

from reconcilers.base import Node

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
WINDOW = 0.15  # seconds to collect replies: a link answers in well under a millisecond; a lost one is retried
RETRY_AFTER = 0.05


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


def probe(node: Node, interface: str, targets: Iterable[str], window: float = WINDOW) -> dict[str, set[str]]:
    """Who answers for each of `targets` on `interface`: address → the MACs that replied
    (empty: nobody). Raises OSError when the link cannot be probed (no such interface,
    no CAP_NET_RAW)."""
    wanted = sorted({t.split("/")[0] for t in targets})
    node.runner.guard("arp-probe", [interface, *wanted], read_only=True)
    answers: dict[str, set[str]] = {t: set() for t in wanted}
    if not wanted:
        return answers
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, ETH_P_ARP))
        own = sock.getsockname()[4]
        frames = [arp_probe_frame(own, t) for t in wanted]
        for frame in frames:
            sock.send(frame)
        started = time.monotonic()
        retried = False
        while (left := started + window - time.monotonic()) > 0:
            if not retried and time.monotonic() - started >= RETRY_AFTER:
                retried = True  # one more for those that did not answer yet (a lost frame)
                for target, frame in zip(wanted, frames):
                    if not answers[target]:
                        sock.send(frame)
            ready = select.select([sock], [], [], min(left, RETRY_AFTER))[0]
            if not ready:
                continue
            reply = parse_arp_reply(sock.recv(128))
            if reply is not None and reply[0] in answers and reply[1] != mac_text(own):
                answers[reply[0]].add(reply[1])
    return answers


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
        for mac in answers.get(ip.split("/")[0], ()):
            out[mac] = name
    return out


def local_ips(node: Node) -> set[str]:
    """Every IPv4 address on this node's interfaces (one `ip -j addr`)."""
    out = node.run(["ip", "-j", "addr"], read_only=True).stdout
    return {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])
            if a.get("family") == "inet" and "local" in a}
