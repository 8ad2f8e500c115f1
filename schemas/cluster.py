"""Cluster: a Corosync 3 + Pacemaker 2 cluster, or a plain group of nodes (`stack: none`).

A Cluster names its nodes and their addresses; other kinds place themselves on "all nodes
of cluster X" through `spec.cluster`. With `stack: pacemaker` the Cluster reconciler also
writes corosync.conf (and the authkey), starts Corosync and Pacemaker, and sets the
cluster properties in the CIB.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from schemas.common import (
    duplicates, Duration, IPv4Prefix, Manifest, Name, PropertyName, PropertyValue, SecretRef, Strict,
)

# Written by Pacemaker itself (or by spec.stonithEnabled): a manifest may not set them.
RESERVED_PROPERTIES = {
    "stonith-enabled": "set it with spec.stonithEnabled",
    "dc-version": "Pacemaker maintains it",
    "cluster-infrastructure": "Pacemaker maintains it",
    "cluster-name": "it comes from metadata.name",
    "have-watchdog": "Pacemaker maintains it",
}


class ClusterNode(Strict):
    """One member of the cluster: its name (the node's host name), Corosync id and address."""

    name: Name = Field(description="The node's name: its host name (a node is the machine it runs on).")
    id: Annotated[int, Field(ge=1, le=65535)] = Field(description="Corosync nodeid, unique in the cluster")
    address: IPv4Prefix = Field(description="ring0 address with prefix, e.g. 192.0.2.11/24")


class Quorum(Strict):
    """Corosync votequorum options."""

    twoNode: bool | None = Field(None, description="default: true for exactly two nodes")
    waitForAll: bool | None = Field(None, description="default: Corosync's (on with twoNode)")


def _stonith_stated(schema: dict) -> None:
    # As the tree check says: a Pacemaker cluster states stonithEnabled; a group of nodes
    # takes none of the Pacemaker fields.
    schema["if"] = {"properties": {"stack": {"const": "none"}}, "required": ["stack"]}
    schema["then"] = {"not": {"anyOf": [{"required": [f]} for f in ("authkey", "stonithEnabled")]}}
    schema["else"] = {"required": ["stonithEnabled"]}


class ClusterSpec(Strict):
    """The members of the cluster and, with stack pacemaker, how Corosync and Pacemaker run."""

    model_config = ConfigDict(json_schema_extra=_stonith_stated)

    nodes: Annotated[list[ClusterNode], Field(min_length=1)] = Field(description="The members, in order.")
    stack: Literal["pacemaker", "none"] = Field("pacemaker", description="pacemaker: run Corosync and Pacemaker; "
                                                "none: only a named group of nodes that other kinds place on.")
    transport: Literal["knet", "udpu"] = Field("knet", description="Corosync's transport: knet (encryption, "
                                               "several links) or udpu.")
    authkey: SecretRef | None = Field(
        None, description="Corosync authkey (as written by corosync-keygen); enables knet crypto (aes256/sha256)"
    )
    token: Duration = Field(
        "1000ms", description="totem token timeout; a dead node is noticed after token + consensus (1.2 x token)"
    )
    quorum: Quorum = Field(default_factory=Quorum, description="Corosync votequorum options.")
    stonithEnabled: bool | None = Field(
        None, description="required with stack: pacemaker; say false only where no shared data can be corrupted"
    )
    properties: dict[PropertyName, PropertyValue] = Field(
        default_factory=dict, description="Pacemaker cluster properties (crm_config), e.g. no-quorum-policy"
    )


class Cluster(Manifest):
    kind: Literal["Cluster"]
    spec: ClusterSpec

    def claims(self) -> list[tuple[str, str]]:
        # A node belongs to one cluster only.
        return [(f"cluster-member:{n.name}", f"spec.nodes.{i}.name") for i, n in enumerate(self.spec.nodes)]

    def check(self, tree) -> list[tuple[str, str]]:
        spec = self.spec
        nodes = spec.nodes
        problems = (duplicates([n.name for n in nodes], "spec.nodes.{}.name", "node name")
                    + duplicates([n.id for n in nodes], "spec.nodes.{}.id", "node id")
                    + duplicates([n.address.split("/")[0] for n in nodes], "spec.nodes.{}.address", "node address"))
        if spec.stack == "none":
            for field in ("authkey", "stonithEnabled"):
                if getattr(spec, field) is not None:
                    problems.append((f"spec.{field}", "only for stack: pacemaker"))
            if spec.properties:
                problems.append(("spec.properties", "only for stack: pacemaker"))
            for kind, m in _derived_resources(tree, self.metadata.name):
                what = "manager: pacemaker" if kind == "VirtualIP" else "spec.cluster"
                problems.append(("spec.stack", f"{kind} {m.metadata.name!r} ({what}) needs Pacemaker in this "
                                 "cluster: say stack: pacemaker, or place it with nodes"))
            return problems
        if spec.stonithEnabled is None:
            problems.append(("spec.stonithEnabled", "must be stated explicitly (true or false) for a Pacemaker "
                             "cluster: true needs a stonith ClusterResource, false is only safe without shared data"))
        for name in spec.properties:
            if name in RESERVED_PROPERTIES:
                problems.append((f"spec.properties.{name}", f"not allowed here: {RESERVED_PROPERTIES[name]}"))
        if spec.authkey is not None and spec.transport != "knet":
            problems.append(("spec.authkey", "Corosync encrypts only the knet transport; use transport: knet"))
        if spec.quorum.twoNode and len(nodes) != 2:
            problems.append(("spec.quorum.twoNode", f"two_node is for clusters of exactly two nodes (this has {len(nodes)})"))
        if not self.metadata.name[0].isalpha():
            problems.append(("metadata.name", "a Pacemaker cluster name must start with a letter"))
        problems += _resource_name_clashes(self, tree)
        return problems


def _resource_name_clashes(cluster: Cluster, tree) -> list[tuple[str, str]]:
    """Pacemaker resources made from other kinds (a VirtualIP with manager pacemaker, a
    Container with spec.cluster) are named after their manifest: two of them with one name
    in this cluster would be one CIB id. (A ClusterResource checks its own name.)"""
    seen: dict[str, str] = {}
    problems = []
    for kind, manifest in _derived_resources(tree, cluster.metadata.name):
        name = manifest.metadata.name
        if name in seen and seen[name] != kind:
            problems.append(("metadata.name", f"{seen[name]} {name!r} and {kind} {name!r} would both be Pacemaker "
                             f"resource {name!r} in this cluster: rename one of them"))
        seen.setdefault(name, kind)
        if not name[0].isalpha():
            problems.append(("metadata.name", f"{kind} {name!r} becomes a Pacemaker resource in this cluster, and a "
                             "Pacemaker id must start with a letter: rename it"))
    return problems


def _derived_resources(tree, cluster: str) -> list[tuple[str, Manifest]]:
    return tree.memo(_derived_by_cluster).get(cluster, [])


def _derived_by_cluster(tree) -> dict[str, list[tuple[str, Manifest]]]:
    """Cluster name → the VirtualIPs (manager pacemaker) and Containers it places."""
    out: dict[str, list[tuple[str, Manifest]]] = {}
    for vip in tree.of_kind("VirtualIP"):
        if getattr(vip.spec, "manager", None) == "pacemaker" and getattr(vip.spec, "cluster", None) is not None:
            out.setdefault(vip.spec.cluster, []).append(("VirtualIP", vip))
    for ct in tree.of_kind("Container"):
        if getattr(ct.spec, "cluster", None) is not None:
            out.setdefault(ct.spec.cluster, []).append(("Container", ct))
    return out
