"""ClusterResource: a Pacemaker primitive, group or clone, with its constraints.

At-most-once semantics: Pacemaker runs it in at most one place (or as a clone on each).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.common import Duration, Manifest, Name, Placement, Strict

Agent = Annotated[
    str,
    StringConstraints(
        pattern=r"^(ocf:[a-z0-9_-]+:[A-Za-z0-9_.-]+|systemd:[A-Za-z0-9@_.-]+|lsb:[A-Za-z0-9_.-]+|stonith:[A-Za-z0-9_.-]+)$"
    ),
]
ParamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
ParamValue = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,1024}$")]
Score = int | Literal["INFINITY", "-INFINITY"]


class Operation(Strict):
    name: Literal["monitor", "start", "stop", "promote", "demote", "migrate_to", "migrate_from", "reload"]
    interval: Duration = "0s"
    timeout: Duration | None = None


class Location(Strict):
    node: Name
    score: Score = "INFINITY"


class Colocation(Strict):
    with_: Name = Field(alias="with")
    score: Score = "INFINITY"


class ClusterResourceSpec(Placement):
    agent: Agent | None = None
    params: dict[ParamName, ParamValue] = Field(default_factory=dict)
    operations: list[Operation] = Field(default_factory=list)
    meta: dict[ParamName, ParamValue] = Field(default_factory=dict)
    group: list[Name] | None = Field(None, description="make this a group of the named resources, in order")
    clone: bool = False
    location: list[Location] = Field(default_factory=list)
    colocation: list[Colocation] = Field(default_factory=list)
    startAfter: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> "ClusterResourceSpec":
        if self.cluster is None:
            raise ValueError("a ClusterResource needs spec.cluster")
        if (self.agent is None) == (self.group is None):
            raise ValueError("give exactly one of agent (a primitive) or group (a group of resources)")
        if self.group is not None and (self.params or self.operations):
            raise ValueError("a group takes no params or operations; put them on its members")
        return self


class ClusterResource(Manifest):
    kind: Literal["ClusterResource"]
    spec: ClusterResourceSpec

    def references(self) -> list[tuple[str, str, str]]:
        refs = [("ClusterResource", m, f"spec.group.{i}") for i, m in enumerate(self.spec.group or [])]
        refs += [("ClusterResource|VirtualIP|Container", c.with_, f"spec.colocation.{i}.with")
                 for i, c in enumerate(self.spec.colocation)]
        refs += [("ClusterResource|VirtualIP|Container", r, f"spec.startAfter.{i}")
                 for i, r in enumerate(self.spec.startAfter)]
        return refs

    def check(self, tree) -> list[tuple[str, str]]:
        members = tree.nodes_of(self)
        return [(f"spec.location.{i}.node", f"node {loc.node!r} is not in cluster {self.spec.cluster!r}")
                for i, loc in enumerate(self.spec.location) if loc.node not in members]
