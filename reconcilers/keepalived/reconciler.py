"""keepalived on one node: the Keepalived, VirtualIP (manager: keepalived) and VirtualServer kinds.

They share one artifact, /etc/keepalived/keepalived.conf, and one daemon, so one reconciler
owns the three kinds: a pass's changes are rendered into one file, checked once by
`keepalived -t` (its complaints pinned on the objects that wrote them; the others land),
installed once, and keepalived is started or reloaded at most once — twice only when an
address moves from one VRRP instance to another, which keepalived needs.

Each object is the section it renders (render.py) and compares as a dict that reads like
the file (model.state_of). Which node holds an address is keepalived's business and never
drift; what is drift besides the configuration:

- keepalived is not running (`keepalived: stopped`), or runs an older configuration than
  the file (`reload-needed`), or does not answer its dump signal (`not-responding`: apply
  does not fight it);
- the split-brain guard, `staleAddress`: an address of the file is on the node while
  keepalived is not running (it was killed and left it behind). Apply removes it once a
  peer's advert shows that the peer took it over (guard.py), then starts keepalived;
- `vipPresentOnMaster: false`: keepalived says MASTER but an address is missing;
- under systemd, keepalived.service not started at boot: the `keepalived` status says so
  (base.boot_note; desired says plain `running` on every machine). Apply enables it, as the
  package installs it, without a reload; a unit the operator masked, or disabled although
  the package enables it, is their hold: reported, left so, the objects pending (`Held`),
  unless a manifest of the node says `metadata.drift: enforce`.

The programs keepalived would run and the files it would include need the node's policy
(reconcilers/policy.py); a virtual server needs IPVS in the kernel (without it keepalived's checker
exits and takes VRRP down with it). Both are refused in `validate`, naming the objects.
`manager: pacemaker` VIPs belong to the ClusterResource reconciler; while it is not
installed they are listed here and deferred, never silently absent.

Health (health.py judges): each VIP's addresses held by exactly one node, asked of the link
(netprobe); keepalived itself for the node and the Keepalived object; each virtual server
in the kernel's IPVS table. `drain`/`undrain` are the contract's run-time hooks (drain.py).
"""
from __future__ import annotations

import ipaddress
import queue
import subprocess
import threading
import time
from typing import Any, Iterator

import reconcilers
from reconcilers.base import (
    ENABLED, GENERATED_HEADER, NODE, ApplyError, AtomicWriter, Background, Change, CommandError, Deferred, Desired,
    Health, HealthReport, Held, Key, Node, NodeNote, Outcomes, Reconciler, Refusal, Skipped, UnitState, boot_note,
    enable_unit, install_batch, read_secret, starts_at_boot, unit_notes, without_boot_note,
)
from reconcilers import netprobe
from reconcilers.keepalived import check, drain, gate, guard
from reconcilers.keepalived.drain import DrainResult
from reconcilers.keepalived.conf import Rendered, Stmt, SyntaxProblem, parse, render_file
from reconcilers.keepalived.daemon import (
    CONFIG, IPVS_PROC, UNIT, Keepalived, ipvs_available, read_config, signature,
)
from reconcilers.keepalived.health import (
    addresses_health, daemon_health, keepalived_health, parse_ip_vs, service_key, virtual_server_health,
)
from reconcilers.keepalived.files import files_state, install_files, observed_files
from reconcilers.keepalived.model import Instance, instances_in, master_down_seconds, state_of
from reconcilers.keepalived.render import DEFAULTS, HEADER, NodeConfig, render_node, render_text, split_owner
from reconcilers.keepalived.vrrp import MASTER, RunningInstance, holders
from reconcilers.policy import load_policy
from schemas.keepalived import CAPABILITIES, WRITES_FILES

KINDS = ("Keepalived", "VirtualIP", "VirtualServer")
RUNNING, STOPPED, RELOAD_NEEDED, NOT_RESPONDING = "running", "stopped", "reload-needed", "not-responding"
ELECTION_MARGIN = 0.5  # seconds beyond the master-down interval: adverts on a busy node, gratuitous ARP
PACEMAKER_NOTE = ("manager: pacemaker: this address becomes an IPaddr2 primitive of the ClusterResource "
                  "reconciler, which is not installed yet; nothing is done for it here")


