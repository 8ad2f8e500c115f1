"""Health of a Pacemaker cluster and its resources, from one `crm_mon --output-as=xml`.

- the cluster (node-wide, and the Cluster object): daemons running, a DC elected, quorum,
  every member online;
- each resource: running (or stopped, when its manifest says target-role Stopped), not
  failed, managed, at most once unless cloned, on as many online nodes as its clone may
  run on when cloned, one instance promoted when promotable, next to what it is colocated
  with (the promoted instance when the colocation says so), on a node its location
  constraints prefer when one is online;
- an IPaddr2 address: also held by exactly one node on the link (ARP), the node
  Pacemaker says runs it.

Pure functions of parsed output, tested on recordings; they move with the pacemaker package.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from reconcilers.base import CommandError, Health, Node
from reconcilers.pacemaker.nvsets import sets_values
from reconcilers.pacemaker.tools import ClusterStatus, parse_crm_mon


@dataclass
class ResourceState:
    """One resource as crm_mon reports it (the instances of a clone merged)."""

    id: str
    agent: str = ""
    roles: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)  # the nodes of its Promoted instances
    failed: bool = False
    managed: bool = True
    blocked: bool = False

    @property
    def active(self) -> bool:
        return bool(self.nodes)


def parse_resources(text: str) -> dict[str, ResourceState]:
    """Resource id → its state, from crm_mon's XML (groups' members by their own ids; a
    clone's id names the same state as its primitive's)."""
    root = ET.fromstring(text)
    out: dict[str, ResourceState] = {}
    for rsc in root.iterfind("resources//resource"):
        rid = rsc.get("id", "").split(":", 1)[0]
        state = out.setdefault(rid, ResourceState(rid, rsc.get("resource_agent", "")))
        state.roles.append(rsc.get("role", ""))
        if rsc.get("active") == "true":
            here = [n.get("name", "") for n in rsc.findall("node")]
            state.nodes += [n for n in here if n not in state.nodes]
            if rsc.get("role") in ("Promoted", "Master"):
                state.promoted += [n for n in here if n not in state.promoted]
        state.failed = state.failed or rsc.get("failed") == "true"
        state.managed = state.managed and rsc.get("managed") != "false"
        state.blocked = state.blocked or rsc.get("blocked") == "true"
    for clone in root.iterfind("resources//clone"):
        inner = clone.find("resource")
        if inner is not None and clone.get("id") not in out:
            rid = inner.get("id", "").split(":", 1)[0]
            if rid in out:
                out[clone.get("id", "")] = out[rid]
    return out


@dataclass
class Snapshot:
    """One crm_mon, parsed both ways."""

    status: ClusterStatus
    resources: dict[str, ResourceState]


def read(node: Node) -> Snapshot | str:
    """crm_mon once; on failure a message saying why (Pacemaker does not answer here)."""
    try:
        # shared: the Cluster's and the resources' health read the same crm_mon in one look
        r = node.run(["crm_mon", "-1", "--output-as=xml"], read_only=True, check=False, shared=True)
    except CommandError as err:
        return str(err)
    if r.rc != 0 or "<pacemaker-result" not in r.stdout:
        return f"crm_mon: {crm_mon_error(r.stdout, r.stderr, r.rc)}"
    try:
        return Snapshot(parse_crm_mon(r.stdout), parse_resources(r.stdout))
    except ET.ParseError as err:
        return f"crm_mon printed XML that does not parse: {err}"


def crm_mon_error(stdout: str, stderr: str, rc: int) -> str:
    """Why crm_mon failed, in its own words: with --output-as=xml the reason is inside the
    result (`<status message=…><errors><error>…`), not on the last line."""
    try:
        status = ET.fromstring(stdout).find("status")
    except ET.ParseError:
        status = None
    if status is not None:
        errors = [e.text.strip() for e in status.iter("error") if e.text and e.text.strip()]
        return "; ".join(errors) or status.get("message") or f"exit {rc}"
    detail = (stderr or stdout).strip().splitlines()
    return detail[-1] if detail else f"exit {rc}"


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def cluster_health(status: ClusterStatus | None, members: list[str], daemons: dict[str, bool],
                   why: str = "") -> Health:
    """The cluster as this node's Pacemaker sees it. `members`: the nodes the Cluster lists."""
    stopped = [d for d, up in daemons.items() if not up]
    if stopped:
        return Health.degraded("NotRunning", f"{' and '.join(stopped)} not running on this node")
    if status is None:
        return Health.unknown("NoAnswer", why or "Pacemaker does not answer")
    offline = [n for n in members if n not in status.online]
    online = [n for n in members if n in status.online]
    if status.dc is None:
        return Health.degraded("NoDC", f"no DC elected yet (the cluster is forming); online: {_listing(online)}")
    if not status.quorate:
        return Health.degraded("NoQuorum", f"this partition has no quorum: online {_listing(online)}, offline "
                                           f"{_listing(offline)}; resources stay stopped (no-quorum-policy)")
    if offline:
        return Health.degraded("NodesOffline", f"quorate, DC {status.dc}, but {_listing(offline)} offline: "
                                               "no failover to it")
    return Health.healthy("Quorate", f"quorate, DC {status.dc}, {len(online)}/{len(members)} nodes online")


def _score(value: Any) -> int:
    text = str(value if value is not None else "0")
    if text.lstrip("+") == "INFINITY":
        return 1_000_000
    if text == "-INFINITY":
        return -1_000_000
    try:
        return int(text)
    except ValueError:
        return 0


