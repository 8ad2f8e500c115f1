"""The CIB's resources and constraints: manifest → normalized state → XML, and back.

One normalized state per Pacemaker resource (a ClusterResource manifest, a Pacemaker
VirtualIP, a clustered Container), in the shape of the manifest's spec, so the plan shows
manifest fields and the importer writes the state as a manifest:

    {"agent": "ocf:pacemaker:Stateful", "params": {...}, "meta": {...},
     "operations": [{"name": "monitor", "interval": "10s", "role": "Promoted"}, ...],
     "clone": {"meta": {"promotable": "true", "notify": "true"}},
     "location": [...], "colocation": [{"with": "vip", "score": "INFINITY"}], "order": [...]}

Rules of the shape (see nvsets.py for sets and rules):
- a key is present only when the CIB has the element or attribute (`build(parse(x)) == x`);
- an id is present only when it differs from the id reconcile derives: `NAME-clone`,
  `NAME-instance_attributes`, `NAME-NAME-interval-10s` for an op (pcs's ids), and for a
  constraint of a resource `NAME-location-NODE`, `NAME-with-OTHER`, `NAME-after-FIRST`;
- names in `with`, `first` and sets are the ids the CIB holds (a cloned resource's clone id);
- a constraint belongs to the resource it places (`rsc`, or `then` of an order); the rest
  (sets, patterns, tickets) is the cluster's (see cluster_cib.py).

Pure functions: no command, no file.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterable

from reconcilers.base import one_line
from reconcilers.pacemaker.nvsets import (
    build_rule, build_sets, canonical_rule, canonical_sets, dump, parse_bool, parse_rule, parse_sets, score, xml_bool,
)
from schemas.cluster_resource import MARKER

RESOURCE_TAGS = ("primitive", "group", "clone", "master", "bundle")
CLONE_SUFFIX = "-clone"
OP_ATTRS = (("name", "name"), ("interval", "interval"), ("timeout", "timeout"), ("role", "role"),
            ("onFail", "on-fail"), ("startDelay", "start-delay"), ("intervalOrigin", "interval-origin"),
            ("enabled", "enabled"), ("recordPending", "record-pending"), ("requires", "requires"),
            ("description", "description"))
BOOL_ATTRS = {"enabled", "recordPending", "sequential", "requireAll", "symmetrical", "influence", "legacy"}
COLOCATION_ATTRS = (("score", "score"), ("role", "rsc-role"), ("withRole", "with-rsc-role"),
                    ("nodeAttribute", "node-attribute"), ("influence", "influence"))
ORDER_ATTRS = (("firstAction", "first-action"), ("thenAction", "then-action"), ("kind", "kind"), ("score", "score"),
               ("symmetrical", "symmetrical"), ("requireAll", "require-all"))
LOCATION_ATTRS = (("role", "role"), ("resourceDiscovery", "resource-discovery"))
# cluster-level constraints: manifest field → XML attribute, per constraint element
CONSTRAINT_TAGS = {"location": "rsc_location", "colocation": "rsc_colocation", "order": "rsc_order",
                   "ticket": "rsc_ticket"}
CONSTRAINT_ATTRS = {
    "location": (("resource", "rsc"), ("pattern", "rsc-pattern"), ("node", "node"), ("score", "score"),
                 ("role", "role"), ("resourceDiscovery", "resource-discovery")),
    "colocation": (("resource", "rsc"), ("with", "with-rsc"), ("score", "score"), ("role", "rsc-role"),
                   ("withRole", "with-rsc-role"), ("nodeAttribute", "node-attribute"), ("influence", "influence")),
    "order": (("first", "first"), ("then", "then"), ("firstAction", "first-action"), ("thenAction", "then-action"),
              ("kind", "kind"), ("score", "score"), ("symmetrical", "symmetrical"), ("requireAll", "require-all")),
    "ticket": (("resource", "rsc"), ("role", "rsc-role"), ("ticket", "ticket"), ("lossPolicy", "loss-policy")),
}
SET_ATTRS = (("sequential", "sequential"), ("requireAll", "require-all"), ("ordering", "ordering"),
             ("action", "action"), ("role", "role"), ("score", "score"), ("kind", "kind"))
SCORE_KEYS = {"score"}


def _attr(value: Any) -> str:
    return xml_bool(value) if isinstance(value, bool) else str(value)


def _read(key: str, text: str) -> Any:
    if key in SCORE_KEYS:
        return score(text)
    if key in BOOL_ATTRS:
        return parse_bool(text)
    return text


def cib_value(value: str) -> str:
    """An attribute value of the CIB. ElementTree escapes markup and writes a newline in an
    attribute as a character reference, so only what XML 1.0 cannot carry at all (control
    characters) or what would reach Pacemaker's tools as two lines is refused (UnsafeValue)."""
    return one_line(value, "the CIB", max_length=4096)


