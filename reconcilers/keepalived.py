"""keepalived, as the VirtualIP reconciler needs it: render, parse, ask, start, reload, stop.

Kept apart from reconcilers/virtual_ip.py so that the reconciler reads as observe /
desired / apply, and so that the pure parts (render a configuration, parse one back, read
keepalived's JSON dump and `ip -j addr`) are tested on outputs recorded from the real
tools (tests/fixtures/keepalived/).

Facts this module relies on (keepalived 2.2.7, Debian 12; see /work/shared/notes):

- `keepalived -t -f FILE` checks a configuration, including that its interfaces exist, so
  it must run on the node itself. Any exit code other than 0 means "do not install".
- The JSON dump signal (`keepalived --signum=JSON`, a real-time signal, 36 here) makes the
  VRRP process write /tmp/keepalived.json: per instance its state (1 BACKUP, 2 MASTER,
  3 FAULT), vrid, base/effective priority, adver_int (seconds), nopreempt, preempt_delay
  and its addresses. The file is read through /proc/PID/root so that it is found even when
  the agent runs with a private /tmp.
- SIGHUP reloads. An address moved from one instance to another needs two reloads (the
  first without it, then with it), or it may end up configured on neither.
- `kill -9` of the parent alone is survived cleanly: the VRRP child gets SIGTERM (parent
  death signal) and releases its addresses. `kill -9` of both processes (an OOM kill, a
  `systemctl kill -s KILL`) leaves the addresses on the interface: the stale copy that
  the split-brain guard removes.
- `vrrp_track_process` learns about processes from the kernel's process-event connector,
  which is silent inside a PID namespace (containers, the lab): HAProxy is tracked with a
  `vrrp_script` running pgrep instead, restricted to the host's own PID namespace.
"""
from __future__ import annotations

import json
import re
import select
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from reconcilers.base import (
    GENERATED_HEADER, ApplyError, CommandError, Node, UnsafeValue, one_line, pid_alive, start_unit, systemd_running,
)

CONFIG = Path("/etc/keepalived/keepalived.conf")
PIDFILE = Path("/run/keepalived.pid")
VRRP_PIDFILE = Path("/run/keepalived_vrrp.pid")
CHECKERS_PIDFILE = Path("/run/keepalived_checkers.pid")
JSON_DUMP = "/tmp/keepalived.json"

# pgrep, not pidof/killall: `--ns 1 --nslist pid` counts only processes in this host's own
# PID namespace, so an HAProxy running inside a container on the host does not count.
TRACK_SCRIPT_NAME = "track_haproxy"
TRACK_SCRIPT = "/usr/bin/pgrep --ns 1 --nslist pid -x haproxy"

STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}
MASTER = 2


# --- the configuration, as data --------------------------------------------------------


@dataclass(frozen=True)
class VrrpInstance:
    """One vrrp_instance of keepalived.conf: one VIP, or the VIPs of one group."""

    name: str
    interface: str
    router_id: int
    priority: int
    advert_interval: float
    preempt: bool = True
    preempt_delay: int | None = None
    track_weight: int | None = None  # None: HAProxy not tracked; else lowered by this much
    unicast_src_ip: str = ""
    unicast_peers: tuple[str, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()  # (VirtualIP name, address/prefix)

    def vip_state(self, vip: str, address: str) -> dict[str, Any]:
        """The normalized state of one VIP of this instance, as the plan compares it."""
        return {
            "address": address,
            "interface": self.interface,
            "instance": self.name,
            "routerId": self.router_id,
            "priority": self.priority,
            "advertInterval": self.advert_interval,
            "preempt": self.preempt,
            "preemptDelay": self.preempt_delay,
            "trackHaproxy": self.track_weight is not None,
            "trackWeight": self.track_weight,
            "unicastSrcIp": self.unicast_src_ip,
            "unicastPeers": list(self.unicast_peers),
        }


def _seconds(value: float) -> str:
    """advert_int as keepalived reads it: 0.25, 1 (no float noise such as 0.30000000000000004)."""
    return f"{round(value, 2):g}"


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.:/-]+")


