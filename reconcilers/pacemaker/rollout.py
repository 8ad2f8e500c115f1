"""Rollout coordination through Pacemaker: the store the generic rollout (controller/rollout.py)
takes its turns in. No consensus of our own: Corosync orders every CIB update the same way
on every node, and Pacemaker's CIB manager refuses a patch computed against an older CIB.

What lives where, and why:

- Each agent publishes its node's rollout facts as TRANSIENT node attributes (attrd,
  `attrd_updater -n NAME -U VALUE`; the CIB's status section): `reconcile-revision` (the
  revision applied), `reconcile-health` (Healthy | Degraded | Unknown), `reconcile-phase`
  (idle | waiting | draining | applying | gating | soaking | failed), `reconcile-serving`
  (what a drain would move away from it now: the addresses keepalived holds there, the
  resources Pacemaker runs there; absent when nothing), `reconcile-proven` (the revision
  whose health gate it last passed and a digest of the desired state it passed it with, per
  reconciler) and, while it holds a turn, `reconcile-heartbeat` (its clock, every second).
  Transient because they describe
  the running node: they vanish when the node leaves the cluster (a dead node has no
  health to claim), writing them does not bump the configuration's epoch (no scheduler
  run), and the agent writes them again when it starts.
- The turn is cluster-wide configuration: the cluster property set `reconcile-rollout` in
  crm_config (`reconcile-rollout-revision`, `-state` Progressing | Halted, `-holders`
  (nodes in their turn), `-failed`, `-reason`, `-since`). It is changed only by a
  compare-and-set: query the whole CIB, edit the set, and push the difference as one
  `cibadmin --patch` (tools.patch). The patch carries the (admin_epoch, epoch,
  num_updates) it was computed against; if anything in the CIB changed meanwhile — another
  agent's turn, any attribute — Pacemaker refuses it ("Update was older than existing
  configuration", exit 103) and we read again and decide again. `crm_attribute --type
  crm_config` would be one command, but it writes blindly: two agents could both see the
  turn free and both take it.
- The Cluster reconciler neither owns nor shows this property set (cluster_cib.py skips
  it); crm_verify accepts properties it does not know.
- Standby is the Pacemaker part of a drain (`standby`). `crm_resource --wait` always
  sleeps 2 s before its first look, so a node that runs no resource (the CIB's status
  section: `active_here`) returns as soon as its standby is in the CIB and the DC is idle
  (`settled_empty`); any resource here, or in flight, and it waits for Pacemaker as before.
"""
from __future__ import annotations

import random
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable

from reconcilers.base import ApplyError, CommandError, Node
from reconcilers.pacemaker.cluster_cib import ROLLOUT_SET
from reconcilers.pacemaker.tools import CibUnavailable, node_attributes, patch, query_cib

TURN_FIELDS = ("revision", "state", "holders", "failed", "reason", "since")
NODE_ATTRIBUTES = {"revision": "reconcile-revision", "health": "reconcile-health", "phase": "reconcile-phase",
                   "heartbeat": "reconcile-heartbeat", "serving": "reconcile-serving", "proven": "reconcile-proven"}
CAS_ATTEMPTS = 20
# Pacemaker's answers to a patch whose source version is not the CIB's (pcmk_err_old_data,
# pcmk_err_diff_resync): someone wrote first; read again.
CONFLICT_RCS = {103, 104}
CONFLICT_TEXT = ("older than existing configuration", "diff_resync", "Application of an update diff failed")


class TurnConflict(ApplyError):
    """Other writers kept changing the CIB: no compare-and-set went through."""


def parse_turn(cib: ET.Element) -> dict[str, Any]:
    """The turn as the CIB holds it: {revision, state, holders: [...], failed, reason, since}."""
    out: dict[str, Any] = {f: "" for f in TURN_FIELDS}
    for nvset in cib.iterfind("configuration/crm_config/cluster_property_set"):
        if nvset.get("id") != ROLLOUT_SET:
            continue
        for nv in nvset.findall("nvpair"):
            name = nv.get("name", "")
            if name.startswith(ROLLOUT_SET + "-") and name[len(ROLLOUT_SET) + 1:] in TURN_FIELDS:
                out[name[len(ROLLOUT_SET) + 1:]] = nv.get("value", "")
    out["holders"] = [h for h in str(out["holders"]).split(",") if h]
    return out


def parse_nodes(cib: ET.Element) -> dict[str, dict[str, Any]]:
    """Every node of the CIB: {online, and the rollout attributes it published}."""
    out: dict[str, dict[str, Any]] = {}
    for n in cib.iterfind("configuration/nodes/node"):
        out[n.get("uname", "")] = {"online": False}
    for state in cib.iterfind("status/node_state"):
        name = state.get("uname", "")
        online = state.get("crmd") == "online" and state.get("in_ccm") not in (None, "false")
        out.setdefault(name, {})["online"] = online
    for name, info in out.items():
        attrs = node_attributes(cib, name)
        for key, attr in NODE_ATTRIBUTES.items():
            info[key] = attrs.get(attr, "")
    return out


