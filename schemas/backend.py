"""Backend: an HAProxy backend, its balance algorithm, health check and servers."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import duplicates, Duration, IPv4, Manifest, Name, Placement, Port, Strict, UrlPath


class Server(Strict):
    name: Name
    address: IPv4
    port: Port
    weight: Annotated[int, Field(ge=0, le=256)] = 1
    backup: bool = False
    maxconn: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    state: Literal["ready", "drain", "maint"] = "ready"


class HealthCheck(Strict):
    type: Literal["tcp", "http", "none"] = "tcp"
    path: UrlPath = "/"
    expectStatus: Annotated[int, Field(ge=100, le=599)] = 200
    interval: Duration = "2s"
    fall: Annotated[int, Field(ge=1, le=100)] = 3
    rise: Annotated[int, Field(ge=1, le=100)] = 2


class BackendTimeouts(Strict):
    connect: Duration = "5s"
    server: Duration = "30s"
    queue: Duration = "30s"


class BackendSpec(Placement):
    mode: Literal["http", "tcp"] = "http"
    balance: Literal["roundrobin", "leastconn", "source"] = "roundrobin"
    servers: list[Server] = Field(default_factory=list)
    healthCheck: HealthCheck = Field(default_factory=HealthCheck)
    timeouts: BackendTimeouts = Field(default_factory=BackendTimeouts)
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
