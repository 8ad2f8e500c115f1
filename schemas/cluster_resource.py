"""ClusterResource: a Pacemaker primitive (any agent, fencing devices too) or group, maybe
cloned or promotable, with the constraints that place it.

At-most-once semantics: Pacemaker runs it in at most one place (or as a clone on each).
The CIB id is the manifest's name, which may be any id Pacemaker takes (`res_drbd_r0`,
`WebData`). A VirtualIP with `manager: pacemaker` and a Container with `spec.cluster` also
become Pacemaker resources named after their manifests, so constraints and groups may name
them too, and no two of them may share a name in one cluster.

A constraint here is about this resource (it is the one placed: `rsc` of a location or
colocation, `then` of an order); constraints over several resources (sets, patterns) are
the Cluster's (`spec.constraints`). A name in `with`, `first`, `group` is a resource's
manifest name or a clone's id (`db-clone`), and means the top of that resource (its clone
when it is cloned).

Secrets: any parameter may be `{file: ...}` or `{env: ...}`; reconcile stores the value
with Pacemaker's cibsecret layout on every node and the CIB holds only `lrm://`. A
parameter whose name says it holds a password (passwd, password, secret, api_key, ...)
must be given so.
"""
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Agent, Manifest, Metadata, Placement, Strict, duplicates
from schemas.galera import GALERA_AGENT, check_galera_resource
from schemas.pacemaker import (
    Colocation, Location, NVSets, Operation, Order, PacemakerId, ParamSets, REF_OR_ID, Value, interval_ms,
    PASSWORD_PARAM_SCHEMA, looks_like_a_password, set_values,
)


MARKER = "reconcile-managed"
"""The meta attribute that marks a CIB resource reconcile created or rewrote (reserved)."""


class ResourceMetadata(Metadata):
    """The resource's name: its CIB id (any id Pacemaker takes), and labels."""

    name: PacemakerId = Field(  # type: ignore[assignment]
        description="The resource's CIB id: letters, digits, '_', '.', '-', starting with a letter or '_'.")


class Clone(Strict):
    """A clone of the resource: an instance on several nodes; `promotable` gives the
    instances roles (Promoted/Unpromoted) as for DRBD, PostgreSQL, Galera."""

    id: PacemakerId | None = Field(None, description="default: NAME-clone")
    promotable: bool = Field(
        False, description="Give the instances roles: one (promoted-max) Promoted, the others Unpromoted")
    meta: NVSets | None = Field(None, description="the clone's meta attributes: clone-max, notify, interleave, ...")
    description: Value | None = Field(None, description="The clone's description attribute")
    legacy: bool = Field(False, description="write the Pacemaker 1.1 <master> element (only with promotable)")

    @model_validator(mode="after")
    def _legacy(self) -> "Clone":
        if self.legacy and not self.promotable:
            raise ValueError("legacy (<master>) is only for promotable clones")
        return self


class ClusterResourceSpec(Placement):
    """A Pacemaker primitive (agent) or group, maybe cloned or promotable, with the constraints
    that place it."""

    agent: Agent | None = Field(None, description="The resource agent of a primitive: ocf:PROVIDER:TYPE, "
                                "systemd:UNIT, lsb:SCRIPT, service:NAME or stonith:TYPE (a fencing device).")
    group: list[REF_OR_ID] | None = Field(None, description="make this a group of the named resources, in order")
    description: Value | None = Field(None, description="Pacemaker's description attribute.")
    params: ParamSets | None = Field(
        None, description="instance attributes (the agent's parameters); a value may be a secret reference "
                          "({file: /path} or {env: NAME}), and must be for a password",
        json_schema_extra=PASSWORD_PARAM_SCHEMA)
    meta: NVSets | None = Field(None, description="meta attributes of the primitive or group, e.g. "
                                                  "resource-stickiness, target-role")
    utilization: NVSets | None = Field(None, description="what it uses for placement-strategy (cpu, memory, ...)")
    operations: list[Operation] = Field(default_factory=list, description="Operations with their intervals, "
                                        "timeouts and roles (a monitor makes Pacemaker notice failures).")
    operationsId: PacemakerId | None = Field(None, description="an id on <operations> (crmsh writes one)")
    clone: bool | Clone = Field(False, description="true: run it on every node (a clone); or the clone's options "
                                                   "(promotable, meta, id)")
    location: list[Location] = Field(default_factory=list, description="Where it may run: by node, rules, roles.")
    colocation: list[Colocation] = Field(default_factory=list, description="Resources it must run next to (or "
                                         "away from), with roles.")
    order: list[Order] = Field(default_factory=list, description="Resources (and actions) that come before it.")
    startAfter: list[REF_OR_ID] = Field(default_factory=list, description="shorthand: order {first: X} for each: "
                                        "started before this one and stopped after it")

    @model_validator(mode="after")
    def _checks(self) -> "ClusterResourceSpec":
        if self.cluster is None:
            raise ValueError("a ClusterResource needs spec.cluster")
        if (self.agent is None) == (self.group is None):
            raise ValueError("give exactly one of agent (a primitive) or group (a group of resources)")
        if self.group is not None and (self.params or self.operations or self.utilization):
            raise ValueError("a group takes no params, operations or utilization; put them on its members")
        if self.group is not None and not self.group:
            raise ValueError("a group needs at least one member")
        return self

    @property
    def promotable(self) -> bool:
        """A promotable clone: `promotable: true`, the meta attribute, or a legacy <master>."""
        clone = self.clone_spec
        return clone is not None and (clone.promotable or clone.legacy
                                      or set_values(clone.meta).get("promotable") == "true")

    @property
    def clone_spec(self) -> Clone | None:
        if self.clone is True:
            return Clone()
        return self.clone or None

    def top_id(self, name: str) -> str:
        """The id constraints name: the clone's for a cloned resource."""
        clone = self.clone_spec
        return (clone.id or f"{name}-clone") if clone is not None else name