def _intended(state: dict[str, Any], online: list[str]) -> list[str]:
    """The online nodes its location constraints by node prefer (positive scores), best
    first (rules and roles are Pacemaker's to weigh: left out)."""
    preferred = sorted((loc for loc in state.get("location", []) if "node" in loc and "role" not in loc
                        and _score(loc.get("score")) > 0), key=lambda loc: _score(loc.get("score")), reverse=True)
    return [loc["node"] for loc in preferred if loc["node"] in online]


def _clone_meta(state: dict[str, Any]) -> dict[str, Any]:
    clone = state.get("clone")
    return sets_values(clone.get("meta")) if isinstance(clone, dict) else {}


def resource_health(name: str, state: dict[str, Any], snap: Snapshot) -> Health:
    """One resource of ours: `state` is its desired state (the ClusterResource shape)."""
    status, resources = snap.status, snap.resources
    members = state.get("group") or []
    rs = resources.get(name)
    if rs is None and members:  # a group: crm_mon lists its members
        parts = [resources[m] for m in members if m in resources]
        if parts:
            rs = ResourceState(name, "group", nodes=sorted({n for p in parts for n in p.nodes}),
                               failed=any(p.failed for p in parts), managed=all(p.managed for p in parts),
                               blocked=any(p.blocked for p in parts))
            down = [p.id for p in parts if not p.active]
            if down and rs.active:
                return Health.degraded("PartlyRunning", f"members {', '.join(down)} do not run "
                                                        f"(the rest on {_listing(rs.nodes)})")
    if rs is None:
        return Health.degraded("NotInCluster", "Pacemaker does not know it yet (not in the CIB)")
    stop_wanted = str(sets_values(state.get("meta")).get("target-role", "")).lower() == "stopped"
    if stop_wanted:
        if rs.active:
            return Health.degraded("RunningButStopped", f"target-role Stopped, yet it runs on {_listing(rs.nodes)}")
        return Health.healthy("StoppedAsIntended", "stopped (target-role Stopped)")
    if rs.failed:
        return Health.degraded("Failed", f"failed{' on ' + _listing(rs.nodes) if rs.nodes else ''} "
                                         f"(see crm_mon; crm_resource --cleanup -r {name} once fixed)")
    if not rs.managed:
        return Health.degraded("Unmanaged", "not managed by Pacemaker (is-managed=false, by hand?): "
                                            f"{'runs on ' + _listing(rs.nodes) if rs.active else 'not running'}")
    if not rs.active:
        if not status.quorate:
            return Health.degraded("NotRunning", "stopped: this partition has no quorum")
        if rs.blocked:
            return Health.degraded("Blocked", "not running: blocked (a stop failed; fencing or cleanup needed)")
        return Health.degraded("NotRunning", "not running on any node")
    if state.get("clone"):
        meta = _clone_meta(state)
        wanted = len(status.online)
        if str(meta.get("clone-max", "")).isdigit():
            wanted = min(wanted, int(meta["clone-max"]))
        if len(rs.nodes) < wanted:
            missing = [n for n in status.online if n not in rs.nodes]
            return Health.degraded("PartlyRunning", f"cloned, runs on {_listing(rs.nodes)}, not on online "
                                                    f"{_listing(missing)}")
        if str(meta.get("promotable", "")).lower() == "true" or (
                isinstance(state["clone"], dict) and state["clone"].get("promotable")):
            if not rs.promoted:
                return Health.degraded("NotPromoted", f"promotable, runs on {_listing(rs.nodes)}, but no instance "
                                                      "is promoted")
            return Health.healthy("Running", f"promotable, promoted on {_listing(rs.promoted)}, runs on "
                                             f"{_listing(rs.nodes)}")
        return Health.healthy("Running", f"cloned, runs on {_listing(rs.nodes)}")
    if len(rs.nodes) > 1:
        return Health.degraded("RunningTwice", f"runs on {' and '.join(rs.nodes)}: an at-most-once resource "
                                               "active on more than one node")
    where = rs.nodes[0]
    for col in state.get("colocation", []):
        other = resources.get(col["with"])
        if _score(col.get("score", "INFINITY")) < 0 or other is None:
            continue
        promoted = col.get("withRole") in ("Promoted", "Master")
        there = other.promoted if promoted else other.nodes
        if (other.active if not promoted else bool(there)) and where not in there:
            what = f"the promoted {col['with']}" if promoted else col["with"]
            return Health.degraded("NotWithColocated", f"runs on {where}, but {what} runs on "
                                                       f"{_listing(there)} (colocated with it)")
    intended = _intended(state, status.online)
    if intended and where not in intended:
        return Health.degraded("NotWhereIntended", f"runs on {where}; its location constraints prefer "
                                                   f"{_listing(intended)}, which is online")
    return Health.healthy("Running", f"runs on {where}" + (" (where preferred)" if intended else ""))


def address_health(base: Health, running_on: list[str], holders: list[str]) -> Health:
    """An IPaddr2 address: Pacemaker's view, checked against who answers on the link."""
    if base.status != "Healthy":
        return base
    if len(holders) > 1:
        return Health.degraded("SplitBrain", f"Pacemaker runs it on {_listing(running_on)}, but "
                                             f"{' and '.join(holders)} answer for it")
    if not holders:
        return Health.degraded("NotAnswering", f"Pacemaker runs it on {_listing(running_on)}, but no node "
                                               "answers for the address")
    if holders != running_on:
        return Health.degraded("HeldElsewhere", f"Pacemaker runs it on {_listing(running_on)}, but "
                                                f"{holders[0]} answers for the address")
    return Health.healthy(base.reason, f"{base.message}; held by {holders[0]} only")
