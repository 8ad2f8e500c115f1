"""The cluster-wide part of the CIB, declared in the Cluster manifest: one object per
cluster (kind ClusterConfig) next to the resources, written in the same CIB update.

    {"properties": {"stonith-enabled": "true", "no-quorum-policy": "stop"},
     "resourceDefaults": {...}, "operationDefaults": {...},       # when declared
     "alerts": [...], "fencingLevels": [...], "tags": [...],      # when declared
     "constraints": [...],                                        # when declared
     "nodes": {"lb1": {"attributes": {...}, "utilization": {...}}}}

Ownership, so that git is the truth without touching what it does not describe:
- properties: every cluster property except those Pacemaker maintains (dc-version, ...) and
  `maintenance-mode` unless git sets it (an operator's switch, like target-role);
- a section (defaults, alerts, fencing levels, tags, constraints) is owned whole once the
  manifest declares it (`alerts: []` removes every alert); left out, it is not touched;
- node attributes of a node the manifest gives `attributes`/`utilization`, except the
  operator's `standby` and `maintenance` unless git sets them.

Pure functions: no command, no file.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from reconcilers.pacemaker.cib import build_constraint, canonical_constraint
from reconcilers.pacemaker.nvsets import build_sets, canonical_sets, dump, parse_sets, sets_values

PROPERTIES_ID = "cib-bootstrap-options"
RSC_DEFAULTS_ID = "rsc_defaults-meta_attributes"
OP_DEFAULTS_ID = "op_defaults-meta_attributes"
MAINTAINED_PROPERTIES = frozenset({"dc-version", "cluster-infrastructure", "cluster-name", "have-watchdog",
                                   "last-lrm-refresh"})
OPERATOR_PROPERTIES = frozenset({"maintenance-mode"})
ROLLOUT_SET = "reconcile-rollout"
"""The cluster property set holding the rollout's turn (rollout.py): run-time state of the
agents, never owned, shown or removed by the Cluster reconciler."""
OPERATOR_NODE_ATTRIBUTES = frozenset({"standby", "maintenance"})
SECTIONS = (("resourceDefaults", "rsc_defaults", RSC_DEFAULTS_ID), ("operationDefaults", "op_defaults", OP_DEFAULTS_ID))


def node_set_id(node_id: int | str) -> str:
    return f"nodes-{node_id}"


# --- manifest → state -------------------------------------------------------------------------


def cluster_config_state(spec: Any) -> dict[str, Any]:
    """The ClusterConfig state of a Cluster manifest's spec (stack: pacemaker).

    stonith-enabled is Pacemaker's `true` by default: `stonithEnabled: false` is written,
    `true` is left to the default unless `properties` also lists it (as an imported CIB
    that said so explicitly does), so a set stonith-enabled=false made by hand is drift."""
    props = spec.properties
    stonith = "true" if spec.stonithEnabled else "false"
    if isinstance(props, dict):
        values = dict(props)
        if stonith == "false" and "stonith-enabled" not in values:
            values = {"stonith-enabled": "false", **values}
        properties = canonical_sets(values, PROPERTIES_ID) or {}
    else:
        properties = canonical_sets(props, PROPERTIES_ID)
        assert isinstance(properties, list)
        if stonith == "false" and not any("stonith-enabled" in s["values"] for s in properties):
            target = next((s for s in properties if s["id"] == PROPERTIES_ID), properties[0])
            target["values"] = {"stonith-enabled": "false", **target["values"]}
    state: dict[str, Any] = {"properties": properties}
    for key, _, default in SECTIONS:
        sets = getattr(spec, key)
        if sets is not None:
            state[key] = canonical_sets(sets, default) or {}
    if spec.alerts is not None:
        state["alerts"] = [canonical_alert(a) for a in spec.alerts]
    if spec.fencingLevels is not None:
        state["fencingLevels"] = [canonical_level(dump(lv)) for lv in spec.fencingLevels]
    if spec.tags is not None:
        state["tags"] = [{"id": t.id, "refs": list(t.refs)} for t in spec.tags]
    if spec.constraints is not None:
        state["constraints"] = [canonical_constraint(c) for c in spec.constraints]
    nodes = {}
    for n in spec.nodes:
        if n.attributes is None and n.utilization is None:
            continue
        entry: dict[str, Any] = {}
        if n.attributes is not None:
            entry["attributes"] = canonical_sets(n.attributes, node_set_id(n.id)) or {}
        if n.utilization is not None:
            entry["utilization"] = canonical_sets(n.utilization, f"{node_set_id(n.id)}-utilization") or {}
        nodes[n.name] = entry
    if nodes:
        state["nodes"] = nodes
    return state


def recipient_id(alert: str, i: int) -> str:
    return f"{alert}-recipient" if i == 0 else f"{alert}-recipient-{i}"


def level_id(level: dict[str, Any]) -> str:
    """pcs's `fl-TARGET-INDEX`; a pattern or attribute target made into id characters."""
    target = level.get("target") or level.get("targetPattern") or level.get("targetAttribute") or ""
    return "fl-" + re.sub(r"[^A-Za-z0-9_.-]", "_", target).strip("_.-") + f"-{level['index']}"


