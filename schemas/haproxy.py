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
import ipaddress
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import (
    NOT_ECHOED, IPAddress, PATTERN_HELP, UrlPath, Duration, Manifest, Metadata, Placement, Port, SecretRef, Strict, UserName,
)
from schemas.haproxy_lang import (
    FILE_PLACEHOLDER, OTHER_SECTIONS, SECRET_PLACEHOLDER, SECTION_KEYWORDS, check_directive, check_name,
    inline_secret, words,
)

# The checks of names and directives as JSON Schema patterns, so that an editor refuses what
# validate refuses (the Python checks stay the authority and give the messages).
PROXY_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,255}$"
_NOT_A_LINE_END = r"\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029"
DIRECTIVE_PATTERN = (rf"^[\t ]*(?!(?:{'|'.join(sorted(SECTION_KEYWORDS))})(?:[\t ]|$))[^{_NOT_A_LINE_END}\t #]"
                     rf"[^{_NOT_A_LINE_END}]*$")
PATTERN_HELP.update({
    PROXY_NAME_PATTERN: "must be an HAProxy name: letters, digits and _ . : - (at most 255)",
    DIRECTIVE_PATTERN: "must be one directive line: no newline or control character, not a comment, not "
                       "starting with a section keyword (global, defaults, frontend, backend, listen, …)",
})

ProxyName = Annotated[str, AfterValidator(check_name), Field(json_schema_extra={"pattern": PROXY_NAME_PATTERN})]
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


def _ref_schema(description: str) -> dict[str, Any]:
    schema = {k: v for k, v in SecretRef.model_json_schema().items() if k != "title"}
    return schema | {"description": description}


_DIRECTIVE_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": DIRECTIVE_PATTERN, "description": "one directive of HAProxy's language"},
    {"type": "object", "additionalProperties": False, "required": ["line"],
     "description": "a directive naming a secret (((secret))) or a file (((file))) by reference",
     "properties": {
         "line": {"type": "string", "pattern": DIRECTIVE_PATTERN,
                  "description": "The directive, with ((secret)) or ((file)) where the value or the file's path "
                                 "goes."},
         "secret": _ref_schema("The secret written in place of ((secret)), escaped (the line is written 0600)."),
         "file": _ref_schema("A file copied 0600 beside haproxy.cfg; its path replaces ((file))."),
     }},
]}


HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:,/@+=%*!-]{1,256}$")]
"""One word of a directive (an option such as `accept-proxy` or `check-sni`)."""


class RefLine(Strict):
    """A directive that holds a secret or a file, by reference."""

    line: str = Field(description="The directive, with ((secret)) or ((file)) where the value or the file's path "
                                  "goes.")
    secret: SecretRef | None = Field(None, description="The secret written in place of ((secret)), escaped (the "
                                     "line is written 0600).")
    file: SecretRef | None = Field(None, description="A file copied 0600 beside haproxy.cfg; its path replaces "
                                   "((file)).")

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
    """What the proxy is called (as HAProxy names it, kept exactly) and how the agent treats
    changes made outside git."""

    name: ProxyName = Field(  # type: ignore[assignment]
        description="The proxy's name in haproxy.cfg, unique per kind: letters, digits and _ . : - "
                    "(be_http-in, k8s_api, Web.1), kept exactly.")


# --- typed conveniences -------------------------------------------------------------------


class TLS(Strict):
    """TLS on a bind: a certificate (chain and key in one PEM, by reference) and ALPN."""

    certificate: SecretRef = Field(description="The PEM holding the certificate chain and its key, by reference; "
                                   "copied 0600 beside haproxy.cfg, replaced at run time without a reload.")
    alpn: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,32}$")]] = Field(
        default_factory=list, description="Protocols offered by ALPN, in order of preference, e.g. [h2, http/1.1].")
    minVersion: Literal["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"] | None = Field(
        None, description="The oldest TLS version accepted (ssl-min-ver; default: HAProxy's).")