class ClusterResource(Manifest):
    kind: Literal["ClusterResource"]
    metadata: ResourceMetadata  # type: ignore[assignment]
    spec: ClusterResourceSpec

    def check(self, tree) -> list[tuple[str, str]]:
        spec, name, cluster = self.spec, self.metadata.name, self.spec.cluster
        members = tree.nodes_of(self)
        problems = [(f"spec.location.{i}.node", f"node {loc.node!r} is not in cluster {cluster!r}")
                    for i, loc in enumerate(spec.location) if loc.node is not None and loc.node not in members]
        problems += duplicates(list(spec.startAfter), "spec.startAfter.{}", "startAfter entry")
        problems += duplicates(list(spec.group or []), "spec.group.{}", "group member")
        problems += duplicates([(o.name, interval_ms(o.interval)) for o in spec.operations], "spec.operations.{}",
                               "operation (name, interval): Pacemaker tells operations apart by name and interval, "
                               "so monitors of different roles need different intervals")
        owner = tree.get("Cluster", cluster)
        if owner is not None and owner.spec.stack != "pacemaker":
            problems.append(("spec.cluster", f"cluster {cluster!r} has stack: {owner.spec.stack}: it runs no Pacemaker"))
        meta = set_values(spec.meta)
        clone = spec.clone_spec
        if clone is not None:
            meta |= set_values(clone.meta)
        if MARKER in meta:
            problems.append((f"spec.meta.{MARKER}" if isinstance(spec.meta, dict) and MARKER in spec.meta else "spec.meta",
                             "reserved: reconcile marks the resources it writes with it"))
        problems += _password_params(spec)
        for kind in ("VirtualIP", "Container"):
            other = tree.get(kind, name)
            if other is not None and pacemaker_resource_of(kind, other) == cluster:
                problems.append(("metadata.name", f"{kind} {name!r} is also Pacemaker resource {name!r} in cluster "
                                 f"{cluster!r}: rename one of them"))
        refs = [(f"spec.colocation.{i}.with", c.with_) for i, c in enumerate(spec.colocation)]
        refs += [(f"spec.order.{i}.first", o.first) for i, o in enumerate(spec.order)]
        refs += [(f"spec.startAfter.{i}", r) for i, r in enumerate(spec.startAfter)]
        for field, ref in refs:
            if ref in (name, spec.top_id(name)):
                problems.append((field, "a resource cannot refer to itself"))
            else:
                problems += [(field, m) for m in resolve_problems(tree, cluster, ref)]
        for i, member in enumerate(spec.group or []):
            if member == name:
                problems.append((f"spec.group.{i}", "a group cannot contain itself"))
                continue
            other = tree.get("ClusterResource", member)
            problems += [(f"spec.group.{i}", m) for m in resolve_problems(tree, cluster, member, top_only=True)]
            if other is not None and other.spec.group is not None:
                problems.append((f"spec.group.{i}", f"{member!r} is a group: groups cannot be nested"))
            if other is not None and other.spec.clone_spec is not None:
                problems.append((f"spec.group.{i}", f"{member!r} is a clone: clone the group instead"))
            other_group = next((g for g in tree.memo(_groups_by_member).get((cluster, member), []) if g is not self),
                               None)
            if other_group is not None:
                problems.append((f"spec.group.{i}", f"{member!r} is also a member of group "
                                 f"{other_group.metadata.name!r}: a resource can be in one group only"))
        problems += _role_problems(tree, self)
        if spec.agent == GALERA_AGENT:  # who may bootstrap a new Galera cluster is written down (schemas/galera.py)
            problems += check_galera_resource(set_values(spec.params), cluster, tree)
        return problems


def _password_params(spec: ClusterResourceSpec) -> list[tuple[str, str]]:
    problems = []
    sets = spec.params
    entries = [(f"spec.params.{k}", k, v) for k, v in sets.items()] if isinstance(sets, dict) else \
        [(f"spec.params.{i}.values.{k}", k, v) for i, s in enumerate(sets or []) for k, v in s.values.items()]
    for field, key, value in entries:
        if isinstance(value, str) and looks_like_a_password(key):
            problems.append((field, f"{key} holds a password inline: give it as a secret reference ({{file: /path}} "
                             "or {env: NAME}); reconcile keeps it out of git and the CIB (cibsecret)"))
    return problems