def parse_view(cib: ET.Element) -> dict[str, Any]:
    """What a rollout decision needs, from one `cibadmin --query`: the turn and the nodes."""
    return {"version": tuple(int(cib.get(a, "0")) for a in ("admin_epoch", "epoch", "num_updates")),
            "turn": parse_turn(cib), "nodes": parse_nodes(cib)}


def with_turn(cib: ET.Element, turn: dict[str, Any]) -> ET.Element:
    """A copy of `cib` whose rollout property set says `turn`."""
    import copy

    out = copy.deepcopy(cib)
    crm_config = out.find("configuration/crm_config")
    if crm_config is None:
        raise ApplyError("the CIB has no crm_config section")
    for old in crm_config.findall(f"cluster_property_set[@id='{ROLLOUT_SET}']"):
        crm_config.remove(old)
    el = ET.SubElement(crm_config, "cluster_property_set", {"id": ROLLOUT_SET})
    for f in TURN_FIELDS:
        value = ",".join(turn.get(f) or []) if f == "holders" else str(turn.get(f) or "")
        value = " ".join(value.split())[:500]  # one line: a reason may quote a tool's message
        ET.SubElement(el, "nvpair", {"id": f"{ROLLOUT_SET}-{f}", "name": f"{ROLLOUT_SET}-{f}", "value": value})
    return out


def is_conflict(err: CommandError) -> bool:
    text = f"{err.stderr}\n{err.stdout}"
    return err.rc in CONFLICT_RCS or any(t in text for t in CONFLICT_TEXT)


