"""ClusterResource: Pacemaker resources and constraints in the CIB, from git.

Objects of this kind are Pacemaker resources, named by their CIB id:

- every ClusterResource manifest (a primitive of any OCF / systemd / LSB / stonith agent,
  or a group; either may be cloned), with its location / colocation / order constraints;
- every VirtualIP with `manager: pacemaker` (an `ocf:heartbeat:IPaddr2` primitive);
- every Container with `spec.cluster` (an `ocf:heartbeat:lxc` primitive, with a location
  rule that keeps it on nodes whose Container reconciler has defined the container).

Ownership: every element we create carries the meta attribute `reconcile-managed=true`;
constraints we create have ids derived from their resource (`db-with-db-vip`,
`db-after-db-vip`, `db-location-lb1`) and name it. `observe` returns marked objects
only, and only marked objects are ever replaced or deleted: a resource created by hand is
left alone, and a manifest that would take over its id is refused.

Not drift: anything in the status section (where a resource runs, fail counts, node
attributes), constraints made by hand (`pcs resource move` / `ban` create `cli-*` ones),
and the operator switches `target-role` / `is-managed` unless the manifest sets them.

Only the agent on the current DC writes; the others raise Deferred. Each apply pushes the
whole desired set as ONE patch (so a change touching several resources and constraints is
one CIB update, verified as a whole); a delete removes its one object, after stopping it
through Pacemaker if it runs (target-role=Stopped and a bounded wait, as `pcs resource
delete` does): a primitive removed while it runs would be stopped as an orphan with
default timeouts, and an lxc primitive's stop needs the config the Container delete
removes next.
"""
from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterable, Iterator

from reconcilers import netprobe, pacemaker, pacemaker_health
from reconcilers.base import (
    ApplyError, Change, CommandError, Deferred, Desired, Health, HealthReport, Node, Outcomes, Reconciler, one_line,
)
from reconcilers.lxc import config_path, stop_seconds
from schemas.cluster_resource import MARKER

RESOURCE_TAGS = ("primitive", "group", "clone")
OPERATOR_META = ("target-role", "is-managed")
"""Meta attributes an operator sets to stop or unmanage a resource by hand (pcs resource
disable / unmanage): left alone unless the manifest sets them."""
CLONE_SUFFIX = "-clone"
WATCH_SECONDS = 2.0
LXC_STOP_MARGIN = 5  # seconds ocf:heartbeat:lxc keeps of its stop timeout for lxc-stop -k
STOP_WAIT_SECONDS = 120.0  # how long a delete waits for Pacemaker to stop the resource first


# --- desired state -----------------------------------------------------------------------


def _score(value: Any) -> str:
    return str(value)


