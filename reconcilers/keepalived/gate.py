"""The connection gate of a drain: no request is cut when an address moves.

A virtual address moves by ARP and VRRP carries no connection state: a TCP connection this
node accepted on the address, whose next packet the client sends after the switch, reaches
the peer, which resets it. So before a drain gives an address up, this node holds new
connections back and lets the open ones finish:

1. `close_gate`: an nftables table of reconcile's own (`inet reconcile_drain`) drops the
   first packet (SYN) of new TCP connections to the addresses that move. The client sends
   it again after its retransmission timer (1 s on Linux, then 3 s): by then the address is
   on the peer, which accepts it. A held connection is late, not failed.
2. `wait_closed`: wait until no TCP connection to those addresses is open here (read from
   /proc/net/tcp and tcp6, this network namespace's own), at most `grace` seconds.
   Requests on a connection per request finish in milliseconds; a keep-alive connection a
   client keeps idle may outlast the grace: it is counted, and its next request is reset.
3. the drain writes its file; the peer takes the address over;
4. `open_gate`: the table is deleted (also when the drain is refused or fails: try/finally
   in drain.py; `undrain` deletes a table left behind by a drain that was killed).

Nothing else of the node's firewall is read or touched: the table is created and deleted
whole, by name. Without the `nft` tool (or when nft fails) the drain goes on ungated and
says so.
"""
from __future__ import annotations

import ipaddress
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from reconcilers.base import CommandError, Node, wait_until

log = logging.getLogger("reconcile")

TABLE = "reconcile_drain"
# /proc/net/tcp states of a connection that still carries data or waits for the client:
# ESTABLISHED, SYN_RECV, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING.
OPEN_STATES = frozenset({0x01, 0x03, 0x04, 0x08, 0x09, 0x0B})
DEFAULT_GRACE = 5.0


@dataclass
class Gate:
    addresses: tuple[str, ...]
    closed: bool = False  # the table is in place
    held: float = 0.0  # seconds new connections were held before the drain's write
    still_open: int = 0  # connections open when the grace ran out (reset at the switch)


def ruleset(addresses: Iterable[str]) -> str:
    """The table, replacing one left behind, in one nft transaction."""
    ips = [ipaddress.ip_address(a.split("/")[0]) for a in addresses]
    v4 = ", ".join(sorted(str(a) for a in ips if a.version == 4))
    v6 = ", ".join(sorted(str(a) for a in ips if a.version == 6))
    rules = []
    if v4:
        rules.append(f"    ip daddr {{ {v4} }} tcp flags & (fin | syn | rst | ack) == syn drop")
    if v6:
        rules.append(f"    ip6 daddr {{ {v6} }} tcp flags & (fin | syn | rst | ack) == syn drop")
    return "\n".join([
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain hold_new_connections {",
        "    type filter hook input priority -150; policy accept;",
        *rules,
        "  }",
        "}",
        "",
    ])


def held_here(instances: Iterable, own: Iterable[str]) -> list[str]:
    """The instances' addresses this node holds (compared as IPs, whatever the spelling)."""
    mine = {ipaddress.ip_address(a.split("/")[0]) for a in own}
    return sorted({ip for i in instances for ip in i.ips() if ipaddress.ip_address(ip) in mine})


def close_gate(node: Node, addresses: Iterable[str]) -> Gate:
    gate = Gate(tuple(addresses))
    if not gate.addresses:
        return gate
    if shutil.which("nft") is None:
        log.warning("drain: no nft here (Debian package nftables): connections open on %s when it moves "
                    "are reset", ", ".join(gate.addresses))
        return gate
    try:
        node.run(["nft", "-f", "-"], input=ruleset(gate.addresses))
    except CommandError as err:  # e.g. a kernel without nf_tables: the drain itself still works
        log.warning("drain: new connections to %s are not held back (%s): the ones open when it moves are reset",
                    ", ".join(gate.addresses), str(err)[-200:])
        return gate
    gate.closed = True
    return gate


def wait_closed(gate: Gate, grace: float, proc: Path = Path("/proc/net")) -> Gate:
    """Wait (at most `grace` seconds) until no connection to the gate's addresses is open."""
    started = time.monotonic()
    wanted = {ipaddress.ip_address(a.split("/")[0]) for a in gate.addresses}

    def finished() -> bool:
        gate.still_open = open_connections(wanted, proc)
        return gate.still_open == 0

    if gate.closed:  # an open gate lets new connections in: waiting would not end them
        wait_until(finished, grace, interval=0.02)
    else:
        finished()
    gate.held = round(time.monotonic() - started, 3)
    return gate


def left_behind(node: Node) -> bool:
    """Whether a gate is in place (a drain that was killed before it opened it)."""
    if shutil.which("nft") is None:
        return False
    return node.run(["nft", "list", "table", "inet", TABLE], read_only=True, check=False).rc == 0


def open_gate(node: Node) -> None:
    """Delete the table (if there is one: a missing table is not an error)."""
    if shutil.which("nft") is None:
        return
    try:
        node.run(["nft", "-f", "-"], input=f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
    except CommandError as err:
        log.warning("drain: could not delete nftables table inet %s: %s", TABLE, err)


def open_connections(addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address],
                     proc: Path = Path("/proc/net")) -> int:
    """TCP connections in this network namespace whose local address is one of `addresses`
    and that are still open (OPEN_STATES): /proc/net/tcp and tcp6, as the kernel shows them."""
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or int(fields[3], 16) not in OPEN_STATES:
                continue
            if _local_ip(fields[1].split(":")[0]) in addresses:
                count += 1
    return count


def _local_ip(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp* print an address as 32-bit words, each in the host's byte order."""
    raw = bytes.fromhex(hexaddr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    words = raw
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped  # an IPv4 client of a socket bound to [::]
    return ip