def canonical_alert(a: Any) -> dict[str, Any]:
    d = dump(a)
    out: dict[str, Any] = {"id": d["id"], "path": d["path"]}
    if d.get("description") is not None:
        out["description"] = d["description"]
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
        sets = canonical_sets(d.get(key), f"{d['id']}-{tag}")
        if sets is not None:
            out[key] = sets
    if d.get("select") is not None:
        out["select"] = {k: v for k, v in d["select"].items() if v not in (False, None)}
    recipients = []
    for i, r in enumerate(d.get("recipients", [])):
        rid = r.get("id") or recipient_id(d["id"], i)
        entry: dict[str, Any] = {"value": r["value"]}
        if rid != recipient_id(d["id"], i):
            entry["id"] = rid
        if r.get("description") is not None:
            entry["description"] = r["description"]
        for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
            sets = canonical_sets(r.get(key), f"{rid}-{tag}")
            if sets is not None:
                entry[key] = sets
        recipients.append(entry)
    if recipients:
        out["recipients"] = recipients
    return out


def canonical_level(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: d[k] for k in ("index", "target", "targetPattern", "targetAttribute", "targetValue", "devices")
           if d.get(k) is not None}
    if d.get("id") and d["id"] != level_id(out):
        out["id"] = d["id"]
    return out


# --- state → XML -------------------------------------------------------------------------------

LEVEL_ATTRS = (("index", "index"), ("target", "target"), ("targetPattern", "target-pattern"),
               ("targetAttribute", "target-attribute"), ("targetValue", "target-value"))
SELECT_TAGS = (("nodes", "select_nodes"), ("fencing", "select_fencing"), ("resources", "select_resources"))


def build_alert(a: dict[str, Any]) -> ET.Element:
    el = ET.Element("alert", {"id": a["id"], "path": a["path"]})
    if "description" in a:
        el.set("description", a["description"])
    build_sets(el, "meta_attributes", a.get("meta"), f"{a['id']}-meta_attributes")
    build_sets(el, "instance_attributes", a.get("params"), f"{a['id']}-instance_attributes")
    if "select" in a:
        sel = ET.SubElement(el, "select")
        for key, tag in SELECT_TAGS:
            if a["select"].get(key):
                ET.SubElement(sel, tag)
        if "attributes" in a["select"]:
            attrs = ET.SubElement(sel, "select_attributes")
            for name in a["select"]["attributes"]:
                ET.SubElement(attrs, "attribute", {"id": f"{a['id']}-attribute-{name}", "name": name})
    for i, r in enumerate(a.get("recipients", [])):
        rid = r.get("id") or recipient_id(a["id"], i)
        rel = ET.SubElement(el, "recipient", {"id": rid, "value": r["value"]})
        if "description" in r:
            rel.set("description", r["description"])
        build_sets(rel, "meta_attributes", r.get("meta"), f"{rid}-meta_attributes")
        build_sets(rel, "instance_attributes", r.get("params"), f"{rid}-instance_attributes")
    return el


def build_level(level: dict[str, Any]) -> ET.Element:
    el = ET.Element("fencing-level", {"id": level.get("id") or level_id(level)})
    for key, attr in LEVEL_ATTRS:
        if level.get(key) is not None:
            el.set(attr, str(level[key]))
    el.set("devices", ",".join(level["devices"]))
    return el


def build_tag(tag: dict[str, Any]) -> ET.Element:
    el = ET.Element("tag", {"id": tag["id"]})
    for ref in tag["refs"]:
        ET.SubElement(el, "obj_ref", {"id": ref})
    return el


SECTION_ORDER = ("crm_config", "nodes", "resources", "constraints", "fencing-topology", "op_defaults", "rsc_defaults",
                 "alerts", "tags")


def section(configuration: ET.Element, tag: str, create: bool = True) -> ET.Element | None:
    """A section of `<configuration>`, made (in the schema's place) when missing."""
    el = configuration.find(tag)
    if el is None and create:
        el = ET.Element(tag)
        after = [configuration.find(t) for t in SECTION_ORDER[:SECTION_ORDER.index(tag)]]
        position = max((list(configuration).index(a) + 1 for a in after if a is not None), default=0)
        configuration.insert(position, el)
    return el