class Bind(Strict):
    """Where a frontend (or listen) accepts connections."""

    address: IPAddress = Field(description="The IPv4 or IPv6 address: a VirtualIP's, one of the node's own, a "
                               "wildcard (0.0.0.0, ::) or loopback.")
    port: Port = Field(description="The port.")
    tls: TLS | None = Field(None, description="Terminate TLS here (bind … ssl crt …).")
    options: list[Word] = Field(default_factory=list, description="Other bind options, one word each, e.g. "
                                "[accept-proxy] (a word with a value: two entries, or write the bind as a directive).")

    @property
    def endpoint(self) -> str:
        ip = ipaddress.ip_address(self.address)
        return f"[{self.address}]:{self.port}" if ip.version == 6 else f"{self.address}:{self.port}"


class ServerTLS(Strict):
    """TLS to the server."""

    verify: Literal["none", "required"] = Field("required", description="required: the server's certificate must "
                                                "be signed by `ca`; none: not checked (encryption only).")
    sni: Word | None = Field(None, description="The SNI expression sent, e.g. str(api.example.test).")
    ca: SecretRef | None = Field(None, description="The CA bundle (PEM) that signs the server's certificate, by "
                                 "reference; copied beside haproxy.cfg.")


class Server(Strict):
    """A server by address or by host name (resolved at start, or by a `resolvers` section
    named in `resolvers`)."""

    name: ProxyName = Field(description="The server's name in HAProxy, unique in the backend.")
    address: IPAddress | None = Field(None, description="Its IPv4 or IPv6 address (give address or host).")
    host: HostName | None = Field(None, description="Its host name, resolved when HAProxy starts, or at run time "
                                  "by `resolvers` (give address or host).")
    port: Port | None = Field(None, description="Its port (none: the port the client connected to).")
    weight: Annotated[int, Field(ge=0, le=256)] = Field(1, description="Its share of the traffic against the "
                                                         "others' weights; 0 sends it none. Changed at run time.")
    backup: bool = Field(False, description="Used only when no other server is up.")
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="Most concurrent connections sent to it; more wait in the backend's queue.")
    state: Literal["ready", "drain", "maint"] = Field("ready", description="ready serves; drain finishes what it "
                                                      "has and takes no new sessions; maint takes nothing. Changed "
                                                      "at run time.")
    resolvers: ProxyName | None = Field(None, description="A resolvers section (of the HAProxy kind) that resolves "
                                        "`host` at run time.")
    tls: ServerTLS | None = Field(None, description="Speak TLS to the server.")
    options: list[Word] = Field(default_factory=list, description="Other server options, one word each, e.g. "
                                "[send-proxy-v2].")

    @model_validator(mode="after")
    def _where(self) -> "Server":
        if (self.address is None) == (self.host is None):
            raise ValueError("give exactly one of address or host")
        if self.resolvers and self.host is None:
            raise ValueError("resolvers apply to a server given by host")
        return self


CheckType = Literal["tcp", "http", "mysql", "pgsql", "redis", "ldap", "smtp", "ssl-hello", "none"]


class HealthCheck(Strict):
    """How HAProxy checks that the servers listed in `servers` work."""

    type: CheckType = Field("tcp", description="tcp connects; http sends a request and checks the status; mysql, "
                            "pgsql, redis, ldap, smtp and ssl-hello speak that protocol; none never checks.")
    path: UrlPath = Field("/", description="The path an http check requests.")
    method: Literal["GET", "HEAD", "OPTIONS"] = Field("GET", description="The method of an http check.")
    expectStatus: Annotated[int, Field(ge=100, le=599)] = Field(200, description="The status an http check "
                                                                 "expects.")
    host: HostName | None = Field(None, description="The Host header of http checks.")
    user: UserName | None = Field(None, description="The user of mysql and pgsql checks (required for them).")
    port: Port | None = Field(None, description="Check this port instead of the server's (the Patroni and "
                              "kube-apiserver pattern: a tcp backend checked over HTTP on another port).")
    address: IPAddress | None = Field(None, description="Check this address instead of the server's.")
    agentPort: Port | None = Field(None, description="Also ask an agent on this port for the server's weight and "
                                                   "state (agent-check); combines with any type.")
    interval: Duration = Field("2s", description="Time between two checks of a server.")
    fall: Annotated[int, Field(ge=1, le=100)] = Field(3, description="Failed checks in a row that mark a server "
                                                       "DOWN.")
    rise: Annotated[int, Field(ge=1, le=100)] = Field(2, description="Passed checks in a row that mark it UP "
                                                       "again.")

    @model_validator(mode="after")
    def _user(self) -> "HealthCheck":
        if self.type in ("mysql", "pgsql") and self.user is None:
            raise ValueError(f"a {self.type} check needs `user`")
        return self