def _groups_by_member(tree) -> dict[tuple[str, str], list[Manifest]]:
    """(cluster, member name) → the groups listing it, once each, in tree order."""
    out: dict[tuple[str, str], list[Manifest]] = {}
    for g in tree.of_kind("ClusterResource"):
        for member in dict.fromkeys(g.spec.group or []):
            out.setdefault((g.spec.cluster, member), []).append(g)
    return out


def pacemaker_resource_of(kind: str, manifest: Manifest) -> str | None:
    """The cluster whose Pacemaker runs this VirtualIP or Container, if any."""
    spec = manifest.spec
    if kind == "VirtualIP" and getattr(spec, "manager", None) != "pacemaker":
        return None
    return getattr(spec, "cluster", None)


def resource_tops(tree, cluster: str) -> dict[str, str]:
    """Every id a constraint may name in `cluster` → the manifest name it belongs to: each
    Pacemaker resource's name, and the clone id of a cloned ClusterResource (from a
    per-tree index)."""
    return tree.memo(_tops_by_cluster).get(cluster, {})


def _tops_by_cluster(tree) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for m in tree.of_kind("ClusterResource"):
        tops = out.setdefault(m.spec.cluster, {})
        tops[m.metadata.name] = m.metadata.name
        if m.spec.clone_spec is not None:
            tops[m.spec.top_id(m.metadata.name)] = m.metadata.name
    for kind in ("VirtualIP", "Container"):
        for m in tree.of_kind(kind):
            cluster = pacemaker_resource_of(kind, m)
            if cluster is not None:
                out.setdefault(cluster, {}).setdefault(m.metadata.name, m.metadata.name)
    return out


def resolve_problems(tree, cluster: str, ref: str, top_only: bool = False) -> list[str]:
    """Why `ref` names no Pacemaker resource (or tag) of `cluster`: [] when it does."""
    tops = resource_tops(tree, cluster)
    if ref in tops and (not top_only or tops[ref] == ref):
        return []
    owner = tree.get("Cluster", cluster)
    tags = {t.id for t in (getattr(owner.spec, "tags", None) or [])} if owner is not None else set()
    if ref in tags and not top_only:
        return []
    for kind in ("ClusterResource", "VirtualIP", "Container"):
        m = tree.get(kind, ref)
        if m is not None:
            where = m.spec.cluster if kind == "ClusterResource" else pacemaker_resource_of(kind, m)
            if where is None:
                return [f"{kind} {ref!r} is not a Pacemaker resource (a VirtualIP needs manager: pacemaker, a "
                        "Container spec.cluster)"]
            return [f"{ref!r} is a Pacemaker resource of cluster {where!r}, not of {cluster!r}"]
    return [f"unknown resource {ref!r}: no ClusterResource, Pacemaker VirtualIP or clustered Container of cluster "
            f"{cluster!r} (nor a clone id or a tag) has that name"]


PROMOTED_ROLES = ("Promoted", "Unpromoted", "Master", "Slave")


def _role_problems(tree, resource: ClusterResource) -> list[tuple[str, str]]:
    """A Promoted/Unpromoted role only means something for a promotable clone."""
    spec, cluster = resource.spec, resource.spec.cluster
    tops = resource_tops(tree, cluster)

    def promotable(ref: str) -> bool:
        m = tree.get("ClusterResource", tops.get(ref, ref))
        return m is not None and m.spec.promotable

    problems = []
    me = promotable(resource.metadata.name)
    for i, c in enumerate(spec.colocation):
        if c.withRole in PROMOTED_ROLES and c.with_ in tops and not promotable(c.with_):
            problems.append((f"spec.colocation.{i}.withRole", f"{c.with_!r} is not a promotable clone: it has no "
                             f"{c.withRole} role"))
        if c.role in PROMOTED_ROLES and not me:
            problems.append((f"spec.colocation.{i}.role", f"this resource is not a promotable clone: it has no "
                             f"{c.role} role"))
    for i, o in enumerate(spec.order):
        if o.firstAction in ("promote", "demote") and o.first in tops and not promotable(o.first):
            problems.append((f"spec.order.{i}.firstAction", f"{o.first!r} is not a promotable clone: it is never "
                             f"{o.firstAction}d"))
        if o.thenAction in ("promote", "demote") and not me:
            problems.append((f"spec.order.{i}.thenAction", f"this resource is not a promotable clone: it is never "
                             f"{o.thenAction}d"))
    for i, op in enumerate(spec.operations):
        if op.role in PROMOTED_ROLES and not me and not _in_promotable_group(tree, resource):
            problems.append((f"spec.operations.{i}.role", f"this resource is not a promotable clone: it has no "
                             f"{op.role} role"))
    return problems


def _in_promotable_group(tree, resource: ClusterResource) -> bool:
    groups = tree.memo(_groups_by_member).get((resource.spec.cluster, resource.metadata.name), [])
    return bool(groups) and groups[0].spec.promotable