def write_sections(configuration: ET.Element, state: dict[str, Any], node_ids: dict[str, int],
                   observed: dict[str, Any] | None = None) -> None:
    """Make `configuration` say what the ClusterConfig `state` says (everything else is left
    as it is): properties in place, declared sections replaced whole, node attributes of
    the declared nodes. Constraints are handled with the resources' (see candidate.py)."""
    write_properties(section(configuration, "crm_config"), state["properties"], observed)
    for key, tag, default in SECTIONS:
        if key in state:
            el = section(configuration, tag)
            el.clear()
            build_sets(el, "meta_attributes", state[key], default)
    for key, tag, build in (("alerts", "alerts", build_alert), ("fencingLevels", "fencing-topology", build_level),
                            ("tags", "tags", build_tag)):
        if key in state:
            el = section(configuration, tag)
            el.clear()
            for item in state[key]:
                el.append(build(item))
            if not len(el):
                configuration.remove(el)
    nodes_el = section(configuration, "nodes")
    for name, entry in state.get("nodes", {}).items():
        node = next((n for n in nodes_el.findall("node") if n.get("uname") == name), None)
        if node is None:
            node = ET.SubElement(nodes_el, "node", {"id": str(node_ids[name]), "uname": name})
        declared = sets_values(entry.get("attributes"))
        keep = [s for s in node.findall("instance_attributes")
                if any(nv.get("name") in OPERATOR_NODE_ATTRIBUTES and nv.get("name") not in declared
                       for nv in s.findall("nvpair"))]
        for child in list(node):
            if child.tag in ("instance_attributes", "utilization") and child not in keep:
                node.remove(child)
        for s in keep:  # only the operator's switches stay
            for nv in list(s.findall("nvpair")):
                if nv.get("name") not in OPERATOR_NODE_ATTRIBUTES or nv.get("name") in declared:
                    s.remove(nv)
        nid = node.get("id", str(node_ids.get(name, "")))
        build_sets(node, "instance_attributes", entry.get("attributes"), node_set_id(nid))
        build_sets(node, "utilization", entry.get("utilization"), f"{node_set_id(nid)}-utilization")


def _owned_property(name: str, declared: set[str]) -> bool:
    return name not in MAINTAINED_PROPERTIES and (name not in OPERATOR_PROPERTIES or name in declared)


def write_properties(crm_config: ET.Element, properties: Any, observed: dict[str, Any] | None) -> None:
    """Set the desired properties in place; remove the owned ones git no longer has; keep
    what Pacemaker maintains and the operator's switches."""
    wanted = properties if isinstance(properties, list) else [{"id": PROPERTIES_ID, "values": properties or {}}]
    declared = set(sets_values(properties))
    # The rollout's turn (reconcilers/pacemaker/rollout.py) lives in crm_config but is the
    # agents' run-time state, not configuration: never owned, never removed.
    live = {s.get("id"): s for s in crm_config.findall("cluster_property_set") if s.get("id") != ROLLOUT_SET}
    for s in wanted:
        el = live.get(s["id"])
        if el is None:
            el = ET.SubElement(crm_config, "cluster_property_set", {"id": s["id"]})
        for child in list(el):
            if child.tag == "rule" or (child.tag == "nvpair" and _owned_property(child.get("name", ""), declared)
                                       and child.get("name") not in s["values"]):
                el.remove(child)
        if s.get("rule") is not None:
            from reconcilers.pacemaker.nvsets import build_rule

            el.insert(0, build_rule(s["rule"], s["id"], 0))
        if s.get("score") is not None:
            el.set("score", str(s["score"]))
        elif "score" in el.attrib:
            del el.attrib["score"]
        ids = s.get("ids", {})
        present = {nv.get("name"): nv for nv in el.findall("nvpair")}
        for name, value in s["values"].items():
            nv = present.get(name)
            nid = ids.get(name, f"{s['id']}-{name}")
            if nv is None:
                ET.SubElement(el, "nvpair", {"id": nid, "name": name, "value": str(value)})
            else:
                nv.set("value", str(value))
                nv.set("id", nid)
    wanted_ids = {s["id"] for s in wanted}
    for set_id, el in live.items():
        if set_id in wanted_ids:
            continue
        for nv in list(el.findall("nvpair")):
            if _owned_property(nv.get("name", ""), declared):
                el.remove(nv)
        if not el.findall("nvpair"):
            crm_config.remove(el)


