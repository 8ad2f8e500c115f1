"""Which parts of a CIB belong to which object, read from a CIB `<configuration>`.

Resources are objects by id (a clone is its inner resource's; group members are objects
of their own). Every resource is observed, so that one git declares and a CIB already
holds (an import, or one made by hand with the same definition) is in sync without a
write; the engine deletes only what its inventory says reconcile made or adopted.

A constraint belongs to:
1. the cluster (ClusterConfig) when git lists its id in the Cluster's `constraints`;
2. else the resource it places (`rsc` of a location/colocation, `then` of an order) when
   git declares that resource: a resource in git owns every constraint about it;
3. else the cluster, when the Cluster declares `constraints` at all (it owns the rest);
4. else nobody: it is left alone.
Constraints `crm_resource --move/--ban` makes (`cli-prefer-*`, `cli-ban-*`) are an
operator's and belong to nobody, as `target-role` and `is-managed` set by hand are not
drift unless git sets them.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from reconcilers.pacemaker.cib import as_resource_constraint, is_marked, parse_constraint, parse_resources, subject
from reconcilers.pacemaker.cluster_cib import parse_cluster_config
from reconcilers.pacemaker.nvsets import sets_values

OPERATOR_META = ("target-role", "is-managed")
RUNTIME_CONSTRAINTS = ("cli-prefer-", "cli-ban-", "cli-standby-")


@dataclass
class Observed:
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # resource names in the CIB's order
    tops: dict[str, str] = field(default_factory=dict)  # any resource id → object name
    owned: dict[str, list[str]] = field(default_factory=dict)  # resource → its constraint ids
    config: dict[str, Any] | None = None
    config_owned: list[str] = field(default_factory=list)
    marked: set[str] = field(default_factory=set)  # resources whose element carries reconcile's marker


def observe(configuration: ET.Element, desired: dict[str, dict[str, Any]],
            desired_config: dict[str, Any] | None) -> Observed:
    states, tops, order = parse_resources(configuration)
    out = Observed(resources=states, order=order, tops=tops)
    for el in configuration.iterfind("resources//*"):
        if el.tag in ("primitive", "group", "clone", "master") and is_marked(el) and el.get("id") in tops:
            out.marked.add(tops[el.get("id", "")])
    declared = {c["id"] for c in (desired_config or {}).get("constraints", [])}
    cluster_owns_rest = desired_config is not None and "constraints" in desired_config
    cluster_constraints: list[dict[str, Any]] = []
    constraints = configuration.find("constraints")
    for el in constraints if constraints is not None else []:
        c = parse_constraint(el)
        if c is None or c["id"].startswith(RUNTIME_CONSTRAINTS):
            continue
        target = subject(c)
        name = tops.get(target) if target else None
        if c["id"] in declared or (cluster_owns_rest and name not in desired):
            cluster_constraints.append(c)
            out.config_owned.append(c["id"])
        elif name is not None and name in states:
            state = states[name]
            key = {"location": "location", "colocation": "colocation", "order": "order"}.get(c["type"])
            if key is None:
                continue
            key, entry = as_resource_constraint(name, c, len(state.get("location", [])))
            state.setdefault(key, []).append(entry)
            out.owned.setdefault(name, []).append(c["id"])
    for name, state in states.items():
        want = desired.get(name)
        if want is not None:
            strip_operator_meta(state, want)
    if desired_config is not None:
        out.config = parse_cluster_config(configuration, desired_config)
        if cluster_owns_rest:
            out.config["constraints"] = cluster_constraints
    return out


def strip_operator_meta(observed: dict[str, Any], desired: dict[str, Any]) -> None:
    """Drop `target-role` / `is-managed` an operator set (pcs resource disable / unmanage)
    where git does not set them, on the resource and on its clone."""
    for holder_obs, holder_want in ((observed, desired), (observed.get("clone"), desired.get("clone"))):
        if not holder_obs or "meta" not in holder_obs:
            continue
        wanted = set(sets_values((holder_want or {}).get("meta")))
        meta = holder_obs["meta"]
        if isinstance(meta, dict):
            for key in OPERATOR_META:
                if key not in wanted:
                    meta.pop(key, None)
            if not meta:
                del holder_obs["meta"]
        else:
            for s in meta:
                for key in OPERATOR_META:
                    if key not in wanted:
                        s["values"].pop(key, None)
                        s.get("ids", {}).pop(key, None)


def operator_meta_to_keep(live: ET.Element, name: str, desired: dict[str, Any]) -> dict[str, str]:
    """The operator's switches set on the live element `name` that git does not set: an
    element rewritten by apply keeps them."""
    out: dict[str, str] = {}
    wanted = set(sets_values(desired.get("meta")))
    for meta in live.findall("meta_attributes"):
        for nv in meta.findall("nvpair"):
            if nv.get("name") in OPERATOR_META and nv.get("name") not in wanted:
                out[nv.get("name", "")] = nv.get("value", "")
    return out
