"""`reconcile import pacemaker`: a CIB and corosync.conf → manifests (reconcilers/importing.py).

    reconcile import pacemaker --live [--output-dir DIR]    # this node's CIB and corosync.conf
    reconcile import pacemaker cib.xml corosync.conf [--cluster NAME] [--output-dir DIR]

Writes a Cluster (Corosync settings from corosync.conf, the cluster-wide CIB sections, node
attributes), one ClusterResource per resource in the CIB's order (group members after
their group), and Pacemaker VirtualIPs for IPaddr2 primitives that are exactly what a
VirtualIP renders. Every constraint goes in the Cluster's `constraints`, in the CIB's
order, so `reconcile render` gives back the same configuration (ids kept). Applied as it
is, the import plans nothing to do.

Secrets never go into a manifest: a parameter the CIB holds as `lrm://` (cibsecret) becomes
a reference to this node's cibsecret file; a password-like parameter the CIB holds inline
is written to a file under the secrets folder (0600, `RESOURCE.PARAM`) and referenced, and
the notes say to copy it to every node (reconcile then keeps it out of the CIB). What
reconcile cannot express (bundles, templates) is reported and left out.
"""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from reconcilers.importing import Imported, ImportProblem
from reconcilers.pacemaker import corosync, tools
from reconcilers.pacemaker.cib import RESOURCE_TAGS, parse_constraint, parse_resources
from reconcilers.pacemaker.cluster_cib import (
    ROLLOUT_SET,
    MAINTAINED_PROPERTIES, PROPERTIES_ID, SECTIONS, node_set_id, parse_alert, parse_level,
)
from reconcilers.pacemaker.derived import virtual_ip_state
from reconcilers.pacemaker.nvsets import LRM_MAGIC, parse_sets
from reconcilers.pacemaker.ownership import RUNTIME_CONSTRAINTS
from reconcilers.pacemaker.secrets import SECRETS_DIR
from schemas.pacemaker import looks_like_a_password

API = "reconcile/v1"
SECRETS_FOLDER = Path("/etc/reconcile/secrets/pacemaker")


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _sets_as_manifest(sets: Any) -> Any:
    """Canonical sets as the manifest writes them (the same shape)."""
    return sets


