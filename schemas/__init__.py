"""Pydantic models of every manifest kind, and their JSON Schema.

`KINDS` maps a kind name to its model. A kind's model validates one document; whole-tree
checks (references, conflicts) are the loader's, driven by each model's `references()`,
`claims()` and `check()`.
"""
from __future__ import annotations

from schemas.backend import Backend
from schemas.cluster import Cluster
from schemas.cluster_resource import ClusterResource
from schemas.common import API_VERSION, Manifest
from schemas.container import Container
from schemas.domain_join import DomainJoin
from schemas.frontend import Frontend
from schemas.keepalived import Keepalived
from schemas.virtual_ip import VirtualIP
from schemas.virtual_server import VirtualServer

KINDS: dict[str, type[Manifest]] = {
    "Cluster": Cluster,
    "ClusterResource": ClusterResource,
    "VirtualIP": VirtualIP,
    "Keepalived": Keepalived,
    "VirtualServer": VirtualServer,
    "Frontend": Frontend,
    "Backend": Backend,
    "Container": Container,
    "DomainJoin": DomainJoin,
}

__all__ = ["API_VERSION", "KINDS", "Manifest"] + list(KINDS)
