"""Name/value sets and rules of the CIB: manifest → normalized state → XML, and back.

The normalized state is what the plan diffs and what the importer writes as a manifest, so
it has one canonical form for each thing the CIB can say:

- a set (`instance_attributes`, `meta_attributes`, `utilization`, `cluster_property_set`)
  is a plain mapping when the element is one set with the default id (`PARENT-meta_attributes`),
  default nvpair ids (`SETID-NAME`) and no rule or score; otherwise a list of
  `{id, values, ids?, rule?, score?}` with every set id written out;
- an `id` is left out wherever it equals the id reconcile would derive (the ones pcs gives),
  and kept where it differs, so an imported CIB renders back with its own ids.

Every function here is pure: no command, no file.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Callable

from pydantic import BaseModel

from schemas.common import SecretRef

SECRET_TOKEN = "<secret: in sync>"
"""The desired value of a secret parameter in the plan: the value itself never leaves."""
LRM_MAGIC = "lrm://"
"""What the CIB holds for a parameter stored with cibsecret."""

NVSET_TAGS = ("instance_attributes", "meta_attributes", "utilization", "cluster_property_set")


def dump(model: Any) -> Any:
    """A manifest model as plain JSON-able data, unset fields left out, aliases used."""
    if isinstance(model, BaseModel):
        return model.model_dump(by_alias=True, exclude_none=True)
    return model


# --- sets ---------------------------------------------------------------------------------


def canonical_sets(sets: Any, default_id: str,
                   secret: Callable[[str, SecretRef], Any] | None = None) -> dict[str, Any] | list[dict[str, Any]] | None:
    """The canonical form of a manifest's sets (a mapping or a list of NVSet), or of parsed
    sets (a list of dicts). `secret(name, ref)` gives the state value of a secret
    parameter. None when there is nothing (no element is written)."""
    if sets is None:
        return None
    if isinstance(sets, dict):
        sets = [{"values": sets}]
    out: list[dict[str, Any]] = []
    for i, s in enumerate(sets):
        d = s if isinstance(s, dict) else {
            "id": s.id, "values": dict(s.values), "ids": dict(s.ids),
            "rule": s.rule, "score": s.score}
        set_id = d.get("id") or (default_id if i == 0 else f"{default_id}-{i}")
        values = {}
        for k, v in d.get("values", {}).items():
            values[k] = secret(k, v) if isinstance(v, SecretRef) and secret is not None else v
        entry: dict[str, Any] = {"id": set_id, "values": values}
        ids = {k: v for k, v in (d.get("ids") or {}).items() if v != f"{set_id}-{k}"}
        if ids:
            entry["ids"] = ids
        rule = d.get("rule")
        if rule is not None:  # a manifest's Rule, or one parse_rule made canonical already
            entry["rule"] = rule if isinstance(rule, dict) else canonical_rule(rule, set_id)
        if d.get("score") is not None:
            entry["score"] = d["score"]
        out.append(entry)
    if not out:
        return None
    if len(out) == 1 and set(out[0]) == {"id", "values"} and out[0]["id"] == default_id:
        return out[0]["values"] or None
    return out


def sets_values(sets: Any) -> dict[str, Any]:
    """Every name → value of canonical sets (the first set that has a name wins)."""
    if not sets:
        return {}
    if isinstance(sets, dict):
        return dict(sets)
    out: dict[str, Any] = {}
    for s in sets:
        for k, v in s["values"].items():
            out.setdefault(k, v)
    return out


def _as_list(sets: Any, default_id: str) -> list[dict[str, Any]]:
    if not sets:
        return []
    if isinstance(sets, dict):
        return [{"id": default_id, "values": sets}]
    return sets


def build_sets(parent: ET.Element, tag: str, sets: Any, default_id: str,
               value: Callable[[str, Any], str] | None = None) -> None:
    """Append the set elements of canonical `sets` to `parent`. `value(name, v)` renders a
    value (a secret's state becomes `lrm://`)."""
    for s in _as_list(sets, default_id):
        el = ET.SubElement(parent, tag, {"id": s["id"]})
        if s.get("score") is not None:
            el.set("score", str(s["score"]))
        if s.get("rule") is not None:
            el.append(build_rule(s["rule"], s["id"], 0))
        ids = s.get("ids", {})
        for k, v in s["values"].items():
            ET.SubElement(el, "nvpair", {"id": ids.get(k, f"{s['id']}-{k}"), "name": k,
                                         "value": value(k, v) if value else str(v)})


def parse_sets(els: list[ET.Element], default_id: str, skip: Callable[[str], bool] = lambda name: False
               ) -> dict[str, Any] | list[dict[str, Any]] | None:
    """The canonical form of set elements read from the CIB; `skip(name)` leaves nvpairs out
    (the ownership marker, Pacemaker's own properties)."""
    parsed = []
    for el in els:
        d: dict[str, Any] = {"id": el.get("id", ""), "values": {}, "ids": {}}
        for child in el:
            if child.tag == "nvpair":
                name = child.get("name", "")
                if skip(name):
                    continue
                d["values"][name] = child.get("value", "")
                d["ids"][name] = child.get("id", "")
            elif child.tag == "rule":
                d["rule"] = parse_rule(child, d["id"], 0)
        if el.get("score") is not None:
            d["score"] = score(el.get("score", ""))
        if not d["values"] and "rule" not in d and el.get("score") is None:
            continue  # an empty set says nothing (or only held what `skip` leaves out)
        parsed.append(d)
    return canonical_sets(parsed, default_id)


# --- scores and booleans ------------------------------------------------------------------


def score(text: str) -> int | str:
    """A score as the manifest writes it: an int, or INFINITY / -INFINITY as written."""
    try:
        return int(text)
    except ValueError:
        return text


def xml_bool(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def parse_bool(text: str) -> bool | str:
    return {"true": True, "false": False}.get(text, text)


# --- rules --------------------------------------------------------------------------------

RULE_ATTRS = (("score", "score"), ("scoreAttribute", "score-attribute"), ("booleanOp", "boolean-op"),
              ("role", "role"))
EXPR_ATTRS = (("attribute", "attribute"), ("operation", "operation"), ("value", "value"), ("type", "type"),
              ("valueSource", "value-source"))
DATE_ATTRS = (("operation", "operation"), ("start", "start"), ("end", "end"))
SPEC_FIELDS = ("hours", "monthdays", "weekdays", "yeardays", "months", "weeks", "years", "weekyears", "moon")
DURATION_FIELDS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")


def rule_id(parent: str, i: int) -> str:
    return f"{parent}-rule" if i == 0 else f"{parent}-rule-{i}"


def expr_id(rule: str, i: int) -> str:
    return f"{rule}-expr" if i == 0 else f"{rule}-expr-{i}"


def canonical_rule(rule: Any, parent: str, i: int = 0) -> dict[str, Any]:
    """A manifest Rule (or a parsed one) in canonical form: default ids left out."""
    d = dump(rule)
    rid = d.get("id") or rule_id(parent, i)
    out: dict[str, Any] = {}
    if d.get("id") and d["id"] != rule_id(parent, i):
        out["id"] = d["id"]
    for key, _ in RULE_ATTRS:
        if d.get(key) is not None:
            out[key] = d[key]
    items = []
    for j, item in enumerate(d["expressions"]):
        default = expr_id(rid, j)
        if "rule" in item:
            items.append({"rule": canonical_rule(item["rule"], rid, j)})
            continue
        key = next((k for k in ("date", "resource", "op") if k in item), None)
        body = dict(item[key] if key else item)
        if body.get("id") == default:
            del body["id"]
        if key == "date":
            for sub, suffix in (("dateSpec", "date_spec"), ("duration", "duration")):
                if sub in body and body[sub].get("id") == f"{body.get('id', default)}-{suffix}":
                    body[sub] = {k: v for k, v in body[sub].items() if k != "id"}
        items.append({key: body} if key else body)
    out["expressions"] = items
    return out


def build_rule(rule: dict[str, Any], parent: str, i: int) -> ET.Element:
    rid = rule.get("id") or rule_id(parent, i)
    el = ET.Element("rule", {"id": rid})
    for key, attr in RULE_ATTRS:
        if rule.get(key) is not None:
            el.set(attr, str(rule[key]))
    for j, item in enumerate(rule["expressions"]):
        default = expr_id(rid, j)
        if "rule" in item:
            el.append(build_rule(item["rule"], rid, j))
        elif "date" in item:
            d = item["date"]
            eid = d.get("id", default)
            sub = ET.SubElement(el, "date_expression", {"id": eid})
            for key, attr in DATE_ATTRS:
                if d.get(key) is not None:
                    sub.set(attr, d[key])
            for field, tag, names in (("dateSpec", "date_spec", SPEC_FIELDS), ("duration", "duration", DURATION_FIELDS)):
                if d.get(field) is not None:
                    spec = ET.SubElement(sub, tag, {"id": d[field].get("id", f"{eid}-{tag}")})
                    for name in names:
                        if d[field].get(name) is not None:
                            spec.set(name, d[field][name])
        elif "resource" in item:
            r = item["resource"]
            sub = ET.SubElement(el, "rsc_expression", {"id": r.get("id", default)})
            for key in ("class", "provider", "type"):
                if r.get(key) is not None:
                    sub.set(key, r[key])
        elif "op" in item:
            o = item["op"]
            sub = ET.SubElement(el, "op_expression", {"id": o.get("id", default), "name": o["name"]})
            if o.get("interval") is not None:
                sub.set("interval", o["interval"])
        else:
            sub = ET.SubElement(el, "expression", {"id": item.get("id", default)})
            for key, attr in EXPR_ATTRS:
                if item.get(key) is not None:
                    sub.set(attr, str(item[key]))
    return el


def parse_rule(el: ET.Element, parent: str, i: int) -> dict[str, Any]:
    rid = el.get("id", "")
    out: dict[str, Any] = {}
    if rid != rule_id(parent, i):
        out["id"] = rid
    for key, attr in RULE_ATTRS:
        if el.get(attr) is not None:
            out[key] = score(el.get(attr, "")) if key == "score" else el.get(attr)
    items: list[dict[str, Any]] = []
    for j, child in enumerate(c for c in el if c.tag in ("rule", "expression", "date_expression", "rsc_expression",
                                                            "op_expression")):
        default = expr_id(rid, j)
        cid = child.get("id", "")
        body: dict[str, Any] = {} if cid == default else {"id": cid}
        if child.tag == "rule":
            items.append({"rule": parse_rule(child, rid, j)})
        elif child.tag == "expression":
            for key, attr in EXPR_ATTRS:
                if child.get(attr) is not None:
                    body[key] = child.get(attr)
            items.append(body)
        elif child.tag == "date_expression":
            for key, attr in DATE_ATTRS:
                if child.get(attr) is not None:
                    body[key] = child.get(attr)
            for field, tag, names in (("dateSpec", "date_spec", SPEC_FIELDS), ("duration", "duration", DURATION_FIELDS)):
                spec = child.find(tag)
                if spec is not None:
                    sub = {n: spec.get(n) for n in names if spec.get(n) is not None}
                    if spec.get("id") != f"{cid}-{tag}":
                        sub["id"] = spec.get("id", "")
                    body[field] = sub
            items.append({"date": body})
        elif child.tag == "rsc_expression":
            body.update({k: child.get(k) for k in ("class", "provider", "type") if child.get(k) is not None})
            items.append({"resource": body})
        else:
            body["name"] = child.get("name", "")
            if child.get("interval") is not None:
                body["interval"] = child.get("interval")
            items.append({"op": body})
    out["expressions"] = items
    return out
