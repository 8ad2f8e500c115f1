"""Frontend: an HAProxy frontend: where it listens, which backend gets which request, and
any other directive of HAProxy's language."""
import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import Duration, HostName, Manifest, Placement, Strict, UrlPath, duplicates
from schemas.haproxy import Bind, Directives, ProxyMetadata, ProxyName, Stats, defaults_problems, effective_mode


class Rule(Strict):
    """Send requests whose Host and/or path prefix match to `backend`. First match wins."""

    host: HostName | None = Field(None, description="The Host header to match; *.example.test matches every "
                                  "name below example.test.")
    path: UrlPath | None = Field(None, description="A path prefix to match, by whole segments: /api matches /api "
                                 "and /api/..., not /apiary.")
    backend: ProxyName = Field(description="The Backend that gets matching requests.")

    @model_validator(mode="after")
    def _something(self) -> "Rule":
        if self.host is None and self.path is None:
            raise ValueError("a rule needs host, path or both")
        return self


class FrontendTimeouts(Strict):
    """HAProxy's timeouts for this frontend (unset: from its defaults section)."""

    client: Duration | None = Field(None, description="Longest silence from a client.")
    httpRequest: Duration | None = Field(None, description="Longest time a client may take to send a whole "
                                         "request (http mode; slow-request protection).")
    httpKeepAlive: Duration | None = Field(None, description="Longest wait for the next request on a kept-alive "
                                           "connection.")


class Redirect(Strict):
    """Redirect plain HTTP to HTTPS (requests that did not come over TLS)."""

    scheme: Literal["https"] = Field("https", description="The scheme redirected to.")
    code: Literal[301, 302, 303, 307, 308] = Field(301, description="The HTTP status of the redirect.")


class FrontendSpec(Placement):
    """An HAProxy frontend: where it listens, which Backend gets which request, and any other
    directive of HAProxy's language."""

    defaults: ProxyName | None = Field(None, description="the defaults section it takes settings from (`from`)")
    bind: list[Bind] = Field(default_factory=list, description="Where it listens (more may be given as `bind` "
                             "directives).")
    mode: Literal["http", "tcp"] | None = Field(None, description="http parses requests (and can route them); tcp "
                                                "forwards bytes (unset: from its defaults section).")
    defaultBackend: ProxyName | None = Field(None, description="The Backend that gets requests no rule matches.")
    rules: list[Rule] = Field(default_factory=list, description="Routing by Host and path, first match wins "
                              "(http mode), before any `use_backend` directive.")
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="Most concurrent connections it accepts (default: HAProxy's).")
    timeouts: FrontendTimeouts = Field(default_factory=FrontendTimeouts, description="Timeouts (unset: from its "
                                       "defaults section).")
    forwardFor: bool = Field(False, description="option forwardfor (add X-Forwarded-For)")
    redirect: Redirect | None = Field(None, description="Redirect plain HTTP to HTTPS.")
    stats: Stats | None = Field(None, description="HAProxy's stats page on this frontend.")
    logFormat: Literal["http", "tcp", "https", "clf"] | None = Field(
        None, description="option httplog / tcplog / httpslog / httplog clf")
    directives: Directives = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> "FrontendSpec":
        if (self.rules or self.redirect or self.forwardFor) and self.mode == "tcp":
            raise ValueError("rules, redirect and forwardFor need mode http")
        return self


class Frontend(Manifest):
    kind: Literal["Frontend"]
    metadata: ProxyMetadata
    spec: FrontendSpec

    def references(self) -> list[tuple[str, str, str]]:
        refs = [("Backend", self.spec.defaultBackend, "spec.defaultBackend")] if self.spec.defaultBackend else []
        refs += [("Backend", r.backend, f"spec.rules.{i}.backend") for i, r in enumerate(self.spec.rules)]
        return refs

    def claims(self) -> list[tuple[str, str]]:
        return [(f"bind:{b.endpoint}", f"spec.bind.{i}") for i, b in enumerate(self.spec.bind)]

    def check(self, tree) -> list[tuple[str, str]]:
        problems = duplicates([b.endpoint for b in self.spec.bind], "spec.bind.{}", "bind")
        problems += defaults_problems(self, tree)
        nodes = tree.nodes_of(self)
        vips = tree.memo(_vips_by_address)
        for i, bind in enumerate(self.spec.bind):
            ip = ipaddress.ip_address(bind.address)
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
                                 f"frontend (bind a VirtualIP's address, the node's own, 0.0.0.0, ::, or loopback; "
                                 f"or write the bind as a directive to leave it to haproxy -c)"))
        problems += self._wildcard_overlaps(tree, nodes)
        refs = [("spec.defaultBackend", self.spec.defaultBackend)] if self.spec.defaultBackend else []
        refs += [(f"spec.rules.{i}.backend", r.backend) for i, r in enumerate(self.spec.rules)]
        for field, ref in refs:
            backend = tree.get("Backend", ref)
            if backend is None:
                continue  # reported by the loader as an unknown Backend
            theirs, ours = effective_mode(backend, tree), effective_mode(self, tree)
            if theirs and ours and theirs != ours:
                problems.append((field, f"backend {ref!r} is mode {theirs}, this frontend is mode {ours}"))
            missing = sorted(nodes - tree.nodes_of(backend))
            if missing:
                problems.append((field, f"backend {ref!r} is not placed on {', '.join(missing)}, where this frontend runs"))
        return problems

    def _wildcard_overlaps(self, tree, nodes: frozenset[str]) -> list[tuple[str, str]]:
        """0.0.0.0:P (or [::]:P) takes port P on every address: no other frontend on a common
        node may bind P (HAProxy would fail to start there; the loader's claims see exact
        matches only). Looked up per port and node (`_binds_by_port_and_node`): linear in the
        binds."""
        wildcard, specific = tree.memo(_binds_by_port_and_node)
        problems = []
        for i, bind in enumerate(self.spec.bind):
            across = specific if bind.address in WILDCARDS else wildcard
            other = next((found for node in sorted(nodes) for found in across.get((bind.port, node), {}).values()
                          if found[0] is not self), None)
            if other is not None:
                problems.append((f"spec.bind.{i}", f"port {bind.port} on {bind.address} overlaps Frontend "
                                 f"{other[0].metadata.name}'s bind {other[1]}:{bind.port}"))
        return problems


WILDCARDS = ("0.0.0.0", "::")


def _vips_by_address(tree) -> dict:
    """Every address of every VirtualIP (a keepalived one may carry several, or none)."""
    return {str(ipaddress.ip_address(ip)): v for v in tree.of_kind("VirtualIP") for ip in v.ips()}


_Binds = dict[tuple[int, str], dict[int, tuple[Frontend, str]]]


def _binds_by_port_and_node(tree) -> tuple[_Binds, _Binds]:
    """(port, node) → the frontends that bind it there, once each with their first address:
    the 0.0.0.0 binds, and the binds of one address."""
    wildcard: _Binds = {}
    specific: _Binds = {}
    for frontend in tree.of_kind("Frontend"):
        for bind in frontend.spec.bind:
            into = wildcard if bind.address in WILDCARDS else specific
            for node in tree.nodes_of(frontend):
                into.setdefault((bind.port, node), {}).setdefault(id(frontend), (frontend, bind.address))
    return wildcard, specific
