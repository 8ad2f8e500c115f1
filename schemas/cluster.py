"""Cluster: a Corosync 3 + Pacemaker 2 cluster, or a plain group of nodes (`stack: none`).

A Cluster names its nodes and their addresses; other kinds place themselves on "all nodes
of cluster X" through `spec.cluster`. With `stack: pacemaker` the Cluster reconciler also
writes corosync.conf and the cluster properties.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.common import duplicates, Duration, IPv4Prefix, Manifest, Name, SecretRef, Strict

PropertyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
PropertyValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:+-]{1,128}$")]


class ClusterNode(Strict):
    name: Name
    id: Annotated[int, Field(ge=1, le=65535)]
    address: IPv4Prefix = Field(description="ring0 address with prefix, e.g. 192.0.2.11/24")


class Quorum(Strict):
    twoNode: bool | None = Field(None, description="default: true for exactly two nodes")
    waitForAll: bool | None = None


class ClusterSpec(Strict):
    nodes: Annotated[list[ClusterNode], Field(min_length=1)]
    stack: Literal["pacemaker", "none"] = "pacemaker"
    transport: Literal["knet", "udpu"] = "knet"
    authkey: SecretRef | None = Field(None, description="corosync authkey file; enables knet crypto")
    token: Duration = "3000ms"
    quorum: Quorum = Field(default_factory=Quorum)
    stonithEnabled: bool | None = Field(
        None, description="required with stack: pacemaker; say false only where no shared data can be corrupted"
    )
    properties: dict[PropertyName, PropertyValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _checks(self) -> "ClusterSpec":
        if self.stack == "pacemaker" and self.stonithEnabled is None:
            raise ValueError("stonithEnabled must be stated explicitly (true or false) for a Pacemaker cluster")
        if "stonith-enabled" in self.properties:
            raise ValueError("set stonith-enabled with spec.stonithEnabled, not in properties")
        return self


class Cluster(Manifest):
    kind: Literal["Cluster"]
    spec: ClusterSpec

    def claims(self) -> list[tuple[str, str]]:
        # A node belongs to one cluster only.
        return [(f"cluster-member:{n.name}", f"spec.nodes.{i}.name") for i, n in enumerate(self.spec.nodes)]

    def check(self, tree) -> list[tuple[str, str]]:
        nodes = self.spec.nodes
        return (duplicates([n.name for n in nodes], "spec.nodes.{}.name", "node name")
                + duplicates([n.id for n in nodes], "spec.nodes.{}.id", "node id")
                + duplicates([n.address.split("/")[0] for n in nodes], "spec.nodes.{}.address", "node address"))
