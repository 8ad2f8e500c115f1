"""Building CIBs from normalized states: the candidate an apply pushes, and a render.

`apply_changes` edits the live CIB with one pass's changes only: the resources, their
constraints and the cluster-wide sections the batch creates, updates or deletes are
rewritten; everything else stays exactly as observed (an object held back by a refusal
keeps its last good version, and what reconcile does not own is never touched). A
resource keeps its place among the resources; a constraint its place among the
constraints. `render_configuration` builds the whole configuration from git alone.
"""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable

from reconcilers.base import ApplyError
from reconcilers.pacemaker.cib import (
    RESOURCE_TAGS, build_constraint, build_group, build_primitive, build_resource_constraints, checked, mark, top_id,
    wrap_clone,
)
from reconcilers.pacemaker.cluster_cib import render_configuration as render_cluster_sections
from reconcilers.pacemaker.cluster_cib import section, write_sections

Value = Callable[[str, str, Any], str]  # (resource, param, state value) → CIB value


@dataclass
class Batch:
    """One pass's CIB changes, as the reconciler hands them to `apply_changes`."""

    resources: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # name → desired state (None: delete)
    config: dict[str, Any] | None = None  # the ClusterConfig's desired state, when it changes
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)  # every desired resource state
    owned: dict[str, list[str]] = field(default_factory=dict)  # name → ids of the constraints it owns now
    config_owned: list[str] = field(default_factory=list)  # ids of the cluster-level constraints owned now
    node_ids: dict[str, int] = field(default_factory=dict)


def _index(resources: ET.Element) -> dict[str, tuple[ET.Element, ET.Element]]:
    """id → (element, parent) for every resource element at any depth."""
    out = {}
    for parent in resources.iter():
        for child in parent:
            if child.tag in RESOURCE_TAGS and child.get("id"):
                out[child.get("id", "")] = (child, parent)
    return out


def _top_position(resources: ET.Element, el: ET.Element) -> int | None:
    for i, top in enumerate(resources):
        if top is el or any(d is el for d in top.iter()):
            return i
    return None


def _detach(resources: ET.Element, el: ET.Element, parent: ET.Element, keep: set[str]) -> None:
    """Remove `el`; resources inside it named in `keep` move to the top level."""
    for child in list(el):
        if child.tag in RESOURCE_TAGS and child.get("id") in keep:
            el.remove(child)
            resources.append(child)
    if el in list(parent):
        parent.remove(el)


def _primitive(name: str, state: dict[str, Any], value: Value | None) -> ET.Element:
    return build_primitive(name, state, (lambda p, v: value(name, p, v)) if value else None)


def build_unit(name: str, state: dict[str, Any], members: Callable[[str], ET.Element],
               value: Value | None) -> ET.Element:
    """The top-level element of one resource: a primitive or a group, in its clone."""
    if "group" in state:
        inner = build_group(name, state, [members(m) for m in state["group"]])
    else:
        inner = _primitive(name, state, value)
    return wrap_clone(name, state, inner)


def carry_operator_meta(new: ET.Element, index: dict[str, tuple[ET.Element, ET.Element]],
                        desired: dict[str, dict[str, Any]]) -> None:
    """Keep the `target-role` / `is-managed` an operator set on elements we rewrite (where
    git does not set them)."""
    from reconcilers.pacemaker.ownership import operator_meta_to_keep

    for el in new.iter():
        eid = el.get("id", "")
        if el.tag not in RESOURCE_TAGS or eid not in index:
            continue
        state = desired.get(eid) or next((s.get("clone", {}) for n, s in desired.items()
                                          if s.get("clone") and top_id(n, s) == eid), {})
        keep = operator_meta_to_keep(index[eid][0], eid, state)
        if not keep:
            continue
        meta = el.find("meta_attributes")
        if meta is None:
            meta = ET.SubElement(el, "meta_attributes", {"id": f"{eid}-meta_attributes"})
        present = {nv.get("name") for nv in meta.findall("nvpair")}
        for k, v in keep.items():
            if k not in present:
                ET.SubElement(meta, "nvpair", {"id": f"{meta.get('id')}-{k}", "name": k, "value": v})


