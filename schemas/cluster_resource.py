"""ClusterResource: a Pacemaker primitive, group or clone, with its constraints.

At-most-once semantics: Pacemaker runs it in at most one place (or as a clone on each).
The CIB id is the manifest's name. A VirtualIP with `manager: pacemaker` and a Container
with `spec.cluster` also become Pacemaker resources named after their manifests, so
constraints and groups may name them too, and no two of them may share a name in one
cluster.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Agent, Duration, Manifest, Name, ParamName, ParamValue, Placement, Score, Strict, duplicates

MARKER = "reconcile-managed"
"""The meta attribute that marks a CIB object as created by reconcile (reserved)."""


class Operation(Strict):
    """One operation of the resource agent, as Pacemaker schedules it."""

    name: Literal["monitor", "start", "stop", "promote", "demote", "migrate_to", "migrate_from", "reload"] = Field(
        description="The agent action.")
    interval: Duration = Field("0s", description="How often it recurs (monitor); 0s for one-off actions.")
    timeout: Duration | None = Field(None, description="How long Pacemaker waits for it (default: the agent's).")


class Location(Strict):
    """A preference (or, with a negative score, an aversion) for one node."""

    node: Name = Field(description="The node, by name.")
    score: Score = Field("INFINITY", description="How much: INFINITY pins it there, -INFINITY keeps it away, a "
                         "number weighs against other scores.")


class Colocation(Strict):
    """Run next to (or, with a negative score, away from) another resource."""

    with_: Name = Field(alias="with", description="The other resource (a ClusterResource, a Pacemaker VirtualIP "
                        "or a Pacemaker-placed Container).")
    score: Score = Field("INFINITY", description="INFINITY: always together; -INFINITY: never together.")


class ClusterResourceSpec(Placement):
    """A Pacemaker primitive (agent) or group, optionally cloned, with its constraints."""

    agent: Agent | None = Field(None, description="The resource agent of a primitive: ocf:PROVIDER:TYPE, "
                                "systemd:UNIT, lsb:SCRIPT or stonith:TYPE.")
    params: dict[ParamName, ParamValue] = Field(default_factory=dict, description="The agent's parameters "
                                                "(instance attributes), e.g. ip for IPaddr2.")
    operations: list[Operation] = Field(default_factory=list, description="Operations with their intervals and "
                                        "timeouts (a monitor makes Pacemaker notice failures).")
    meta: dict[ParamName, ParamValue] = Field(default_factory=dict, description="Meta attributes, e.g. "
                                              "resource-stickiness or target-role.")
    group: list[Name] | None = Field(None, description="make this a group of the named resources, in order")
    clone: bool = Field(False, description="Run it on every node (a clone) instead of in one place.")
    location: list[Location] = Field(default_factory=list, description="Node preferences.")
    colocation: list[Colocation] = Field(default_factory=list, description="Resources it must run next to (or "
                                         "away from).")
    startAfter: list[Name] = Field(default_factory=list, description="Resources that must be started before "
                                   "this one (and stopped after it): mandatory order constraints.")

    @model_validator(mode="after")
    def _checks(self) -> "ClusterResourceSpec":
        if self.cluster is None:
            raise ValueError("a ClusterResource needs spec.cluster")
        if (self.agent is None) == (self.group is None):
            raise ValueError("give exactly one of agent (a primitive) or group (a group of resources)")
        if self.group is not None and (self.params or self.operations):
            raise ValueError("a group takes no params or operations; put them on its members")
        if self.group is not None and not self.group:
            raise ValueError("a group needs at least one member")
        return self


class ClusterResource(Manifest):
    kind: Literal["ClusterResource"]
    spec: ClusterResourceSpec

    def references(self) -> list[tuple[str, str, str]]:
        refs = [("ClusterResource|VirtualIP|Container", m, f"spec.group.{i}") for i, m in enumerate(self.spec.group or [])]
        refs += [("ClusterResource|VirtualIP|Container", c.with_, f"spec.colocation.{i}.with")
                 for i, c in enumerate(self.spec.colocation)]
        refs += [("ClusterResource|VirtualIP|Container", r, f"spec.startAfter.{i}")
                 for i, r in enumerate(self.spec.startAfter)]
        return refs

    def check(self, tree) -> list[tuple[str, str]]:
        spec, name, cluster = self.spec, self.metadata.name, self.spec.cluster
        members = tree.nodes_of(self)
        problems = [(f"spec.location.{i}.node", f"node {loc.node!r} is not in cluster {cluster!r}")
                    for i, loc in enumerate(spec.location) if loc.node not in members]
        problems += duplicates([loc.node for loc in spec.location], "spec.location.{}.node", "location node")
        problems += duplicates([c.with_ for c in spec.colocation], "spec.colocation.{}.with", "colocation")
        problems += duplicates(list(spec.startAfter), "spec.startAfter.{}", "startAfter entry")
        problems += duplicates(list(spec.group or []), "spec.group.{}", "group member")
        problems += duplicates([(o.name, o.interval) for o in spec.operations], "spec.operations.{}",
                               "operation (name, interval)")
        owner = tree.get("Cluster", cluster)
        if owner is not None and owner.spec.stack != "pacemaker":
            problems.append(("spec.cluster", f"cluster {cluster!r} has stack: {owner.spec.stack}: it runs no Pacemaker"))
        if not name[0].isalpha():
            problems.append(("metadata.name", "a Pacemaker resource id must start with a letter"))
        if MARKER in spec.meta:
            problems.append((f"spec.meta.{MARKER}", "reserved: reconcile marks the objects it creates with it"))
        for kind in ("VirtualIP", "Container"):
            other = tree.get(kind, name)
            if other is not None and _pacemaker_resource_of(kind, other) == cluster:
                problems.append(("metadata.name", f"{kind} {name!r} is also Pacemaker resource {name!r} in cluster "
                                 f"{cluster!r}: rename one of them"))
        refs = [(f"spec.colocation.{i}.with", c.with_) for i, c in enumerate(spec.colocation)]
        refs += [(f"spec.startAfter.{i}", r) for i, r in enumerate(spec.startAfter)]
        refs += [(f"spec.group.{i}", m) for i, m in enumerate(spec.group or [])]
        for field, ref in refs:
            if ref == name:
                problems.append((field, "a resource cannot refer to itself"))
                continue
            where = _resource_cluster(tree, ref)
            if where is _UNKNOWN:
                continue  # the loader reports unknown names
            if where != cluster:
                problems.append((field, f"{ref!r} is not a Pacemaker resource of cluster {cluster!r} (a VirtualIP "
                                 "needs manager: pacemaker, a Container spec.cluster)"))
        for i, member in enumerate(spec.group or []):
            other = tree.get("ClusterResource", member)
            if other is not None and other.spec.group is not None:
                problems.append((f"spec.group.{i}", f"{member!r} is a group: groups cannot be nested"))
            if other is not None and other.spec.clone:
                problems.append((f"spec.group.{i}", f"{member!r} is a clone: clone the group instead"))
            other_group = next((g for g in tree.memo(_groups_by_member).get((cluster, member), []) if g is not self),
                               None)
            if other_group is not None:
                problems.append((f"spec.group.{i}", f"{member!r} is also a member of group "
                                 f"{other_group.metadata.name!r}: a resource can be in one group only"))
        return problems


_UNKNOWN = object()


def _groups_by_member(tree) -> dict[tuple[str, str], list[Manifest]]:
    """(cluster, member name) → the groups listing it, once each, in tree order."""
    out: dict[tuple[str, str], list[Manifest]] = {}
    for g in tree.of_kind("ClusterResource"):
        for member in dict.fromkeys(g.spec.group or []):
            out.setdefault((g.spec.cluster, member), []).append(g)
    return out


def _pacemaker_resource_of(kind: str, manifest: Manifest) -> str | None:
    """The cluster whose Pacemaker runs this VirtualIP or Container, if any."""
    spec = manifest.spec
    if kind == "VirtualIP" and getattr(spec, "manager", None) != "pacemaker":
        return None
    return getattr(spec, "cluster", None)


def _resource_cluster(tree, name: str):
    """The cluster in which `name` is a Pacemaker resource; None if it is not one; _UNKNOWN
    if no manifest has that name."""
    found = False
    for kind in ("ClusterResource", "VirtualIP", "Container"):
        m = tree.get(kind, name)
        if m is None:
            continue
        found = True
        cluster = m.spec.cluster if kind == "ClusterResource" else _pacemaker_resource_of(kind, m)
        if cluster is not None:
            return cluster
    return None if found else _UNKNOWN