def sections_of(text: str | None) -> tuple[bool, dict[str, list[Stmt]]]:
    """Whether reconcile wrote the file, and its top-level statements by owner ("Kind/name"
    of the marker they stand under; "" before any marker)."""
    generated = text is None or GENERATED_HEADER in text.split("\n", 1)[0]
    sections: dict[str, list[Stmt]] = {}
    if text is not None and generated:
        try:
            for s in parse(text):
                sections.setdefault(s.owner, []).append(s)
        except SyntaxProblem:
            return generated, {}  # a hand-edit broke it: every section is rewritten
    return generated, sections


def runtime(kind: str, instances: list[Instance], running: bool, dump: dict[str, RunningInstance] | None,
            addrs: dict[str, set[str]]) -> dict[str, Any]:
    """The run-time half of an object's observed state, from keepalived's pid, its JSON
    dump (None: stopped or not answering) and the node's addresses. Pure."""
    if not running:
        daemon = STOPPED
    elif instances and dump is None:
        daemon = NOT_RESPONDING
    elif instances and not all(i.name in dump and dump[i.name].runs(i) for i in instances):
        daemon = RELOAD_NEEDED
    else:
        daemon = RUNNING
    if kind != "VirtualIP":
        return {"keepalived": daemon}
    present = [a for i in instances for a in i.addresses + i.excluded if holders(addrs, a)]
    missing = [a for i in instances if dump and (live := dump.get(i.name)) and live.state == MASTER
               for a in i.addresses if not holders(addrs, a)]
    return {"keepalived": daemon, "staleAddress": not running and bool(present), "vipPresentOnMaster": not missing}


def masked(ref: Any) -> str:
    """What plans show for a secret: where it comes from, never its value."""
    return f"<secret {ref.describe()}>"


def runtime_ok(kind: str) -> dict[str, Any]:
    """The run-time half of an object's desired state."""
    if kind == "VirtualIP":
        return {"keepalived": RUNNING, "staleAddress": False, "vipPresentOnMaster": True}
    return {"keepalived": RUNNING}