def checked(el: ET.Element) -> ET.Element:
    """`el` after every attribute value in it passed `cib_value`: the one place XML leaves
    reconcile (a candidate CIB, a render) goes through it."""
    for e in el.iter():
        for value in e.attrib.values():
            cib_value(value)
    return el


# --- ids reconcile derives ------------------------------------------------------------------


def op_id(rsc: str, op: dict[str, Any]) -> str:
    return f"{rsc}-{op['name']}-interval-{op['interval']}"


def clone_id(name: str, clone: dict[str, Any]) -> str:
    return clone.get("id") or name + CLONE_SUFFIX


def top_id(name: str, state: dict[str, Any]) -> str:
    """The id constraints name: the clone's for a cloned resource."""
    return clone_id(name, state["clone"]) if "clone" in state else name


def location_id(name: str, loc: dict[str, Any], i: int) -> str:
    return f"{name}-location-{loc['node']}" if "node" in loc else f"{name}-location-{i}"


def colocation_id(name: str, col: dict[str, Any]) -> str:
    return f"{name}-with-{col['with']}"


def order_id(name: str, order: dict[str, Any]) -> str:
    base = f"{name}-after-{order['first']}"
    return f"{base}-{order['firstAction']}" if order.get("firstAction") else base


def set_id(constraint: str, i: int) -> str:
    return f"{constraint}_set" if i == 0 else f"{constraint}_set-{i}"


# --- manifest → state -----------------------------------------------------------------------


def canonical_operation(rsc: str, op: Any) -> dict[str, Any]:
    d = dump(op)
    out = {k: d[k] for k, _ in OP_ATTRS if d.get(k) is not None}
    oid = d.get("id") or op_id(rsc, out)
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
        sets = canonical_sets(getattr(op, key) if not isinstance(op, dict) else d.get(key), f"{oid}-{tag}")
        if sets is not None:
            out[key] = sets
    if oid != op_id(rsc, out):
        out["id"] = oid
    return out


def resource_state(name: str, spec: Any, resolve: Callable[[str], str],
                   secret: Callable[[str, Any], Any] | None = None) -> dict[str, Any]:
    """The normalized state of a ClusterResource manifest's spec; `resolve(ref)` gives the
    id a reference means in the CIB (a cloned resource's clone id)."""
    state: dict[str, Any] = {}
    if spec.group is not None:
        state["group"] = list(spec.group)
    else:
        state["agent"] = spec.agent
    if spec.description is not None:
        state["description"] = spec.description
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes"), ("utilization", "utilization")):
        sets = canonical_sets(getattr(spec, key), f"{name}-{tag}", secret if key == "params" else None)
        if sets is not None:
            state[key] = sets
    if spec.operations:
        state["operations"] = [canonical_operation(name, op) for op in spec.operations]
    if spec.operationsId is not None:
        state["operationsId"] = spec.operationsId
    clone = spec.clone_spec
    if clone is not None:
        state["clone"] = canonical_clone(name, clone)
    locations = [_location(name, dump(loc), i) for i, loc in enumerate(spec.location)]
    colocations = [_colocation(name, {**dump(c), "with": resolve(c.with_)}) for c in spec.colocation]
    orders = [_order(name, {**dump(o), "first": resolve(o.first)}) for o in spec.order]
    orders += [_order(name, {"id": f"{name}-after-{ref}", "first": resolve(ref), "kind": "Mandatory"})
               for ref in spec.startAfter]
    for key, items in (("location", locations), ("colocation", colocations), ("order", orders)):
        if items:
            state[key] = items
    return state


