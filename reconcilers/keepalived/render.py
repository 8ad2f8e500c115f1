"""Manifests → the statements of one node's keepalived.conf, object by object.

Pure: the tree and the node name in, statements out; no command, no file read. Secrets
come from the `secret` callable the caller passes (a masking one for plans, the real
reader only when a file is written or checked).

Each object renders its own section, under its marker comment, so that the file can be
read back object by object and keepalived's refusals pinned on the object that wrote the
line:

- `Keepalived/NAME` (or `reconcile/defaults` when no Keepalived manifest lands on the node):
  global_defs, scripts, track files and processes, sync groups, the SSL block, includes and
  the other top-level blocks, plus reconcile's own additions: the track file
  `reconcile_drain` (drain.py writes it) and the HAProxy check of `trackHaproxy`;
- `VirtualIP/NAME` (`VirtualIP/A,B` for a group): one vrrp_instance per address family;
- `VirtualServer/NAME`: one virtual_server.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reconcilers.base import GENERATED_HEADER, ApplyError
from reconcilers.keepalived.conf import Rendered, Stmt, block, command_string, line, render_file
from reconcilers.keepalived.model import Instance, instance_of
from schemas.keepalived import (
    NOTIFY_KEYWORDS, RESERVED_TRACK, Block, Command, Fifo, Keepalived, Notify, ScriptFile, Track,
)
from schemas.virtual_ip import GARP_KEYWORDS, VipAddress, VirtualIP
from schemas.virtual_server import VirtualServer

DEFAULTS = "reconcile/defaults"  # the section of reconcile's own settings when no Keepalived manifest lands
HEADER = [f"# {GENERATED_HEADER}", "# keepalived for this node, from the Keepalived, VirtualIP and VirtualServer "
          "manifests. Each section below names its manifest."]
TRACK_SCRIPT_NAME = "track_haproxy"
# pgrep, not pidof/killall: `--ns 1 --nslist pid` counts only processes in this host's own
# PID namespace, so an HAProxy running inside a container on the host does not count.
# (keepalived's vrrp_track_process would be cheaper, but the kernel's process-event
# connector it relies on is silent inside a PID namespace: containers, the lab.)
TRACK_SCRIPT = ["/usr/bin/pgrep", "--ns", "1", "--nslist", "pid", "-x", "haproxy"]
Secret = Callable[[Any], str]


def drain_file(state_dir: Path) -> Path:
    """The track file reconcile configures on every instance: 0 normal, 1 drained (FAULT)."""
    return state_dir / "keepalived" / "drain"


@dataclass
class Program:
    """A program keepalived will run, for the node's policy: who asked for it, and where."""

    owner: str  # "Kind/name"
    field: str
    command: Command
    builtin: bool = False  # reconcile's own (the HAProxy check), not an operator's


@dataclass
class NodeConfig:
    """Everything keepalived.conf of one node holds, by object."""

    sections: list[tuple[str, list[Stmt]]] = field(default_factory=list)  # owner → statements, in file order
    instances: list[Instance] = field(default_factory=list)
    files: list[ScriptFile] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    secrets: list[tuple[str, Any]] = field(default_factory=list)  # (owner, SecretRef)

    def section(self, owner: str) -> list[Stmt]:
        return next((s for o, s in self.sections if o == owner), [])

    def owners(self) -> list[str]:
        return [o for o, _ in self.sections]