class PacemakerCoordinator:
    """Turns and published facts for the node `node` of a Pacemaker cluster."""

    def __init__(self, node: Node, policy: dict[str, Any], members: list[str], addresses: dict[str, str]):
        self.node = node
        self.policy = policy
        self.members = members
        self.addresses = addresses
        self.conflicts = 0  # compare-and-sets Pacemaker refused (someone wrote first), for metrics and tests

    def view(self) -> dict[str, Any]:
        """Raises CibUnavailable when Pacemaker does not answer here."""
        return parse_view(query_cib(self.node))

    def update_turn(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Compare-and-set: `change(view)` returns the new turn (or None: leave it); retried
        on a fresh view each time Pacemaker refuses the patch because the CIB moved on.
        Returns the turn written (None when `change` said to leave it)."""
        for attempt in range(CAS_ATTEMPTS):
            live = query_cib(self.node)
            view = parse_view(live)
            turn = change(view)
            if turn is None:
                return None
            if {f: turn.get(f) for f in TURN_FIELDS} == {f: view["turn"].get(f) for f in TURN_FIELDS}:
                return turn
            try:
                patch(self.node, live, with_turn(live, turn))
                return turn
            except CommandError as err:
                if not is_conflict(err):
                    raise
                self.conflicts += 1
                time.sleep(random.uniform(0.05, 0.2) * (1 + attempt % 4))
        raise TurnConflict(f"the CIB kept changing: no compare-and-set of the rollout turn in {CAS_ATTEMPTS} attempts")

    def publish(self, facts: dict[str, str]) -> None:
        """This node's facts as transient attributes (an empty value deletes one)."""
        for key, value in facts.items():
            name = NODE_ATTRIBUTES[key]
            argv = ["attrd_updater", "-n", name] + (["-U", " ".join(str(value).split())[:200]] if value else ["-D"])
            self.node.run(argv, timeout=15)


def coordinator_for(tree: Any, node: Node) -> PacemakerCoordinator | None:
    """The coordinator of the Cluster `node` belongs to, if it has a rollout policy."""
    for cluster in tree.of_kind("Cluster"):
        spec = cluster.spec
        names = [n.name for n in spec.nodes]
        if node.name in names and spec.rollout is not None and spec.stack == "pacemaker":
            policy = spec.rollout.model_dump()
            # No order written: the nodes that serve nothing go first (controller/rollout.py).
            policy["servingLast"] = policy["order"] is None
            policy["order"] = policy["order"] or names
            return PacemakerCoordinator(node, policy, names, {n.name: n.address.split("/")[0] for n in spec.nodes})
    return None


# --- standby: the Pacemaker part of a drain --------------------------------------------------

# How long a standby of a node that runs no resource waits for the DC to be idle before it
# falls back to `crm_resource --wait` (which always sleeps 2 s before its first look). 1 s
# was too short: right after a rollout's turn (a crm_config change) the DC's controller
# answered the ping only ~1 s later in the lab, once it had logged the fencer's answer about
# watchdog fencing; the drain then fell back and took ~4 s.
SETTLE_SECONDS = 3.0


def active_here(cib: ET.Element, name: str) -> list[str]:
    """Resources the CIB's status section says may be active on node `name`. One counts as
    stopped there only when its last non-recurring operation there (highest call-id)
    completed (op-status 0) and left it stopped: a `stop` that succeeded, or a probe
    (`monitor` with interval 0) that found it not running (rc 7). Anything else — a start,
    a promote, an operation in flight (Pacemaker records those with op-status -1), a
    failure — counts as active: when in doubt a standby waits for Pacemaker."""
    out: list[str] = []
    for state in cib.iterfind("status/node_state"):
        if state.get("uname") != name:
            continue
        for rsc in state.iterfind("lrm/lrm_resources/lrm_resource"):
            ops = rsc.findall("lrm_rsc_op")
            if any(op.get("op-status") == "-1" for op in ops):
                out.append(rsc.get("id", ""))
                continue
            once = [op for op in ops if op.get("interval", "0") == "0"]
            if not once:
                out.append(rsc.get("id", ""))
                continue
            last = max(once, key=lambda op: int(op.get("call-id", "-1") or "-1"))
            stopped = last.get("op-status") == "0" and (
                (last.get("operation") == "stop" and last.get("rc-code") == "0")
                or (last.get("operation") == "monitor" and last.get("rc-code") == "7"))
            if not stopped:
                out.append(rsc.get("id", ""))
    return out


def dc_name(cib: ET.Element) -> str | None:
    """The DC's node name, from the CIB's dc-uuid."""
    uuid = cib.get("dc-uuid")
    for n in cib.iterfind("configuration/nodes/node"):
        if uuid is not None and n.get("id") == uuid:
            return n.get("uname")
    return None


def dc_idle(node: Node, cib: ET.Element) -> bool:
    """Whether the DC's controller is idle (S_IDLE): no transition computed or running."""
    dc = dc_name(cib)
    if dc is None:
        return False
    try:
        r = node.run(["crmadmin", "--quiet", "--status", dc], read_only=True, timeout=5, check=False)
    except CommandError:
        return False
    return r.rc == 0 and r.stdout.strip() == "S_IDLE"


def settled_empty(node: Node, within: float = SETTLE_SECONDS) -> bool:
    """After `standby on`: True once the CIB holds this node's standby, the DC is idle
    (every transition computed before the standby has finished and recorded what it did)
    and the CIB then read shows no resource active or in flight here — the guarantee
    `crm_resource --wait` gives, without its 2 s sleep. False when that is not seen
    within `within` seconds, or a resource is (or may be) here: the caller waits for
    Pacemaker then."""
    deadline = time.monotonic() + within
    while True:
        cib = query_cib(node)
        if active_here(cib, node.name):
            return False
        if node_attributes(cib, node.name).get("standby") == "on" and dc_idle(node, cib):
            return not active_here(query_cib(node), node.name)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def serving(node: Node) -> list[str] | None:
    """Resources running (or starting) on this node: what a standby would move away; None
    when Pacemaker does not run here."""
    try:
        return active_here(query_cib(node), node.name)
    except CibUnavailable:
        return None


def standby(node: Node, on: bool, force: bool = False, timeout: float = 60.0) -> str | None:
    """Put this node in (transient) standby and wait until Pacemaker moved its resources
    away; or take it out. None when Pacemaker does not run here. Refused (ApplyError) when
    no other node is online to take the resources, unless `force`. A node that runs no
    resource returns as soon as the standby is in force and the DC idle (`settled_empty`)."""
    try:
        cib = query_cib(node)
    except CibUnavailable:
        return None
    if on and not force:
        others = [n for n, info in parse_nodes(cib).items() if n != node.name and info.get("online")]
        if not others:
            raise ApplyError(f"no other node of the cluster is online: a standby of {node.name} would stop its "
                             "resources everywhere; --force does it anyway")
    argv = ["crm_attribute", "--node", node.name, "--name", "standby", "--lifetime", "reboot"]
    if on:
        node.run(argv + ["--update", "on"], timeout=30)
        if not active_here(cib, node.name) and settled_empty(node):
            return "Pacemaker standby: no resource ran here"
        node.run(["crm_resource", "--wait", f"--timeout={int(timeout)}s"], timeout=timeout + 10, check=False)
    elif node_attributes(cib, node.name).get("standby"):
        node.run(argv + ["--delete"], timeout=30, check=False)
    return "Pacemaker standby: resources moved away" if on else "Pacemaker standby off"