def _ops(ops: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(ops, key=lambda o: (o["name"], o.get("interval", "0s")))


def _constraints(location: Iterable[Any], colocation: Iterable[Any], start_after: Iterable[str]) -> dict[str, Any]:
    return {
        "location": sorted(({"node": loc.node, "score": _score(loc.score)} for loc in location),
                           key=lambda x: x["node"]),
        "colocation": sorted(({"with": c.with_, "score": _score(c.score)} for c in colocation),
                             key=lambda x: x["with"]),
        "startAfter": sorted(start_after),
    }


def resource_state(spec: Any) -> dict[str, Any]:
    """The normalized state of a ClusterResource manifest's spec."""
    state: dict[str, Any]
    if spec.group is not None:
        state = {"group": list(spec.group)}
    else:
        ops = []
        for op in spec.operations:
            d = {"name": op.name, "interval": op.interval}
            if op.timeout is not None:
                d["timeout"] = op.timeout
            ops.append(d)
        state = {"agent": spec.agent, "params": dict(spec.params), "operations": _ops(ops)}
    state["meta"] = dict(spec.meta)
    state["clone"] = spec.clone
    state.update(_constraints(spec.location, spec.colocation, spec.startAfter))
    return state


class _Loc:
    def __init__(self, node: str, score: Any):
        self.node, self.score = node, score


def virtual_ip_state(spec: Any) -> dict[str, Any]:
    """A VirtualIP with manager pacemaker: an IPaddr2 primitive with a monitor."""
    ip, prefix = spec.address.split("/")
    options = spec.pacemaker
    interval = options.monitorInterval if options is not None else "10s"
    preferred = options.preferredNode if options is not None else None
    state: dict[str, Any] = {
        "agent": "ocf:heartbeat:IPaddr2",
        "params": {"ip": ip, "cidr_netmask": prefix, "nic": spec.interface},
        "operations": _ops([{"name": "monitor", "interval": interval, "timeout": "20s"},
                            {"name": "start", "interval": "0s", "timeout": "20s"},
                            {"name": "stop", "interval": "0s", "timeout": "20s"}]),
        "meta": {},
        "clone": False,
    }
    # A preference, not a pin: the address may run elsewhere when that node is down.
    state.update(_constraints([_Loc(preferred, 100)] if preferred else [], [], []))
    return state


def container_state(name: str, spec: Any) -> dict[str, Any]:
    """A Container with spec.cluster: an ocf:heartbeat:lxc primitive (Pacemaker starts it).

    - params: the container and the config the Container reconciler writes on every node
      (`config_path`); the agent has no lxcpath parameter and runs the lxc tools in LXC's
      default path, which the Container reconciler's validate checks spec.lxcPath against.
    - stop: the agent gives `lxc-stop -t` its operation timeout minus 5 s, so a timeout of
      spec.stopTimeout + 5 s waits as long for a clean stop as the Container reconciler
      does, and then kills the container (never a failed stop, which would block it).
    - `nodeAttribute`: a location rule keeps the primitive off every node that lacks this
      node attribute; the Container reconciler sets it once the container is defined on
      the node, so Pacemaker never starts it where it is not there yet.
    """
    meta = {"target-role": "Stopped"} if getattr(spec, "state", "running") == "stopped" else {}
    state: dict[str, Any] = {
        "agent": "ocf:heartbeat:lxc",
        "params": {"container": name, "config": config_path(spec.lxcPath, name)},
        "operations": _ops([{"name": "monitor", "interval": "30s", "timeout": "20s"},
                            {"name": "start", "interval": "0s", "timeout": "60s"},
                            {"name": "stop", "interval": "0s",
                             "timeout": f"{stop_seconds(spec) + LXC_STOP_MARGIN}s"}]),
        "meta": meta,
        "clone": False,
    }
    state.update(_constraints([], [], []))
    state["nodeAttribute"] = pacemaker.container_attribute(name)
    return state


# --- rendering the CIB elements ----------------------------------------------------------


def cib_value(value: str) -> str:
    """An attribute value of the CIB. ElementTree escapes markup and writes a newline in an
    attribute as a character reference, so only what XML 1.0 cannot carry at all (control
    characters) or what would reach Pacemaker's tools as two lines is refused (UnsafeValue)."""
    return one_line(value, "the CIB", max_length=4096)


def _nvset(parent: ET.Element, tag: str, set_id: str, pairs: dict[str, str]) -> ET.Element:
    nvset = ET.SubElement(parent, tag, {"id": cib_value(set_id)})
    for name, value in pairs.items():
        ET.SubElement(nvset, "nvpair", {"id": cib_value(f"{set_id}-{name}"), "name": cib_value(name),
                                        "value": cib_value(value)})
    return nvset


def _marked_meta(parent: ET.Element, el_id: str, meta: dict[str, str]) -> None:
    _nvset(parent, "meta_attributes", f"{el_id}-meta_attributes", {MARKER: "true", **meta})


def render_primitive(name: str, state: dict[str, Any], with_meta: bool = True) -> ET.Element:
    parts = state["agent"].split(":")
    attrs = {"id": name, "class": parts[0]}
    if parts[0] == "ocf":
        attrs.update(provider=parts[1], type=parts[2])
    else:
        attrs["type"] = parts[1]
    el = ET.Element("primitive", attrs)
    if state["params"]:
        _nvset(el, "instance_attributes", f"{name}-instance_attributes", state["params"])
    _marked_meta(el, name, state["meta"] if with_meta else {})
    if state["operations"]:
        ops = ET.SubElement(el, "operations")
        for op in state["operations"]:
            op_attrs = {"id": f"{name}-{op['name']}-interval-{op['interval']}", "name": op["name"],
                        "interval": op["interval"]}
            if "timeout" in op:
                op_attrs["timeout"] = op["timeout"]
            ET.SubElement(ops, "op", op_attrs)
    return el


def top_id(name: str, state: dict[str, Any]) -> str:
    """The id constraints name: the clone's for a cloned resource."""
    return name + CLONE_SUFFIX if state.get("clone") else name


def render_unit(name: str, states: dict[str, dict[str, Any]]) -> ET.Element:
    """The top-level element for `name`: a primitive or a group (with its members), in a
    clone when cloned. Manifest meta goes on the outermost element."""
    state = states[name]
    cloned = state["clone"]
    if "group" in state:
        inner = ET.Element("group", {"id": name})
        _marked_meta(inner, name, {} if cloned else state["meta"])
        for member in state["group"]:
            inner.append(render_primitive(member, states[member]))
    else:
        inner = render_primitive(name, state, with_meta=not cloned)
    if not cloned:
        return inner
    clone = ET.Element("clone", {"id": name + CLONE_SUFFIX})
    _marked_meta(clone, name + CLONE_SUFFIX, state["meta"])
    clone.append(inner)
    return clone


def render_constraints(name: str, states: dict[str, dict[str, Any]]) -> list[ET.Element]:
    state = states[name]
    me = top_id(name, state)

    def ref(other: str) -> str:
        return top_id(other, states[other]) if other in states else other

    out = []
    if state.get("nodeAttribute"):
        out.append(render_attribute_rule(name, me, state["nodeAttribute"]))
    for loc in state["location"]:
        out.append(ET.Element("rsc_location", {"id": f"{name}-location-{loc['node']}", "rsc": me,
                                               "node": loc["node"], "score": loc["score"]}))
    for col in state["colocation"]:
        out.append(ET.Element("rsc_colocation", {"id": f"{name}-with-{col['with']}", "rsc": me,
                                                 "with-rsc": ref(col["with"]), "score": col["score"]}))
    for first in state["startAfter"]:
        out.append(ET.Element("rsc_order", {"id": f"{name}-after-{first}", "first": ref(first), "then": me,
                                            "kind": "Mandatory"}))
    return out


def attribute_rule_id(name: str) -> str:
    return f"{name}-where-defined"


def render_attribute_rule(name: str, top: str, attribute: str) -> ET.Element:
    """`-INFINITY` on every node where `attribute` is not "1": the resource runs only where
    the node says it can (the pattern of Pacemaker's ping/pingd rules)."""
    cid = attribute_rule_id(name)
    location = ET.Element("rsc_location", {"id": cid, "rsc": top})
    rule = ET.SubElement(location, "rule", {"id": f"{cid}-rule", "score": "-INFINITY", "boolean-op": "or"})
    ET.SubElement(rule, "expression", {"id": f"{cid}-rule-undefined", "attribute": attribute,
                                       "operation": "not_defined"})
    ET.SubElement(rule, "expression", {"id": f"{cid}-rule-other", "attribute": attribute, "operation": "ne",
                                       "value": pacemaker.CONTAINER_ATTRIBUTE_VALUE})
    return location


def parse_attribute_rule(el: ET.Element, name: str, top: str) -> str:
    """The attribute of our rule constraint; a rule edited by hand reads as such (drift)."""
    expression = el.find("rule/expression")
    attribute = expression.get("attribute", "") if expression is not None else ""
    if attribute and _same_element(el, render_attribute_rule(name, top, attribute)):
        return attribute
    return f"(edited by hand: {attribute or 'no expression'})"


def _same_element(a: ET.Element, b: ET.Element) -> bool:
    """Same tag, attributes and children (in order); layout whitespace aside."""
    return a.tag == b.tag and a.attrib == b.attrib and (a.text or "").strip() == (b.text or "").strip() \
        and len(a) == len(b) and all(_same_element(x, y) for x, y in zip(a, b))


# --- reading the CIB back ----------------------------------------------------------------


def is_marked(el: ET.Element) -> bool:
    for nvset in el.findall("meta_attributes"):
        for nv in nvset.findall("nvpair"):
            if nv.get("name") == MARKER and nv.get("value") == "true":
                return True
    return False


def _meta(*els: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for el in els:
        out.update(pacemaker.nvpairs(el, "meta_attributes"))
    out.pop(MARKER, None)
    return out


def _agent(el: ET.Element) -> str:
    cls, provider, type_ = el.get("class", ""), el.get("provider"), el.get("type", "")
    return f"{cls}:{provider}:{type_}" if provider else f"{cls}:{type_}"


def _primitive_state(el: ET.Element, meta: dict[str, str], cloned: bool) -> dict[str, Any]:
    ops = [{k: v for k, v in op.attrib.items() if k != "id"} for op in el.findall("operations/op")]
    return {"agent": _agent(el), "params": pacemaker.nvpairs(el, "instance_attributes"), "operations": _ops(ops),
            "meta": meta, "clone": cloned}


def managed_resources(configuration: ET.Element) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The marked resources of a CIB `<configuration>` as states (constraints not yet
    filled in), and a map from each one's top-level id to its name."""
    states: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    resources = configuration.find("resources")
    if resources is None:
        return states, names

    def visit(el: ET.Element, clone: ET.Element | None) -> None:
        marked_clone = clone is not None and is_marked(clone)
        outer = [clone] if marked_clone else []
        if el.tag == "group" and is_marked(el):
            states[el.get("id", "")] = {"group": [p.get("id", "") for p in el if p.tag == "primitive"],
                                        "meta": _meta(*outer, el), "clone": marked_clone}
        elif el.tag == "primitive" and is_marked(el):
            states[el.get("id", "")] = _primitive_state(el, _meta(*outer, el), marked_clone)
        if el.get("id") in states:
            names[clone.get("id", "") if marked_clone else el.get("id", "")] = el.get("id", "")
        for child in el:
            if child.tag == "primitive":
                visit(child, None)

    for top in resources:
        if top.tag == "clone":
            for inner in top:
                if inner.tag in ("primitive", "group"):
                    visit(inner, top)
        elif top.tag in ("primitive", "group"):
            visit(top, None)
    return states, names


def owns_constraint(el: ET.Element, name: str, top: str) -> bool:
    """Whether constraint `el` is one we made for resource `name` (top-level id `top`)."""
    cid = el.get("id", "")
    if el.tag == "rsc_location":
        return el.get("rsc") == top and cid in (f"{name}-location-{el.get('node')}", attribute_rule_id(name))
    if el.tag == "rsc_colocation":
        return el.get("rsc") == top and cid.startswith(f"{name}-with-")
    if el.tag == "rsc_order":
        return el.get("then") == top and cid.startswith(f"{name}-after-")
    return False


def parse_managed(configuration: ET.Element) -> dict[str, dict[str, Any]]:
    """Every marked resource with its constraints, in the shape `desired` produces."""
    states, names = managed_resources(configuration)
    tops = {name: top for top, name in names.items()}
    for name, state in states.items():
        state.update(location=[], colocation=[], startAfter=[])
    constraints = configuration.find("constraints")
    for el in (constraints if constraints is not None else []):
        for name, state in states.items():
            if not owns_constraint(el, name, tops.get(name, name)):
                continue
            if el.tag == "rsc_location" and el.get("id") == attribute_rule_id(name):
                state["nodeAttribute"] = parse_attribute_rule(el, name, tops.get(name, name))
            elif el.tag == "rsc_location":
                state["location"].append({"node": el.get("node", ""), "score": el.get("score", "")})
            elif el.tag == "rsc_colocation":
                other = el.get("with-rsc", "")
                state["colocation"].append({"with": names.get(other, other), "score": el.get("score", "")})
            else:
                other = el.get("first", "")
                state["startAfter"].append(names.get(other, other))
            break
    for state in states.values():
        state["location"].sort(key=lambda x: x["node"])
        state["colocation"].sort(key=lambda x: x["with"])
        state["startAfter"].sort()
    return states


# --- building the candidate CIB ----------------------------------------------------------


def stop_resource(cib: ET.Element, name: str) -> ET.Element:
    """Set target-role=Stopped on our top-level element of `name` (its clone, if cloned)."""
    resources = cib.find("configuration/resources")
    index = _index(resources) if resources is not None else {}
    for el_id in (name + CLONE_SUFFIX, name):
        if el_id in index and is_marked(index[el_id][0]):
            el = index[el_id][0]
            meta = next((m for m in el.findall("meta_attributes")
                         if any(nv.get("name") == MARKER for nv in m.findall("nvpair"))), None)
            if meta is None:
                meta = ET.SubElement(el, "meta_attributes", {"id": f"{el_id}-meta_attributes"})
            for nv in list(meta.findall("nvpair")):
                if nv.get("name") == "target-role":
                    meta.remove(nv)
            ET.SubElement(meta, "nvpair", {"id": f"{meta.get('id')}-target-role", "name": "target-role",
                                           "value": "Stopped"})
            break
    return cib


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


def _carry_operator_meta(new: ET.Element, index: dict[str, tuple[ET.Element, ET.Element]]) -> None:
    """Keep `target-role` / `is-managed` an operator set on an element we rewrite."""
    for el in new.iter():
        if el.tag not in RESOURCE_TAGS or el.get("id") not in index:
            continue
        old = pacemaker.nvpairs(index[el.get("id", "")][0], "meta_attributes")
        meta = el.find("meta_attributes")
        if meta is None:
            continue
        present = {nv.get("name") for nv in meta.findall("nvpair")}
        for name in OPERATOR_META:
            if name in old and name not in present:
                ET.SubElement(meta, "nvpair", {"id": f"{meta.get('id')}-{name}", "name": name, "value": old[name]})


def _remove(resources: ET.Element, el: ET.Element, parent: ET.Element, keep_ids: set[str]) -> None:
    """Remove one of our elements; resources inside it that we did not make move to the top level."""
    for child in list(el):
        if child.tag in RESOURCE_TAGS and not is_marked(child) and child.get("id") not in keep_ids:
            el.remove(child)
            resources.append(child)
    if el in list(parent):
        parent.remove(el)


def build_candidate(cib: ET.Element, states: dict[str, dict[str, Any]], deletes: Iterable[str] = ()) -> ET.Element:
    """Edit `cib` in place so that it holds every desired resource and constraint, and not
    the objects in `deletes`; everything we did not create is kept as it is."""
    resources = cib.find("configuration/resources")
    constraints = cib.find("configuration/constraints")
    if resources is None or constraints is None:
        raise ApplyError("the CIB has no configuration/resources or constraints section")
    index = _index(resources)
    for name, state in states.items():
        for el_id in (name, name + CLONE_SUFFIX):
            if el_id in index and not is_marked(index[el_id][0]):
                raise ApplyError(f"the CIB already has a resource {el_id!r} that reconcile did not create; "
                                 "rename the manifest, or remove or rename that resource by hand")
    members = {m for s in states.values() for m in s.get("group", [])}
    configuration = cib.find("configuration")
    assert configuration is not None
    old_tops = {name: top for top, name in managed_resources(configuration)[1].items()}

    # resources: replace each of ours in place, append new ones
    for name in [n for n in states if n not in members]:
        new = render_unit(name, states)
        new_ids = {e.get("id", "") for e in new.iter() if e.tag in RESOURCE_TAGS}
        old = [index[i] for i in new_ids if i in index]
        _carry_operator_meta(new, index)
        positions = [p for p in (_top_position(resources, el) for el, _ in old) if p is not None]
        position = min(positions) if positions else None
        for el, parent in sorted(old, key=lambda pair: pair[0].tag != "clone"):
            _remove(resources, el, parent, new_ids)
        if position is None or position > len(resources):
            resources.append(new)
        else:
            resources.insert(position, new)
        index = _index(resources)
    for name in deletes:
        for el_id in (name + CLONE_SUFFIX, name):
            if el_id in index and is_marked(index[el_id][0]):
                el, parent = index[el_id]
                _remove(resources, el, parent, set())
                index = _index(resources)
    # A group of ours that lost all its members to other desired units is invalid empty:
    # its own delete may come later in this run, but the CIB must verify now.
    for el_id, (el, parent) in list(index.items()):
        if el.tag == "group" and el_id not in states and is_marked(el) and el.find("primitive") is None:
            _remove(resources, parent if parent.tag == "clone" and is_marked(parent) else el,
                    resources if parent.tag == "clone" else parent, set())

    # constraints: ours of each desired resource replaced in place, stale ones removed
    for name in list(states) + list(deletes):
        wanted = render_constraints(name, states) if name in states else []
        wanted_ids = {c.get("id") for c in wanted}
        tops = {top_id(name, states[name])} if name in states else set()
        tops.add(old_tops.get(name, name))
        for el in list(constraints):
            if any(owns_constraint(el, name, t) for t in tops) and el.get("id") not in wanted_ids:
                constraints.remove(el)
        by_id = {el.get("id"): i for i, el in enumerate(constraints)}
        for c in wanted:
            i = by_id.get(c.get("id"))
            if i is None:
                constraints.append(c)
            elif any(owns_constraint(constraints[i], name, t) for t in tops):
                constraints[i] = c
            else:
                raise ApplyError(f"the CIB already has a constraint {c.get('id')!r} that reconcile did not create; "
                                 "remove or rename it by hand")
    return cib


# --- the reconciler ----------------------------------------------------------------------


class ClusterResourceReconciler(Reconciler):
    """Pacemaker resources (and their constraints) of the cluster this node is in."""

    kind = "ClusterResource"
    # After Container: a Pacemaker-placed container is defined on the node before its
    # primitive is written, and (deletes run in reverse) its primitive is gone before the
    # Container reconciler destroys it.
    after = ("Cluster", "Container")
    # Pacemaker VirtualIPs and Pacemaker-placed Containers become primitives here, also in
    # a tree without any ClusterResource manifest.
    consumes = ("VirtualIP", "Container")

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._sources: dict[str, Any] = {}  # name → Loaded (file:line for messages)
        self._cluster: Any = None  # the Cluster manifest
        self._nodes: dict[int, str] = {}
        self._set_meta: dict[str, set[str]] = {}  # meta names the manifest sets (operator meta not ignored)
        self._observed: dict[str, dict[str, Any]] = {}
        self._preview: list[pacemaker.Action] | None = None  # one simulation per plan
        self._pruned: set[str] = set()
        self._forming: list[str] = []
        self._attributes: dict[str, dict[str, str]] = {}  # node → its transient attributes (preview)
        self._explained: set[str] = set()
        self._shown_as: dict[str, str] = {}  # name → how people know it (a VirtualIP, a Container)

    # --- desired -------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        clusters = [c for c in tree.on_node("Cluster", node.name) if c.spec.stack == "pacemaker"]
        if not clusters:
            return {self.kind: {}}
        cluster = clusters[0]
        self._cluster = cluster
        self._nodes = {n.id: n.name for n in cluster.spec.nodes}
        name_of_cluster = cluster.metadata.name
        loaded = {kind: {i.name: i for i in tree.loaded(kind)} for kind in ("ClusterResource", "VirtualIP", "Container")}
        for m in tree.on_node("ClusterResource", node.name):
            if m.spec.cluster == name_of_cluster:
                self._add(m.metadata.name, resource_state(m.spec), loaded["ClusterResource"].get(m.metadata.name),
                          set_meta=set(m.spec.meta))
        for m in tree.on_node("VirtualIP", node.name):
            if m.spec.manager == "pacemaker" and m.spec.cluster == name_of_cluster:
                self._add(m.metadata.name, virtual_ip_state(m.spec), loaded["VirtualIP"].get(m.metadata.name))
                self._shown_as[m.metadata.name] = f"VirtualIP {m.metadata.name} (IPaddr2 primitive)"
        for m in tree.on_node("Container", node.name):
            if getattr(m.spec, "cluster", None) == name_of_cluster:
                state = container_state(m.metadata.name, m.spec)
                self._add(m.metadata.name, state, loaded["Container"].get(m.metadata.name), set_meta=set(state["meta"]))
                self._shown_as[m.metadata.name] = f"Container {m.metadata.name} (lxc primitive)"
        out = {}
        for name, state in self._states.items():
            set_meta = self._set_meta[name]
            ignore = tuple(f"/meta/{m}" for m in OPERATOR_META if m not in set_meta)
            source = self._sources.get(name)
            out[name] = Desired(state, ignore=ignore, depends=(("Cluster", name_of_cluster),),
                                source=source.where() if source is not None else "",
                                shown_as=self._shown_as.get(name, ""))
        return {self.kind: out}

    def _add(self, name: str, state: dict[str, Any], source: Any, set_meta: set[str] | None = None) -> None:
        self._states[name] = state
        self._sources[name] = source
        self._set_meta[name] = set_meta or set()

    # --- observe -------------------------------------------------------------------------

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            configuration = pacemaker.query_cib(node, scope="configuration", local=True)
        except pacemaker.CibUnavailable:
            return {self.kind: {}}  # Pacemaker does not run here (yet): nothing of ours is visible
        self._observed = parse_managed(configuration)
        return {self.kind: self._observed}

    # --- validate and explain (read-only) ------------------------------------------------

    def _preview_cib(self, node: Node) -> tuple[ET.Element, list[str]]:
        """The CIB as this run would leave it, for validate and explain: every desired
        object in, every marked object no longer in git out (the engine deletes those in
        its inventory: normally all of them), and the Cluster's properties as git has them
        (the Cluster is applied first). Built on the live CIB, or, for a cluster that does
        not run yet, on an empty one with its nodes, which a simulation then brings up."""
        from reconcilers.cluster import ClusterReconciler

        nodes_up: list[str] = []
        try:
            if not node.local:  # validating for another node: this machine's CIB is not its cluster's
                raise pacemaker.CibUnavailable(f"not {node.name}")
            cib = pacemaker.query_cib(node)
        except pacemaker.CibUnavailable:
            cib = pacemaker.empty_cib(node, self._nodes)
            nodes_up = [n for _, n in sorted(self._nodes.items())]
        self._attributes = {n: pacemaker.node_attributes(cib, n) for n in self._nodes.values()}
        if self._cluster is not None:
            pacemaker.set_properties(cib, ClusterReconciler._properties(self._cluster.spec))
        configuration = cib.find("configuration")
        assert configuration is not None
        self._pruned = set(parse_managed(configuration)) - set(self._states)
        return build_candidate(cib, self._states, self._pruned), nodes_up

    def validate(self, node: Node) -> list[str]:
        if not self._states:
            return []  # only deletes: they remove our objects, Pacemaker checks the rest
        problems = []
        for agent in sorted({s["agent"] for s in self._states.values() if "agent" in s}):
            why = pacemaker.agent_missing(node, agent)
            if why is None:
                continue
            for name, state in self._states.items():
                if state.get("agent") == agent:
                    src = self._sources.get(name)
                    where = f"{src.where('spec.agent')}: spec.agent: " if src is not None and src.kind == "ClusterResource" \
                        else (f"{src.where()}: " if src is not None else "")
                    problems.append(f"{where}{name}: resource agent {agent} does not exist on {node.name} "
                                    f"(crm_resource --show-metadata: {why})")
        if problems:
            return problems
        try:
            candidate, _ = self._preview_cib(node)
        except ApplyError as err:
            return [str(err)]
        return [f"crm_verify: {e}" for e in pacemaker.verify(node, candidate)]

    def explain(self, change: Change, node: Node) -> list[str]:
        """What Pacemaker would do with the CIB this run leaves: one crm_simulate for the
        whole plan. Each change shows the actions on its own resources; the first one also
        shows those on resources without a change of their own (a colocated resource
        restarted with the one that changes, a resource made by hand)."""
        if self._preview is None:
            candidate, self._forming = self._preview_cib(node)
            self._preview = pacemaker.simulate(node, candidate, self._forming)
        mine = self._ids(change.name, change.desired or change.observed or {})
        lines = [a.describe() for a in self._preview if a.base_resource in mine]
        first = not self._explained
        if first:
            changing = set().union(*(self._ids(n, self._observed.get(n, {})) for n in self._pruned))
            for name, state in self._states.items():
                if not self._in_sync(name):
                    changing |= self._ids(name, state)
            lines += [a.describe() for a in self._preview if a.base_resource not in mine | changing]
            if lines and self._forming:
                lines.append(f"(simulated for the new cluster of {', '.join(self._forming)} once it has formed)")
        self._explained.add(change.name)
        return [f"crm_simulate: {line}" for line in lines] + self._placement_note(change)

    def _placement_note(self, change: Change) -> list[str]:
        """Where a Pacemaker-placed container can start: the simulation only counts nodes
        whose Container reconciler has defined it already."""
        attribute = (change.desired or {}).get("nodeAttribute")
        if not attribute or change.action != "create":
            return []
        ready = [n for n, attrs in sorted(self._attributes.items())
                 if attrs.get(attribute) == pacemaker.CONTAINER_ATTRIBUTE_VALUE]
        return [f"starts only on a node where the container is defined (node attribute {attribute}="
                f"{pacemaker.CONTAINER_ATTRIBUTE_VALUE}, set by that node's Container reconciler): "
                f"{'now ' + ', '.join(ready) if ready else 'no node yet'}"]

    def _in_sync(self, name: str) -> bool:
        have = self._observed.get(name)
        if have is None:
            return False
        want = self._states[name]
        strip = [m for m in OPERATOR_META if m not in self._set_meta.get(name, set())]
        return {**want, "meta": {k: v for k, v in want["meta"].items() if k not in strip}} == \
            {**have, "meta": {k: v for k, v in have.get("meta", {}).items() if k not in strip}}

    @staticmethod
    def _ids(name: str, state: dict[str, Any]) -> set[str]:
        return {name, name + CLONE_SUFFIX, *state.get("group", [])}

    # --- health ----------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Where each resource runs against where it should, from one crm_mon; for IPaddr2
        addresses also who answers on the link (one ARP probe burst per interface)."""
        wanted = [n for n in desired.get(self.kind, {}) if n in self._states]
        if not wanted:
            return {}
        addresses = {n: self._states[n]["params"] for n in wanted
                     if self._states[n].get("agent") == "ocf:heartbeat:IPaddr2"}
        peers = {n.address.split("/")[0]: n.name for n in self._cluster.spec.nodes if n.name != node.name} \
            if self._cluster is not None else {}
        # The link is asked while crm_mon answers: neither waits for the other.
        link: dict[str, Any] = {}
        prober = threading.Thread(target=self._probe, args=(node, addresses, peers, link), daemon=True)
        if addresses:
            prober.start()
        snap = pacemaker_health.read(node)
        if addresses:
            prober.join()
        if isinstance(snap, str):
            return {self.kind: {n: Health.unknown("NoAnswer", snap) for n in wanted}}
        out = {n: pacemaker_health.resource_health(n, self._states[n], snap) for n in wanted}
        if "answers" in link:
            names = netprobe.names_by_mac(link["answers"], peers)
            for n, params in addresses.items():
                if out[n].status == "Healthy":
                    found = netprobe.holders(params["ip"] in link["here"], node.name,
                                             link["answers"].get(params["ip"], set()), names)
                    out[n] = pacemaker_health.address_health(out[n], snap.resources[n].nodes, found)
        return {self.kind: out}

    @staticmethod
    def _probe(node: Node, addresses: dict[str, dict[str, str]], peers: dict[str, str], into: dict[str, Any]) -> None:
        """Who answers for each IPaddr2 address (and each peer's own address, to name them);
        nothing in `into` when the link cannot be asked: Pacemaker's view then stands alone."""
        try:
            here = netprobe.local_ips(node)
            answers: dict[str, set[str]] = {}
            for nic in sorted({p["nic"] for p in addresses.values()}):
                ips = [p["ip"] for p in addresses.values() if p["nic"] == nic]
                answers.update(netprobe.probe(node, nic, [*ips, *peers]))
        except (OSError, CommandError):
            return
        into.update(here=here, answers=answers)

    # --- apply ---------------------------------------------------------------------------

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        """Every change of a pass goes into the CIB as one verified patch, written by the DC."""
        dc = pacemaker.wait_for_dc(node)
        if dc != node.name:
            in_sync = self._now_in_sync(node)  # this node's Pacemaker may have just started
            return {c.key: Deferred(f"nothing to write: the CIB already has it (the DC {dc} writes the CIB)"
                                    if in_sync(c) else f"applied by the DC {dc}") for c in changes}
        outcomes: Outcomes = {}
        for change in changes:
            if change.action == "delete":
                try:
                    self._stop_first(change, node)
                except (ApplyError, CommandError) as err:
                    outcomes[change.key] = err
        deletes = [c.name for c in changes if c.action == "delete" and c.key not in outcomes]
        try:
            pacemaker.update_cib(node, lambda cib: build_candidate(cib, self._states, deletes))
            error: Exception | None = None
        except (ApplyError, CommandError, OSError) as err:
            error = err
        outcomes.update({c.key: error for c in changes if c.key not in outcomes})
        return outcomes

    def _stop_first(self, change: Change, node: Node) -> None:
        """Before a running resource leaves the CIB, stop it through Pacemaker and wait,
        as `pcs resource delete` does: a primitive removed while it runs is stopped as an
        orphan with default timeouts (its own operations are gone with it), and an lxc
        primitive's stop needs the container's config, which the Container reconciler
        removes right after this delete."""
        ids = self._ids(change.name, change.observed or {})
        if not self._active(node, ids):
            return
        pacemaker.update_cib(node, lambda cib: stop_resource(cib, change.name))
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while self._active(node, ids):
            if time.monotonic() > deadline:
                raise ApplyError(f"Pacemaker did not stop {change.name} within {STOP_WAIT_SECONDS:.0f}s "
                                 "(target-role=Stopped is set): it stays in the CIB until it has stopped; "
                                 f"see crm_mon, and crm_resource --cleanup -r {change.name} once fixed")
            time.sleep(0.5)

    @staticmethod
    def _active(node: Node, ids: set[str]) -> list[str]:
        try:
            status = pacemaker.cluster_status(node)
        except pacemaker.CibUnavailable as err:
            raise ApplyError(f"cannot tell whether {', '.join(sorted(ids))} still run: {err}") from None
        return [f"{r} on {', '.join(where)}" for r, where in status.active.items() if r in ids]

    def _now_in_sync(self, node: Node) -> Callable[[Change], bool]:
        """Whether a change is already in the CIB, looked at afresh (for a nicer message)."""
        try:
            self.observe(node)
        except Exception:  # only a nicer message is at stake
            return lambda change: False
        return lambda change: (change.name not in self._observed if change.action == "delete"
                               else self._in_sync(change.name))

    # --- watch ---------------------------------------------------------------------------

    def watch(self, node: Node) -> Iterator[str]:
        """Yield when the CIB's configuration changes (one `cibadmin --query` every few
        seconds: Pacemaker offers no change feed to a command-line client). Where a
        resource runs is in the status section, so failovers do not wake the agent."""
        last: bytes | None = None
        while True:
            try:
                current = ET.tostring(pacemaker.query_cib(node, scope="configuration", local=True))
            except pacemaker.CibUnavailable:
                current = b""
            if last is not None and current != last:
                yield "the CIB configuration changed"
            last = current
            time.sleep(WATCH_SECONDS)