def owner(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def split_owner(text: str) -> list[tuple[str, str]]:
    """(kind, name) pairs of an owner ("VirtualIP/a,b" is a group's instance: two objects)."""
    kind, _, names = text.partition("/")
    return [(kind, n) for n in names.split(",") if n]


# --- the whole node ----------------------------------------------------------------------


def render_node(tree: Any, node: str, state_dir: Path, secret: Secret) -> NodeConfig:
    """The statements of `node`'s keepalived.conf. Empty (no sections) when no keepalived
    VirtualIP, VirtualServer or Keepalived manifest lands on it."""
    config = NodeConfig()
    vips = [v for v in tree.on_node("VirtualIP", node) if v.spec.manager == "keepalived"]
    servers = tree.on_node("VirtualServer", node)
    settings = tree.on_node("Keepalived", node)
    if not (vips or servers or settings):
        return config
    groups: dict[str, list[VirtualIP]] = {}
    for vip in vips:
        groups.setdefault(vip.instance_name(), []).append(vip)
    instance_blocks: list[tuple[str, list[Stmt]]] = []
    for name in sorted(groups):
        members = groups[name]
        who = owner("VirtualIP", ",".join(v.metadata.name for v in members))
        stmts = render_vip(tree, members, node, secret, config, who)
        instance_blocks.append((who, stmts))
        config.instances += [instance_of(s, tuple(v.metadata.name for v in members), 2) for s in stmts]
    members_of = {vip.instance_name(): vip.instance_names() for vip in vips}
    tracked = any(v.spec.keepalived.trackHaproxy for v in vips)
    k = settings[0] if settings else None
    who = owner("Keepalived", k.metadata.name) if k else DEFAULTS
    global_stmts = render_settings(k, node, state_dir, secret, config, who, members_of, tracked)
    config.sections.append((who, global_stmts))
    config.sections += instance_blocks
    for vs in sorted(servers, key=lambda v: v.metadata.name):
        who = owner("VirtualServer", vs.metadata.name)
        config.sections.append((who, render_virtual_server(vs, config, who)))
    return config


def render_text(tree: Any, node: str, state_dir: Path, secret: Secret) -> tuple[Rendered, NodeConfig]:
    """The whole keepalived.conf of `node` (and what it is made of)."""
    config = render_node(tree, node, state_dir, secret)
    return render_file(HEADER, config.sections), config


# --- pieces --------------------------------------------------------------------------------


def _user(cmd: Command) -> list[str]:
    return ([cmd.user] if cmd.user else []) + ([cmd.group] if cmd.group else [])


def _program(keyword: str, cmd: Command, config: NodeConfig, who: str, field_path: str) -> Stmt:
    config.programs.append(Program(who, field_path, cmd))
    return line(keyword, command_string(cmd.command), *_user(cmd))


def _weight(weight: int | None, reverse: bool | None) -> list[str]:
    out = ["weight", str(weight)] if weight is not None else []
    if reverse is True:
        out.append("reverse")
    elif reverse is False:
        out.append("noreverse")
    return out


def render_track(track: Track, drain: bool = False) -> list[Stmt]:
    out: list[Stmt] = []
    if track.interfaces:
        out.append(block(["track_interface"], [
            line(t.name, *_weight(t.weight, True if t.reverse else None)) for t in track.interfaces]))
    if track.scripts:
        out.append(block(["track_script"], [line(t.name, *_weight(t.weight, t.reverse)) for t in track.scripts]))
    files = [line(t.name, *_weight(t.weight, t.reverse)) for t in track.files]
    if drain:
        files.append(line(RESERVED_TRACK))
    if files:
        out.append(block(["track_file"], files))
    if track.processes:
        out.append(block(["track_process"], [line(t.name, *_weight(t.weight, t.reverse)) for t in track.processes]))
    if track.bfd:
        out.append(block(["track_bfd"], [line(t.name, *_weight(t.weight, t.reverse)) for t in track.bfd]))
    return out


def render_notify(notify: Notify, config: NodeConfig, who: str, field_path: str) -> list[Stmt]:
    out = [_program(NOTIFY_KEYWORDS[key], cmd, config, who, f"{field_path}.{key}")
           for key, cmd in notify.commands().items()]
    return out


def verbatim(lines: list[str], blocks: list[Block] = ()) -> list[Stmt]:
    """Lines and blocks a manifest carries as written, as statements (lines first)."""
    from reconcilers.keepalived.conf import split_line

    out = [Stmt(split_line(text)) for text in lines]
    out += [block(split_line(b.block), verbatim(b.lines, b.blocks)) for b in blocks]
    return out


def _address_line(a: VipAddress, default_dev: str | None) -> Stmt:
    words = [a.address]
    if a.brd:
        words += ["brd", a.brd]
    dev = a.dev or default_dev
    if dev:
        words += ["dev", dev]
    if a.scope:
        words += ["scope", a.scope]
    if a.label:
        words += ["label", a.label]
    words += a.options
    if a.noTrack:
        words.append("no_track")
    return Stmt(words)


# --- Keepalived (and reconcile's defaults) ---------------------------------------------------


def _fifo(keyword: str, fifo: Fifo, config: NodeConfig, who: str, field_path: str) -> list[Stmt]:
    out = [line(keyword, fifo.path, *([fifo.user] if fifo.user else []), *([fifo.group] if fifo.group else []))]
    if fifo.script is not None:
        out.append(_program(f"{keyword}_script", fifo.script, config, who, f"{field_path}.script"))
    return out


def render_settings(k: Keepalived | None, node: str, state_dir: Path, secret: Secret, config: NodeConfig, who: str,
                    members_of: dict[str, list[str]], tracked: bool) -> list[Stmt]:
    """global_defs and the other top-level blocks of the Keepalived manifest, or reconcile's
    defaults when there is none; reconcile's drain track file and HAProxy check either way."""
    spec = k.spec if k is not None else None
    g = spec.globalDefs if spec is not None else None
    body: list[Stmt] = [line("router_id", g.routerId if g and g.routerId else node)]
    if g is not None:
        if g.scriptUser:
            body.append(line("script_user", g.scriptUser, *([g.scriptGroup] if g.scriptGroup else [])))
        elif tracked:
            body.append(line("script_user", "root"))
    elif tracked:
        body.append(line("script_user", "root"))
    stmts: list[Stmt] = []
    if spec is not None:
        if g.notificationEmail:
            body.append(block(["notification_email"], [line(e) for e in g.notificationEmail]))
        if g.notificationEmailFrom:
            body.append(line("notification_email_from", g.notificationEmailFrom))
        if g.smtpServer:
            body.append(line("smtp_server", g.smtpServer.host, *([str(g.smtpServer.port)] if g.smtpServer.port else [])))
        if g.smtpHeloName:
            body.append(line("smtp_helo_name", g.smtpHeloName))
        if g.smtpConnectTimeout is not None:
            body.append(line("smtp_connect_timeout", str(g.smtpConnectTimeout)))
        if g.maxAutoPriority is not None:
            body.append(line("max_auto_priority", str(g.maxAutoPriority)))
        if g.vrrpVersion is not None:
            body.append(line("vrrp_version", str(g.vrrpVersion)))
        for field_name, keyword in (("notifyFifo", "notify_fifo"), ("vrrpNotifyFifo", "vrrp_notify_fifo"),
                                    ("lvsNotifyFifo", "lvs_notify_fifo")):
            if getattr(g, field_name) is not None:
                body += _fifo(keyword, getattr(g, field_name), config, who, f"spec.globalDefs.{field_name}")
        for field_name, keyword in (("startupScript", "startup_script"), ("shutdownScript", "shutdown_script")):
            if getattr(g, field_name) is not None:
                body.append(_program(keyword, getattr(g, field_name), config, who, f"spec.globalDefs.{field_name}"))
        body += verbatim(g.extra)
        for name, s in spec.scripts.items():
            config.programs.append(Program(who, f"spec.scripts.{name}",
                                           Command(command=s.command, user=s.user, group=s.group)))
            sbody = [line("script", command_string(s.command))]
            for attr in ("interval", "timeout"):
                if getattr(s, attr) is not None:
                    sbody.append(line(attr, str(getattr(s, attr))))
            if s.weight is not None or s.reverse:
                sbody.append(line(*_weight(s.weight if s.weight is not None else 0, True if s.reverse else None)))
            for attr in ("rise", "fall"):
                if getattr(s, attr) is not None:
                    sbody.append(line(attr, str(getattr(s, attr))))
            if s.user:
                sbody.append(line("user", s.user, *([s.group] if s.group else [])))
            if s.initFail:
                sbody.append(line("init_fail"))
            sbody += verbatim(s.extra)
            stmts.append(block(["vrrp_script", name], sbody))
        for name, t in spec.trackFiles.items():
            tbody = [line("file", t.file)]
            if t.weight is not None or t.reverse:
                tbody.append(line(*_weight(t.weight if t.weight is not None else 1, True if t.reverse else None)))
            if t.initFile is not None:
                tbody.append(line("init_file", str(t.initFile.value), *(["overwrite"] if t.initFile.overwrite else [])))
            stmts.append(block(["track_file", name], tbody))
        for name, p in spec.trackProcesses.items():
            pbody = [line("process", *p.process)]
            if p.paramMatch:
                pbody.append(line("param_match", p.paramMatch))
            if p.weight is not None or p.reverse:
                pbody.append(line(*_weight(p.weight if p.weight is not None else 1, True if p.reverse else None)))
            for attr, keyword in (("quorum", "quorum"), ("quorumMax", "quorum_max"), ("forkDelay", "fork_delay"),
                                  ("terminateDelay", "terminate_delay"), ("delay", "delay")):
                if getattr(p, attr) is not None:
                    pbody.append(line(keyword, f"{getattr(p, attr):g}"))
            if p.fullCommand:
                pbody.append(line("full_command"))
            stmts.append(block(["vrrp_track_process", name], pbody))
        for name, grp in spec.syncGroups.items():
            names = [n for inst in grp.instances for n in members_of.get(inst, [inst])]
            gbody = [block(["group"], [line(n) for n in names])] + render_track(grp.track)
            gbody += render_notify(grp.notify, config, who, f"spec.syncGroups.{name}.notify")
            gbody += verbatim(grp.extra)
            stmts.append(block(["vrrp_sync_group", name], gbody))
        for name, lines in spec.virtualServerGroups.items():
            stmts.append(block(["virtual_server_group", name], verbatim(lines)))
        if spec.ssl is not None:
            sbody = []
            if spec.ssl.password is not None:
                config.secrets.append((who, spec.ssl.password))
                sbody.append(line("password", secret(spec.ssl.password)))
            for attr in ("ca", "certificate", "key"):
                if getattr(spec.ssl, attr):
                    sbody.append(line(attr, getattr(spec.ssl, attr)))
            stmts.append(block(["SSL"], sbody))
        stmts += verbatim(spec.lines, spec.blocks)
        config.files += spec.files
        config.includes += spec.includes
    if tracked:
        config.programs.append(Program(who, "trackHaproxy", Command(command=TRACK_SCRIPT, user="root"), builtin=True))
        stmts.append(block(["vrrp_script", TRACK_SCRIPT_NAME], [
            line("script", command_string(TRACK_SCRIPT)), line("interval", "1"), line("timeout", "1"),
            line("fall", "2"), line("rise", "2")]))
    # reconcile's drain: 0 normal, non-zero puts every instance in FAULT at once (weight 0), so
    # a peer takes over after its skew time, whatever the priorities or nopreempt say.
    stmts.append(block(["track_file", RESERVED_TRACK], [
        line("file", str(drain_file(state_dir))), line("weight", "0"), line("init_file", "0")]))
    security = g.enableScriptSecurity if g is not None and g.enableScriptSecurity is not None else None
    if security or (security is None and config.programs):
        body.insert(1, line("enable_script_security"))
    return [block(["global_defs"], body)] + stmts + [line(*_include(p)) for p in config.includes]


def _include(path: str) -> list[str]:
    return ["include", path]


# --- VirtualIP -----------------------------------------------------------------------------


def _per_node(value: Any, node: str) -> Any:
    return value.get(node) if isinstance(value, dict) else value


def _family_of(address: str) -> int:
    return ipaddress.ip_interface(address.split()[0]).version


def _peers(tree: Any, vip: VirtualIP, node: str, family: int) -> tuple[list[str], str | None]:
    """Unicast peers and source address of `node` for one family ([] and None: multicast)."""
    ka = vip.spec.keepalived
    src = _per_node(ka.unicastSrcIp, node)
    if ka.multicast:
        return [], None
    if ka.unicastPeers is not None:
        own = {src.split("/")[0]} if src else set()
        addr = tree.node_address(node)
        if addr:
            own.add(addr.split("/")[0])
        peers = [p for p in ka.unicastPeers if _family_of(p) == family and p.split()[0].split("/")[0] not in own]
        if src and _family_of(src) != family:
            src = None
        return peers, src
    if family != 4:
        return [], None
    own = tree.node_address(node)
    peers = [a.split("/")[0] for n in vip.node_order(tree) if n != node and (a := tree.node_address(n))]
    return peers, src or (own.split("/")[0] if own else None)


def track_weight(priorities: dict[str, int]) -> int:
    """How far a node whose HAProxy is dead drops: just below the lowest priority of the
    VIP, so that any node with a live proxy wins, and a node with a dead one still holds
    the address when no proxy runs anywhere (at least once)."""
    return min(253, max(priorities.values()) - min(priorities.values()) + 1)


def render_vip(tree: Any, members: list[VirtualIP], node: str, secret: Secret, config: NodeConfig,
               who: str) -> list[Stmt]:
    """The vrrp_instance blocks of one VirtualIP (or of a group's VIPs): one per family."""
    first = members[0]
    ka, spec = first.spec.keepalived, first.spec
    vips = [a for v in members for a in v.vips()]
    families = first.families()
    names = first.instance_names()
    priorities = first.priorities(tree)
    if node not in priorities:  # placed everywhere, on a machine no Cluster lists
        raise ApplyError(f"VirtualIP {first.metadata.name} lands on every node, but no Cluster lists {node}: "
                         "keepalived needs this node's address and priority; place the VIP with spec.cluster "
                         f"or spec.nodes, or add {node} to a Cluster")
    out = []
    for family, name in zip(families, names):
        mine = [a for a in vips if a.family == family]
        body = [line("state", _per_node(ka.state, node) or "BACKUP"), line("interface", spec.interface),
                line("virtual_router_id", str(ka.routerId)), line("priority", str(priorities[node])),
                line("advert_int", f"{round(ka.interval(), 2):g}")]
        body.append(line("version", str(ka.version if family == 4 else 3)))
        if ka.nativeIpv6 and family == 6:
            body.append(line("native_ipv6"))
        if not ka.preempt:
            body.append(line("nopreempt"))
        elif ka.preemptDelay is not None:
            body.append(line("preempt_delay", f"{ka.preemptDelay:g}"))
        peers, src = _peers(tree, first, node, family)
        mcast_src = _per_node(ka.mcastSrcIp, node)
        if src and peers:
            body.append(line("unicast_src_ip", src))
        elif src and ka.unicastSrcIp is not None:
            body.append(line("unicast_src_ip", src))
        if mcast_src and _family_of(mcast_src) == family:
            body.append(line("mcast_src_ip", mcast_src))
        if peers:
            body.append(block(["unicast_peer"], [Stmt(p.split()) for p in peers]))
        if ka.mcastDstIp and ipaddress.ip_address(ka.mcastDstIp).version == family:
            body.append(line("mcast_dst_ip", ka.mcastDstIp))
        if ka.authentication is not None and family == 4 and ka.version == 2:
            config.secrets.append((who, ka.authentication.password))
            body.append(block(["authentication"], [line("auth_type", ka.authentication.type),
                                                   line("auth_pass", secret(ka.authentication.password))]))
        if mine:
            body.append(block(["virtual_ipaddress"], [_address_line(a, None) for a in mine]))
        if family == families[0]:
            if ka.excludedAddresses:
                body.append(block(["virtual_ipaddress_excluded"], [_address_line(a, None) for a in ka.excludedAddresses]))
            if ka.routes:
                body.append(block(["virtual_routes"], verbatim(ka.routes)))
            if ka.rules:
                body.append(block(["virtual_rules"], verbatim(ka.rules)))
        track = ka.track
        if ka.trackHaproxy:
            from schemas.keepalived import TrackRef

            track = track.model_copy(update={"scripts": track.scripts + [
                TrackRef(name=TRACK_SCRIPT_NAME, weight=-track_weight(priorities))]})
        body += render_track(track, drain=True)
        if family == families[0]:  # the other family's instance moves with it: one notification
            body += render_notify(ka.notify, config, who, "spec.keepalived.notify")
        for attr, keyword in GARP_KEYWORDS.items():
            if getattr(ka.garp, attr) is not None:
                body.append(line(keyword, str(getattr(ka.garp, attr))))
        body += verbatim(ka.extra)
        out.append(block(["vrrp_instance", name], body))
    return out


# --- VirtualServer ---------------------------------------------------------------------------


def render_virtual_server(vs: VirtualServer, config: NodeConfig, who: str) -> list[Stmt]:
    s = vs.spec
    body: list[Stmt] = []
    if s.protocol:
        body.append(line("protocol", s.protocol))
    body += verbatim(s.extra, s.blocks)
    for attr, keyword in (("quorumUp", "quorum_up"), ("quorumDown", "quorum_down")):
        if getattr(s, attr) is not None:
            body.append(_program(keyword, getattr(s, attr), config, who, f"spec.{attr}"))
    for i, rs in enumerate(s.realServers):
        rbody = verbatim(rs.extra, rs.blocks)
        for attr, keyword in (("notifyUp", "notify_up"), ("notifyDown", "notify_down")):
            if getattr(rs, attr) is not None:
                rbody.append(_program(keyword, getattr(rs, attr), config, who, f"spec.realServers.{i}.{attr}"))
        for j, check in enumerate(rs.checks):
            cbody = []
            if check.misc is not None:
                config.programs.append(Program(who, f"spec.realServers.{i}.checks.{j}.misc", check.misc))
                cbody.append(line("misc_path", command_string(check.misc.command)))
                if check.misc.user:
                    cbody.append(line("user", *_user(check.misc)))
            cbody += verbatim(check.extra, check.blocks)
            rbody.append(block([check.type], cbody))
        header = ["real_server", rs.address] + ([str(rs.port)] if rs.port is not None else [])
        body.append(block(header, rbody))
    return [block(["virtual_server", *vs.header()], body)]