def keepalived_word(value: Any) -> str:
    """One word of keepalived.conf, as it is; refused (UnsafeValue) unless it is made of
    letters, digits and _ . : / - only. keepalived reads more than words into a line: '{'
    and '}' open and close blocks, '#' and '!' start comments, '$' expands a definition,
    a leading '@' or '~' makes a conditional or sequence line, quotes group words. None of
    that can happen to a plain word that does not start with '-' (kept to 255 characters:
    keepalived reads lines into a fixed buffer)."""
    text = one_line(str(value), "keepalived.conf", max_length=255)
    if not _PLAIN_WORD.fullmatch(text) or text.startswith("-"):
        raise UnsafeValue(f"keepalived.conf: refused to write {text!r}: only letters, digits and _ . : / - "
                          "make one plain word there")
    return text


def render_config(node: str, instances: Iterable[VrrpInstance]) -> str:
    """keepalived.conf for one node. Every instance starts as BACKUP, so that a node joining
    or restarting never takes the address before it has heard the others (and so that
    nopreempt / preempt_delay work at all)."""
    instances = sorted(instances, key=lambda i: i.name)
    tracked = any(i.track_weight is not None for i in instances)
    w = keepalived_word
    out = [
        f"# {GENERATED_HEADER}",
        f"# VRRP instances of node {w(node)} for the VirtualIPs with manager: keepalived.",
        "",
        "global_defs {",
        f"    router_id {w(node)}",
        "    vrrp_version 3",
    ]
    if tracked:
        out += ["    enable_script_security", "    script_user root"]
    out += ["}", ""]
    if tracked:
        out += [
            f"vrrp_script {TRACK_SCRIPT_NAME} {{",
            f'    script "{TRACK_SCRIPT}"',
            "    interval 1",
            "    timeout 1",
            "    fall 2",
            "    rise 2",
            "}",
            "",
        ]
    for inst in instances:
        out += [
            f"vrrp_instance {w(inst.name)} {{",
            "    state BACKUP",
            f"    interface {w(inst.interface)}",
            f"    virtual_router_id {w(inst.router_id)}",
            f"    priority {w(inst.priority)}",
            f"    advert_int {w(_seconds(inst.advert_interval))}",
        ]
        if not inst.preempt:
            out.append("    nopreempt")
        elif inst.preempt_delay is not None:
            out.append(f"    preempt_delay {w(inst.preempt_delay)}")
        if inst.unicast_src_ip:
            out.append(f"    unicast_src_ip {w(inst.unicast_src_ip)}")
            out.append("    unicast_peer {")
            out += [f"        {w(peer)}" for peer in inst.unicast_peers]
            out.append("    }")
        if inst.track_weight is not None:
            out += ["    track_script {", f"        {TRACK_SCRIPT_NAME} weight -{w(inst.track_weight)}", "    }"]
        out.append("    virtual_ipaddress {")
        for vip, address in inst.addresses:
            # The marker line names the VirtualIP, so that observe maps an address back
            # to its manifest (a group carries several).
            out += [f"        # VirtualIP {w(vip)}", f"        {w(address)} dev {w(inst.interface)}"]
        out += ["    }", "}", ""]
    return "\n".join(out)


def without_addresses(instances: Iterable[VrrpInstance], addresses: set[str]) -> list[VrrpInstance]:
    """The instances minus some addresses; an instance left without any is dropped. The
    first of the two configurations keepalived needs when an address changes instance."""
    out = []
    for inst in instances:
        kept = tuple(a for a in inst.addresses if a[1] not in addresses)
        if kept:
            out.append(replace(inst, addresses=kept))
    return out


# --- parsing keepalived.conf back ------------------------------------------------------


@dataclass
class Block:
    words: list[str]
    children: list["Block"] = field(default_factory=list)
    markers: list[tuple[int, str]] = field(default_factory=list)  # (child index, VirtualIP name)

    def first(self, keyword: str) -> "Block | None":
        return next((c for c in self.children if c.words and c.words[0] == keyword), None)

    def value(self, keyword: str) -> str | None:
        b = self.first(keyword)
        return b.words[1] if b is not None and len(b.words) > 1 else None


@dataclass
class ParsedConfig:
    """What a keepalived.conf says. `generated` is False for a file reconcile did not write."""

    generated: bool
    instances: list[VrrpInstance]


