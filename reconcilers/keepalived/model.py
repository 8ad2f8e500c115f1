"""What a keepalived.conf says, in the two shapes the reconciler needs.

- `state_of(stmts)`: the statements of one object as a JSON-able dict, the same whether they
  were rendered from manifests (desired) or read back from the file (observed), so that the
  plan is a plain diff that reads like the file: `vrrp_instance VI_1.priority: 100 → 150`.
  Secrets are masked on both sides (`mask`), never shown.
- `Instance`: the facts of one vrrp_instance that reconcile acts on at run time (its
  addresses, router id, peers, advert interval), read from statements the same way on
  both sides, for the split-brain guard, the reload check and drain.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from reconcilers.keepalived.conf import Stmt

# Blocks whose body is keyword → value (a repeated keyword becomes a list); any other block
# is a list of its lines (virtual_ipaddress, unicast_peer, track_script, group, …).
KEYED_BLOCKS = frozenset({
    "global_defs", "vrrp_script", "vrrp_instance", "vrrp_sync_group", "vrrp_track_process", "vrrp_track_file",
    "authentication", "virtual_server", "real_server", "url", "SSL", "bfd_instance", "garp_group",
    "HTTP_GET", "SSL_GET", "TCP_CHECK", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "PING_CHECK", "UDP_CHECK",
    "FILE_CHECK", "BFD_CHECK", "host",
})
SECRET_KEYS = frozenset({"auth_pass", "password"})
Mask = Callable[[str, str], str]  # (keyword, value) → what the plan shows


def _keyed(s: Stmt) -> bool:
    # `track_file NAME { file … }` is a definition; `track_file { NAME … }` a list of names.
    return s.keyword in KEYED_BLOCKS or (s.keyword == "track_file" and len(s.words) > 1)


def state_of(stmts: list[Stmt], mask: Mask) -> dict[str, Any]:
    """Statements as a dict: a block by its header ("vrrp_instance VI_1"), a line by its
    keyword (value: its other words joined, or true for a bare keyword). A keyword given
    more than once becomes the list of its values."""
    out: dict[str, Any] = {}
    repeated: set[str] = set()
    for s in stmts:
        if s.is_block:
            key = " ".join(s.words)
            value: Any = state_of(s.body or [], mask) if _keyed(s) else [_line(c, mask) for c in s.body or []]
        else:
            key = s.keyword
            value = " ".join(s.args) if s.args else True
            if key in SECRET_KEYS and s.args:
                value = mask(key, " ".join(s.args))
        if key not in out:
            out[key] = value
        elif key in repeated:
            out[key].append(value)
        else:
            out[key] = [out[key], value]
            repeated.add(key)
    return out


def _line(s: Stmt, mask: Mask) -> Any:
    if s.is_block:
        return {" ".join(s.words): state_of(s.body or [], mask)}
    return " ".join(s.words)


# --- instances ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One vrrp_instance as reconcile needs it at run time."""

    name: str
    interface: str
    router_id: int
    priority: int
    advert_interval: float
    version: int
    family: int
    addresses: tuple[str, ...]  # as written: address[/prefix]
    excluded: tuple[str, ...]
    unicast_peers: tuple[str, ...]
    nopreempt: bool
    preempt_delay: float
    owners: tuple[str, ...] = ()  # the VirtualIP manifests it carries

    def ips(self) -> tuple[str, ...]:
        return tuple(a.split("/")[0] for a in self.addresses + self.excluded)


def _num(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def instance_of(s: Stmt, owners: tuple[str, ...] = (), vrrp_version: int = 2) -> Instance:
    """The run-time facts of a `vrrp_instance` block (rendered or read from the file)."""
    def addresses(keyword: str) -> tuple[str, ...]:
        b = s.first(keyword)
        return tuple(c.words[0] for c in (b.body or []) if c.words) if b is not None else ()

    vips, excluded = addresses("virtual_ipaddress"), addresses("virtual_ipaddress_excluded")
    family = 6 if s.first("native_ipv6") is not None else 4
    for a in vips:
        try:
            family = ipaddress.ip_interface(a).version
        except ValueError:
            continue
        break
    version = int(_num(s.value("version"), 6 if family == 6 else vrrp_version)) if family == 4 else 3
    return Instance(
        name=s.args[0] if s.args else "",
        interface=s.value("interface") or "",
        router_id=int(_num(s.value("virtual_router_id"), 0)),
        priority=int(_num(s.value("priority"), 100)),
        advert_interval=round(_num(s.value("advert_int"), 1.0), 2),
        version=version,
        family=family,
        addresses=vips,
        excluded=excluded,
        unicast_peers=addresses("unicast_peer"),
        nopreempt=s.first("nopreempt") is not None,
        preempt_delay=_num(s.value("preempt_delay"), 0.0),
        owners=owners,
    )


def instances_in(stmts: list[Stmt], owners_of: Callable[[Stmt], tuple[str, ...]] = lambda s: ()) -> list[Instance]:
    """Every vrrp_instance of a file's top-level statements."""
    version = 2
    for s in stmts:
        if s.keyword == "global_defs" and s.value("vrrp_version"):
            version = int(_num(s.value("vrrp_version"), 2))
    return [instance_of(s, owners_of(s), version) for s in stmts if s.keyword == "vrrp_instance" and s.is_block]


def master_down_seconds(inst: Instance, peer_priority: int = 1) -> float:
    """RFC 5798 Master_Down_Interval of a backup at `peer_priority`: 3 adverts + skew."""
    return 3 * inst.advert_interval + (256 - peer_priority) / 256 * inst.advert_interval
