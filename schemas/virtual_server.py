"""VirtualServer: an LVS (IPVS) virtual service that keepalived's checker process maintains.

One manifest is one `virtual_server` block: the service (an address and port, a firewall
mark, or a `virtual_server_group` of the Keepalived manifest), its real servers and their
health checks. reconcile types what it must understand — the service's identity and
protocol, the real servers' addresses, the check types, and the programs keepalived runs
(MISC_CHECK, notify_up/down, quorum_up/down, each needing the node's policy) — and carries
every other directive as written (`lb_algo wlc`, `lb_kind DR`, `persistence_timeout 50`,
`delay_loop 6`, `weight 2`, `connect_timeout 3`, `url { path / status_code 200 }`, …).
"""
import ipaddress
import typing
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import IPAddress, Manifest, Metadata, Placement, Strict
from schemas.keepalived import Block, Command, KeepalivedName, Line, typed_keywords_in

Port = Annotated[int, Field(ge=0, le=65535)]
CheckType = Literal["TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "PING_CHECK",
                    "UDP_CHECK", "FILE_CHECK", "BFD_CHECK"]


class Check(Strict):
    """One health checker of a real server."""

    type: CheckType = Field(description="the checker: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, …")
    misc: Command | None = Field(None, description="MISC_CHECK: the program (`misc_path`) and its user")
    extra: list[Line] = Field(default_factory=list, description="the checker's other lines, e.g. connect_timeout 3")
    blocks: list[Block] = Field(default_factory=list, description="e.g. {block: url, lines: [path /, status_code 200]}")

    @model_validator(mode="after")
    def _checks(self) -> "Check":
        if (self.type == "MISC_CHECK") != (self.misc is not None):
            raise ValueError("misc (the program) is for MISC_CHECK, and MISC_CHECK needs it")
        problems = typed_keywords_in(self.extra, {"misc_path": "misc", "user": "misc.user"}, "extra")
        if problems:
            raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
        return self


class RealServer(Strict):
    """One `real_server`: a machine the virtual service forwards to, and how it is checked."""

    address: IPAddress = Field(description="its IPv4 or IPv6 address")
    port: Port | None = Field(None, description="its port (absent: the virtual service's, or a fwmark service's)")
    notifyUp: Command | None = Field(None, description="notify_up: a program run when its checks pass again")
    notifyDown: Command | None = Field(None, description="notify_down: a program run when a check fails")
    checks: list[Check] = Field(default_factory=list, description="its health checkers")
    extra: list[Line] = Field(default_factory=list, description="e.g. weight 100, inhibit_on_failure")
    blocks: list[Block] = Field(default_factory=list, description="any other block of the real_server, as written")

    @model_validator(mode="after")
    def _checks(self) -> "RealServer":
        problems = typed_keywords_in(self.blocks, {t: "checks" for t in typing.get_args(CheckType)}, "blocks")
        if problems:
            raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
        return self


class VirtualServerSpec(Placement):
    """The virtual service (address and port, fwmark or group), its real servers and checks."""

    address: IPAddress | None = Field(None, description="the service's address (give one of address, fwmark, group)")
    port: Port | None = Field(None, description="absent only for a persistent service (port 0)")
    fwmark: Annotated[int, Field(ge=1, le=2**32 - 1)] | None = Field(
        None, description="a firewall mark selecting the service's packets")
    group: KeepalivedName | None = Field(None, description="a virtual_server_group of the Keepalived manifest")
    protocol: Literal["TCP", "UDP", "SCTP"] | None = Field(None, description="default TCP")
    realServers: list[RealServer] = Field(default_factory=list, description="the machines it forwards to")
    quorumUp: Command | None = Field(None, description="quorum_up: a program run when enough real servers are up")
    quorumDown: Command | None = Field(None, description="quorum_down: a program run when too few are")
    extra: list[Line] = Field(default_factory=list, description="e.g. lb_algo rr, lb_kind NAT, persistence_timeout 50")
    blocks: list[Block] = Field(default_factory=list, description="any other block of the virtual_server, as written")

    @model_validator(mode="after")
    def _checks(self) -> "VirtualServerSpec":
        given = [f for f in ("address", "fwmark", "group") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("a virtual server is one of: address (and port), fwmark, group")
        if self.port is not None and self.address is None:
            raise ValueError("port goes with address")
        problems = typed_keywords_in(self.extra + self.blocks, {
            "protocol": "protocol", "real_server": "realServers", "quorum_up": "quorumUp",
            "quorum_down": "quorumDown"}, "extra")
        if problems:
            raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
        return self


class VirtualServerMetadata(Metadata):
    """What the virtual server is called, and how the agent treats changes made outside git."""

    name: KeepalivedName = Field(  # type: ignore[assignment]
        description="Its name, unique among VirtualServers: letters, digits and _ . - (at most 63).")


class VirtualServer(Manifest):
    kind: Literal["VirtualServer"]
    metadata: VirtualServerMetadata
    spec: VirtualServerSpec

    def header(self) -> list[str]:
        """The words after `virtual_server`."""
        s = self.spec
        if s.group is not None:
            return ["group", s.group]
        if s.fwmark is not None:
            return ["fwmark", str(s.fwmark)]
        return [s.address or ""] + ([str(s.port)] if s.port is not None else [])

    def claims(self) -> list[tuple[str, str]]:
        proto = self.spec.protocol or "TCP"
        return [(f"lvs:{' '.join(self.header())}:{proto}", "spec")]

    def check(self, tree) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        s = self.spec
        if s.group is not None:
            from schemas.keepalived import settings_on

            nodes = tree.nodes_of(self)
            for node in sorted(nodes):
                if not any(s.group in k.spec.virtualServerGroups for k in settings_on(tree, frozenset({node}))):
                    problems.append(("spec.group", f"no Keepalived manifest on node {node} defines "
                                     f"virtual_server_group {s.group!r}"))
                    break
        if s.address is not None:
            family = ipaddress.ip_address(s.address).version
            for i, rs in enumerate(s.realServers):
                if ipaddress.ip_address(rs.address).version != family and not any(
                        "TUN" in x for x in rs.extra + s.extra):
                    problems.append((f"spec.realServers.{i}.address", "a real server of another address family "
                                     "than the virtual server needs tunnelling (lb_kind TUN)"))
        return problems + self.check_programs(tree)

    def check_programs(self, tree) -> list[tuple[str, str]]:
        from schemas.keepalived import program_problems

        return program_problems(self.commands(), tree, tree.nodes_of(self))

    def commands(self) -> list[tuple[str, Command]]:
        s = self.spec
        out = [(f"spec.{f}", getattr(s, f)) for f in ("quorumUp", "quorumDown") if getattr(s, f) is not None]
        for i, rs in enumerate(s.realServers):
            out += [(f"spec.realServers.{i}.{f}", getattr(rs, f)) for f in ("notifyUp", "notifyDown")
                    if getattr(rs, f) is not None]
            out += [(f"spec.realServers.{i}.checks.{j}.misc", c.misc) for j, c in enumerate(rs.checks) if c.misc]
        return out
