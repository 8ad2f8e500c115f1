"""Frontend: an HAProxy frontend: where it listens and which backend gets which request."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import duplicates, Duration, HostName, IPv4, Manifest, Name, Placement, Port, Strict, UrlPath


class Bind(Strict):
    address: IPv4
    port: Port


class Rule(Strict):
    """Send requests whose Host and/or path prefix match to `backend`. First match wins."""

    host: HostName | None = None
    path: UrlPath | None = None
    backend: Name

    @model_validator(mode="after")
    def _something(self) -> "Rule":
        if self.host is None and self.path is None:
            raise ValueError("a rule needs host, path or both")
        return self


class FrontendTimeouts(Strict):
    client: Duration = "30s"
    httpRequest: Duration = "10s"


class FrontendSpec(Placement):
    bind: Annotated[list[Bind], Field(min_length=1)]
    mode: Literal["http", "tcp"] = "http"
    defaultBackend: Name
    rules: list[Rule] = Field(default_factory=list)
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    timeouts: FrontendTimeouts = Field(default_factory=FrontendTimeouts)

    @model_validator(mode="after")
    def _checks(self) -> "FrontendSpec":
        if self.rules and self.mode != "http":
            raise ValueError("rules (host/path routing) need mode http")
        return self


class Frontend(Manifest):
    kind: Literal["Frontend"]
    spec: FrontendSpec

    def references(self) -> list[tuple[str, str, str]]:
        refs = [("Backend", self.spec.defaultBackend, "spec.defaultBackend")]
        refs += [("Backend", r.backend, f"spec.rules.{i}.backend") for i, r in enumerate(self.spec.rules)]
        return refs

    def claims(self) -> list[tuple[str, str]]:
        return [(f"bind:{b.address}:{b.port}", f"spec.bind.{i}") for i, b in enumerate(self.spec.bind)]

    def check(self, tree) -> list[tuple[str, str]]:
        problems = duplicates([f"{b.address}:{b.port}" for b in self.spec.bind], "spec.bind.{}", "bind")
        nodes = tree.nodes_of(self)
        vips = tree.memo(_vips_by_address)
        for i, bind in enumerate(self.spec.bind):
            ip = ipaddress.IPv4Address(bind.address)
            if ip.is_unspecified or ip.is_loopback:
                continue
            vip = vips.get(bind.address)
            if vip is not None:
                if not nodes <= tree.nodes_of(vip):
                    problems.append((f"spec.bind.{i}.address",
                                     f"VirtualIP {vip.metadata.name} does not cover every node of this frontend"))
                continue
            own = {n for n in nodes if (a := tree.node_address(n)) and a.split("/")[0] == bind.address}
            if own != nodes or not nodes:
                problems.append((f"spec.bind.{i}.address",
                                 f"no VirtualIP or node address provides {bind.address} on every node of this "
                                 f"frontend (bind a VirtualIP's address, the node's own, 0.0.0.0 or 127.0.0.1)"))
        problems += self._wildcard_overlaps(tree, nodes)
        refs = [("spec.defaultBackend", self.spec.defaultBackend)]
        refs += [(f"spec.rules.{i}.backend", r.backend) for i, r in enumerate(self.spec.rules)]
        for field, ref in refs:
            backend = tree.get("Backend", ref)
            if backend is None:
                continue  # reported by the loader as an unknown Backend
            if backend.spec.mode != self.spec.mode:
                problems.append((field, f"backend {ref!r} is mode {backend.spec.mode}, this frontend is mode {self.spec.mode}"))
            missing = sorted(nodes - tree.nodes_of(backend))
            if missing:
                problems.append((field, f"backend {ref!r} is not placed on {', '.join(missing)}, where this frontend runs"))
        return problems

    def _wildcard_overlaps(self, tree, nodes: frozenset[str]) -> list[tuple[str, str]]:
        """0.0.0.0:P takes port P on every address: no other frontend on a common node may
        bind P (HAProxy would fail to start there; the loader's claims see exact matches only).
        Looked up per port and node (`_binds_by_port_and_node`): linear in the binds."""
        wildcard, specific = tree.memo(_binds_by_port_and_node)
        problems = []
        for i, bind in enumerate(self.spec.bind):
            across = specific if bind.address == "0.0.0.0" else wildcard
            other = next((found for node in sorted(nodes) for found in across.get((bind.port, node), {}).values()
                          if found[0] is not self), None)
            if other is not None:
                problems.append((f"spec.bind.{i}", f"port {bind.port} on {bind.address} overlaps Frontend "
                                 f"{other[0].metadata.name}'s bind {other[1]}:{bind.port}"))
        return problems


def _vips_by_address(tree) -> dict:
    return {v.ip: v for v in tree.of_kind("VirtualIP")}


_Binds = dict[tuple[int, str], dict[int, tuple[Frontend, str]]]


def _binds_by_port_and_node(tree) -> tuple[_Binds, _Binds]:
    """(port, node) → the frontends that bind it there, once each with their first address:
    the 0.0.0.0 binds, and the binds of one address."""
    wildcard: _Binds = {}
    specific: _Binds = {}
    for frontend in tree.of_kind("Frontend"):
        for bind in frontend.spec.bind:
            into = wildcard if bind.address == "0.0.0.0" else specific
            for node in tree.nodes_of(frontend):
                into.setdefault((bind.port, node), {}).setdefault(id(frontend), (frontend, bind.address))
    return wildcard, specific
