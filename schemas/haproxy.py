"""HAProxy: the language's building blocks every HAProxy kind shares, and the HAProxy kind
(global, defaults and the sections that are not proxies, for the nodes it lands on).

Any directive of HAProxy's language can be written as a line (`directives:`); reconcile
checks that it is one line and opens no section, and `haproxy -c` checks the rest on the
node before anything is installed. A line that needs a secret or a file names it by
reference: `{line: "stats auth admin:((secret))", secret: {file: /path}}` (the value,
escaped, replaces `((secret))`), `{line: "bind :443 ssl crt ((file))", file: {file: /p}}`
(a 0600 copy beside haproxy.cfg replaces `((file))`). Typed fields are conveniences that
render to such lines.
"""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import NOT_ECHOED, UrlPath, Duration, Manifest, Metadata, Placement, Port, SecretRef, Strict, UserName
from schemas.haproxy_lang import (
    FILE_PLACEHOLDER, OTHER_SECTIONS, SECRET_PLACEHOLDER, check_directive, check_name, inline_secret, words,
)

ProxyName = Annotated[str, AfterValidator(check_name)]
"""A proxy, server or section name as HAProxy allows it: letters, digits, _ . : -"""


def _line(value: str) -> str:
    line = check_directive(value)
    why = inline_secret(line)
    if why:
        # Its own error type, so that the loader never echoes the value.
        raise PydanticCustomError("inline_secret", f"{why} written inline: give it by reference, "
                                  "e.g. {line: 'stats auth admin:((secret))', secret: {file: /etc/reconcile/secrets/stats}} "
                                  f"{NOT_ECHOED}")
    return line


Line = Annotated[str, AfterValidator(_line)]
"""One directive of HAProxy's language, as a line."""


def _directive(value: Any) -> "str | RefLine":
    # A string is a line, anything else a reference: one alternative is validated, so a
    # refused directive is one problem at the directive's own path.
    if isinstance(value, str):
        return _line(value)
    if isinstance(value, RefLine):
        return value
    return RefLine.model_validate(value)


_SECRET_SCHEMA = {"type": "object", "additionalProperties": False,
                  "properties": {"file": {"type": "string"}, "env": {"type": "string"}}}
_DIRECTIVE_SCHEMA = {"anyOf": [
    {"type": "string", "description": "one directive of HAProxy's language"},
    {"type": "object", "additionalProperties": False, "required": ["line"],
     "description": "a directive naming a secret (((secret))) or a file (((file))) by reference",
     "properties": {"line": {"type": "string"}, "secret": _SECRET_SCHEMA, "file": _SECRET_SCHEMA}},
]}


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


IPAddress = Annotated[str, AfterValidator(_ip)]
HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:,/@+=%*!-]{1,256}$")]
"""One word of a directive (an option such as `accept-proxy` or `check-sni`)."""


class RefLine(Strict):
    """A directive that holds a secret or a file, by reference."""

    line: str
    secret: SecretRef | None = None
    file: SecretRef | None = None

    @model_validator(mode="after")
    def _one(self) -> "RefLine":
        check_directive(self.line)
        if (self.secret is None) == (self.file is None):
            raise ValueError("give exactly one of `secret` (replaces ((secret))) or `file` (replaces ((file)))")
        placeholder = SECRET_PLACEHOLDER if self.secret is not None else FILE_PLACEHOLDER
        if self.line.count(placeholder) != 1 or self.line.count("((") != 1:
            raise ValueError(f"the line must hold {placeholder} exactly once (and no other placeholder)")
        return self

    @property
    def ref(self) -> SecretRef:
        return self.secret or self.file  # type: ignore[return-value]


Directive = Annotated[Union[str, RefLine], PlainValidator(_directive), WithJsonSchema(_DIRECTIVE_SCHEMA)]
"""A directive: a line, or a line that names a secret or a file by reference."""
Directives = Annotated[list[Directive], Field(description="HAProxy directives, one per entry, in order")]


class ProxyMetadata(Metadata):
    name: ProxyName  # type: ignore[assignment]


# --- typed conveniences -------------------------------------------------------------------


class TLS(Strict):
    """TLS on a bind: a certificate (chain and key in one PEM, by reference) and ALPN."""

    certificate: SecretRef
    alpn: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,32}$")]] = Field(
        default_factory=list, description="e.g. [h2, http/1.1]")
    minVersion: Literal["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"] | None = None