def import_cluster(cib: ET.Element, conf_text: str | None, name: str | None = None,
                   secrets_dir: Path = SECRETS_FOLDER, secrets: dict[Path, str] | None = None
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Manifests for a CIB (and corosync.conf), and notes for people (what was left out,
    which secrets to copy). A password found inline goes to `secrets` (path → value), for
    the caller to write."""
    notes: list[str] = []
    secrets = {} if secrets is None else secrets
    configuration = cib.find("configuration") if cib.tag == "cib" else cib
    if configuration is None:
        raise ValueError("no <configuration> in the CIB")
    settings = corosync.observed_settings(corosync.parse(conf_text)) if conf_text else None
    cluster = name or (settings["clusterName"] if settings else None) or _property(configuration, "cluster-name")
    if not cluster:
        raise ValueError("the cluster has no name: give --name")
    spec: dict[str, Any] = {}
    node_ids = {n.get("uname", ""): n.get("id", "") for n in configuration.findall("nodes/node")}
    spec["nodes"] = _nodes(configuration, settings, node_ids, notes)
    if settings:
        spec.update(_corosync_spec(settings, notes))
    else:
        notes.append("no corosync.conf given: the Cluster's Corosync settings are reconcile's defaults")
        spec["crypto"] = "none"
    stonith = _property(configuration, "stonith-enabled")
    spec["stonithEnabled"] = (stonith or "true").lower() in ("true", "yes", "1", "on")
    properties = parse_sets([s for s in configuration.findall("crm_config/cluster_property_set")
                             if s.get("id") != ROLLOUT_SET], PROPERTIES_ID,
                            lambda n: n in MAINTAINED_PROPERTIES)
    if properties:
        spec["properties"] = properties
    for key, tag, default in SECTIONS:
        el = configuration.find(tag)
        if el is not None:
            spec[key] = parse_sets(el.findall("meta_attributes"), default) or {}
    alerts = configuration.findall("alerts/alert")
    if alerts:
        spec["alerts"] = [parse_alert(a) for a in alerts]
    levels = configuration.findall("fencing-topology/fencing-level")
    if levels:
        spec["fencingLevels"] = [parse_level(lv) for lv in levels]
    tags = configuration.findall("tags/tag")
    if tags:
        spec["tags"] = [{"id": t.get("id", ""), "refs": [r.get("id", "") for r in t.findall("obj_ref")]} for t in tags]
    constraints = []
    for el in configuration.find("constraints") if configuration.find("constraints") is not None else []:
        c = parse_constraint(el)
        if c is None:
            notes.append(f"constraint element <{el.tag}> left out: reconcile does not model it")
        elif c["id"].startswith(RUNTIME_CONSTRAINTS):
            notes.append(f"{c['id']}: left out, a constraint `crm_resource --move/--ban` made (an operator's switch)")
        else:
            constraints.append(_constraint_as_manifest(c))
    if constraints:
        spec["constraints"] = constraints
    docs = [_doc("Cluster", cluster, spec)]
    docs += _resources(configuration, cluster, notes, secrets_dir, secrets)
    return docs, notes


def _property(configuration: ET.Element, name: str) -> str | None:
    for nv in configuration.iterfind("crm_config/cluster_property_set/nvpair"):
        if nv.get("name") == name:
            return nv.get("value")
    return None


def _nodes(configuration: ET.Element, settings: dict[str, Any] | None, node_ids: dict[str, str],
           notes: list[str]) -> list[dict[str, Any]]:
    out = []
    conf_nodes = {n["name"]: n for n in (settings or {}).get("nodes", [])}
    names = list(conf_nodes) or list(node_ids)
    for name in names:
        n = conf_nodes.get(name, {})
        nid = n.get("id") or int(node_ids.get(name, "0") or 0)
        addresses = n.get("addresses") or []
        entry: dict[str, Any] = {"name": name, "id": nid}
        if addresses:
            entry["address"] = f"{addresses[0]}/24"
            notes.append(f"node {name}: address {addresses[0]}/24 — corosync.conf has no prefix length; check it")
            if len(addresses) > 1:
                entry["links"] = addresses
        else:
            notes.append(f"node {name}: no address in corosync.conf; give spec.nodes[].address")
        if "votes" in n:
            entry["votes"] = n["votes"]
        el = next((x for x in configuration.findall("nodes/node") if x.get("uname") == name), None)
        if el is not None:
            cib_id = el.get("id", str(nid))
            attrs = parse_sets(el.findall("instance_attributes"), node_set_id(cib_id))
            if attrs:
                entry["attributes"] = attrs
            util = parse_sets(el.findall("utilization"), f"{node_set_id(cib_id)}-utilization")
            if util:
                entry["utilization"] = util
        out.append(entry)
    return out


def _corosync_spec(settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"transport": settings["transport"]}
    crypto = settings["crypto"]
    if crypto == "none":
        spec["crypto"] = "none"
    else:
        parts = crypto.split("/")
        if parts[:2] != ["aes256", "sha256"] or len(parts) > 2:
            spec["crypto"] = {"cipher": parts[0], "hash": parts[1], **({"model": parts[2]} if len(parts) > 2 else {})}
        spec["authkey"] = {"file": "/etc/corosync/authkey"}
        notes.append("crypto is on: the authkey reference points at /etc/corosync/authkey on this node; keep the key "
                     "out of git")
    spec["token"] = f"{settings['token']}ms" if settings.get("token") is not None else None
    totem = {}
    names = {v: k for k, v in corosync.TOTEM_KEYS.items()}
    for key, value in settings.get("totem", {}).items():
        field = names[key]
        totem[field] = f"{value}ms" if key in corosync.MS_KEYS else value
    if totem:
        spec["totem"] = totem
    if settings.get("links"):
        fields = {v: k for k, v in corosync.LINK_KEYS.items()}
        spec["links"] = [{fields[k]: v for k, v in link.items()} for link in settings["links"]]
    q = settings["quorum"]
    quorum: dict[str, Any] = {}
    if q["twoNode"] != (len(settings["nodes"]) == 2 and "device" not in q):
        quorum["twoNode"] = q["twoNode"]
    if q["waitForAll"] != q["twoNode"]:
        quorum["waitForAll"] = q["waitForAll"]
    for field in (*corosync.QUORUM_FLAGS, *corosync.QUORUM_VALUES, "provider"):
        if field in q:
            quorum[field] = f"{q[field]}ms" if field == "lastManStandingWindow" else q[field]
    if "device" in q:
        d = q["device"]
        dev: dict[str, Any] = {"model": d.get("model", "net")}
        for field, key in corosync.DEVICE_KEYS.items():
            if key in d:
                dev[field] = d[key] if field == "votes" else f"{d[key]}ms"
        net_fields = {v: k for k, v in corosync.NET_KEYS.items()}
        dev["net"] = {net_fields[k]: (f"{v}ms" if k == "connect_timeout" else v) for k, v in d["net"].items()
                      if k in net_fields}
        quorum["device"] = dev
    if quorum:
        spec["quorum"] = quorum
    if settings.get("extra"):
        spec["corosync"] = settings["extra"]
    return spec


def _constraint_as_manifest(c: dict[str, Any]) -> dict[str, Any]:
    return dict(c)


def _resources(configuration: ET.Element, cluster: str, notes: list[str], secrets_dir: Path,
               secrets: dict[Path, str]) -> list[dict[str, Any]]:
    states, _tops, order = parse_resources(configuration)
    docs = []
    for name in order:
        state = copy.deepcopy(states[name])
        if "unsupported" in state:
            notes.append(f"{name}: left out: {state['unsupported']}")
            continue
        vip = _as_virtual_ip(name, state, cluster)
        if vip is not None:
            docs.append(vip)
            continue
        spec: dict[str, Any] = {"cluster": cluster}
        if "params" in state:
            state["params"] = _secret_refs(name, state["params"], notes, secrets_dir, secrets)
        spec.update(state)
        if "clone" in state and state["clone"].get("legacy"):
            spec["clone"] = {**state["clone"], "promotable": True}
        docs.append(_doc("ClusterResource", name, spec))
    return docs


def _secret_refs(name: str, params: Any, notes: list[str], secrets_dir: Path, secrets: dict[Path, str]) -> Any:
    sets = [params] if isinstance(params, dict) else [s["values"] for s in params]
    for values in sets:
        for key, value in list(values.items()):
            if value == LRM_MAGIC:
                values[key] = {"file": str(SECRETS_DIR / name / key)}
                notes.append(f"{name}: parameter {key} is a cibsecret: it refers to {SECRETS_DIR / name / key} on each "
                             "node (keep that file, or point the reference at your own secret store)")
            elif looks_like_a_password(key) and isinstance(value, str):
                target = secrets_dir / f"{name}.{key}"
                secrets[target] = value
                values[key] = {"file": str(target)}
                notes.append(f"{name}: parameter {key} held a password inline in the CIB: it went to {target} (0600), "
                             "not into the manifest; copy that file to every node: reconcile then keeps it out of the "
                             "CIB (cibsecret)")
    return params


def _as_virtual_ip(name: str, state: dict[str, Any], cluster: str) -> dict[str, Any] | None:
    """An IPaddr2 primitive that is exactly what a VirtualIP renders, as that VirtualIP."""
    if state.get("agent") != "ocf:heartbeat:IPaddr2" or not isinstance(state.get("params"), dict):
        return None
    p = state["params"]
    if list(p) != ["ip", "cidr_netmask", "nic"] or not str(p["cidr_netmask"]).isdigit():
        return None  # (in the order a VirtualIP writes them, or the render would move them)
    from schemas.virtual_ip import VirtualIP
    try:
        interval = next(op["interval"] for op in state.get("operations", []) if op["name"] == "monitor")
    except StopIteration:
        return None
    spec: dict[str, Any] = {"cluster": cluster, "manager": "pacemaker", "address": f"{p['ip']}/{p['cidr_netmask']}",
                            "interface": p["nic"]}
    options: dict[str, Any] = {}
    if interval != "10s":
        options["monitorInterval"] = interval
    locations = state.get("location", [])
    if options:
        spec["pacemaker"] = options
    doc = _doc("VirtualIP", name, spec)
    try:
        manifest = VirtualIP.model_validate(doc)
    except Exception:
        return None
    if locations or virtual_ip_state(name, manifest.spec) != state:
        return None
    return doc


# --- the command (reconcilers/importing.py) ------------------------------------------------


def import_files(items: list[tuple[str, str]], placement: dict[str, str], secrets_dir: Path) -> Imported:
    """A CIB (XML) and a corosync.conf, in any order: `reconcile import pacemaker CIB CONF`.
    The Cluster is named by corosync.conf (or `--cluster NAME`); its manifests land on its
    own nodes, whatever `--node` says."""
    cibs = [(src, text) for src, text in items if text.lstrip().startswith("<")]
    confs = [(src, text) for src, text in items if not text.lstrip().startswith("<")]
    if len(cibs) != 1 or len(confs) > 1:
        raise ImportProblem(f"{', '.join(src for src, _ in items)}: give one CIB (XML, as `cibadmin --query` writes "
                            "it) and at most one corosync.conf")
    source, text = cibs[0]
    try:
        cib = tools.parse_xml(text)
    except ET.ParseError as err:
        raise ImportProblem(f"{source}:{err.position[0]}: not XML: {err}") from None
    secrets: dict[Path, str] = {}
    try:
        docs, notes = import_cluster(cib, confs[0][1] if confs else None, placement.get("cluster"), secrets_dir,
                                     secrets)
    except ValueError as err:
        raise ImportProblem(f"{source}: {err}") from None
    return Imported(documents=docs, secrets=secrets, notes=notes)


def import_text(text: str, source: str, placement: dict[str, str], secrets_dir: Path) -> Imported:
    return import_files([(source, text)], placement, secrets_dir)


def live(node: str) -> list[tuple[str, str]]:
    """This node's CIB (`cibadmin --query`) and /etc/corosync/corosync.conf."""
    from reconcilers.base import Node, Runner

    try:
        cib = tools.query_cib(Node(node or "localhost", Runner(dry_run=True)))
    except tools.CibUnavailable as err:
        raise ImportProblem(f"cibadmin --query: {err}") from None
    items = [("cibadmin --query", ET.tostring(cib, encoding="unicode"))]
    conf = Path("/etc/corosync/corosync.conf")
    if conf.exists():
        items.append((str(conf), conf.read_text()))
    return items


# --- comparing configurations ------------------------------------------------------------------

LAYOUT = {"instance_attributes": 0, "meta_attributes": 1, "utilization": 2, "operations": 3, "select": 4}
SECTION_LAYOUT = {t: i for i, t in enumerate(("crm_config", "nodes", "resources", "constraints", "fencing-topology",
                                              "op_defaults", "rsc_defaults", "acls", "tags", "alerts"))}


def comparable(configuration: ET.Element) -> ET.Element:
    """`normalized`, without the cluster properties Pacemaker writes itself (dc-version,
    cluster-infrastructure, cluster-name, have-watchdog, last-lrm-refresh): they are the
    cluster's record of itself, not configuration, and no manifest carries them."""
    conf = normalized(configuration)
    for nvset in conf.iterfind("crm_config/cluster_property_set"):
        for nv in list(nvset.findall("nvpair")):
            if nv.get("name") in MAINTAINED_PROPERTIES:
                nvset.remove(nv)
    for nvset in list(conf.iterfind("crm_config/cluster_property_set")):
        if not len(nvset) or nvset.get("id") == ROLLOUT_SET:  # the rollout's turn: run-time state
            conf.find("crm_config").remove(nvset)
    return conf


def normalized(configuration: ET.Element) -> ET.Element:
    """A copy of a `<configuration>` with the order of its sections, and of a resource's (or
    an op's, an alert's) attribute sets and operations block, made canonical: Pacemaker's
    schema takes them in any order (interleave), and pcs and crmsh write them in different
    orders. The order of resources, group members, constraints, operations and values is
    kept: it can matter."""
    conf = copy.deepcopy(configuration)
    sections = list(conf)
    for c in sections:
        conf.remove(c)
    conf.extend(sorted(sections, key=lambda c: (SECTION_LAYOUT.get(c.tag, 99), sections.index(c))))
    for el in conf.iter():
        if el.tag in (*RESOURCE_TAGS, "op", "alert", "recipient", "node"):
            children = list(el)
            ranked = sorted(children, key=lambda c: (LAYOUT.get(c.tag, 9), children.index(c)))
            for c in children:
                el.remove(c)
            el.extend(ranked)
    tools.strip_blanks(conf)
    return conf