class StatsUser(Strict):
    """A user of the stats page."""

    user: UserName = Field(description="The user name.")
    password: SecretRef = Field(description="The password, by reference only ({file: /path} or {env: NAME}); "
                                "written into haproxy.cfg, which is then 0600.")


class Stats(Strict):
    """HAProxy's stats page on this proxy, behind a password."""

    uri: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")] = Field(
        "/", description="The path the page is served at.")
    auth: list[StatsUser] = Field(default_factory=list, description="Who may see the page (empty: anyone who "
                                  "reaches it).")
    realm: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = Field(
        None, description="The realm the browser's password prompt shows.")
    refresh: Duration | None = Field(None, description="How often the page reloads itself.")
    admin: bool = Field(False, description="Allow changing servers from the page (needs auth).")

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
    """A defaults section: settings the proxies after it (or those that name it) take."""

    name: ProxyName | None = Field(None, description="Its name, for proxies that name it in `defaults` (at most "
                                   "one defaults section is unnamed).")
    defaults: ProxyName | None = Field(None, description="Take settings from this defaults section, above this "
                                       "one (`from`).")
    directives: Directives = Field(default_factory=list)


class OtherSection(Strict):
    """A section that is not a proxy: userlist, peers, mailers, resolvers, cache,
    http-errors, ring, program, log-forward, fcgi-app."""

    type: Literal[OTHER_SECTIONS] = Field(description="The section's keyword.")  # type: ignore[valid-type]
    name: ProxyName = Field(description="Its name, unique per type.")
    directives: Directives = Field(default_factory=list)


class Logging(Strict):
    """Where HAProxy logs. `ring` (the default) keeps the log in memory, readable on the
    admin socket with `show events reconcile-log`, on a node without syslog; `stderr`
    goes to the journal under systemd; an address or socket path goes to syslog."""

    to: Literal["ring", "stderr", "stdout"] | Annotated[str, StringConstraints(
        pattern=r"^((udp|tcp)@)?[0-9A-Fa-f.:\[\]]+:[0-9]{1,5}$|^/[A-Za-z0-9_./-]+$")] = Field(
        "ring", description="ring (in memory, `show events reconcile-log`), stderr, stdout, a syslog server's "
                            "ADDRESS:PORT (udp@ or tcp@ before it to choose), or a syslog socket's path (/dev/log).")
    facility: Literal["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
                      "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
                      "local5", "local6", "local7"] = Field("local0", description="The syslog facility.")
    level: Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"] = Field(
        "info", description="The least severe level logged.")
    ringSize: Annotated[int, Field(ge=16384, le=1 << 30)] = Field(1 << 20, description="Bytes of log the ring "
                                                                   "keeps (to: ring).")


MapName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MapWord = Annotated[str, StringConstraints(pattern=r"^[^\s#\x00-\x1f\x7f\u0085\u2028\u2029]{1,1024}$")]


class HAProxySpec(Placement):
    """HAProxy's own settings on the nodes this lands on: everything in haproxy.cfg that is not
    a frontend, backend or listen."""

    global_: Directives = Field(default_factory=list, alias="global",
                                description="global directives; reconcile adds its admin socket and state file")
    defaults: list[DefaultsSection] = Field(default_factory=list,
                                            description="defaults sections in order (empty: reconcile's own)")
    sections: list[OtherSection] = Field(default_factory=list, description="Sections that are not proxies "
                                         "(userlist, resolvers, peers, cache, …), in order.")
    logging: Logging | None = Field(None, description="Where HAProxy logs, as one more global `log` line "
                                    "(none: only the `log` directives of `global`).")
    maxconn: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        None, description="The process's most concurrent connections (global maxconn).")
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