class Bind(Strict):
    """Where a frontend (or listen) accepts connections."""

    address: IPAddress
    port: Port
    tls: TLS | None = None
    options: list[Word] = Field(default_factory=list, description="other bind options, e.g. [accept-proxy]")

    @property
    def endpoint(self) -> str:
        ip = ipaddress.ip_address(self.address)
        return f"[{self.address}]:{self.port}" if ip.version == 6 else f"{self.address}:{self.port}"


class ServerTLS(Strict):
    verify: Literal["none", "required"] = "required"
    sni: Word | None = None
    ca: SecretRef | None = None


class Server(Strict):
    """A server by address or by host name (resolved at start, or by a `resolvers` section
    named in `resolvers`)."""

    name: ProxyName
    address: IPAddress | None = None
    host: HostName | None = None
    port: Port | None = None
    weight: Annotated[int, Field(ge=0, le=256)] = 1
    backup: bool = False
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    state: Literal["ready", "drain", "maint"] = "ready"
    resolvers: ProxyName | None = None
    tls: ServerTLS | None = None
    options: list[Word] = Field(default_factory=list, description="other server options, e.g. [send-proxy-v2]")

    @model_validator(mode="after")
    def _where(self) -> "Server":
        if (self.address is None) == (self.host is None):
            raise ValueError("give exactly one of address or host")
        if self.resolvers and self.host is None:
            raise ValueError("resolvers apply to a server given by host")
        return self


CheckType = Literal["tcp", "http", "mysql", "pgsql", "redis", "ldap", "smtp", "ssl-hello", "none"]


class HealthCheck(Strict):
    type: CheckType = "tcp"
    path: UrlPath = "/"
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    expectStatus: Annotated[int, Field(ge=100, le=599)] = 200
    host: HostName | None = Field(None, description="Host header of HTTP checks")
    user: UserName | None = Field(None, description="user of mysql/pgsql checks")
    port: Port | None = Field(None, description="check this port instead of the server's (the Patroni pattern)")
    address: IPAddress | None = None
    agentPort: Port | None = Field(None, description="also ask an agent on this port for the server's weight and "
                                                   "state (agent-check); combines with any type")
    interval: Duration = "2s"
    fall: Annotated[int, Field(ge=1, le=100)] = 3
    rise: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _user(self) -> "HealthCheck":
        if self.type in ("mysql", "pgsql") and self.user is None:
            raise ValueError(f"a {self.type} check needs `user`")
        return self


class StatsUser(Strict):
    user: UserName
    password: SecretRef


class Stats(Strict):
    """HAProxy's stats page on this proxy, behind a password."""

    uri: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/"
    auth: list[StatsUser] = Field(default_factory=list)
    realm: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    refresh: Duration | None = None
    admin: bool = Field(False, description="allow changing servers from the page (needs auth)")

    @model_validator(mode="after")
    def _admin(self) -> "Stats":
        if self.admin and not self.auth:
            raise ValueError("stats admin needs auth")
        return self


Balance = Annotated[str, StringConstraints(
    pattern=r"^(roundrobin|static-rr|leastconn|first|source|random(\([0-9]+\))?|uri( [a-z-]+( [0-9]+)?)*|"
            r"url_param [A-Za-z0-9_.-]+( [a-z-]+( [0-9]+)?)*|hdr\([A-Za-z0-9_-]+\)( use_domain_only)?|"
            r"rdp-cookie(\([A-Za-z0-9_-]+\))?)$")]
"""Every balance algorithm of HAProxy 2.6, with its arguments."""


# --- the HAProxy kind ------------------------------------------------------------------------


class DefaultsSection(Strict):
    name: ProxyName | None = None
    defaults: ProxyName | None = Field(None, description="take settings from this defaults section (`from`)")
    directives: Directives = Field(default_factory=list)


class OtherSection(Strict):
    """A section that is not a proxy: userlist, peers, mailers, resolvers, cache,
    http-errors, ring, program, log-forward, fcgi-app."""

    type: Literal[OTHER_SECTIONS]  # type: ignore[valid-type]
    name: ProxyName
    directives: Directives = Field(default_factory=list)


class Logging(Strict):
    """Where HAProxy logs. `ring` (the default) keeps the log in memory, readable on the
    admin socket with `show events reconcile-log`, on a node without syslog; `stderr`
    goes to the journal under systemd; an address or socket path goes to syslog."""

    to: Literal["ring", "stderr", "stdout"] | Annotated[str, StringConstraints(
        pattern=r"^((udp|tcp)@)?[0-9A-Fa-f.:\[\]]+:[0-9]{1,5}$|^/[A-Za-z0-9_./-]+$")] = "ring"
    facility: Literal["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
                      "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
                      "local5", "local6", "local7"] = "local0"
    level: Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"] = "info"
    ringSize: Annotated[int, Field(ge=16384, le=1 << 30)] = 1 << 20


