"""ClusterResource: Pacemaker resources, their constraints and the cluster-wide CIB, from git.

Two kinds, one artifact (the CIB):
- `ClusterResource` objects are Pacemaker resources named by their CIB id: every
  ClusterResource manifest (a primitive of any agent, fencing devices too, or a group;
  cloned or promotable), every VirtualIP with `manager: pacemaker` (IPaddr2) and every
  Container with `spec.cluster` (lxc), each with the constraints that place it;
- one `ClusterConfig` object per cluster: the cluster-wide sections its Cluster manifest
  declares (properties, defaults, alerts, fencing levels, tags, node attributes,
  cluster-level constraints). See cib.py / cluster_cib.py for the states, ownership.py for
  what belongs to whom.

Read top to bottom: desired, observe, validate and explain (read-only), apply.

Apply: every node writes its own cibsecret files (secret parameters); the agent on the DC
writes the CIB, the others defer to it. All of a pass's changes become ONE candidate:
the live CIB with the batch's objects rewritten and everything else as observed,
checked with crm_verify (an error is pinned on the object whose element it names, and
the rest is tried again without it), simulated against the live CIB by the blast-radius
guard (guard.py), and pushed as one version-checked `cibadmin --patch`. A resource that
leaves git and still runs is stopped through Pacemaker first (target-role=Stopped and a
bounded wait), as `pcs resource delete` does.
"""
from __future__ import annotations

import copy
import shutil
import time
import xml.etree.ElementTree as ET
from typing import Any, Iterator

from reconcilers import netprobe
from reconcilers.base import (
    ApplyError, Background, Change, CommandError, Deferred, Desired, Health, HealthReport, Node, Outcomes, Reconciler,
    Refusal, Wake, install_batch, native_check, wait_until,
)
from reconcilers.pacemaker import daemons, guard, secrets, tools
from reconcilers.pacemaker import health as pcmk_health
from reconcilers.pacemaker.candidate import Batch, apply_changes, render_configuration, resource_ids
from reconcilers.pacemaker.cib import canonical_sets, resource_state, top_id
from reconcilers.pacemaker.cluster_cib import cluster_config_state
from reconcilers.pacemaker.derived import container_state, virtual_ip_state
from reconcilers.pacemaker.nvsets import LRM_MAGIC, SECRET_TOKEN, sets_values
from reconcilers.pacemaker.ownership import Observed, observe as observe_cib
from schemas.cluster_resource import resource_tops

RESOURCE, CONFIG = "ClusterResource", "ClusterConfig"
WATCH_SECONDS = 2.0
# A node that is not the DC waits this long for the DC's agent to make a change it owes
# (woken through the CIB; its watch looks every WATCH_SECONDS), looking every POLL.
DC_APPLY_WAIT_SECONDS = 30.0
DC_APPLY_POLL_SECONDS = 1.0
STOP_WAIT_SECONDS = 120.0  # how long a delete waits for Pacemaker to stop the resource first
PATCH_ATTEMPTS = 4


