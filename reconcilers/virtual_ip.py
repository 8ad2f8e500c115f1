"""VirtualIP with `manager: keepalived`: floating addresses that are present in at least one place.

The reconciler owns /etc/keepalived/keepalived.conf on each node of a keepalived VIP: one
VRRP instance per VIP (or per `keepalived.group`), VRRPv3 with the manifest's advert
interval, the node's priority, unicast adverts from the node's cluster address to the
other nodes of the VIP, every instance starting as BACKUP. Which node holds an address is
keepalived's business and never drift; what is drift:

- the configuration (priority, interval, router id, addresses, peers, …) differs from git,
  or keepalived runs an older one than the file (`keepalived: reload-needed`);
- keepalived is not running (`keepalived: stopped`);
- the split-brain guard, `staleAddress`: an address of this file is on the node while
  keepalived is not running (it was killed and left it behind), so two nodes may answer
  for it. Apply removes it as soon as a peer's VRRP advert shows that the peer took it
  over (not earlier: until then this node is the only one answering for it), then starts
  keepalived; `watch` notices keepalived's death within 200 ms so that an agent does this
  at once;
- `vipPresentOnMaster: false`: keepalived says MASTER but the address is missing (removed
  by hand). keepalived 2.2 restores it by itself within a few hundred milliseconds; if it
  did not, apply reloads it and checks that the address came back.

`manager: pacemaker` VIPs are not desired here: they become IPaddr2 primitives in the
ClusterResource reconciler. While that reconciler is not installed the plan lists them
with a note and apply defers them, so that they are never silently absent.
"""
from __future__ import annotations

import queue
import subprocess
import threading
import time
from dataclasses import replace
from typing import Any, Iterator

import reconcilers
from reconcilers import netprobe
from reconcilers.base import (
    NODE, ApplyError, AtomicWriter, Change, CommandError, Deferred, Desired, Health, HealthReport, Held, Node, NodeNote,
    Outcomes, Reconciler, Skipped, enable_unit, systemd_running, unit_field, unit_notes, unit_states, validated_temp,
)
from reconcilers.keepalived import (
    CONFIG, MASTER, UNIT, Keepalived, ParsedConfig, RunningInstance, VrrpInstance, config_signature, holders,
    master_down_seconds, missing_interfaces, parse_config, parse_ip_addr, read_config, render_config,
    without_addresses,
)
from reconcilers.keepalived_health import keepalived_health, vip_health

RUNNING, STOPPED, RELOAD_NEEDED, NOT_RESPONDING = "running", "stopped", "reload-needed", "not-responding"
# The longest the guard waits for a peer to take a stale address over (long advert intervals).
STALE_WAIT_LIMIT = 10.0
PACEMAKER_NOTE = ("manager: pacemaker: this address becomes an IPaddr2 primitive of the ClusterResource "
                  "reconciler, which is not installed yet; nothing is done for it here")


# --- observed: the file, keepalived and the interfaces, combined ---------------------------