def canonical_clone(name: str, clone: Any) -> dict[str, Any]:
    d = dump(clone)
    out: dict[str, Any] = {}
    cid = d.get("id") or name + CLONE_SUFFIX
    if cid != name + CLONE_SUFFIX:
        out["id"] = cid
    meta = canonical_sets(clone.meta, f"{cid}-meta_attributes") if not isinstance(clone, dict) else d.get("meta")
    if d.get("promotable") and not d.get("legacy"):
        meta = {"promotable": "true", **meta} if isinstance(meta, dict) or meta is None else meta
        if isinstance(meta, list) and "promotable" not in meta[0]["values"]:
            meta[0]["values"] = {"promotable": "true", **meta[0]["values"]}
    if meta:
        out["meta"] = meta
    if d.get("description") is not None:
        out["description"] = d["description"]
    if d.get("legacy"):
        out["legacy"] = True
    return out


def _location(name: str, loc: dict[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lid = loc.get("id") or location_id(name, loc, i)
    if "node" in loc:
        out.update(node=loc["node"], score=loc.get("score", "INFINITY"))
    else:
        out["rules"] = [canonical_rule(r, lid, j) for j, r in enumerate(loc["rules"])]
    for key, _ in LOCATION_ATTRS:
        if loc.get(key) is not None:
            out[key] = loc[key]
    if lid != location_id(name, out, i):
        out["id"] = lid
    return out


def _colocation(name: str, col: dict[str, Any]) -> dict[str, Any]:
    out = {"with": col["with"], **{k: col[k] for k, _ in COLOCATION_ATTRS if col.get(k) is not None}}
    if col.get("id") and col["id"] != colocation_id(name, out):
        out["id"] = col["id"]
    return out


def _order(name: str, order: dict[str, Any]) -> dict[str, Any]:
    out = {"first": order["first"], **{k: order[k] for k, _ in ORDER_ATTRS if order.get(k) is not None}}
    if order.get("id") and order["id"] != order_id(name, out):
        out["id"] = order["id"]
    return out


def canonical_constraint(c: Any) -> dict[str, Any]:
    """A cluster-level constraint (Cluster spec.constraints) in canonical form."""
    d = dump(c)
    cid = d["id"]
    out: dict[str, Any] = {"type": d["type"], "id": cid}
    for key, _ in CONSTRAINT_ATTRS[d["type"]]:
        if d.get(key) is not None:
            out[key] = d[key]
    if d.get("rules") is not None:
        out["rules"] = [canonical_rule(r, cid, j) for j, r in enumerate(d["rules"])]
    if d.get("sets") is not None:
        out["sets"] = [_canonical_set(s, cid, i) for i, s in enumerate(d["sets"])]
    return out


def _canonical_set(s: dict[str, Any], constraint: str, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.get("id") and s["id"] != set_id(constraint, i):
        out["id"] = s["id"]
    out["resources"] = list(s["resources"])
    out.update({k: s[k] for k, _ in SET_ATTRS if s.get(k) is not None})
    return out


# --- state → XML --------------------------------------------------------------------------


def agent_attrs(agent: str) -> dict[str, str]:
    parts = agent.split(":")
    if parts[0] == "ocf":
        return {"class": "ocf", "provider": parts[1], "type": parts[2]}
    return {"class": parts[0], "type": ":".join(parts[1:])}


def build_operation(rsc: str, op: dict[str, Any]) -> ET.Element:
    oid = op.get("id") or op_id(rsc, op)
    el = ET.Element("op", {"id": oid, **{attr: _attr(op[k]) for k, attr in OP_ATTRS if op.get(k) is not None}})
    build_sets(el, "instance_attributes", op.get("params"), f"{oid}-instance_attributes")
    build_sets(el, "meta_attributes", op.get("meta"), f"{oid}-meta_attributes")
    return el


def build_primitive(name: str, state: dict[str, Any], value: Callable[[str, Any], str] | None = None) -> ET.Element:
    """The primitive element (without its clone). `value(param, v)` renders a parameter
    (a secret becomes `lrm://`)."""
    attrs = {"id": name, **agent_attrs(state["agent"])}
    if "description" in state:
        attrs["description"] = state["description"]
    el = ET.Element("primitive", attrs)
    build_sets(el, "instance_attributes", state.get("params"), f"{name}-instance_attributes", value)
    build_sets(el, "meta_attributes", state.get("meta"), f"{name}-meta_attributes")
    if state.get("operations") or state.get("operationsId"):
        ops = ET.SubElement(el, "operations", {"id": state["operationsId"]} if "operationsId" in state else {})
        for op in state["operations"]:
            ops.append(build_operation(name, op))
    build_sets(el, "utilization", state.get("utilization"), f"{name}-utilization")
    return el


def build_group(name: str, state: dict[str, Any], members: Iterable[ET.Element]) -> ET.Element:
    attrs = {"id": name}
    if "description" in state:
        attrs["description"] = state["description"]
    el = ET.Element("group", attrs)
    for member in members:
        el.append(member)
    build_sets(el, "meta_attributes", state.get("meta"), f"{name}-meta_attributes")
    return el


def wrap_clone(name: str, state: dict[str, Any], inner: ET.Element) -> ET.Element:
    """`inner` in its clone (or <master>) when the state says it is cloned."""
    clone = state.get("clone")
    if clone is None:
        return inner
    cid = clone_id(name, clone)
    attrs = {"id": cid}
    if "description" in clone:
        attrs["description"] = clone["description"]
    el = ET.Element("master" if clone.get("legacy") else "clone", attrs)
    el.append(inner)
    build_sets(el, "meta_attributes", clone.get("meta"), f"{cid}-meta_attributes")
    return el


def mark(el: ET.Element) -> ET.Element:
    """Add the ownership marker to the first meta_attributes of a top-level element."""
    meta = el.find("meta_attributes")
    if meta is None:  # where build_primitive / wrap_clone / build_group put a meta set
        meta = ET.Element("meta_attributes", {"id": f"{el.get('id')}-meta_attributes"})
        after = [i for i, c in enumerate(el) if c.tag == "instance_attributes"] if el.tag == "primitive" else []
        el.insert(after[-1] + 1 if after else (0 if el.tag == "primitive" else len(el)), meta)
    if not any(nv.get("name") == MARKER for nv in meta.findall("nvpair")):
        ET.SubElement(meta, "nvpair", {"id": f"{meta.get('id')}-{MARKER}", "name": MARKER, "value": "true"})
    return el


def is_marked(el: ET.Element) -> bool:
    return any(nv.get("name") == MARKER and nv.get("value") == "true"
               for m in el.findall("meta_attributes") for nv in m.findall("nvpair"))


def _rules(parent: ET.Element, rules: list[dict[str, Any]], cid: str) -> None:
    for j, rule in enumerate(rules):
        parent.append(build_rule(rule, cid, j))


def build_resource_constraints(name: str, state: dict[str, Any]) -> list[ET.Element]:
    """The constraints a resource's state declares, with `rsc`/`then` its top id."""
    me = top_id(name, state)
    out = []
    for i, loc in enumerate(state.get("location", [])):
        cid = loc.get("id") or location_id(name, loc, i)
        el = ET.Element("rsc_location", {"id": cid, "rsc": me})
        if "node" in loc:
            el.set("node", loc["node"])
            el.set("score", str(loc["score"]))
        for key, attr in LOCATION_ATTRS:
            if loc.get(key) is not None:
                el.set(attr, loc[key])
        _rules(el, loc.get("rules", []), cid)
        out.append(el)
    for col in state.get("colocation", []):
        el = ET.Element("rsc_colocation", {"id": col.get("id") or colocation_id(name, col), "rsc": me,
                                           "with-rsc": col["with"]})
        for key, attr in COLOCATION_ATTRS:
            if col.get(key) is not None:
                el.set(attr, _attr(col[key]))
        out.append(el)
    for order in state.get("order", []):
        el = ET.Element("rsc_order", {"id": order.get("id") or order_id(name, order), "first": order["first"],
                                      "then": me})
        for key, attr in ORDER_ATTRS:
            if order.get(key) is not None:
                el.set(attr, _attr(order[key]))
        out.append(el)
    return out


def build_constraint(c: dict[str, Any]) -> ET.Element:
    """A cluster-level constraint element from its canonical state."""
    el = ET.Element(CONSTRAINT_TAGS[c["type"]], {"id": c["id"]})
    for key, attr in CONSTRAINT_ATTRS[c["type"]]:
        if c.get(key) is not None:
            el.set(attr, _attr(c[key]))
    _rules(el, c.get("rules", []), c["id"])
    for i, s in enumerate(c.get("sets", [])):
        sel = ET.SubElement(el, "resource_set", {"id": s.get("id") or set_id(c["id"], i)})
        for key, attr in SET_ATTRS:
            if s.get(key) is not None:
                sel.set(attr, _attr(s[key]))
        for r in s["resources"]:
            ET.SubElement(sel, "resource_ref", {"id": r})
    return el


# --- XML → state ---------------------------------------------------------------------------


def _agent(el: ET.Element) -> str:
    cls, provider, type_ = el.get("class", ""), el.get("provider"), el.get("type", "")
    return f"{cls}:{provider}:{type_}" if provider else f"{cls}:{type_}"


def _skip_marker(name: str) -> bool:
    return name == MARKER


def parse_operation(rsc: str, el: ET.Element) -> dict[str, Any]:
    op = {k: _read(k, el.get(attr, "")) for k, attr in OP_ATTRS if el.get(attr) is not None}
    oid = el.get("id", "")
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
        sets = parse_sets(el.findall(tag), f"{oid}-{tag}")
        if sets is not None:
            op[key] = sets
    if oid != op_id(rsc, op):
        op["id"] = oid
    return op


def parse_primitive(el: ET.Element) -> dict[str, Any]:
    name = el.get("id", "")
    state: dict[str, Any] = {"agent": _agent(el)}
    if el.get("template") is not None:
        state["unsupported"] = f"primitive from template {el.get('template')!r}"
    if el.get("description") is not None:
        state["description"] = el.get("description")
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes"), ("utilization", "utilization")):
        sets = parse_sets(el.findall(tag), f"{name}-{tag}", _skip_marker if key == "meta" else lambda n: False)
        if sets is not None:
            state[key] = sets
    ops = el.findall("operations/op")
    if ops:
        state["operations"] = [parse_operation(name, op) for op in ops]
    operations = el.find("operations")
    if operations is not None and operations.get("id") is not None:
        state["operationsId"] = operations.get("id")
    return state


def _parse_clone(el: ET.Element, name: str) -> dict[str, Any]:
    clone: dict[str, Any] = {}
    cid = el.get("id", "")
    if cid != name + CLONE_SUFFIX:
        clone["id"] = cid
    meta = parse_sets(el.findall("meta_attributes"), f"{cid}-meta_attributes", _skip_marker)
    if meta is not None:
        clone["meta"] = meta
    if el.get("description") is not None:
        clone["description"] = el.get("description")
    if el.tag == "master":
        clone["legacy"] = True
    return clone


def parse_resources(configuration: ET.Element) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[str]]:
    """Every resource of a CIB `<configuration>` as (states by name, top id → name, names in
    the CIB's order). Group members are resources of their own; a clone is its inner
    resource's `clone`. A bundle is kept as `{"unsupported": ...}`."""
    states: dict[str, dict[str, Any]] = {}
    tops: dict[str, str] = {}
    order: list[str] = []
    resources = configuration.find("resources")

    def group(el: ET.Element, clone: ET.Element | None) -> None:
        name = el.get("id", "")
        members = [c for c in el if c.tag == "primitive"]
        state: dict[str, Any] = {"group": [m.get("id", "") for m in members]}
        if el.get("description") is not None:
            state["description"] = el.get("description")
        meta = parse_sets(el.findall("meta_attributes"), f"{name}-meta_attributes", _skip_marker)
        if meta is not None:
            state["meta"] = meta
        if clone is not None:
            state["clone"] = _parse_clone(clone, name)
        states[name] = state
        order.append(name)
        for m in members:
            states[m.get("id", "")] = parse_primitive(m)
            tops[m.get("id", "")] = m.get("id", "")
            order.append(m.get("id", ""))

    for top in resources if resources is not None else []:
        tid = top.get("id", "")
        tops[tid] = tid
        if top.tag == "primitive":
            states[tid] = parse_primitive(top)
            order.append(tid)
        elif top.tag == "group":
            group(top, None)
        elif top.tag in ("clone", "master"):
            inner = next((c for c in top if c.tag in ("primitive", "group")), None)
            if inner is None:
                continue
            name = inner.get("id", "")
            tops[tid] = tops[name] = name
            if inner.tag == "group":
                group(inner, top)
            else:
                states[name] = {**parse_primitive(inner), "clone": _parse_clone(top, name)}
                order.append(name)
        elif top.tag in ("bundle", "template"):
            states[tid] = {"unsupported": f"a {top.tag} (reconcile does not model {top.tag}s yet)"}
            order.append(tid)
    return states, tops, order


def parse_constraint(el: ET.Element) -> dict[str, Any] | None:
    """A constraint element in cluster-level canonical form (None for an unknown element)."""
    kind = next((k for k, tag in CONSTRAINT_TAGS.items() if tag == el.tag), None)
    if kind is None:
        return None
    cid = el.get("id", "")
    out: dict[str, Any] = {"type": kind, "id": cid}
    for key, attr in CONSTRAINT_ATTRS[kind]:
        if el.get(attr) is not None:
            out[key] = _read(key, el.get(attr, ""))
    rules = el.findall("rule")
    if rules:
        out["rules"] = [parse_rule(r, cid, j) for j, r in enumerate(rules)]
    sets = el.findall("resource_set")
    if sets:
        out["sets"] = []
        for i, s in enumerate(sets):
            d: dict[str, Any] = {}
            if s.get("id") != set_id(cid, i):
                d["id"] = s.get("id", "")
            d["resources"] = [r.get("id", "") for r in s.findall("resource_ref")]
            d.update({k: _read(k, s.get(attr, "")) for k, attr in SET_ATTRS if s.get(attr) is not None})
            out["sets"].append(d)
    return out


def subject(c: dict[str, Any]) -> str | None:
    """The resource a constraint places (None for sets, patterns and tickets)."""
    if "sets" in c or c["type"] == "ticket" or "pattern" in c:
        return None
    return c.get("then") if c["type"] == "order" else c.get("resource")


def as_resource_constraint(name: str, c: dict[str, Any], i: int) -> tuple[str, dict[str, Any]]:
    """A simple cluster-level constraint as the (key, entry) of its resource's state."""
    t = c["type"]
    if t == "location":
        loc = {k: c[k] for k in ("node", "score", "rules", "role", "resourceDiscovery") if k in c}
        if "rules" in loc:
            loc["rules"] = [_reroot(r, c["id"], j) for j, r in enumerate(loc["rules"])]
        if c["id"] != location_id(name, loc, i):
            loc["id"] = c["id"]
        return "location", loc
    if t == "colocation":
        col = {k: c[k] for k in ("with", "score", "role", "withRole", "nodeAttribute", "influence") if k in c}
        if c["id"] != colocation_id(name, col):
            col["id"] = c["id"]
        return "colocation", col
    order = {k: c[k] for k in ("first", "firstAction", "thenAction", "kind", "score", "symmetrical", "requireAll")
             if k in c}
    if c["id"] != order_id(name, order):
        order["id"] = c["id"]
    return "order", order


def _reroot(rule: dict[str, Any], parent: str, j: int) -> dict[str, Any]:
    return rule  # rule ids are relative to the constraint id in both forms