def _blocks(text: str) -> Block:
    root = Block([])
    stack = [root]
    pending_marker: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# VirtualIP "):
            pending_marker = line.split()[2]
            continue
        if not line or line[0] in "#!":
            continue
        for cut in (" #", " !"):  # keepalived also ends a line at a comment character
            if cut in line:
                line = line[: line.index(cut)].rstrip()
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        opens = line.endswith("{")
        words = line.rstrip("{").split()
        block = Block(words)
        parent = stack[-1]
        if pending_marker is not None:
            parent.markers.append((len(parent.children), pending_marker))
            pending_marker = None
        parent.children.append(block)
        if opens:
            stack.append(block)
    return root


def _int(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _float(value: str | None, default: float = 1.0) -> float:
    try:
        return round(float(value), 2) if value is not None else default
    except ValueError:
        return default


def parse_config(text: str) -> ParsedConfig:
    """The instances of a keepalived.conf, in the shape `render_config` writes them.

    Tolerant: a line edited by hand comes back as a different value (drift), an address
    without its `# VirtualIP NAME` marker is not attributed to any VirtualIP."""
    generated = GENERATED_HEADER in text.split("\n", 1)[0]
    instances = []
    for block in _blocks(text).children:
        if len(block.words) < 2 or block.words[0] != "vrrp_instance":
            continue
        peers_block = block.first("unicast_peer")
        track_weight = None
        track = block.first("track_script")
        for entry in (track.children if track else []):
            if entry.words and entry.words[0] == TRACK_SCRIPT_NAME:
                w = _int(entry.words[2] if len(entry.words) > 2 and entry.words[1] == "weight" else None, 0)
                track_weight = abs(w or 0)
        addresses = []
        vips = block.first("virtual_ipaddress")
        if vips is not None:
            names = dict(vips.markers)
            for i, entry in enumerate(vips.children):
                if entry.words and i in names:
                    addresses.append((names[i], entry.words[0]))
        instances.append(VrrpInstance(
            name=block.words[1],
            interface=block.value("interface") or "",
            router_id=_int(block.value("virtual_router_id"), 0) or 0,
            priority=_int(block.value("priority"), 100) or 0,
            advert_interval=_float(block.value("advert_int")),
            preempt=block.first("nopreempt") is None,
            preempt_delay=_int(block.value("preempt_delay")),
            track_weight=track_weight,
            unicast_src_ip=block.value("unicast_src_ip") or "",
            unicast_peers=tuple(c.words[0] for c in (peers_block.children if peers_block else []) if c.words),
            addresses=tuple(addresses),
        ))
    return ParsedConfig(generated, instances)


# --- what runs: keepalived's JSON dump and the interfaces --------------------------------


@dataclass(frozen=True)
class RunningInstance:
    """One instance as the running keepalived reports it in its JSON dump."""

    name: str
    state: int
    router_id: int
    base_priority: int
    effective_priority: int
    advert_interval: float
    nopreempt: bool
    preempt_delay: float
    addresses: tuple[str, ...]
    tracked: bool

    @property
    def state_name(self) -> str:
        return STATES.get(self.state, str(self.state))

    def runs(self, inst: VrrpInstance) -> bool:
        """True when this running instance is the configured one (it was (re)loaded)."""
        return (self.router_id == inst.router_id and self.base_priority == inst.priority
                and abs(self.advert_interval - inst.advert_interval) < 0.005
                and self.nopreempt == (not inst.preempt)
                and abs(self.preempt_delay - (inst.preempt_delay or 0)) < 0.005
                and set(self.addresses) == {a for _, a in inst.addresses}
                and self.tracked == (inst.track_weight is not None))


def parse_json_dump(text: str) -> dict[str, RunningInstance]:
    """Instances by name from keepalived's /tmp/keepalived.json. Raises ValueError on a
    file that is not (yet completely) written."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("keepalived.json is not a list of instances")
    out = {}
    for entry in data:
        d = entry["data"]
        out[d["iname"]] = RunningInstance(
            name=d["iname"],
            state=int(d.get("state", 0)),
            router_id=int(d.get("vrid", 0)),
            base_priority=int(d.get("base_priority", 0)),
            effective_priority=int(d.get("effective_priority", 0)),
            advert_interval=round(float(d.get("adver_int", 0)), 2),
            nopreempt=bool(d.get("nopreempt")),
            preempt_delay=float(d.get("preempt_delay") or 0),
            # "192.0.2.100/24 dev eth0 scope global set": the address is the first word
            addresses=tuple(v.split()[0] for v in d.get("vips", []) if v.split()),
            tracked=bool(d.get("track_script")),
        )
    return out


def parse_ip_addr(text: str) -> dict[str, set[str]]:
    """IPv4 address/prefix → the interfaces holding it, from `ip -j addr`."""
    out: dict[str, set[str]] = {}
    for link in json.loads(text or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and "local" in a:
                out.setdefault(f"{a['local']}/{a['prefixlen']}", set()).add(link["ifname"])
    return out


UNIT = "keepalived.service"


def holders(addrs: dict[str, set[str]], address: str) -> set[str]:
    """The interfaces holding `address` (compared without the prefix: the same IP with a
    different prefix length is still the same IP on the wire)."""
    ip = address.split("/")[0]
    return {i for a, ifs in addrs.items() if a.split("/")[0] == ip for i in ifs}


# --- the daemon ------------------------------------------------------------------------


class Keepalived:
    """Start, reload, stop and question the local keepalived, through the node's runner.

    With systemd as PID 1 the unit does it (`systemctl`); elsewhere (containers, the lab)
    keepalived is started as a daemon with the Debian unit's pid files, and reloaded by
    signal. Mutating calls are not read-only, so a dry-run refuses them."""

    _signum: dict[str, int] = {}

    def __init__(self, node: Node):
        self.node = node

    def pid(self) -> int | None:
        return pid_alive(PIDFILE)

    # -- reading

    def signum(self, name: str) -> int:
        """keepalived's signal number for `name` (build dependent, so asked, once)."""
        if name not in self._signum:
            out = self.node.run(["keepalived", f"--signum={name}"], read_only=True).stdout.strip()
            if not out.isdigit():
                raise ApplyError(f"`keepalived --signum={name}` gave {out!r}: this keepalived has no {name} dump")
            self._signum[name] = int(out)
        return self._signum[name]

    def dump(self, pid: int, timeout: float = 2.0) -> dict[str, RunningInstance] | None:
        """keepalived's view of its instances, fresh (asked for now), or None when it does
        not answer within `timeout` (a stopped or hung VRRP process)."""
        path = Path(f"/proc/{pid}/root{JSON_DUMP}")
        before = _signature(path)
        self.node.run(["kill", "-s", str(self.signum("JSON")), str(pid)], read_only=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _signature(path) != before:
                try:
                    return parse_json_dump(path.read_text())
                except (OSError, ValueError, KeyError):
                    pass  # being written: read again
            time.sleep(0.01)
        return None

    def check(self, path: Path) -> None:
        """`keepalived -t` on a candidate file; ApplyError with keepalived's words if refused."""
        r = self.node.run(["keepalived", "-t", "-f", str(path)], read_only=True, check=False, timeout=30)
        if r.rc != 0:
            lines = [line.strip() for line in (r.stderr + r.stdout).splitlines() if line.strip()]
            err = ApplyError(f"keepalived -t refused it (exit {r.rc}): {' | '.join(lines)}")
            err.lines = lines  # type: ignore[attr-defined]
            raise err

    # -- changing

    def start(self, timeout: float = 10.0, enforce: bool = False) -> int:
        """Start keepalived and wait until it answers; with systemd through its unit (which
        must then be enabled: an operator's hold on it raises Held, see base.start_unit)."""
        # A VRRP process whose parent was killed is still sending its goodbye (priority 0)
        # and releasing its addresses; a new keepalived refuses to start next to it.
        orphan = pid_alive(VRRP_PIDFILE)
        deadline = time.monotonic() + 5.0
        while orphan is not None and pid_alive(VRRP_PIDFILE) is not None:
            if time.monotonic() > deadline:
                raise ApplyError(f"the VRRP process of a previous keepalived (pid {orphan}) is still running "
                                 "without its parent; end it, then apply again")
            time.sleep(0.05)
        if systemd_running():
            start_unit(self.node, UNIT, enforce)
        else:
            # keepalived forks into the background itself and closes its output.
            self.node.run(["keepalived", "--use-file", str(CONFIG), "--pid", str(PIDFILE),
                           "--vrrp_pid", str(VRRP_PIDFILE), "--checkers_pid", str(CHECKERS_PIDFILE)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self.dump(pid, timeout=0.5) is not None:
                return pid
            time.sleep(0.05)
        raise ApplyError(f"keepalived did not come up within {timeout:.0f}s (no live pid in {PIDFILE} "
                         "answering its JSON dump); look at its log (syslog / journalctl -u keepalived)")

    def reload(self, pid: int) -> None:
        if systemd_running():
            self.node.run(["systemctl", "reload", "keepalived.service"])
        else:
            self.node.run(["kill", "-s", "HUP", str(pid)])

    def stop(self, pid: int, timeout: float = 15.0) -> None:
        """Stop keepalived; it releases its addresses as it goes."""
        if systemd_running():
            self.node.run(["systemctl", "stop", "keepalived.service"])
        else:
            self.node.run(["kill", "-s", "TERM", str(pid)])
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                raise ApplyError(f"keepalived (pid {pid}) did not stop within {timeout:.0f}s")
            time.sleep(0.05)

    def wait_loaded(self, instances: list[VrrpInstance], timeout: float = 5.0) -> None:
        """Wait until the running keepalived runs exactly `instances` (after a reload)."""
        deadline = time.monotonic() + timeout
        running: dict[str, RunningInstance] | None = None
        while time.monotonic() < deadline:
            pid = self.pid()
            running = self.dump(pid, timeout=0.5) if pid else None
            if running is not None and set(running) == {i.name for i in instances} \
                    and all(running[i.name].runs(i) for i in instances):
                return
            time.sleep(0.05)
        have = ", ".join(sorted(running)) if running else "no answer"
        raise ApplyError(f"keepalived did not load the new configuration within {timeout:.0f}s "
                         f"(running instances: {have}); it keeps the previous one")

    def remove_address(self, address: str, interface: str) -> None:
        try:
            self.node.run(["ip", "addr", "del", address, "dev", interface])
        except CommandError as err:
            if "Cannot assign requested address" not in err.stderr:  # already gone: fine
                raise

    def wait_for_peer_masters(self, instances: list[VrrpInstance], timeout: float) -> set[str]:
        """Listen (passively) for VRRP adverts from the peers of `instances` and return the
        names of the instances a peer has taken over, as soon as all have been, or when
        `timeout` ran out. A master sends its adverts to every unicast peer, this node
        included, whether or not this node's keepalived runs."""
        self.node.runner.guard("vrrp-listen", [i.name for i in instances], read_only=True)
        wanted = {(peer, i.router_id): i.name for i in instances for peer in i.unicast_peers}
        taken: set[str] = set()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTOCOL)
        except OSError:  # no CAP_NET_RAW: no way to know, fall back on the timeout
            time.sleep(timeout)
            return taken
        with sock:
            deadline = time.monotonic() + timeout
            while taken != set(wanted.values()) and (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                advert = parse_vrrp_packet(sock.recv(2048))
                if advert is not None and advert[2] > 0 and (advert[0], advert[1]) in wanted:
                    taken.add(wanted[(advert[0], advert[1])])
        return taken


VRRP_PROTOCOL = 112


def parse_vrrp_packet(packet: bytes) -> tuple[str, int, int] | None:
    """(source address, router id, priority) of a VRRP advertisement as a raw IPv4 socket
    receives it (IP header included), or None for anything else."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    if packet[9] != VRRP_PROTOCOL or len(packet) < header + 8:
        return None
    vrrp = packet[header:]
    if vrrp[0] & 0x0F != 1:  # type 1: advertisement
        return None
    return socket.inet_ntoa(packet[12:16]), vrrp[1], vrrp[2]


_MISSING_INTERFACE = re.compile(r"interface (\S+) for .* doesn't exist$")


def missing_interfaces(lines: list[str]) -> tuple[list[str], list[str]]:
    """(interfaces keepalived -t says do not exist, every other line of its complaint):
    on another machine than the node, the node's interfaces are expected to be missing."""
    missing: list[str] = []
    rest: list[str] = []
    for line in lines:
        m = _MISSING_INTERFACE.search(line)
        if m:
            missing += [m.group(1)] if m.group(1) not in missing else []
        elif line != "Non-existent interface specified in configuration":
            rest.append(line)
    return missing, rest


def master_down_seconds(inst: VrrpInstance, peer_priority: int = 1) -> float:
    """RFC 5798 Master_Down_Interval of a backup at `peer_priority`: 3 adverts + skew."""
    return 3 * inst.advert_interval + (256 - peer_priority) / 256 * inst.advert_interval


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_config() -> str | None:
    try:
        return CONFIG.read_text()
    except FileNotFoundError:
        return None


def config_signature() -> tuple[int, int, int] | None:
    return _signature(CONFIG)


