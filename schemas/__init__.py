"""Pydantic models of every manifest kind, and their JSON Schema.

`KINDS` maps a kind name to its model. A kind's model validates one document; whole-tree
checks (references, conflicts) are the loader's, driven by each model's `references()`,
`claims()` and `check()`.

A model's module is imported (and its pydantic classes built) the first time its kind is
looked up: a tree of Backends does not pay for the Pacemaker vocabulary. The modules that
define models do not postpone their annotations (no `from __future__ import annotations`):
pydantic would compile and evaluate each of their ~700 annotation strings when building the
classes, ~13 ms of every plan's start-up; a class used before it is defined is quoted.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from schemas.common import API_VERSION, Manifest

# kind → "module:Class"
_MODELS: dict[str, str] = {
    "Cluster": "schemas.cluster:Cluster",
    "ClusterResource": "schemas.cluster_resource:ClusterResource",
    "VirtualIP": "schemas.virtual_ip:VirtualIP",
    "Keepalived": "schemas.keepalived:Keepalived",
    "VirtualServer": "schemas.virtual_server:VirtualServer",
    "Frontend": "schemas.frontend:Frontend",
    "Backend": "schemas.backend:Backend",
    "HAProxy": "schemas.haproxy:HAProxy",
    "Container": "schemas.container:Container",
    "DomainJoin": "schemas.domain_join:DomainJoin",
    "Mount": "schemas.mount:Mount",
    "Galera": "schemas.galera:Galera",
}


class _Kinds(Mapping[str, type[Manifest]]):
    """Kind name → model class, imported on first use."""

    def __init__(self, targets: dict[str, str]):
        self._targets = targets
        self._loaded: dict[str, type[Manifest]] = {}

    def __getitem__(self, kind: str) -> type[Manifest]:
        model = self._loaded.get(kind)
        if model is None:
            module, _, name = self._targets[kind].partition(":")
            model = self._loaded[kind] = getattr(importlib.import_module(module), name)
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


KINDS: Mapping[str, type[Manifest]] = _Kinds(_MODELS)

__all__ = ["API_VERSION", "KINDS", "Manifest"]
