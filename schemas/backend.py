"""Backend: an HAProxy backend, its balance algorithm, health check and servers."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import duplicates, Duration, IPv4, Manifest, Name, Placement, Port, Strict, UrlPath


class Server(Strict):
    """One server of the backend."""

    name: Name = Field(description="The server's name in HAProxy, unique in the backend.")
    address: IPv4 = Field(description="Its IPv4 address.")
    port: Port = Field(description="Its port.")
    weight: Annotated[int, Field(ge=0, le=256)] = Field(1, description="Its share of the traffic against the "
                                                         "others' weights; 0 sends it none.")
    backup: bool = Field(False, description="Used only when no other server is up.")
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="Most concurrent connections sent to it; more wait in the backend's queue.")
    state: Literal["ready", "drain", "maint"] = Field("ready", description="ready serves; drain finishes what it "
                                                      "has and takes no new sessions; maint takes nothing.")


class HealthCheck(Strict):
    """How HAProxy checks that a server works."""

    type: Literal["tcp", "http", "none"] = Field("tcp", description="tcp connects; http sends a request and "
                                                 "checks the status; none never checks.")
    path: UrlPath = Field("/", description="The path an http check requests.")
    expectStatus: Annotated[int, Field(ge=100, le=599)] = Field(200, description="The status an http check "
                                                                 "expects.")
    interval: Duration = Field("2s", description="Time between two checks of a server.")
    fall: Annotated[int, Field(ge=1, le=100)] = Field(3, description="Failed checks in a row that mark a server "
                                                       "DOWN.")
    rise: Annotated[int, Field(ge=1, le=100)] = Field(2, description="Passed checks in a row that mark it UP "
                                                       "again.")


class BackendTimeouts(Strict):
    """HAProxy's timeouts for this backend."""

    connect: Duration = Field("5s", description="Longest wait for a connection to a server.")
    server: Duration = Field("30s", description="Longest silence from a server in a request.")
    queue: Duration = Field("30s", description="Longest wait in the queue for a free server.")


class BackendSpec(Placement):
    """An HAProxy backend: its servers, how requests are spread and how servers are checked."""

    mode: Literal["http", "tcp"] = Field("http", description="http parses requests; tcp forwards bytes.")
    balance: Literal["roundrobin", "leastconn", "source"] = Field(
        "roundrobin", description="How servers are chosen: in turn, the least busy, or by client address "
                                  "(source, rendered with hash-type consistent).")
    servers: list[Server] = Field(default_factory=list, description="The servers.")
    healthCheck: HealthCheck = Field(default_factory=HealthCheck, description="How servers are checked.")
    timeouts: BackendTimeouts = Field(default_factory=BackendTimeouts, description="Timeouts.")
    ignore: list[Literal["state", "weight"]] = Field(
        default_factory=list, description="server fields an operator may change at run time without it being drift"
    )

    @model_validator(mode="after")
    def _checks(self) -> "BackendSpec":
        if self.healthCheck.type == "http" and self.mode != "http":
            raise ValueError("healthCheck.type http needs mode http")
        return self


class Backend(Manifest):
    kind: Literal["Backend"]
    spec: BackendSpec

    def check(self, tree) -> list[tuple[str, str]]:
        # Here rather than in a model validator, so the error points at the repeated line.
        return duplicates([s.name for s in self.spec.servers], "spec.servers.{}.name", "server name")
