"""Backend: an HAProxy backend (or a `listen` section: a backend that also binds), its
balance algorithm, health check, servers and any other directive of HAProxy's language."""
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Duration, Manifest, Placement, Strict, duplicates
from schemas.haproxy import (
    Balance, Bind, Directives, HealthCheck, ProxyMetadata, ProxyName, Server, Stats, defaults_problems, line_text,
)
from schemas.haproxy_lang import parse_server


class BackendTimeouts(Strict):
    """HAProxy's timeouts for this backend (unset: from its defaults section)."""

    connect: Duration | None = Field(None, description="Longest wait for a connection to a server.")
    server: Duration | None = Field(None, description="Longest silence from a server in a request.")
    queue: Duration | None = Field(None, description="Longest wait in the queue for a free server.")
    check: Duration | None = Field(None, description="Longest wait for a health check's answer, once connected.")
    tunnel: Duration | None = Field(None, description="Longest silence on a tunnel (WebSocket, CONNECT) in both "
                                    "directions.")


class BackendSpec(Placement):
    """An HAProxy backend (or listen section): its servers, how requests are spread and how
    servers are checked, and any other directive of HAProxy's language."""

    section: Literal["backend", "listen"] = Field(
        "backend", description="listen: a backend that also binds (HAProxy's frontend and backend in one)")
    defaults: ProxyName | None = Field(None, description="the defaults section it takes settings from (`from`)")
    mode: Literal["http", "tcp"] | None = Field(None, description="http parses requests; tcp forwards bytes "
                                                "(unset: from its defaults section).")
    balance: Balance | None = Field(None, description="How servers are chosen: any algorithm of HAProxy 2.6 with "
                                    "its arguments (roundrobin, leastconn, source, uri, hdr(NAME), random(2), …; "
                                    "source is rendered with hash-type consistent). Unset: HAProxy's (roundrobin).")
    bind: list[Bind] = Field(default_factory=list, description="Where a listen section accepts connections "
                             "(listen only).")
    servers: list[Server] = Field(default_factory=list, description="The servers (more may be given as `server` "
                                  "directives).")
    healthCheck: HealthCheck = Field(default_factory=HealthCheck, description="How the servers listed in "
                                     "`servers` are checked.")
    timeouts: BackendTimeouts = Field(default_factory=BackendTimeouts, description="Timeouts (unset: from its "
                                      "defaults section).")
    forwardFor: bool = Field(False, description="option forwardfor (add X-Forwarded-For)")
    stats: Stats | None = Field(None, description="HAProxy's stats page here (listen only).")
    directives: Directives = Field(default_factory=list)
    ignore: list[Literal["state", "weight"]] = Field(
        default_factory=list, description="server fields an operator may change at run time without it being drift"
    )

    @model_validator(mode="after")
    def _checks(self) -> "BackendSpec":
        if self.section == "backend" and (self.bind or self.stats):
            raise ValueError("bind and stats need section: listen (a backend does not accept connections)")
        return self

    def all_server_names(self) -> list[tuple[str, str]]:
        """(name, field path) of every server: typed ones, then `server` directives."""
        out = [(s.name, f"spec.servers.{i}.name") for i, s in enumerate(self.servers)]
        for i, d in enumerate(self.directives):
            line = parse_server(line_text(d))
            if line is not None:
                out.append((line.name, f"spec.directives.{i}"))
        return out


class Backend(Manifest):
    kind: Literal["Backend"]
    metadata: ProxyMetadata
    spec: BackendSpec

    def claims(self) -> list[tuple[str, str]]:
        return [(f"bind:{b.endpoint}", f"spec.bind.{i}") for i, b in enumerate(self.spec.bind)]

    def check(self, tree) -> list[tuple[str, str]]:
        # Here rather than in a model validator, so the error points at the repeated line.
        first: dict[str, str] = {}
        problems = []
        for name, path in self.spec.all_server_names():
            if name in first:
                where = first[name]
                where = f"index {where.split('.')[2]}" if where.startswith("spec.servers.") else where
                problems.append((path, f"duplicate server name {name!r} (first at {where})"))
            else:
                first[name] = path
        problems += duplicates([b.endpoint for b in self.spec.bind], "spec.bind.{}", "bind")
        return problems + defaults_problems(self, tree)