class KeepalivedReconciler(Reconciler):
    """keepalived.conf and the keepalived daemon of this node."""

    kinds = KINDS
    after = ("Cluster",)
    units = (UNIT,)

    def __init__(self) -> None:
        self.tree: Any = None
        self.config = NodeConfig()  # desired, secrets masked
        self.pacemaker: set[str] = set()
        self.text: str | None = None
        self.sections: dict[str, list[Stmt]] = {}  # observed: owner → statements
        self.generated = True
        self.pid: int | None = None
        self.dump: dict[str, RunningInstance] | None = None
        self.addrs: dict[str, set[str]] = {}
        self.elected_by = 0.0  # monotonic time by which the election after this instance's start/reload is due
        self._probing: Background | None = None  # the VIPs' link probe prepare_health started
        self.unit: UnitState | None = None  # keepalived.service (systemd), as observed
        self.enforce = False  # a manifest of this node says metadata.drift: enforce (unmask/enable the unit)

    # -- desired

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.tree = tree
        self.config = render_node(tree, node.name, node.state_dir, masked)
        self.enforce = any(m.metadata.drift == "enforce" for kind in KINDS for m in tree.on_node(kind, node.name)
                           if kind != "VirtualIP" or m.spec.manager == "keepalived")
        out: dict[str, dict[str, Desired]] = {k: {} for k in KINDS}
        # Without a Keepalived manifest, reconcile's own global settings are part of what
        # every VIP and virtual server of the node needs: their drift shows on each.
        defaults = state_of(self.config.section(DEFAULTS), lambda _k, v: v)
        for who, stmts in self.config.sections:
            config = state_of(stmts, lambda _k, v: v)
            for kind, name in check.keys(who):
                state: dict[str, Any] = {"config": config | defaults if kind != "Keepalived" else config} \
                    | runtime_ok(kind)
                if kind == "Keepalived":
                    state["files"] = files_state(self.config.files)
                out[kind][name] = Desired(state)
        if not _installed("ClusterResource"):
            for vip in tree.on_node("VirtualIP", node.name):
                if vip.spec.manager == "pacemaker":
                    self.pacemaker.add(vip.metadata.name)
                    out["VirtualIP"][vip.metadata.name] = Desired({"manager": "pacemaker", "address": vip.spec.address})
        return out

    # -- observe

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        daemon = Keepalived(node)
        self.text = read_config()
        self.generated, self.sections = sections_of(self.text)
        self.pid = daemon.pid()
        # The dump before the addresses: keepalived adds a master's addresses before it
        # answers the next signal, so MASTER-without-address is never a read race.
        has_instances = any(s.keyword == "vrrp_instance" for stmts in self.sections.values() for s in stmts)
        self.dump = daemon.dump(self.pid) if self.pid is not None and self.generated and has_instances else None
        if self.dump is None and self.pid is not None and daemon.pid() is None:
            self.pid = None  # it was stopping: stopped, not hung
        self.addrs = guard.node_addresses(node)
        self.unit = daemon.unit_state() if self.sections else None
        out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        defaults = state_of(self.sections.get(DEFAULTS, []), lambda _k, v: v)
        running = self.pid is not None
        for who, stmts in self.sections.items():
            config = state_of(stmts, self._observed_secret(node, who))
            instances = instances_in(stmts)
            for kind, name in check.keys(who):
                state: dict[str, Any] = {"config": config | defaults if kind != "Keepalived" else config} \
                    | runtime(kind, instances, running, self.dump, self.addrs)
                state["keepalived"] += boot_note(self.unit)
                if kind == "Keepalived":
                    state["files"] = observed_files()
                out[kind][name] = state
        return out

    def _observed_secret(self, node: Node, who: str):
        """The plan's token for a secret found in the file: the same as desired when it is
        the referenced secret's value, never the value itself."""
        refs = [ref for owner, ref in self.config.secrets if owner == who]

        def mask(keyword: str, value: str) -> str:
            node.runner.add_secret(value)
            for ref in refs:
                try:
                    real = read_secret(ref, node)
                except ApplyError:
                    return f"<secret {ref.describe()}: cannot be read>"
                if value == real:
                    return masked(ref)
            return "<secret: not the referenced one>"

        return mask

    # -- validate

    def validate(self, node: Node) -> list[Refusal | str]:
        """The node's policy and the secrets first (refusals naming the objects), then
        `keepalived -t` on the whole file, its complaints pinned on the objects.

        For another node than this machine (`validate` in CI), the policy, the secret files
        and the kernel's IPVS are that node's: what they decide is reported as skipped, and
        `keepalived -t` complaining only that the node's interfaces are not here is too."""
        if not self.config.sections:
            return []
        skipped: list[Refusal | str] = []
        try:
            refusals = self._policy(node) + self._secrets(node) + self._ipvs(node)
        except ApplyError as err:  # an unreadable or malformed policy file
            return [str(err)]
        if not node.local:
            skipped = [Skipped(f"{r.message} (decided on {node.name}: not checked on this machine)")
                       for r in refusals]
            refusals = []
        held = {k for r in refusals for k in r.objects}
        rendered, files = self._compose(node, lambda who: not set(check.keys(who)) & held)
        problems = check.check_file(node, rendered, files)
        if not node.local:
            missing, rest = check.missing_interfaces(problems)
            if missing and not rest:
                return skipped + [Skipped(
                    f"keepalived -t: interface {', '.join(missing)} is {node.name}'s and not on this machine; "
                    "everything else in its keepalived.conf was checked")]
        return skipped + refusals + check.attribute(problems, rendered, self._instance_owners(), self._server_owners())

    def _policy(self, node: Node) -> list[Refusal]:
        """Programs, includes and written files the node's policy does not allow."""
        policy = load_policy()
        out = []
        for p in self.config.programs:
            if p.builtin:
                continue
            what = "notify" if "notify" in p.field or "quorum" in p.field else "scripts"
            if not policy.allows("keepalived", what):
                out.append(Refusal(f"{self._where(p.owner, p.field)}: " + policy.refusal(
                    "keepalived", what, f"runs {p.command.command[0]}, {CAPABILITIES[what]}"),
                    tuple(check.keys(p.owner))))
        if self.config.includes and not policy.allows("keepalived", "include"):
            who = self.config.owners()[0]
            out.append(Refusal(f"{self._where(who, 'spec.includes')}: " + policy.refusal(
                "keepalived", "include", f"{', '.join(self.config.includes)}: {CAPABILITIES['include']}"),
                tuple(check.keys(who))))
        if not policy.allows("keepalived", "files"):
            for who, stmts in self.config.sections:
                writes = sorted({" ".join(s.words) for top in stmts for s in top.walk()
                                 if s.keyword in WRITES_FILES or s.keyword == "init_file" and "overwrite" in s.args})
                if writes:
                    out.append(Refusal(f"{self._where(who, 'spec')}: " + policy.refusal(
                        "keepalived", "files", f"{'; '.join(writes)}: {CAPABILITIES['files']}"),
                        tuple(check.keys(who))))
        return out

    def _secrets(self, node: Node) -> list[Refusal]:
        out = []
        for who, ref in self.config.secrets:
            try:
                read_secret(ref, node)
            except ApplyError as err:
                out.append(Refusal(f"{self._where(who, '')}: {err}", tuple(check.keys(who))))
        return out

    def _ipvs(self, node: Node) -> list[Refusal]:
        """Virtual servers need IPVS in the kernel: without it keepalived's checker exits and
        takes keepalived, VRRP included, down with it."""
        if ipvs_available():
            return []
        why = ("this node's kernel has no IPVS (/proc/net/ip_vs is missing): keepalived's checker would exit and "
               "stop keepalived, VRRP included") if node.local else \
            (f"this machine's kernel has no IPVS; {node.name}'s must have it (/proc/net/ip_vs), or keepalived's "
             "checker exits and stops keepalived, VRRP included")
        return [Refusal(f"{self._where(who, 'spec')}: {why}", tuple(check.keys(who)))
                for who in self.config.owners() if who.startswith("VirtualServer/")]

    def _where(self, who: str, field: str) -> str:
        """file:line: field of an object's manifest, for people."""
        if who == DEFAULTS:
            return "reconcile's own keepalived settings"
        kind, name = split_owner(who)[0]
        item = next((i for i in self.tree.loaded(kind) if i.name == name), None) if self.tree else None
        if item is None:
            return f"{kind} {name}" + (f": {field}" if field else "")
        return f"{item.where(field)}: {field}" if field else item.where()

    def _instance_owners(self) -> dict[str, str]:
        return {s.args[0]: who for who, stmts in self.config.sections for s in stmts
                if s.keyword == "vrrp_instance" and s.args}

    def _server_owners(self) -> dict[tuple[str, str], str]:
        return {(s.args[0], s.args[1] if len(s.args) > 1 else "0"): who for who, stmts in self.config.sections
                for s in stmts if s.keyword == "virtual_server" and s.args}

    def _compose(self, node: Node, take_desired: Any) -> tuple[Rendered, list]:
        """The file with real secrets: each owner's desired section where `take_desired(owner)`,
        else what the file has now (an object held back keeps its last good version)."""
        real = render_node(self.tree, node.name, node.state_dir, lambda ref: self._secret(node, ref))
        sections: list[tuple[str, list[Stmt]]] = []
        files = []
        for who, stmts in real.sections:
            if take_desired(who):
                sections.append((who, stmts))
                if who.startswith("Keepalived/"):
                    files += real.files
            elif who in self.sections:
                sections.append((who, self.sections[who]))
        for who, stmts in self.sections.items():  # deletes held back stay as they are
            if who and who not in real.owners() and not take_desired(who):
                sections.append((who, stmts))
        return render_file(HEADER, sections), files

    def _secret(self, node: Node, ref: Any) -> str:
        try:
            return read_secret(ref, node)
        except ApplyError:
            return "unreadable"  # refused by _secrets before anything is installed

    # -- explain

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.name in self.pacemaker:
            return [PACEMAKER_NOTE]
        notes = []
        if not self.generated:
            notes.append(NodeNote(f"{CONFIG} was not written by reconcile: apply will refuse to replace it "
                                  "(move it away, or import it with `reconcile import keepalived --live`)"))
        have = change.observed or {}
        if have.get("staleAddress"):
            notes.append("split-brain guard: keepalived is not running but its addresses are still on this node; "
                         "apply removes them as soon as a peer has taken them over, then starts keepalived")
        if have.get("vipPresentOnMaster") is False:
            notes.append("keepalived is MASTER but an address is missing; apply reloads keepalived to restore it")
        moved = self._moved(self.config.instances) if self.pid is not None else set()
        if change.kind == "VirtualIP" and moved & {a.split("/")[0] for i in self._instances_of(change.name)
                                                   for a in i.addresses}:
            notes.append(f"{', '.join(sorted(moved))} changes VRRP instance: two reloads (without it, then with it)")
        if change.kind == "VirtualIP" and change.desired and len(self._instances_of(change.name)) > 1:
            notes.append("addresses of both families: one VRRP instance per family "
                         f"({', '.join(i.name for i in self._instances_of(change.name))})")
        if not starts_at_boot(have.get("keepalived")):
            held = unit_notes(node, [UNIT], self.enforce)
            notes += held
            if change.action == "update" and _boot_only(have, change.desired) \
                    or self.pid is None and any("operator's hold" in n for n in held):
                return notes  # only enabled (no reload), or held: keepalived is not started
        # One start, reload or stop carries every change of the pass: said once for the node.
        if change.action == "delete" and len(self.config.sections) == 0:
            notes.append(NodeNote("nothing of keepalived is left on this node: keepalived will be stopped and its "
                                  "file removed"))
        elif self.pid is None:
            notes.append(NodeNote("keepalived will be started"))
        else:
            notes.append(NodeNote("keepalived will be reloaded (SIGHUP) once for all changes; the addresses stay "
                                  "where they are unless the priorities say otherwise"))
        return notes

    # -- health

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Each VIP's addresses held by exactly one node (one probe burst per interface, ARP
        and IPv6 neighbour solicitations, for the addresses and the peers' own addresses,
        which name the replying MACs); keepalived itself (running, answering, not drained,
        no FAULT, no tracked check lowering the priority), for the node and the Keepalived
        object; each virtual server in the kernel's IPVS table with its real servers."""
        report: HealthReport = {}
        vips = self._vip_addresses()
        if vips:
            report["VirtualIP"] = self._vip_health(node, vips)
        running = self.pid is not None
        drained = drain.drained(node) if running and self.config.instances else False
        if self.config.instances:
            report[NODE] = {"keepalived": keepalived_health(running, self.dump, self.config.instances, drained)}
        settings = [name for who in self.config.owners() if who.startswith("Keepalived/")
                    for _, name in check.keys(who)]
        if settings:
            report["Keepalived"] = {name: daemon_health(running, self.dump, bool(self.config.instances), drained)
                                    for name in settings}
        servers = {vs.metadata.name: vs for vs in self.tree.on_node("VirtualServer", node.name)} if self.tree else {}
        if servers:
            try:
                table: dict | None = parse_ip_vs(IPVS_PROC.read_text())
            except FileNotFoundError:
                table = None
            report["VirtualServer"] = {
                name: virtual_server_health(service_key(s.spec.address, s.spec.port, s.spec.protocol or "TCP",
                                                        s.spec.fwmark), len(s.spec.realServers), table, running)
                for name, s in servers.items() if s.spec.group is None}  # a group's services: not judged
        return report

    def _vip_addresses(self) -> dict[str, list[tuple[str, str, str]]]:
        """VirtualIP name → (address, interface it is put on, instance) of each address its
        instances carry, from the desired statements (a `dev` word moves an address)."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for who, stmts in self.config.sections:
            for s in stmts:
                if s.keyword != "vrrp_instance" or not s.args:
                    continue
                block = s.first("virtual_ipaddress")
                for c in (block.body or []) if block is not None else []:
                    words = c.words
                    dev = words[words.index("dev") + 1] if "dev" in words[:-1] else s.value("interface") or ""
                    for kind, name in check.keys(who):
                        if kind == "VirtualIP":
                            out.setdefault(name, []).append((words[0], dev, s.args[0]))
        return out

    def prepare_health(self, node: Node) -> None:
        """The VIPs' link probe (the desired addresses and the peers': no observation
        needed) starts now, so that its window passes while the engine observes."""
        targets = self._probe_targets(node, self._vip_addresses())
        self._probing = Background(lambda: netprobe.probe_interfaces(node, targets))

    def _probe_targets(self, node: Node, vips: dict[str, list[tuple[str, str, str]]]) -> dict[str, list[str]]:
        """Interface → what to probe there: the VIPs' addresses, and the peers' own."""
        by_interface: dict[str, set[str]] = {}
        for addresses in vips.values():
            for address, interface, _ in addresses:
                by_interface.setdefault(interface, set()).add(address)
        peers = self._peers(node)
        return {i: [*sorted(a), *peers] for i, a in by_interface.items()}

    def _vip_health(self, node: Node, vips: dict[str, list[tuple[str, str, str]]]) -> dict[str, Health]:
        peers = self._peers(node)
        if self._probing is not None:  # started by prepare_health
            answers, failed = self._probing.wait()
        else:
            answers, failed = netprobe.probe_interfaces(node, self._probe_targets(node, vips))
        names = netprobe.names_by_mac(answers, peers)
        out: dict[str, Health] = {}
        for vip, addresses in vips.items():
            broken = [failed[i] for _, i, _ in addresses if i in failed]
            if broken:
                out[vip] = Health.unknown("ProbeFailed", broken[0])
                continue
            found = []
            for address, _, instance in addresses:
                live = self.dump.get(instance) if self.dump else None
                ip = str(ipaddress.ip_address(address.split("/")[0]))
                holders_ = netprobe.holders(bool(holders(self.addrs, address)), node.name, answers.get(ip, set()), names)
                found.append((address, holders_, live.state_name if live else None))
            out[vip] = addresses_health(found, node.name)
            left = self.elected_by - time.monotonic()
            if out[vip].reason == "NotHeld" and left > 0:
                out[vip] = Health.unknown("ElectionPending", f"keepalived was just started or reloaded here: its "
                                                             f"election is due within {left:.1f}s ({out[vip].message})")
        return out

    def _peers(self, node: Node) -> dict[str, str]:
        """A node address of each other node of this node's keepalived VIPs → its name."""
        peers: dict[str, str] = {}
        for vip in self.tree.on_node("VirtualIP", node.name) if self.tree else []:
            if vip.spec.manager == "keepalived":
                for other in self.tree.nodes_of(vip):
                    address = self.tree.node_address(other)
                    if other != node.name and address:
                        peers[address.split("/")[0]] = other
        return peers

    # -- drain

    def drain(self, node: Node, force: bool = False, timeout: float | None = None,
              grace: float | None = None) -> str | None:
        """Move this node's addresses to its peers without a reload, the open connections
        first given `grace` seconds to finish (drain.py, gate.py); None when reconcile does
        not manage keepalived here. Raises DrainRefused when no peer takes an address over
        (it is undrained again: at least once)."""
        if not drain.manages(node):
            return None
        result: DrainResult = drain.drain(node, force=force, timeout=timeout,
                                          grace=gate.DEFAULT_GRACE if grace is None else grace)
        if not result.moved:
            return "keepalived: this node was MASTER of nothing"
        cut = f", {result.cut} still open after the grace were reset" if result.cut else ""
        return (f"keepalived: new connections held {result.held:.2f}s while open ones finished{cut}; "
                f"{', '.join(result.moved)} taken over by a peer in {result.seconds:.2f}s")

    def serving(self, node: Node) -> list[str] | None:
        """The addresses this node holds now (what a drain would move to a peer); None
        when reconcile does not manage keepalived here."""
        if not drain.manages(node):
            return None
        return [f"keepalived: {line}" for line in drain.serving(node)]

    def undrain(self, node: Node) -> str | None:
        """Let this node's instances take part in elections again."""
        if not drain.manages(node):
            return None
        drain.undrain(node)
        return "keepalived: back in the elections"

    # -- render

    def render(self, node: Node) -> dict[str, str]:
        """The files this node would get (after `desired`): keepalived.conf with the secrets
        read on this machine (the caller redacts what it prints), and the shipped scripts.
        Reads the secrets, nothing else; writes nothing."""
        if not self.config.sections:
            return {}
        rendered, config = render_text(self.tree, node.name, node.state_dir, lambda ref: read_secret(ref, node))
        return {str(CONFIG): rendered.text} | {f.target(): f.content for f in config.files}

    def _instances_of(self, vip: str) -> list[Instance]:
        return [i for i in self.config.instances if vip in i.owners]

    # -- apply

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        outcomes: Outcomes = {c.key: Deferred(PACEMAKER_NOTE) for c in changes if c.name in self.pacemaker}
        ours = [c for c in changes if c.name not in self.pacemaker]
        if not ours:
            return outcomes
        daemon = Keepalived(node)
        try:
            if not self.generated:
                raise ApplyError(f"{CONFIG} exists and was not written by reconcile; refusing to replace it. Move it "
                                 "away (keepalived keeps running with it until then), or import it with "
                                 "`reconcile import keepalived --live`, and apply again")
            if self.pid is None and self.sections:
                guard.remove_stale_addresses(node, daemon, instances_in([s for v in self.sections.values() for s in v]),
                                             self.addrs)
            pid = daemon.pid()
            if pid is not None and self.dump is None and any(i for i in self._observed_instances()):
                raise ApplyError(f"keepalived (pid {pid}) does not answer its JSON dump signal: its VRRP process may "
                                 "be stopped (SIGSTOP) or hung. reconcile does not fight it: look at it, restart it "
                                 "if needed, and apply again")
        except (ApplyError, CommandError, OSError) as err:
            return outcomes | {c.key: err for c in ours}
        self.installed: tuple[Rendered, list[Instance]] | None = None
        result = install_batch(ours, lambda batch: self._attempt(batch, node))
        if self.installed is not None:
            try:
                self._activate(node, daemon, *self.installed)
            except (ApplyError, CommandError, OSError, Held) as err:
                result = {k: (err if v is None else v) for k, v in result.items()}
        return outcomes | result

    def _observed_instances(self) -> list[Instance]:
        return instances_in([s for stmts in self.sections.values() for s in stmts])

    def _attempt(self, batch: list[Change], node: Node) -> list[Refusal]:
        """Render with `batch` applied, check it, and only then install scripts and file."""
        keys: set[Key] = {c.key for c in batch}
        # Objects outside the batch keep what the file has now: in sync, it is what they
        # want; held back (refused, or waiting for what they need), it is their last good one.
        rendered, files = self._compose(node, lambda who: bool(set(check.keys(who)) & keys) or who == DEFAULTS)
        failed = [r for r in self._secrets(node) if set(r.objects) & keys]
        if failed:
            return failed
        stmts = parse(rendered.text)
        instances = instances_in(stmts)
        if len(stmts) > 0:
            problems = check.check_file(node, rendered, files)
            if problems:
                return check.attribute(problems, rendered, self._instance_owners(), self._server_owners())
        if any(c.kind == "Keepalived" for c in batch):
            install_files(node, files if stmts else [])
        self.installed = (rendered, instances) if stmts else (Rendered(""), [])
        return []

    def _activate(self, node: Node, daemon: Keepalived, rendered: Rendered, instances: list[Instance]) -> None:
        """Write the checked file, then start, reload (once; twice for a moved address) or stop."""
        pid = daemon.pid()
        if not rendered.text:
            if pid is not None:
                daemon.stop(pid)
            AtomicWriter(node).remove(CONFIG)
            return
        moved = self._moved(instances) if pid is not None else set()
        if moved:
            # keepalived must let go of an address before another instance takes it.
            first = _without(rendered.text, moved)
            between = instances_in(parse(first))
            if not between:  # no instance left in between: a restart lets go of everything
                daemon.stop(pid)
                pid = None
            elif AtomicWriter(node).write(CONFIG, first, mode=0o600):
                daemon.reload(pid)
                daemon.wait_loaded(between)
        written = AtomicWriter(node).write(CONFIG, rendered.text, mode=0o600)
        (node.state_dir / "keepalived").mkdir(parents=True, exist_ok=True)
        if pid is None:
            daemon.start(vrrp=bool(instances), enforce=self.enforce)
        elif written or not self._runs(instances):
            daemon.reload(pid)
        running = daemon.wait_loaded(instances)
        guard.restore_master_addresses(node, daemon, instances, running)
        if instances and (pid is None or written or moved):
            # An election follows a start or reload: until it is due, health says so
            # rather than judging the addresses (`apply --wait` asks again on this instance).
            self.elected_by = time.monotonic() + max(master_down_seconds(i) for i in instances) + ELECTION_MARGIN
        unit = daemon.unit_state()
        if unit is not None and unit.enabled not in ENABLED:  # running, but not started at boot
            enable_unit(node, unit, self.enforce)  # an operator's hold raises Held: the objects stay pending

    def _runs(self, instances: list[Instance]) -> bool:
        return self.dump is not None and set(self.dump) == {i.name for i in instances} \
            and all(self.dump[i.name].runs(i) for i in instances)

    def _moved(self, instances: list[Instance]) -> set[str]:
        """IPs the running keepalived has in another instance than the new file."""
        if not self.dump:
            return set()
        running = {a.split("/")[0]: name for name, inst in self.dump.items() for a in inst.addresses}
        return {a.split("/")[0] for inst in instances for a in inst.addresses
                if a.split("/")[0] in running and running[a.split("/")[0]] != inst.name}

    # -- watch

    def watch(self, node: Node) -> Iterator[str]:
        """Yield on netlink address events, on keepalived starting or going away (its pid
        polled every 200 ms: a killed keepalived sends no netlink event when it leaves its
        addresses behind) and on a change of the managed file."""
        events: queue.Queue[str] = queue.Queue()
        monitor = _start_monitor(node, events)
        daemon = Keepalived(node)
        last_pid, last_file = daemon.pid(), signature(CONFIG)
        try:
            while True:
                try:
                    line = events.get(timeout=0.2)
                except queue.Empty:
                    line = None
                if line is not None:
                    while not events.empty():  # coalesce a burst into one event
                        more = events.get_nowait()
                        line = more if more == _MONITOR_ENDED else line
                    if line == _MONITOR_ENDED:
                        monitor = _start_monitor(node, events)
                        yield "address monitor restarted"
                    else:
                        yield f"address event: {line.strip()[:120]}"
                pid = daemon.pid()
                if pid != last_pid:
                    yield f"keepalived {'went away' if pid is None else 'started'} (pid {last_pid or pid})"
                    last_pid = pid
                current = signature(CONFIG)
                if current != last_file:
                    yield f"{CONFIG} changed"
                    last_file = current
        finally:
            monitor.terminate()
            try:
                monitor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                monitor.kill()


