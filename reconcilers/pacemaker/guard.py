"""The blast-radius guard: a CIB change may not disrupt resources it did not change.

Before a CIB change is pushed, `crm_simulate` runs twice on this node: on the live CIB
(what Pacemaker is about to do anyway: a recovery under way, a resource still starting)
and on the candidate. An action that only the candidate's transition has, that stops,
moves, demotes, restarts or migrates a resource, is a disruption unless the resource is
one the change touches:

- a resource whose own manifest changed (created, updated, deleted), with its clone and
  group members;
- a resource named by a changed cluster-level constraint, tag or fencing level;
- a resource tied to one of those by a colocation, order, group or set (it follows the
  one that changes: a colocated database moves with its address, an ordered one restarts).

Anything else (a changed `resource-stickiness` default, a node attribute a rule reads, a
new anti-colocation that pushes an unrelated resource off its node) is refused unless the
operator allows it: `reconcile apply --allow-disruption`, or the trailer
`Reconcile-Allow: disruption` in the message of the commit being applied (so the allowance
holds for that revision only). The plan names the resources and why.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

from reconcilers.pacemaker.tools import Action

DISRUPTIVE = frozenset({"stop", "move", "demote", "restart", "migrate", "re-promote", "recover"})
ALLOWANCE = "disruption"


def links(configuration: ET.Element) -> dict[str, set[str]]:
    """Resource id → the resource ids tied to it (both ways) by a colocation, an order, a
    set, a group or a clone, in a CIB `<configuration>`."""
    graph: dict[str, set[str]] = {}

    def tie(a: str | None, b: str | None) -> None:
        if a and b and a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set()).add(a)

    resources = configuration.find("resources")
    for top in resources if resources is not None else []:
        for el in top.iter():
            if el.tag in ("primitive", "group", "clone", "master", "bundle"):
                for child in el:
                    if child.tag in ("primitive", "group"):
                        tie(el.get("id"), child.get("id"))
    constraints = configuration.find("constraints")
    for c in constraints if constraints is not None else []:
        if c.tag == "rsc_colocation":
            tie(c.get("rsc"), c.get("with-rsc"))
        elif c.tag == "rsc_order":
            tie(c.get("first"), c.get("then"))
        members = [r.get("id") for s in c.findall("resource_set") for r in s.findall("resource_ref")]
        for a, b in zip(members, members[1:]):
            tie(a, b)
        if c.tag != "rsc_location" and c.get("rsc") and members:
            tie(c.get("rsc"), members[0])
    return graph


def related(configurations: Iterable[ET.Element], changed: set[str]) -> set[str]:
    """`changed` and every resource tied to one of them, through the ties of any of the
    configurations (the live one and the candidate: a deleted constraint still ties)."""
    graph: dict[str, set[str]] = {}
    for conf in configurations:
        for k, v in links(conf).items():
            graph.setdefault(k, set()).update(v)
    seen = set(changed)
    todo = list(changed)
    while todo:
        for other in graph.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def disruptions(baseline: list[Action], candidate: list[Action], allowed: set[str]) -> list[Action]:
    """The disruptive actions only the candidate's transition has, on resources outside
    `allowed` (clone instances `db:1` count as `db`)."""
    before = {(a.base_resource, a.action, a.node, a.source, a.dest) for a in baseline}
    out = []
    for a in candidate:
        if a.action not in DISRUPTIVE or a.blocked:
            continue
        if a.base_resource in allowed or a.resource in allowed:
            continue
        if (a.base_resource, a.action, a.node, a.source, a.dest) in before:
            continue
        out.append(a)
    return out


def refusal(found: list[Action]) -> str:
    lines = ", ".join(a.describe() for a in found)
    return (f"refused by the blast-radius guard: this change would also {lines}, which it does not change; "
            "run `reconcile apply --allow-disruption`, or commit with the trailer `Reconcile-Allow: disruption`, "
            "if that is intended")