class ClusterResourceReconciler(Reconciler):
    """Pacemaker resources and the cluster-wide CIB of the cluster this node is in."""

    kinds = (RESOURCE, CONFIG)
    # After Container: a Pacemaker-placed container is defined on the node before its
    # primitive is written, and (deletes run in reverse) its primitive is gone before the
    # Container reconciler destroys it.
    after = ("Cluster", "Container")
    consumes = ("VirtualIP", "Container", "Cluster")

    def __init__(self) -> None:
        self._cluster: Any = None
        self._states: dict[str, dict[str, Any]] = {}  # resource → desired state
        self._order: list[str] = []  # resources in the tree's order
        self._config: dict[str, Any] | None = None
        self._secrets: dict[str, dict[str, Any]] = {}  # resource → param → SecretRef
        self._sources: dict[str, Any] = {}
        self._node_ids: dict[str, int] = {}
        self._observed = Observed()
        self._preview: list[tools.Action] | None = None
        self._disruptions: list[tools.Action] = []
        self._forming: list[str] = []
        self._explained: set[str] = set()
        self._attributes: dict[str, dict[str, str]] = {}  # node → its transient attributes (preview)
        self._shown_as: dict[str, str] = {}  # name → how people know it (a VirtualIP, a Container)
        self._read_live = False  # the last _live_or_empty read the live CIB (not a stand-in)
        self._just_read: ET.Element | None = None  # the configuration validate read, for the observe after it
        # The IPaddr2 link probe prepare_health started, with the addresses it asks for.
        self._probing: tuple[dict[str, dict[str, Any]], Background] | None = None

    # --- desired -------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        clusters = [c for c in tree.on_node("Cluster", node.name) if c.spec.stack == "pacemaker"]
        if not clusters:
            return {RESOURCE: {}, CONFIG: {}}
        self._cluster = cluster = clusters[0]
        name = cluster.metadata.name
        self._node_ids = {n.name: n.id for n in cluster.spec.nodes}
        tops = resource_tops(tree, name)
        loaded = {k: {i.name: i for i in tree.loaded(k)} for k in ("ClusterResource", "VirtualIP", "Container")}

        def resolve(ref: str) -> str:
            m = tree.get("ClusterResource", tops.get(ref, ref))
            return m.spec.top_id(m.metadata.name) if m is not None and tops.get(ref) == ref else ref

        sources: dict[str, Any] = {}
        for item in tree.items:
            m = item.manifest
            if item.kind == "ClusterResource" and m.spec.cluster == name:
                rsc = m.metadata.name
                self._secrets[rsc] = {}

                def secret(param: str, ref: Any, rsc: str = rsc) -> str:
                    self._secrets[rsc][param] = ref
                    return SECRET_TOKEN

                self._states[rsc] = resource_state(rsc, m.spec, resolve, secret)
            elif item.kind == "VirtualIP" and m.spec.manager == "pacemaker" and m.spec.cluster == name:
                self._states[m.metadata.name] = virtual_ip_state(m.metadata.name, m.spec)
                self._shown_as[m.metadata.name] = f"VirtualIP {m.metadata.name} (IPaddr2 primitive)"
            elif item.kind == "Container" and getattr(m.spec, "cluster", None) == name:
                self._states[m.metadata.name] = container_state(m.metadata.name, m.spec)
                self._shown_as[m.metadata.name] = f"Container {m.metadata.name} (lxc primitive)"
            else:
                continue
            self._order.append(m.metadata.name)
            sources[m.metadata.name] = loaded[item.kind].get(m.metadata.name)
        self._sources = sources
        self._config = cluster_config_state(cluster.spec)
        cluster_key = (("Cluster", name),)
        out: dict[str, dict[str, Desired]] = {RESOURCE: {}, CONFIG: {}}
        for rsc, state in self._states.items():
            src = sources.get(rsc)
            out[RESOURCE][rsc] = Desired(state, depends=cluster_key + self._depends(rsc, state, tops),
                                         source=src.where() if src is not None else "",
                                         shown_as=self._shown_as.get(rsc, ""))
        refs = {r for c in self._config.get("constraints", []) for r in _constraint_refs(c)}
        refs |= {d for lv in self._config.get("fencingLevels", []) for d in lv["devices"]}
        refs |= {r for t in self._config.get("tags", []) for r in t["refs"]}
        out[CONFIG][name] = Desired(self._config, depends=cluster_key + tuple(
            (RESOURCE, tops[r]) for r in sorted(refs) if r in tops))
        return out

    @staticmethod
    def _depends(name: str, state: dict[str, Any], tops: dict[str, str]) -> tuple[tuple[str, str], ...]:
        refs = list(state.get("group", []))
        refs += [c["with"] for c in state.get("colocation", [])] + [o["first"] for o in state.get("order", [])]
        return tuple((RESOURCE, tops[r]) for r in dict.fromkeys(refs) if r in tops and tops[r] != name)

    # --- observe -------------------------------------------------------------------------

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        if not node.local:  # a plan for another machine: this machine's CIB is not its cluster's
            return {RESOURCE: {}, CONFIG: {}}
        configuration, self._just_read = self._just_read, None  # what validate read moments ago, once
        try:
            if configuration is None:
                configuration = tools.query_cib(node, scope="configuration", local=True)
        except tools.CibUnavailable as err:
            # Pacemaker not running here: the CIB it saved, if any, is what it starts with
            # (the Cluster starts it in the same run); never ran: nothing. But running and
            # not answering (hung), or cibadmin missing where git wants a cluster, is not
            # "absent": raised, the engine says "cannot observe" and deletes nothing, rather
            # than a plan of creates called drift (issue 21, item 8).
            if self._cluster is not None and (shutil.which("cibadmin") is None or daemons.running(node).get("pacemaker")):
                raise ApplyError(f"the CIB cannot be read on {node.name} ({err}): Pacemaker runs here but does "
                                 "not answer, or its tools are missing") from None
            saved = tools.saved_configuration(self._cluster.metadata.name) if self._cluster is not None else None
            if saved is None:
                return {RESOURCE: {}, CONFIG: {}}
            configuration = saved
        self._observed = observe_cib(configuration, self._states, self._config)
        for name, refs in self._secrets.items():
            state = self._observed.resources.get(name)
            if state is not None and refs:
                self._secret_tokens(name, state, refs, node)
        config = {self._cluster.metadata.name: self._observed.config} if self._observed.config is not None else {}
        return {RESOURCE: self._observed.resources, CONFIG: config}

    @staticmethod
    def _secret_tokens(name: str, state: dict[str, Any], refs: dict[str, Any], node: Node) -> None:
        """Replace what the CIB holds for a secret parameter by what this node has."""
        params = state.get("params")
        sets = [params] if isinstance(params, dict) else [s["values"] for s in params or []]
        for param, ref in refs.items():
            holder = next((s for s in sets if param in s), None)
            cib_value = holder.get(param) if holder is not None else None
            token = secrets.observe(name, param, cib_value, ref, node)
            if holder is not None:
                holder[param] = token

    # --- validate and explain (read-only) ------------------------------------------------

    def _live_or_empty(self, node: Node) -> tuple[ET.Element, list[str]]:
        """The live CIB, or for a cluster that does not run yet an empty one with its nodes
        (a simulation then brings them up); the empty one too for another machine's plan."""
        self._read_live = False
        try:
            if not node.local:
                raise tools.CibUnavailable(f"not {node.name}")
            live = tools.query_cib(node)
            self._read_live = True
            return live, []
        except tools.CibUnavailable:
            nodes = {i: n for n, i in self._node_ids.items()}
            return tools.empty_cib(node, nodes), [n for _, n in sorted(nodes.items())]

    def _everything(self, deletes: list[str] = ()) -> Batch:
        batch = self._batch_for([n for n in self._states], config=True)
        batch.resources.update({n: None for n in deletes})
        return batch

    def _batch_for(self, names: list[str], config: bool, deletes: list[str] = ()) -> Batch:
        return Batch(resources={**{n: self._states[n] for n in names}, **{n: None for n in deletes}},
                     config=self._config if config else None, desired=self._states,
                     owned={n: self._observed.owned.get(n, []) for n in [*names, *deletes]},
                     config_owned=list(self._observed.config_owned), node_ids=self._node_ids)

    def _value(self, resource: str, param: str, value: Any) -> str:
        return LRM_MAGIC if param in self._secrets.get(resource, {}) else str(value)

    def validate(self, node: Node) -> list[Refusal | str]:
        if not self._states and self._config is None:
            return []
        problems: list[Refusal | str] = []
        for agent in sorted({s["agent"] for s in self._states.values() if "agent" in s}):
            why = native_check(node, "crm_resource", agent, lambda: [w for w in [tools.agent_missing(node, agent)] if w])
            for name, state in self._states.items():
                if why and state.get("agent") == agent:
                    src = self._sources.get(name)
                    where = f"{src.where('spec.agent')}: spec.agent: " if src is not None and src.kind == RESOURCE \
                        else (f"{src.where()}: " if src is not None else "")
                    problems.append(Refusal(f"{where}{name}: resource agent {agent} does not exist on {node.name} "
                                            f"(crm_resource --show-metadata: {why[0]})", ((RESOURCE, name),)))
        problems += self._unknown_properties(node)
        held = {k for p in problems if isinstance(p, Refusal) for k in p.objects}
        live, forming = self._live_or_empty(node)
        self._observed = observe_cib(live.find("configuration"), self._states, self._config)
        # A plan observes right after validating, in the same thread: that observation takes
        # the configuration just read rather than asking the CIB again (not the stand-in of a
        # cluster that does not answer). An apply's observation reads it afresh.
        self._just_read = live.find("configuration") if node.dry_run and self._read_live else None
        # what the engine will prune: its inventory is not known here, reconcile's marker is
        pruned = [n for n in self._observed.marked if n not in self._states]
        names = [n for n in self._states if (RESOURCE, n) not in held]
        config = True
        for _ in range(len(names) + 2):
            candidate = apply_changes(copy.deepcopy(live), self._batch_for(names, config, pruned), self._value)
            errors = self._verify(node, candidate)
            if not errors:
                break
            culprit = self._culprit(errors, names, config)
            if culprit is None:
                problems.append(f"crm_verify: {errors[0].message}")
                break
            problems.append(Refusal(f"crm_verify: {errors[0].message}", (culprit,)))
            if culprit[0] == CONFIG:
                config = False
            else:
                names.remove(culprit[1])
        return problems

    def _unknown_properties(self, node: Node) -> list[Refusal | str]:
        """Cluster properties this Pacemaker does not know (it would ignore a typo); the
        daemons' metadata is asked once per set of names (native_check remembers)."""
        if self._cluster is None:
            return []
        names = sorted(set(sets_values(self._config.get("properties"))) - {"stonith-enabled"})
        if not names:
            return []

        def unknown() -> list[str]:
            known = tools.known_properties(node)
            return [p for p in names if known and p not in known]

        key = (CONFIG, self._cluster.metadata.name)
        return [Refusal(f"Cluster {key[1]}: spec.properties.{p}: {p!r} is not a cluster property this Pacemaker "
                        "knows (see `man pacemaker-schedulerd`)", (key,))
                for p in native_check(node, "crm_verify", "\n".join(names), unknown, context="properties")]

    def _verify(self, node: Node, candidate: ET.Element) -> list[tools.VerifyError]:
        """crm_verify on a candidate, remembered per configuration content (native_check)."""
        conf = candidate.find("configuration")
        content = ET.tostring(conf) if conf is not None else b""
        found: list[tools.VerifyError] = []

        def check() -> list[tools.VerifyError]:
            found.extend(tools.verify_details(node, candidate))
            return found

        native_check(node, "crm_verify", content, check, context=candidate.get("validate-with", ""))
        return found

    def _culprit(self, errors: list[tools.VerifyError], names: list[str], config: bool) -> tuple[str, str] | None:
        """The object the first error is about: the innermost id it names that belongs to
        one (a resource, one of its constraints, a cluster-wide section)."""
        owners: dict[str, tuple[str, str]] = {}
        for n in names:
            state = self._states[n]
            for i in resource_ids(n, state):
                owners.setdefault(i, (RESOURCE, n))
            for el_id in [c.get("id") for c in _constraint_ids(n, state)] + self._observed.owned.get(n, []):
                owners[el_id] = (RESOURCE, n)
        if config and self._cluster is not None:
            key = (CONFIG, self._cluster.metadata.name)
            for c in self._config.get("constraints", []):
                owners[c["id"]] = key
            for section in ("cib-bootstrap-options", "rsc_defaults-meta_attributes", "op_defaults-meta_attributes"):
                owners.setdefault(section, key)
            for a in self._config.get("alerts", []) + self._config.get("tags", []):
                owners[a["id"]] = key
        for error in errors[:1]:
            for el_id in error.ids:
                if el_id in owners:
                    return owners[el_id]
                if el_id.startswith(("fl-",)) and config and self._cluster is not None:
                    return (CONFIG, self._cluster.metadata.name)
        return None

    def explain(self, change: Change, node: Node) -> list[str]:
        """What Pacemaker would do with the CIB this plan leaves: one crm_simulate for the
        whole plan, against the live CIB's own transition. Each change shows the actions on
        its own resources; the first also shows those on resources without a change of
        their own, and what the blast-radius guard would refuse."""
        if self._preview is None:
            live, self._forming = self._live_or_empty(node)
            self._attributes = {n: tools.node_attributes(live, n) for n in self._node_ids}
            pending = [n for n in self._states if self._states[n] != self._observed.resources.get(n)]
            # the engine prunes what its inventory holds; a preview takes what reconcile marked
            pruned = [n for n in self._observed.marked if n not in self._states]
            candidate = apply_changes(copy.deepcopy(live), self._batch_for(pending, True, pruned), self._value)
            self._preview = tools.simulate(node, candidate, self._forming)
            if not self._forming and not node.allows(guard.ALLOWANCE):
                baseline = tools.simulate(node, live)
                touched = self._touched(pending + pruned, self._observed.config != self._config)
                allowed = guard.related([live.find("configuration"), candidate.find("configuration")], touched)
                self._disruptions = guard.disruptions(baseline, self._preview, allowed)
        state = change.desired or change.observed or {}
        mine = resource_ids(change.name, state) if change.kind == RESOURCE else set()
        lines = [f"crm_simulate: {a.describe()}" for a in self._preview if a.base_resource in mine]
        if not self._explained:
            changing = {i for n, s in self._states.items() if s != self._observed.resources.get(n)
                        for i in resource_ids(n, s)}
            lines += [f"crm_simulate: {a.describe()}" for a in self._preview
                      if a.base_resource not in mine | changing]
            if lines and self._forming:
                lines.append(f"crm_simulate: (simulated for the new cluster of {', '.join(self._forming)} once it "
                             "has formed)")
            if self._disruptions:
                lines.append(f"guard: {guard.refusal(self._disruptions)}")
        self._explained.add(change.name)
        return lines + self._placement_note(change)

    def _touched(self, names: list[str], config_changed: bool) -> set[str]:
        """The resource ids a change touches (guard.py): changed resources with their clone
        and members, and what changed cluster-level constraints, tags and levels name."""
        out: set[str] = set()
        for n in names:
            out |= resource_ids(n, self._states.get(n) or self._observed.resources.get(n, {}))
        if config_changed and self._config is not None:
            have = {c["id"]: c for c in (self._observed.config or {}).get("constraints", [])}
            for c in self._config.get("constraints", []):
                if have.get(c["id"]) != c:
                    out |= _constraint_refs(c)
            for c in have.values():
                if c not in self._config.get("constraints", []):
                    out |= _constraint_refs(c)
        return out

    def _placement_note(self, change: Change) -> list[str]:
        """Where a Pacemaker-placed container can start: only on nodes whose Container
        reconciler has defined it (see derived.container_state)."""
        state = change.desired or {}
        if change.action != "create" or state.get("agent") != "ocf:heartbeat:lxc":
            return []
        attribute = tools.container_attribute(change.name)
        ready = [n for n, attrs in sorted(self._attributes.items())
                 if attrs.get(attribute) == tools.CONTAINER_ATTRIBUTE_VALUE]
        return [f"starts only on a node where the container is defined (node attribute {attribute}="
                f"{tools.CONTAINER_ATTRIBUTE_VALUE}, set by that node's Container reconciler): "
                f"{'now ' + ', '.join(ready) if ready else 'no node yet'}"]

    # --- health ----------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Where each resource runs against where it should, from one crm_mon; for IPaddr2
        addresses also who answers on the link (one ARP probe burst per interface)."""
        wanted = [n for n in desired.get(RESOURCE, {}) if n in self._states]
        if not wanted:
            return {}
        addresses = self._addresses(wanted)
        peers = self._peers(node)
        # The link is asked while crm_mon answers (since prepare_health, or now): neither waits for the other.
        early = self._probing if self._probing is not None and self._probing[0] == addresses else None
        prober = early[1] if early is not None else \
            Background(lambda: self._probe(node, addresses, peers)) if addresses else None
        snap = pcmk_health.read(node)
        link: dict[str, Any] = prober.wait() if prober is not None else {}
        if isinstance(snap, str):
            return {RESOURCE: {n: Health.unknown("NoAnswer", snap) for n in wanted}}
        out = {n: pcmk_health.resource_health(n, self._states[n], snap) for n in wanted}
        if "answers" in link:
            names = netprobe.names_by_mac(link["answers"], peers)
            for n, params in addresses.items():
                if out[n].status == "Healthy" and n in snap.resources:
                    found = netprobe.holders(params["ip"] in link["here"], node.name,
                                             link["answers"].get(params["ip"], set()), names)
                    out[n] = pcmk_health.address_health(out[n], snap.resources[n].nodes, found)
        return {RESOURCE: out}

    def prepare_health(self, node: Node) -> None:
        """The IPaddr2 addresses' link probe (desired addresses, the peers' own: nothing
        observed) starts now, so that its window passes while the engine observes."""
        addresses, peers = self._addresses(list(self._states)), self._peers(node)
        self._probing = (addresses, Background(lambda: self._probe(node, addresses, peers))) if addresses else None

    def _addresses(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """The IPaddr2 parameters (ip, nic) of these resources, by name."""
        addresses = {n: sets_values(self._states[n].get("params")) for n in names
                     if self._states[n].get("agent") == "ocf:heartbeat:IPaddr2"}
        return {n: p for n, p in addresses.items() if isinstance(p.get("ip"), str) and p.get("nic")}

    def _peers(self, node: Node) -> dict[str, str]:
        """The other nodes' own addresses → their names (their replies name the MACs)."""
        return {n.address.split("/")[0]: n.name for n in self._cluster.spec.nodes if n.name != node.name} \
            if self._cluster is not None else {}

    @staticmethod
    def _probe(node: Node, addresses: dict[str, dict[str, Any]], peers: dict[str, str]) -> dict[str, Any]:
        """Who answers for each IPaddr2 address (and each peer's own address, to name them):
        {here, answers}; nothing when the link cannot be asked: Pacemaker's view then stands alone."""
        try:
            here = netprobe.local_ips(node)
            answers: dict[str, set[str]] = {}
            for nic in sorted({p["nic"] for p in addresses.values()}):
                ips = [p["ip"] for p in addresses.values() if p["nic"] == nic]
                answers.update(netprobe.probe(node, nic, [*ips, *peers]))
        except (OSError, CommandError):
            return {}
        return {"here": here, "answers": answers}

    # --- apply ---------------------------------------------------------------------------

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        outcomes: Outcomes = {}
        wrote: set[tuple[str, str]] = set()
        for change in changes:  # this node's secret files first: every node keeps its own
            if change.kind == RESOURCE and change.action != "delete" and self._secrets.get(change.name):
                try:
                    self._write_secrets(change.name, node)
                    wrote.add(change.key)
                except (ApplyError, OSError) as err:
                    outcomes[change.key] = err
        rest = [c for c in changes if c.key not in outcomes]
        if not rest:
            return outcomes
        dc = tools.wait_for_dc(node)
        if dc != node.name:
            return outcomes | self._owed_by(dc, rest, wrote, node)
        for change in rest:
            if change.kind == RESOURCE and change.action == "delete":
                try:
                    self._stop_first(change, node)
                except (ApplyError, CommandError) as err:
                    outcomes[change.key] = err
        ready = [c for c in rest if c.key not in outcomes]
        outcomes.update(install_batch(ready, lambda batch: self._attempt(batch, node)))
        for change in ready:
            if change.kind == RESOURCE and change.action == "delete" and outcomes.get(change.key) is None:
                for param in secrets.stored_params(change.name):
                    secrets.remove(change.name, param, node)
        return outcomes

    def _write_secrets(self, name: str, node: Node) -> None:
        for param, ref in self._secrets[name].items():
            secrets.write(name, param, secrets.checked_value(ref, node, name, param), node)
        for param in secrets.stored_params(name):
            if param not in self._secrets[name]:
                secrets.remove(name, param, node)

    def _owed_by(self, dc: str, changes: list[Change], wrote: set[tuple[str, str]], node: Node) -> Outcomes:
        """A node that is not the DC writes no CIB. What it wrote itself (its secret files)
        may be all that differed; the rest the DC owes: its agent is woken (`tools.wake`)
        and the change awaited, bounded. Seen in the CIB, it is deferred, assured; not seen,
        it is pending (exit 2): nothing on this node makes it happen (issue 21, item 6)."""
        done = self._refresh(changes, node)
        owed = [c for c in changes if not done.get(c.key)]
        waited, woken = 0.0, ""
        if owed:
            try:
                tools.wake(node, dc)
            except (ApplyError, CommandError) as err:
                woken = f"; its agent could not be woken ({err})"
            started = time.monotonic()

            def applied() -> bool:
                nonlocal done
                done = self._refresh(changes, node)
                return all(done.get(c.key) for c in owed)

            if not woken:
                wait_until(applied, DC_APPLY_WAIT_SECONDS, interval=DC_APPLY_POLL_SECONDS)
            waited = min(time.monotonic() - started, DC_APPLY_WAIT_SECONDS)
        out: Outcomes = {}
        for c in changes:
            if done.get(c.key):
                out[c.key] = None if c.key in wrote else Deferred(f"applied by the DC {dc}", owner=dc, assured=True)
            else:
                out[c.key] = Deferred(
                    f"owed by the DC {dc}, not in the CIB within {waited:.0f}s of waking its agent{woken}: "
                    f"is reconcile-agent running on {dc}? (`reconcile apply` on {dc} applies it)", owner=dc)
        return out

    def _refresh(self, changes: list[Change], node: Node) -> dict[tuple[str, str], bool]:
        """Whether each change's CIB part is as git wants it now (made by the DC, or all
        that differed was this node's own secret files); empty when the CIB cannot be read."""
        try:
            self.observe(node)
        except Exception:  # the change is then not known to be done
            return {}
        out = {}
        for c in changes:
            if c.kind == RESOURCE:
                out[c.key] = self._observed.resources.get(c.name) == self._states.get(c.name)  # None: deleted
            else:
                out[c.key] = self._observed.config == self._config
        return out

    def _attempt(self, batch: list[Change], node: Node) -> list[Refusal]:
        """One candidate for `batch`: verified, guarded, pushed as one patch (install_batch
        calls it again without the objects a refusal names)."""
        names = [c.name for c in batch if c.kind == RESOURCE and c.action != "delete"]
        deletes = [c.name for c in batch if c.kind == RESOURCE and c.action == "delete"]
        config = any(c.kind == CONFIG and c.action != "delete" for c in batch)
        last: CommandError | None = None
        for _ in range(PATCH_ATTEMPTS):
            live = tools.query_cib(node)
            self._observed = observe_cib(live.find("configuration"), self._states, self._config)
            candidate = apply_changes(copy.deepcopy(live), self._batch_for(names, config, deletes), self._value)
            if tools.same_configuration(live, candidate):
                return []
            errors = self._verify(node, candidate)
            if errors:
                culprit = self._culprit(errors, names + deletes, config)
                message = f"crm_verify refused the new CIB, nothing was changed: {errors[0].message}"
                return [Refusal(message, (culprit,) if culprit else ())]
            if not node.allows(guard.ALLOWANCE):
                refusals = self._guard(batch, node, live, candidate)
                if refusals:
                    return refusals
            try:
                tools.patch(node, live, candidate)
                return []
            except CommandError as err:  # the CIB moved on since our query: start again
                last = err
                time.sleep(0.2)
        raise ApplyError(f"Pacemaker refused the CIB patch {PATCH_ATTEMPTS} times: {last}")

    def _guard(self, batch: list[Change], node: Node, live: ET.Element, candidate: ET.Element) -> list[Refusal]:
        baseline = tools.simulate(node, live)

        def found(changes: list[Change], cand: ET.Element) -> list[tools.Action]:
            names = [c.name for c in changes if c.kind == RESOURCE]
            touched = self._touched(names, any(c.kind == CONFIG for c in changes))
            allowed = guard.related([live.find("configuration"), cand.find("configuration")], touched)
            return guard.disruptions(baseline, tools.simulate(node, cand), allowed)

        hits = found(batch, candidate)
        if not hits:
            return []
        if len(batch) == 1:
            return [Refusal(guard.refusal(hits), (batch[0].key,))]
        refusals = []
        for change in batch:  # which change causes it: simulate each alone
            alone = apply_changes(copy.deepcopy(live), self._batch_for(
                [change.name] if change.kind == RESOURCE and change.action != "delete" else [],
                change.kind == CONFIG, [change.name] if change.kind == RESOURCE and change.action == "delete" else []),
                self._value)
            solo = found([change], alone)
            if solo:
                refusals.append(Refusal(guard.refusal(solo), (change.key,)))
        return refusals or [Refusal(guard.refusal(hits), tuple(c.key for c in batch))]

    def _stop_first(self, change: Change, node: Node) -> None:
        """Before a running resource leaves the CIB, stop it through Pacemaker and wait,
        as `pcs resource delete` does: a primitive removed while it runs is stopped as an
        orphan with default timeouts (its own operations are gone with it), and an lxc
        primitive's stop needs the container's config, which the Container reconciler
        removes right after this delete."""
        state = change.observed or {}
        ids = resource_ids(change.name, state)
        if not _active(node, ids):
            return
        top = top_id(change.name, state)

        def stopped(cib: ET.Element) -> ET.Element:
            return _set_target_role(cib, top)

        live = tools.query_cib(node)
        tools.patch(node, live, stopped(copy.deepcopy(live)))
        if not wait_until(lambda: not _active(node, ids), STOP_WAIT_SECONDS, interval=0.5):
            raise ApplyError(f"Pacemaker did not stop {change.name} within {STOP_WAIT_SECONDS:.0f}s "
                             "(target-role=Stopped is set): it stays in the CIB until it has stopped; "
                             f"see crm_mon, and crm_resource --cleanup -r {change.name} once fixed")

    # --- render and watch ----------------------------------------------------------------

    def render(self, node: Node) -> dict[str, str]:
        """The CIB configuration git describes for this node's cluster (`reconcile render`):
        secret parameters as `lrm://`, no ownership markers (apply adds those)."""
        if self._cluster is None:
            return {}
        configuration = render_configuration(self._config, [(n, self._states[n]) for n in self._order],
                                             self._node_ids, self._value)
        ET.indent(configuration)
        return {"pacemaker/cib-configuration.xml": ET.tostring(configuration, encoding="unicode") + "\n"}

    def watch(self, node: Node) -> Iterator[str]:
        """Yield when the CIB's configuration changes (one `cibadmin --query` every few
        seconds: Pacemaker offers no change feed to a command-line client). Where a
        resource runs is in the status section, so failovers do not wake the agent; this
        node's wake attribute there does (a `Wake`: another node asks the DC to run)."""
        last: bytes | None = None
        token: str | None = None
        while True:
            try:
                cib = tools.query_cib(node, local=True)
                configuration = cib.find("configuration")
                current = ET.tostring(configuration) if configuration is not None else b""
                asked = tools.wake_token(cib, node.name)
            except tools.CibUnavailable:
                current, asked = b"", token
            if last is not None and asked and asked != token:
                yield Wake(f"{asked.partition('@')[0]} asked this node (the DC) to run: it owes a CIB change")
            elif last is not None and current != last:
                yield "the CIB configuration changed"
            last, token = current, asked
            time.sleep(WATCH_SECONDS)