def _boot_only(have: dict[str, Any], want: dict[str, Any] | None) -> bool:
    """Whether the unit's boot setting is all an update changes."""
    return {**have, "keepalived": without_boot_note(have.get("keepalived"))} == (want or {})


def _without(text: str, moved: set[str]) -> str:
    """The file minus the addresses of `moved` IPs, and minus the instances left without an
    address: the first of the two files keepalived needs when an address changes instance."""
    stmts = parse(text)
    dropped: set[str] = set()
    for s in stmts:
        if s.keyword != "vrrp_instance" or not s.is_block:
            continue
        vips = s.first("virtual_ipaddress")
        if vips is None or not vips.body:
            continue
        vips.body = [a for a in vips.body if a.words[0].split("/")[0] not in moved]
        if not vips.body:
            dropped.update(s.args[:1])
    kept = [s for s in stmts if not (s.keyword == "vrrp_instance" and s.args[:1] and s.args[0] in dropped)]
    for s in kept:
        for group in (s.children("group") if s.keyword == "vrrp_sync_group" else []):
            group.body = [m for m in group.body or [] if m.keyword not in dropped]
    by_owner: dict[str, list[Stmt]] = {}
    for s in kept:
        by_owner.setdefault(s.owner, []).append(s)
    return render_file(HEADER, list(by_owner.items())).text


_MONITOR_ENDED = "\0ended"


def _start_monitor(node: Node, events: "queue.Queue[str]") -> subprocess.Popen:
    # `ip -j monitor` prints text anyway on iproute2 6.1; any line is an event. Indented
    # lines continue the previous event.
    proc = node.runner.stream(["ip", "monitor", "address"])

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip() and not line[0].isspace():
                events.put(line)
        events.put(_MONITOR_ENDED)

    threading.Thread(target=pump, name="ip-monitor", daemon=True).start()
    return proc


def _installed(kind: str) -> bool:
    try:
        reconcilers.reconciler_class(kind)
    except reconcilers.NotInstalled:
        return False
    return True