def observed_vips(config: ParsedConfig | None, running: bool, dump: dict[str, RunningInstance] | None,
                  addrs: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    """Per VIP of the managed file: its configuration and the run-time checks. Pure, so
    that it is tested on recorded outputs. `dump` is None when keepalived is stopped or
    does not answer."""
    out: dict[str, dict[str, Any]] = {}
    if config is None or not config.generated:
        return out
    for inst in config.instances:
        live = dump.get(inst.name) if dump is not None else None
        if not running:
            daemon = STOPPED
        elif dump is None:
            daemon = NOT_RESPONDING
        else:
            daemon = RUNNING if live is not None and live.runs(inst) else RELOAD_NEEDED
        for vip, address in inst.addresses:
            present = bool(holders(addrs, address))
            out[vip] = inst.vip_state(vip, address) | {
                "keepalived": daemon,
                "staleAddress": not running and present,
                "vipPresentOnMaster": not (live is not None and live.state == MASTER and not present),
            }
    return out


# --- desired: instances from the manifests ------------------------------------------------


def desired_instances(tree: Any, node: str) -> list[VrrpInstance]:
    """The VRRP instances `node` should run, from the keepalived VIPs that land on it."""
    by_name: dict[str, VrrpInstance] = {}
    for vip in tree.on_node("VirtualIP", node):
        ka = vip.spec.keepalived
        if vip.spec.manager != "keepalived" or ka is None:
            continue
        name = vip.instance_name()
        address = (vip.metadata.name, vip.spec.address)
        if name in by_name:  # a group: the schema made sure its VIPs agree
            by_name[name] = replace(by_name[name], addresses=by_name[name].addresses + (address,))
            continue
        priorities = vip.priorities(tree)
        order = vip.node_order(tree)
        if node not in priorities:  # placed everywhere, on a machine no Cluster lists
            raise ApplyError(f"VirtualIP {vip.metadata.name} lands on every node, but no Cluster lists {node}: "
                             "keepalived needs this node's address and priority; place the VIP with spec.cluster "
                             f"or spec.nodes, or add {node} to a Cluster")
        by_name[name] = VrrpInstance(
            name=name,
            interface=vip.spec.interface,
            router_id=ka.routerId,
            priority=priorities[node],
            advert_interval=round(ka.advertInterval, 2),
            preempt=ka.preempt,
            preempt_delay=ka.preemptDelay,
            track_weight=track_weight(priorities) if ka.trackHaproxy else None,
            unicast_src_ip=_ip(tree.node_address(node)),
            unicast_peers=tuple(_ip(tree.node_address(n)) for n in order if n != node),
            addresses=(address,),
        )
    return sorted(by_name.values(), key=lambda i: i.name)


def track_weight(priorities: dict[str, int]) -> int:
    """How far a node whose HAProxy is dead drops: just below the lowest priority of the
    VIP, so that any node with a live proxy wins, and a node with a dead one still holds
    the address when no proxy runs anywhere (at least once)."""
    return min(253, max(priorities.values()) - min(priorities.values()) + 1)


def _ip(address: str | None) -> str:
    return (address or "").split("/")[0]


def runtime_ok(systemd: bool = False) -> dict[str, Any]:
    """The run-time half of a VIP's desired state (with systemd: keepalived starts at boot)."""
    state: dict[str, Any] = {"keepalived": RUNNING, "staleAddress": False, "vipPresentOnMaster": True}
    if systemd:
        state["units"] = {"keepalived": "enabled"}
    return state


class VirtualIPReconciler(Reconciler):
    """keepalived VRRP instances for the VirtualIPs with `manager: keepalived` on this node."""

    kind = "VirtualIP"
    after = ("Cluster",)

    def __init__(self) -> None:
        self.instances: list[VrrpInstance] = []
        self.pacemaker: set[str] = set()
        self.config: ParsedConfig | None = None
        self.dump: dict[str, RunningInstance] | None = None
        self.running = False
        self.addrs: dict[str, set[str]] = {}
        self.enforce = False  # a manifest says metadata.drift: enforce (unmask/enable keepalived)
        self.peers: dict[str, str] = {}  # a node address of the VIPs' nodes → its node name

    # -- observe

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        daemon = Keepalived(node)
        text = read_config()
        self.config = parse_config(text) if text is not None else None
        pid = daemon.pid()
        self.running = pid is not None
        # The dump before the addresses: keepalived adds a master's addresses before it
        # answers the next signal, so MASTER-without-address is never a read race.
        ours = self.config is None or self.config.generated  # a foreign keepalived is not signalled
        self.dump = daemon.dump(pid) if pid is not None and ours else None
        self.addrs = parse_ip_addr(node.run(["ip", "-j", "addr"], read_only=True).stdout)
        vips = observed_vips(self.config, pid is not None, self.dump, self.addrs)
        if systemd_running():
            units = unit_field(unit_states(node, [UNIT]))
            for state in vips.values():
                state["units"] = units
        return {self.kind: vips}

    # -- desired

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.instances = desired_instances(tree, node.name)
        systemd = systemd_running()
        for vip in tree.on_node("VirtualIP", node.name):
            if vip.spec.manager == "keepalived":
                for other in tree.nodes_of(vip):
                    if other != node.name and tree.node_address(other):
                        self.peers[_ip(tree.node_address(other))] = other
        out = {vip: Desired(inst.vip_state(vip, address) | runtime_ok(systemd))
               for inst in self.instances for vip, address in inst.addresses}
        self.enforce = any(vip.metadata.drift == "enforce" for vip in tree.on_node("VirtualIP", node.name)
                           if vip.spec.manager == "keepalived")
        if not _installed("ClusterResource"):
            for vip in tree.on_node("VirtualIP", node.name):
                if vip.spec.manager == "pacemaker":
                    self.pacemaker.add(vip.metadata.name)
                    out[vip.metadata.name] = Desired({"manager": "pacemaker", "address": vip.spec.address})
        return {self.kind: out}

    def validate(self, node: Node) -> list[str]:
        if not self.instances:
            return []
        content = render_config(node.name, self.instances)
        try:
            validated_temp(content, Keepalived(node).check, suffix=".conf")
        except ApplyError as err:
            missing, rest = missing_interfaces(getattr(err, "lines", []))
            if not node.local and missing and not rest:
                # Checked on another machine (CI): the node's interfaces are not here.
                return [Skipped(f"keepalived -t: interface {', '.join(missing)} is {node.name}'s and not on this "
                                "machine; everything else in its keepalived.conf was checked")]
            return [f"the keepalived.conf rendered for node {node.name}: {err}"]
        return []

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.name in self.pacemaker:
            return [PACEMAKER_NOTE]
        notes = []
        if self.config is not None and not self.config.generated:
            notes.append(f"{CONFIG} was not written by reconcile: apply will refuse to replace it "
                         "(move it away to let reconcile manage keepalived here)")
        have = change.observed or {}
        if have.get("staleAddress"):
            notes.append(f"split-brain guard: keepalived is not running but {have['address']} is still on this "
                         "node; apply removes it as soon as a peer has taken it over, then starts keepalived")
        if have.get("vipPresentOnMaster") is False:
            notes.append(f"keepalived is MASTER for {have['instance']} but {have['address']} is missing; "
                         "apply reloads keepalived to restore it")
        moved = self._moved()
        if moved:
            notes.append(f"{', '.join(sorted(moved))} changes VRRP instance: two reloads (without it, then with it)")
        if (have.get("units") or {}).get("keepalived", "enabled") != "enabled":
            notes += unit_notes(node, [UNIT], self.enforce)
            if change.action == "update" and _without_units(have) == _without_units(change.desired):
                return notes  # only the unit differs: keepalived is neither started nor reloaded
        if change.action == "delete" and not self.instances:
            notes.append(NodeNote("last keepalived VIP on this node: keepalived will be stopped and its file removed"))
        elif not self.running:
            notes.append(NodeNote("keepalived will be started"))
        else:
            notes.append(NodeNote("keepalived will be reloaded (SIGHUP); the addresses stay where they are unless "
                                  "the priorities say otherwise"))
        return notes

    # -- health

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Each VIP held by exactly one node (one ARP probe burst per interface, for the
        VIPs and the peers' own addresses, which names the replying MACs), and keepalived
        itself (running, answering, no FAULT, no tracked check lowering the priority)."""
        vips = {vip: (inst, address) for inst in self.instances for vip, address in inst.addresses}
        by_interface: dict[str, list[str]] = {}
        for inst, address in vips.values():
            by_interface.setdefault(inst.interface, []).append(address)
        answers: dict[str, set[str]] = {}
        failed: dict[str, str] = {}
        for interface, addresses in by_interface.items():
            try:
                answers.update(netprobe.probe(node, interface, [*addresses, *self.peers]))
            except OSError as err:
                failed[interface] = f"cannot probe {interface}: {err.strerror or err}"
        names = netprobe.names_by_mac(answers, self.peers)
        out: dict[str, Health] = {}
        for vip, (inst, address) in vips.items():
            if inst.interface in failed:
                out[vip] = Health.unknown("ProbeFailed", failed[inst.interface])
                continue
            live = self.dump.get(inst.name) if self.dump else None
            here = bool(holders(self.addrs, address))
            found = netprobe.holders(here, node.name, answers.get(address.split("/")[0], set()), names)
            out[vip] = vip_health(address, found, node.name, live.state_name if live else None)
        report: HealthReport = {self.kind: out}
        if self.instances:
            report[NODE] = {"keepalived": keepalived_health(self.running, self.dump, self.instances)}
        return report

    # -- apply

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        """One file holds every VIP: the whole file is converged once for all of them
        (one reload), and each change shares that outcome."""
        outcomes: Outcomes = {c.key: Deferred(PACEMAKER_NOTE) for c in changes if c.name in self.pacemaker}
        ours = [c for c in changes if c.name not in self.pacemaker]
        if ours:
            try:
                self._converge(node)
                error: Exception | None = None
            except (ApplyError, CommandError, OSError, Held) as err:
                error = err
            outcomes.update({c.key: error for c in ours})
        return outcomes

    def _converge(self, node: Node) -> None:
        daemon = Keepalived(node)
        if self.config is not None and not self.config.generated:
            raise ApplyError(f"{CONFIG} exists and was not written by reconcile; refusing to replace it. "
                             "Move it away (keepalived keeps running with it until then) and apply again")
        self._remove_stale_addresses(daemon)
        pid = daemon.pid()
        if pid is not None and self.dump is None and self.running:
            raise ApplyError(f"keepalived (pid {pid}) does not answer its JSON dump signal: its VRRP process may "
                             "be stopped (SIGSTOP) or hung. reconcile does not fight it: look at it, restart it "
                             "if needed, and apply again")
        if not self.instances:
            if pid is not None:
                daemon.stop(pid)
            AtomicWriter(node).remove(CONFIG)
            return
        moved = self._moved() if pid is not None else set()
        if moved:
            # keepalived must let go of an address before another instance takes it.
            first = without_addresses(self.instances, moved)
            if first:
                self._install(node, daemon, first)
            else:  # no instance left in between: a restart lets go of everything
                daemon.stop(pid)
        self._install(node, daemon, self.instances)
        self._restore_master_addresses(node, daemon)
        if systemd_running():  # running, but not started at boot: enabled, unless an operator's hold
            enable_unit(node, unit_states(node, [UNIT])[UNIT], self.enforce)

    def _install(self, node: Node, daemon: Keepalived, instances: list[VrrpInstance]) -> None:
        """Write the file (validated by keepalived -t on the temp file), then start keepalived
        or reload it, and wait until it runs exactly these instances."""
        written = AtomicWriter(node).write(CONFIG, render_config(node.name, instances), mode=0o644,
                                           validate=daemon.check)
        pid = daemon.pid()
        if pid is None:
            daemon.start(enforce=self.enforce)
        elif written or not self._runs(instances):
            daemon.reload(pid)
        daemon.wait_loaded(instances)
        self.dump = daemon.dump(daemon.pid() or 0)

    def _runs(self, instances: list[VrrpInstance]) -> bool:
        return self.dump is not None and set(self.dump) == {i.name for i in instances} \
            and all(self.dump[i.name].runs(i) for i in instances)

    def _moved(self) -> set[str]:
        """Addresses the running keepalived has in another instance than desired."""
        if not self.dump:
            return set()
        running = {a: name for name, inst in self.dump.items() for a in inst.addresses}
        return {a for inst in self.instances for _, a in inst.addresses
                if a in running and running[a] != inst.name}

    def _remove_stale_addresses(self, daemon: Keepalived) -> None:
        """The split-brain guard: keepalived is dead, the addresses it left are nobody's.

        Until a peer has taken an address over, this node is the only one answering for it
        (clients' ARP caches still point here), so the copy is removed once a peer's
        advert shows it is master, or after a backup's master-down interval at the latest.
        Removed earlier, the address would be nowhere for most of a failover."""
        if self.config is None or not self.config.generated:
            return
        stale = [(inst, address, interface) for inst in self.config.instances for _, address in inst.addresses
                 for interface in sorted(holders(self.addrs, address))]
        if not stale:
            return
        instances = list({inst.name: inst for inst, _, _ in stale}.values())
        bound = max(master_down_seconds(i) + 2 * i.advert_interval for i in instances)
        daemon.wait_for_peer_masters(instances, timeout=min(bound, STALE_WAIT_LIMIT))
        for inst, address, interface in stale:
            # Checked again right before each removal: keepalived may have been started
            # since observe, and then the address is its business.
            if daemon.pid() is not None:
                return
            daemon.remove_address(_with_prefix(self.addrs, address, interface), interface)

    def _restore_master_addresses(self, node: Node, daemon: Keepalived) -> None:
        pid = daemon.pid()
        if pid is None or self.dump is None:
            return
        addrs = parse_ip_addr(node.run(["ip", "-j", "addr"], read_only=True).stdout)
        missing = [a for inst in self.instances if (live := self.dump.get(inst.name)) and live.state == MASTER
                   for _, a in inst.addresses if not holders(addrs, a)]
        if not missing:
            return
        daemon.reload(pid)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            addrs = parse_ip_addr(node.run(["ip", "-j", "addr"], read_only=True).stdout)
            if all(holders(addrs, a) for a in missing):
                return
            time.sleep(0.05)
        raise ApplyError(f"keepalived is MASTER but {', '.join(missing)} did not come back after a reload")

    # -- watch

    def watch(self, node: Node) -> Iterator[str]:
        """Yield on netlink address events, on keepalived starting or going away (its pid
        polled every 200 ms: a killed keepalived sends no netlink event when it leaves its
        addresses behind) and on a change of the managed file."""
        events: queue.Queue[str] = queue.Queue()
        monitor = _start_monitor(node, events)
        daemon = Keepalived(node)
        last_pid, last_file = daemon.pid(), config_signature()
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
                signature = config_signature()
                if signature != last_file:
                    yield f"{CONFIG} changed"
                    last_file = signature
        finally:
            monitor.terminate()
            try:
                monitor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                monitor.kill()


_MONITOR_ENDED = "\0ended"


def _start_monitor(node: Node, events: "queue.Queue[str]"):
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


def _with_prefix(addrs: dict[str, set[str]], address: str, interface: str) -> str:
    """The address as the interface holds it (its prefix may differ from the manifest's)."""
    ip = address.split("/")[0]
    return next((a for a, ifs in addrs.items() if a.split("/")[0] == ip and interface in ifs), address)


def _without_units(state: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (state or {}).items() if k != "units"}


def _installed(kind: str) -> bool:
    try:
        reconcilers.reconciler_class(kind)
    except reconcilers.NotInstalled:
        return False
    return True