# --- XML → state -------------------------------------------------------------------------------


def parse_cluster_config(configuration: ET.Element, desired: dict[str, Any]) -> dict[str, Any]:
    """The ClusterConfig state of a CIB configuration: what the desired state declares (and
    the properties, which are always owned), read back in the same canonical form."""
    declared = set(sets_values(desired.get("properties")))
    crm_config = configuration.find("crm_config")
    state: dict[str, Any] = {
        "properties": parse_sets([s for s in crm_config.findall("cluster_property_set") if s.get("id") != ROLLOUT_SET]
                                 if crm_config is not None else [],
                                 PROPERTIES_ID, lambda name: not _owned_property(name, declared)) or {}}
    for key, tag, default in SECTIONS:
        if key in desired:
            el = configuration.find(tag)
            state[key] = parse_sets(el.findall("meta_attributes") if el is not None else [], default) or {}
    if "alerts" in desired:
        state["alerts"] = [parse_alert(a) for a in configuration.findall("alerts/alert")]
    if "fencingLevels" in desired:
        state["fencingLevels"] = [parse_level(lv) for lv in configuration.findall("fencing-topology/fencing-level")]
    if "tags" in desired:
        state["tags"] = [{"id": t.get("id", ""), "refs": [r.get("id", "") for r in t.findall("obj_ref")]}
                         for t in configuration.findall("tags/tag")]
    nodes = {}
    for name, want in desired.get("nodes", {}).items():
        node = next((n for n in configuration.findall("nodes/node") if n.get("uname") == name), None)
        entry: dict[str, Any] = {}
        nid = node.get("id", "") if node is not None else ""
        switches = set(sets_values(want.get("attributes")))
        if "attributes" in want:
            entry["attributes"] = parse_sets(
                node.findall("instance_attributes") if node is not None else [], node_set_id(nid),
                lambda n: n in OPERATOR_NODE_ATTRIBUTES and n not in switches) or {}
        if "utilization" in want:
            entry["utilization"] = parse_sets(node.findall("utilization") if node is not None else [],
                                              f"{node_set_id(nid)}-utilization") or {}
        nodes[name] = entry
    if nodes:
        state["nodes"] = nodes
    return state


def parse_alert(el: ET.Element) -> dict[str, Any]:
    aid = el.get("id", "")
    out: dict[str, Any] = {"id": aid, "path": el.get("path", "")}
    if el.get("description") is not None:
        out["description"] = el.get("description")
    for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
        sets = parse_sets(el.findall(tag), f"{aid}-{tag}")
        if sets is not None:
            out[key] = sets
    sel = el.find("select")
    if sel is not None:
        out["select"] = {key: True for key, tag in SELECT_TAGS if sel.find(tag) is not None}
        attrs = sel.find("select_attributes")
        if attrs is not None:
            out["select"]["attributes"] = [a.get("name", "") for a in attrs.findall("attribute")]
    recipients = []
    for i, r in enumerate(el.findall("recipient")):
        rid = r.get("id", "")
        entry: dict[str, Any] = {"value": r.get("value", "")}
        if rid != recipient_id(aid, i):
            entry["id"] = rid
        if r.get("description") is not None:
            entry["description"] = r.get("description")
        for key, tag in (("params", "instance_attributes"), ("meta", "meta_attributes")):
            sets = parse_sets(r.findall(tag), f"{rid}-{tag}")
            if sets is not None:
                entry[key] = sets
        recipients.append(entry)
    if recipients:
        out["recipients"] = recipients
    return out


def parse_level(el: ET.Element) -> dict[str, Any]:
    d: dict[str, Any] = {key: el.get(attr) for key, attr in LEVEL_ATTRS if el.get(attr) is not None}
    d["index"] = int(d["index"]) if str(d.get("index", "")).isdigit() else d.get("index")
    d["devices"] = [x for x in el.get("devices", "").split(",") if x]
    d["id"] = el.get("id", "")
    return canonical_level(d)


def render_configuration(state: dict[str, Any], node_ids: dict[str, int]) -> ET.Element:
    """A `<configuration>` holding only the cluster-wide sections (render, first CIB)."""
    configuration = ET.Element("configuration")
    for tag in ("crm_config", "nodes", "resources", "constraints"):
        ET.SubElement(configuration, tag)
    for name, nid in node_ids.items():
        ET.SubElement(configuration.find("nodes"), "node", {"id": str(nid), "uname": name})
    write_sections(configuration, state, node_ids)
    for c in state.get("constraints", []):
        configuration.find("constraints").append(build_constraint(c))
    return configuration
