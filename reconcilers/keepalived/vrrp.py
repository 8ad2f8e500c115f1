"""What runs: keepalived's JSON dump, the interfaces' addresses, and VRRP adverts on the wire.

Pure parsers (tested on outputs recorded from the real tools, tests/fixtures/keepalived/)
and one passive listener:

- `parse_json_dump`: /tmp/keepalived.json after the JSON dump signal — per instance its
  state (1 BACKUP, 2 MASTER, 3 FAULT), vrid, base/effective priority, adver_int, preempt
  settings and addresses;
- `parse_ip_addr`: `ip -j addr`, address → interfaces, both families;
- `listen_for_masters`: passively hear the peers' adverts (raw IPv4 and IPv6 sockets for
  protocol 112), to know when a peer has taken an instance over (the split-brain guard,
  drain). A master sends adverts to every unicast peer, this node included, whether or not
  this node's keepalived runs; multicast adverts arrive while keepalived keeps its group.
"""
from __future__ import annotations

import ipaddress
import json
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from reconcilers.keepalived.model import Instance

STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}
MASTER, FAULT = 2, 3
VRRP_PROTOCOL = 112


@dataclass(frozen=True)
class RunningInstance:
    """One instance as the running keepalived reports it in its JSON dump."""

    name: str
    state: int
    router_id: int
    base_priority: int
    effective_priority: int
    advert_interval: float
    nopreempt: bool
    preempt_delay: float
    addresses: tuple[str, ...]

    @property
    def state_name(self) -> str:
        return STATES.get(self.state, str(self.state))

    def runs(self, inst: Instance) -> bool:
        """True when this running instance is the configured one (it was (re)loaded)."""
        return (self.router_id == inst.router_id and self.base_priority == inst.priority
                and abs(self.advert_interval - inst.advert_interval) < 0.005
                and self.nopreempt == inst.nopreempt
                and abs(self.preempt_delay - inst.preempt_delay) < 0.005
                and {_ip(a) for a in self.addresses} == {_ip(a) for a in inst.addresses})


def _ip(address: str) -> str:
    return address.split("/")[0]


def parse_json_dump(text: str) -> dict[str, RunningInstance]:
    """Instances by name from keepalived's /tmp/keepalived.json. Raises ValueError on a
    file that is not (yet completely) written."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("keepalived.json is not a list of instances")
    out = {}
    for entry in data:
        d = entry["data"]
        out[d["iname"]] = RunningInstance(
            name=d["iname"],
            state=int(d.get("state", 0)),
            router_id=int(d.get("vrid", 0)),
            base_priority=int(d.get("base_priority", 0)),
            effective_priority=int(d.get("effective_priority", 0)),
            advert_interval=round(float(d.get("adver_int", 0)), 2),
            nopreempt=bool(d.get("nopreempt")),
            preempt_delay=float(d.get("preempt_delay") or 0),
            # "192.0.2.100/24 dev eth0 scope global set": the address is the first word
            addresses=tuple(v.split()[0] for v in d.get("vips", []) if v.split()),
        )
    return out


def parse_ip_addr(text: str) -> dict[str, set[str]]:
    """address/prefix → the interfaces holding it, from `ip -j addr` (IPv4 and IPv6, not
    link-local: keepalived never adds those as VIPs here)."""
    out: dict[str, set[str]] = {}
    for link in json.loads(text or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") not in ("inet", "inet6") or "local" not in a:
                continue
            if a.get("family") == "inet6" and a.get("scope") == "link":
                continue
            out.setdefault(f"{a['local']}/{a['prefixlen']}", set()).add(link["ifname"])
    return out


def holders(addrs: dict[str, set[str]], address: str) -> set[str]:
    """The interfaces holding `address` (compared without the prefix: the same IP with a
    different prefix length is still the same IP on the wire)."""
    ip = _normal(address)
    return {i for a, ifs in addrs.items() if _normal(a) == ip for i in ifs}


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("/")[0]))
    except ValueError:
        return address.split("/")[0]


def with_prefix(addrs: dict[str, set[str]], address: str, interface: str) -> str:
    """The address as the interface holds it (its prefix may differ from the manifest's)."""
    ip = _normal(address)
    return next((a for a, ifs in addrs.items() if _normal(a) == ip and interface in ifs), address)


# --- adverts -----------------------------------------------------------------------------


def parse_vrrp_packet(packet: bytes) -> tuple[str, int, int] | None:
    """(source address, router id, priority) of a VRRP advertisement as a raw IPv4 socket
    receives it (IP header included), or None for anything else."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    if packet[9] != VRRP_PROTOCOL or len(packet) < header + 8:
        return None
    vrrp = packet[header:]
    if vrrp[0] & 0x0F != 1:  # type 1: advertisement
        return None
    return socket.inet_ntoa(packet[12:16]), vrrp[1], vrrp[2]


def parse_vrrp6_payload(payload: bytes, source: str) -> tuple[str, int, int] | None:
    """The same for a raw IPv6 socket, which gets the VRRP message without the IP header."""
    if len(payload) < 8 or payload[0] & 0x0F != 1:
        return None
    return _normal(source), payload[1], payload[2]


def _sockets() -> list[tuple[socket.socket, int]]:
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            out.append((socket.socket(family, socket.SOCK_RAW, VRRP_PROTOCOL), family))
        except OSError:  # no CAP_NET_RAW, or no IPv6: that family cannot be heard
            continue
    return out


def listen_for_masters(instances: Iterable[Instance], own: set[str], timeout: float,
                       start: Callable[[], None] | None = None) -> set[str]:
    """Names of the instances whose adverts with a priority above 0 arrived from another
    address than this node's (`own`) before `timeout`: a peer is master for them. Returns
    as soon as every instance has been heard. Matches on (family, router id): two instances
    of one family share a router id only on different interfaces. `start` is called once
    the sockets listen (so that no advert it causes is missed)."""
    wanted = {(i.family, i.router_id): i.name for i in instances}
    taken: set[str] = set()
    socks = _sockets()
    if start is not None:
        start()
    if not socks:
        time.sleep(timeout)
        return taken
    try:
        deadline = time.monotonic() + timeout
        while taken != set(wanted.values()) and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s for s, _ in socks], [], [], left)
            for sock in ready:
                family = 4 if sock.family == socket.AF_INET else 6
                data, addr = sock.recvfrom(2048)
                advert = parse_vrrp_packet(data) if family == 4 else parse_vrrp6_payload(data, addr[0])
                if advert is None or advert[2] == 0 or advert[0] in own:
                    continue
                if (family, advert[1]) in wanted:
                    taken.add(wanted[(family, advert[1])])
    finally:
        for s, _ in socks:
            s.close()
    return taken
