"""One reconciler per kind: observe / desired / apply against the real tools.

`REGISTRY` maps a kind to "module:Class". A module that does not exist yet means the kind
has no reconciler installed: the engine reports that, it never skips silently.
"""
from __future__ import annotations

import importlib

from reconcilers.base import Reconciler

REGISTRY: dict[str, str] = {
    "Cluster": "reconcilers.pacemaker.cluster:ClusterReconciler",
    "ClusterResource": "reconcilers.pacemaker.resources:ClusterResourceReconciler",
    "ClusterConfig": "reconcilers.pacemaker.resources:ClusterResourceReconciler",
    "VirtualIP": "reconcilers.keepalived.reconciler:KeepalivedReconciler",
    "Keepalived": "reconcilers.keepalived.reconciler:KeepalivedReconciler",
    "VirtualServer": "reconcilers.keepalived.reconciler:KeepalivedReconciler",
    "HAProxy": "reconcilers.haproxy.reconciler:HAProxyReconciler",
    "Backend": "reconcilers.haproxy.reconciler:HAProxyReconciler",
    "Frontend": "reconcilers.haproxy.reconciler:HAProxyReconciler",
    "Container": "reconcilers.lxc.reconciler:ContainerReconciler",
    "DomainJoin": "reconcilers.domain.reconciler:DomainJoinReconciler",
    "Mount": "reconcilers.mount:MountReconciler",
    "Galera": "reconcilers.galera:GaleraReconciler",
}


# What each reconciler above reads of kinds it does not own (its class's `consumes`), known
# without importing it: the engine imports only the reconcilers a node has something for
# (tests/unit/test_engine.py checks this against the classes). A target not listed here (a
# plug-in, a test's reconciler) is imported to ask.
CONSUMES: dict[str, tuple[str, ...]] = {
    **{target: () for target in REGISTRY.values()},
    "reconcilers.pacemaker.resources:ClusterResourceReconciler": ("VirtualIP", "Container", "Cluster"),
}


class NotInstalled(Exception):
    """No reconciler for this kind is installed."""


def reconciler_class(kind: str) -> type[Reconciler]:
    target = REGISTRY.get(kind)
    if target is None:
        raise NotInstalled(f"no reconciler is registered for kind {kind}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise NotInstalled(f"the {kind} reconciler is not installed yet ({module_name})") from None
        raise
    return getattr(module, cls_name)


def installed() -> list[type[Reconciler]]:
    """Every installed reconciler class once, in REGISTRY order (one may own several kinds)."""
    out: list[type[Reconciler]] = []
    for kind in REGISTRY:
        try:
            cls = reconciler_class(kind)
        except NotInstalled:
            continue
        if cls not in out:
            out.append(cls)
    return out
