"""Container: an LXC system container on a node (or, with spec.cluster, placed by Pacemaker)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.common import AbsolutePath, IfName, IPv4Prefix, Manifest, Placement, Strict

DistroWord = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,31}$")]
MemorySize = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,12}[KMG]?$")]
CpuSet = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3}(-[0-9]{1,3})?)*$")]
InitArg = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./:=@%+,-]{1,256}$")]


class Download(Strict):
    distribution: DistroWord
    release: DistroWord
    architecture: DistroWord = "amd64"


class LocalImage(Strict):
    rootfs: AbsolutePath = Field(description="rootfs tarball")
    metadata: AbsolutePath | None = Field(None, description="metadata tarball")


class Limits(Strict):
    memory: MemorySize | None = Field(None, description="memory limit, e.g. 256M")
    cpus: CpuSet | None = Field(None, description="CPU set, e.g. 0 or 0-1")
    cpuWeight: Annotated[int, Field(ge=1, le=10000)] | None = None


class Network(Strict):
    type: Literal["none", "bridge"] = "none"
    bridge: IfName | None = None
    address: IPv4Prefix | None = None

    @model_validator(mode="after")
    def _bridge(self) -> "Network":
        if self.type == "bridge" and self.bridge is None:
            raise ValueError("network type bridge needs network.bridge")
        if self.type == "none" and (self.bridge or self.address):
            raise ValueError("network type none takes no bridge or address")
        return self


class ContainerSpec(Placement):
    template: Literal["busybox", "download", "local"]
    download: Download | None = None
    local: LocalImage | None = None
    state: Literal["running", "stopped", "frozen"] = "running"
    autostart: bool = False
    startOrder: Annotated[int, Field(ge=0, le=1000)] | None = None
    limits: Limits = Field(default_factory=Limits)
    network: Network = Field(default_factory=Network)
    init: list[InitArg] | None = Field(None, description="command run as the container's init (lxc.init.cmd)")
    restartPolicy: Literal["onChange", "never"] = Field(
        "onChange", description="may apply restart the container for a change that needs it?"
    )
    lxcPath: AbsolutePath = "/var/lib/lxc"

    @model_validator(mode="after")
    def _template_options(self) -> "ContainerSpec":
        if (self.template == "download") != (self.download is not None):
            raise ValueError("template download needs spec.download, and only it takes one")
        if (self.template == "local") != (self.local is not None):
            raise ValueError("template local needs spec.local, and only it takes one")
        return self


class Container(Manifest):
    kind: Literal["Container"]
    spec: ContainerSpec

    def claims(self) -> list[tuple[str, str]]:
        out = [(f"container:{self.spec.lxcPath}:{self.metadata.name}", "metadata.name")]
        if self.spec.network.address:
            out.append((f"ip:{self.spec.network.address.split('/')[0]}", "spec.network.address"))
        return out