def _constraint_refs(c: dict[str, Any]) -> set[str]:
    refs = {c[k] for k in ("resource", "with", "first", "then") if c.get(k)}
    return refs | {r for s in c.get("sets", []) for r in s["resources"]}


def _constraint_ids(name: str, state: dict[str, Any]) -> list[ET.Element]:
    from reconcilers.pacemaker.cib import build_resource_constraints

    return build_resource_constraints(name, state)


def _active(node: Node, ids: set[str]) -> list[str]:
    try:
        status = tools.cluster_status(node)
    except tools.CibUnavailable as err:
        raise ApplyError(f"cannot tell whether {', '.join(sorted(ids))} still run: {err}") from None
    return [f"{r} on {', '.join(where)}" for r, where in status.active.items() if r in ids]


def _set_target_role(cib: ET.Element, top: str) -> ET.Element:
    """target-role=Stopped on the resource's top element (its clone, if cloned)."""
    for el in cib.iter():
        if el.get("id") == top and el.tag in ("primitive", "group", "clone", "master"):
            meta = el.find("meta_attributes")
            if meta is None:
                meta = ET.SubElement(el, "meta_attributes", {"id": f"{top}-meta_attributes"})
            for nv in list(meta.findall("nvpair")):
                if nv.get("name") == "target-role":
                    meta.remove(nv)
            ET.SubElement(meta, "nvpair", {"id": f"{meta.get('id')}-target-role", "name": "target-role",
                                           "value": "Stopped"})
            break
    return cib


__all__ = ["ClusterResourceReconciler", "canonical_sets"]