MapName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MapWord = Annotated[str, StringConstraints(pattern=r"^[^\s#\x00-\x1f\x7f\u0085\u2028\u2029]{1,1024}$")]


class HAProxySpec(Placement):
    global_: Directives = Field(default_factory=list, alias="global",
                                description="global directives; reconcile adds its admin socket and state file")
    defaults: list[DefaultsSection] = Field(default_factory=list,
                                            description="defaults sections in order (empty: reconcile's own)")
    sections: list[OtherSection] = Field(default_factory=list)
    logging: Logging | None = None
    maxconn: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    maps: dict[MapName, dict[MapWord, MapWord]] = Field(
        default_factory=dict, description="map files /etc/haproxy/maps/NAME.map, changed at run time")
    acls: dict[MapName, list[MapWord]] = Field(
        default_factory=dict, description="ACL pattern files /etc/haproxy/acl/NAME.acl, changed at run time")


class HAProxy(Manifest):
    """HAProxy itself on the nodes it lands on: global settings, defaults, the sections
    that are not proxies, logging, maps and ACL files. At most one per node."""

    kind: Literal["HAProxy"]
    spec: HAProxySpec

    def claims(self) -> list[tuple[str, str]]:
        return [("haproxy:process", "metadata.name")]

    def check(self, tree) -> list[tuple[str, str]]:
        problems = []
        names: dict[str, int] = {}
        for i, d in enumerate(self.spec.defaults):
            if d.name is not None:
                if d.name in names:
                    problems.append((f"spec.defaults.{i}.name", f"duplicate defaults name {d.name!r}"))
                names[d.name] = i
            if d.defaults is not None and names.get(d.defaults, i) >= i:
                problems.append((f"spec.defaults.{i}.defaults", f"{d.defaults!r} is not a defaults section above this one"))
        if sum(1 for d in self.spec.defaults if d.name is None) > 1:
            problems.append(("spec.defaults", "only one defaults section may be unnamed (name the others)"))
        seen: dict[tuple[str, str], int] = {}
        for i, s in enumerate(self.spec.sections):
            if (s.type, s.name) in seen:
                problems.append((f"spec.sections.{i}.name", f"duplicate {s.type} section {s.name!r}"))
            seen[(s.type, s.name)] = i
        return problems

    def defaults_names(self) -> set[str]:
        return {d.name for d in self.spec.defaults if d.name}


def line_text(d: Directive) -> str:
    return d if isinstance(d, str) else d.line


def line_words(d: Directive) -> list[str]:
    return words(line_text(d))


def effective_mode(manifest: Manifest, tree: Any) -> str | None:
    """A proxy's mode: its own (typed or a `mode` directive), else reconcile's own defaults'
    (http) when no HAProxy manifest lands on its nodes; None when a defaults section of an
    HAProxy manifest decides (left to haproxy -c)."""
    spec = manifest.spec
    if spec.mode:
        return spec.mode
    for d in spec.directives:
        w = line_words(d)
        if w[:1] == ["mode"] and len(w) > 1:
            return w[1]
    if tree.nodes_of(manifest) & tree.memo(_haproxy_nodes):
        return None
    return "http"


def _haproxy_nodes(tree: Any) -> frozenset[str]:
    """The nodes an HAProxy manifest lands on (an index: whole-tree checks stay linear)."""
    return frozenset(n for h in tree.of_kind("HAProxy") for n in tree.nodes_of(h))


def _defaults_nodes(tree: Any) -> dict[str, frozenset[str]]:
    """Defaults section name → the nodes where an HAProxy manifest defines it."""
    out: dict[str, set[str]] = {}
    for h in tree.of_kind("HAProxy"):
        for name in h.defaults_names():
            out.setdefault(name, set()).update(tree.nodes_of(h))
    return {name: frozenset(nodes) for name, nodes in out.items()}


def defaults_problems(manifest: Manifest, tree: Any) -> list[tuple[str, str]]:
    """A proxy's `defaults` must name a defaults section of the HAProxy manifest on each of
    its nodes."""
    wanted = manifest.spec.defaults
    if not wanted:
        return []
    nodes = tree.nodes_of(manifest)
    missing = sorted(nodes - tree.memo(_defaults_nodes).get(wanted, frozenset()))
    if missing or not nodes:
        return [("spec.defaults", f"no HAProxy manifest on {', '.join(missing) or 'its nodes'} has a defaults "
                                  f"section named {wanted!r}")]
    return []