def apply_changes(cib: ET.Element, batch: Batch, value: Value | None = None) -> ET.Element:
    """Edit `cib` (the live CIB, a copy) so that it holds the batch's changes."""
    configuration = cib.find("configuration")
    if configuration is None:
        raise ApplyError("the CIB has no configuration section")
    resources = section(configuration, "resources")
    constraints = section(configuration, "constraints")
    changed = {n: s for n, s in batch.resources.items() if s is not None}
    deletes = [n for n, s in batch.resources.items() if s is None]
    placed: set[str] = set()
    index = _index(resources)

    def member(m: str) -> ET.Element:
        placed.add(m)
        if m in changed:
            return mark(_primitive(m, changed[m], value))
        if m in index:
            return copy.deepcopy(index[m][0])
        if m in batch.desired:  # held back and not in the CIB yet: its group cannot be written
            raise ApplyError(f"group member {m!r} is not in the CIB and not applied in this pass")
        raise ApplyError(f"group member {m!r} is unknown")

    groups_first = sorted(changed, key=lambda n: "group" not in changed[n])
    for name in groups_first:
        if name in placed:
            continue
        state = changed[name]
        outer_group = next((g for g, s in batch.desired.items() if name in s.get("group", [])), None)
        if outer_group is not None and outer_group not in changed and name in index:
            el, parent = index[name]  # a member whose group stays: rewritten in place
            new = mark(_primitive(name, state, value))
            carry_operator_meta(new, index, batch.desired)
            parent[list(parent).index(el)] = new
            index = _index(resources)
            continue
        new = mark(build_unit(name, state, member, value))
        carry_operator_meta(new, index, batch.desired)
        new_ids = {e.get("id", "") for e in new.iter() if e.tag in RESOURCE_TAGS}
        old = [index[i] for i in new_ids if i in index]
        positions = [p for p in (_top_position(resources, el) for el, _ in old) if p is not None]
        position = min(positions) if positions else None
        keep = {m for m in batch.desired if m not in new_ids}  # members leaving an old group stay
        for el, parent in sorted(old, key=lambda pair: pair[0].tag not in ("clone", "master")):
            if any(e is el for e in resources.iter()):
                _detach(resources, el, parent, keep)
        if position is None or position > len(resources):
            resources.append(new)
        else:
            resources.insert(position, new)
        index = _index(resources)
    for name in deletes:
        if name not in index:
            continue
        el, parent = index[name]
        if parent.tag in ("clone", "master"):
            el, parent = parent, resources
        keep = {m for m in batch.desired} | {e.get("id", "") for e in el.iter()
                                              if e.tag in RESOURCE_TAGS and e.get("id") not in batch.resources}
        keep.discard(name)
        _detach(resources, el, parent, keep)
        index = _index(resources)

    # constraints: each changed object's own are rewritten where they stand
    rewrite: dict[str, ET.Element | None] = {}
    for name in batch.resources:
        for cid in batch.owned.get(name, []):
            rewrite.setdefault(cid, None)
    for name, state in changed.items():
        for el in build_resource_constraints(name, state):
            rewrite[el.get("id", "")] = el
    if batch.config is not None:
        for cid in batch.config_owned:
            rewrite.setdefault(cid, None)
        for c in batch.config.get("constraints", []):
            rewrite[c["id"]] = build_constraint(c)
    seen: set[str] = set()
    for el in list(constraints):
        cid = el.get("id", "")
        if cid in rewrite:
            seen.add(cid)
            if rewrite[cid] is None:
                constraints.remove(el)
            else:
                constraints[list(constraints).index(el)] = rewrite[cid]
    for cid, el in rewrite.items():
        if el is not None and cid not in seen:
            constraints.append(el)
    if batch.config is not None:
        write_sections(configuration, batch.config, batch.node_ids)
    checked(configuration)
    return cib


def render_configuration(config: dict[str, Any] | None, resources: list[tuple[str, dict[str, Any]]],
                         node_ids: dict[str, int], value: Value | None = None) -> ET.Element:
    """The `<configuration>` git describes, from nothing (`reconcile render`): the cluster's
    sections, the resources in the tree's order, then the cluster-level constraints and
    each resource's own."""
    configuration = render_cluster_sections(config or {"properties": {}}, node_ids)
    states = dict(resources)
    members = {m for _, s in resources for m in s.get("group", [])}
    res = configuration.find("resources")
    assert res is not None

    def member(m: str) -> ET.Element:
        if m not in states:
            raise ApplyError(f"group member {m!r} is unknown")
        return _primitive(m, states[m], value)

    for name, state in resources:
        if name not in members:
            res.append(build_unit(name, state, member, value))
    cons = configuration.find("constraints")
    assert cons is not None
    for name, state in resources:
        cons.extend(build_resource_constraints(name, state))
    return checked(configuration)


def resource_ids(name: str, state: dict[str, Any]) -> set[str]:
    """The ids a resource's top element holds (its clone's, its own, its members')."""
    return {name, top_id(name, state), *state.get("group", [])}
