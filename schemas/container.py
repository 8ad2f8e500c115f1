"""Container: an LXC system container on a node (or, with spec.cluster, placed by Pacemaker).

With `spec.cluster` the container is defined on every node of that cluster and Pacemaker
runs it on at most one of them (an ocf:heartbeat:lxc primitive named after it): the
cluster must run Pacemaker, and the fields that would make reconcile run it itself
(`autostart`, `startOrder`, `restartPolicy: onChange`, `state: frozen`) are refused.

Typed where reconcile needs meaning (template, run state, limits, interfaces, init, id
mapping, AppArmor, devices, capabilities, mounts, environment, files); every other LXC key
is a validated line under `config` (`lxc.KEY = VALUE`, one line; a key a typed field
writes is refused there). Every value here reaches `lxc-create` argv, an LXC config line or
a path under the container's root file system, so each is a constrained type. What only
the node may allow (hooks, mounts of the node's /, /etc, /proc, /sys, /dev, the node's
network) is checked against the node's policy before anything is applied.
"""
import dataclasses
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.common import (
    AbsolutePath, CpuSet, DistroWord, Duration, EnvName, FileContent, FilePath, IfName, InitArg, IPv4, IPv4Prefix,
    Manifest, MemorySize, Placement, Strict, or_secret,
)

MAC = r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"
MacAddress = Annotated[str, StringConstraints(pattern=MAC)]
"""A MAC address: six pairs of hex digits with ':' (LXC also takes x for a random digit)."""
MAC_OR_TEMPLATE = r"^([0-9a-fA-Fx]{2}:){5}[0-9a-fA-Fx]{2}$"


def _lxc_value(value: str) -> str:
    if not value or value != value.strip(" \t") or value[0] in "'\"":
        raise ValueError(f"{value!r}: an LXC value is not empty, has no blank at either end and does not start "
                         "with a quote (LXC would drop or strip them)")
    return value


LxcValue = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_lxc_value)]
LXC_WORD = r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]{0,255}$"
LxcWord = Annotated[str, StringConstraints(pattern=LXC_WORD)]
_ADDRESS = re.compile(r"([0-9.]+/[0-9]{1,2})( [0-9.]+)?")


def _lxc_ipv4(value: str) -> str:
    m = _ADDRESS.fullmatch(value)
    try:
        if not m:
            raise ValueError
        ipaddress.IPv4Interface(m.group(1))
        if m.group(2):
            ipaddress.IPv4Address(m.group(2).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address with a prefix, optionally followed by its broadcast "
                         "address (a.b.c.d/n [b.b.b.b])") from None
    return value


LxcIPv4 = Annotated[str, AfterValidator(_lxc_ipv4)]


def _ipv6_prefix(value: str) -> str:
    try:
        iface = ipaddress.IPv6Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address with a prefix (2001:db8::10/64)") from None
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. 2001:db8::10/64")
    return f"{iface.ip}/{iface.network.prefixlen}"


IPv6Prefix = Annotated[str, AfterValidator(_ipv6_prefix)]
NET_OPTION = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
NetOption = Annotated[str, StringConstraints(pattern=NET_OPTION)]
TYPED_NET_OPTIONS = {"type", "link", "name", "hwaddr", "mtu", "flags", "ipv4.address", "ipv4.gateway",
                     "ipv6.address", "ipv6.gateway"}


class FileMode(Strict):
    mode: Annotated[str, StringConstraints(pattern=r"^0?[0-7]{3,4}$")] = "0644"
    owner: Annotated[int, Field(ge=0, le=4294967294)] = 0
    group: Annotated[int, Field(ge=0, le=4294967294)] = 0


class Download(Strict):
    """`lxc-create -t download -- --dist D --release R --arch A` (needs images.linuxcontainers.org)."""

    distribution: DistroWord = Field(description="The image's distribution, e.g. debian.")
    release: DistroWord = Field(description="Its release, e.g. bookworm.")
    architecture: DistroWord = Field("amd64", description="Its architecture.")


class LocalImage(Strict):
    """`lxc-create -t local -- -m metadata -f rootfs`: both tarballs xz-compressed, on the node."""

    rootfs: AbsolutePath = Field(description="rootfs tarball (.tar.xz) on the node")
    metadata: AbsolutePath = Field(description="metadata tarball (.tar.xz) holding the image's `config`")


class Limits(Strict):
    """Resource limits of the container (cgroups)."""

    memory: MemorySize | None = Field(None, description="memory limit, e.g. 256M")
    cpus: CpuSet | None = Field(None, description="CPUs the container may run on, e.g. 0 or 0-1")
    cpuWeight: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        None, description="relative CPU weight (cgroup v2 cpu.weight; 100 is the default share)")


class Network(Strict):
    """One interface of the container. `none`: loopback only (LXC's `empty`). `bridge`: a
    veth on the node's `bridge`. `macvlan`, `vlan`, `phys`: on the node's interface `link`.
    `host`: the node's own network (LXC's `none`: the container shares the node's network
    namespace; the node's policy must allow it). A default route (`gateway`) must be on the
    interface's own subnet: nothing here routes or NATs beyond what the node does."""

    type: Literal["none", "bridge", "macvlan", "vlan", "phys", "host"] = Field(
        "none", description="none: loopback only; bridge: a veth on `bridge`; macvlan, vlan, phys: on the node's "
                            "interface `link`; host: the node's own network (needs the node's policy)")
    bridge: IfName | None = Field(None, description="The node's bridge the container's veth joins (type bridge).")
    link: IfName | None = Field(None, description="the node's interface (macvlan, vlan, phys)")
    name: IfName | None = Field(None, description="the interface's name inside (LXC's default: eth0, eth1, …)")
    mac: Annotated[str, StringConstraints(pattern=MAC_OR_TEMPLATE)] | None = Field(
        None, description="lxc.net.N.hwaddr, e.g. 00:16:3e:00:00:01 (x: a random hex digit)")
    mtu: Annotated[int, Field(ge=68, le=65535)] | None = Field(None, description="lxc.net.N.mtu")
    up: bool = Field(True, description="lxc.net.N.flags = up: the interface is up inside")
    address: IPv4Prefix | None = Field(None, description="static IPv4 address inside, e.g. 198.51.100.11/24")
    addresses: list[LxcIPv4] = Field(default_factory=list, description="more IPv4 addresses (a.b.c.d/n [broadcast])")
    gateway: IPv4 | Literal["auto", "dev"] | None = Field(
        None, description="default route inside: an address on the interface's subnet, auto (the bridge's "
                          "address) or dev")
    ipv6: list[IPv6Prefix] = Field(default_factory=list, description="IPv6 addresses inside, e.g. 2001:db8::10/64")
    ipv6Gateway: Annotated[str, AfterValidator(lambda v: str(ipaddress.IPv6Address(v)))] | Literal["auto", "dev"] | \
        None = Field(None, description="IPv6 default route inside: an address, auto or dev")
    bridgeAddress: IPv4Prefix | None = Field(
        None, description="the node's own address on `bridge`: reconcile creates the node-local bridge with "
                          "it when missing. Leave it out to use a bridge made by something else.")
    options: dict[NetOption, LxcValue] = Field(
        default_factory=dict, description="further lxc.net.N.* keys, e.g. macvlan.mode: bridge, vlan.id: '10'")

    @model_validator(mode="after")
    def _kind(self) -> "Network":
        if self.type == "bridge" and self.bridge is None:
            raise ValueError("network type bridge needs network.bridge")
        if self.type != "bridge" and (self.bridge or self.bridgeAddress):
            raise ValueError(f"network type {self.type} takes no bridge or bridgeAddress")
        if self.type in ("macvlan", "vlan", "phys") and self.link is None:
            raise ValueError(f"network type {self.type} needs network.link, the node's interface")
        if self.type in ("none", "host") and (self.address or self.addresses or self.gateway or self.ipv6 or
                                              self.link or self.mac or self.mtu):
            raise ValueError(f"network type {self.type} takes no addresses, gateway, link, mac or mtu")
        if self.bridgeAddress and "veth.pair" in self.options:
            raise ValueError("options veth.pair: reconcile names the host end of the veth itself when it makes the "
                             "bridge (bridgeAddress), to put it back on a bridge made again")
        typed = sorted(k for k in self.options if k in TYPED_NET_OPTIONS)
        if typed:
            raise ValueError(f"options {', '.join(typed)}: set by the typed fields (type, link, name, mac, mtu, up, "
                             "address, gateway, ipv6, ipv6Gateway)")
        return self

    def ipv4(self) -> list[str]:
        return ([self.address] if self.address else []) + list(self.addresses)


class IdMap(Strict):
    """One `lxc.idmap` range: ids `container`.. inside are `host`.. on the node."""

    type: Literal["u", "g"] = Field(description="u: user ids; g: group ids")
    container: Annotated[int, Field(ge=0, le=4294967294)] = Field(description="the first id inside, usually 0")
    host: Annotated[int, Field(ge=0, le=4294967294)] = Field(description="what that id is on the node, e.g. 100000")
    count: Annotated[int, Field(ge=1, le=4294967295)] = Field(description="how many ids, e.g. 65536")


class AppArmor(Strict):
    """The container's AppArmor confinement (lxc.apparmor.*)."""

    profile: LxcValue | None = Field(None, description="lxc.apparmor.profile: generated, unconfined or a profile name")
    allowNesting: bool | None = Field(None, description="lxc.apparmor.allow_nesting (containers inside)")
    allowIncomplete: bool | None = Field(None, description="lxc.apparmor.allow_incomplete")


DEVICE = r"^(a|[abc] (\*|[0-9]{1,5}):(\*|[0-9]{1,7}) [rwm]{1,3})$"
DeviceSpec = Annotated[str, StringConstraints(pattern=DEVICE)]


class DeviceRule(Strict):
    """`allow: c 1:3 rwm` or `deny: a` (lxc.cgroup[2].devices.allow/deny, in order)."""

    allow: DeviceSpec | None = Field(None, description="a device the container may use: TYPE MAJOR:MINOR ACCESS, "
                                                        "e.g. c 1:3 rwm, or a (all)")
    deny: DeviceSpec | None = Field(None, description="a device it may not use, e.g. a (all)")

    @model_validator(mode="after")
    def _one(self) -> "DeviceRule":
        if (self.allow is None) == (self.deny is None):
            raise ValueError("a device rule is either allow: or deny:")
        return self


CAPABILITY = r"^([a-z_]{2,32}|[0-9]{1,2})$"
Capability = Annotated[str, StringConstraints(pattern=CAPABILITY)]


class Capabilities(Strict):
    """Capabilities the container's root loses (drop) or is limited to (keep)."""

    drop: list[Capability] = Field(default_factory=list, description="lxc.cap.drop, e.g. sys_module, sys_time")
    keep: list[Capability] = Field(default_factory=list, description="lxc.cap.keep: only these (LXC refuses both)")

    @model_validator(mode="after")
    def _not_both(self) -> "Capabilities":
        if self.drop and self.keep:
            raise ValueError("give capabilities.drop or capabilities.keep, not both (LXC refuses a container with both)")
        return self


MOUNT_WORD = r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}$"
MOUNT_OPTION = r"^[A-Za-z0-9_][A-Za-z0-9_.=:@+/-]{0,255}$"
_TARGET = re.compile(r"[A-Za-z0-9_.@+/-]{1,4095}")


def _mount_target(value: str) -> str:
    parts = value.strip("/").split("/")
    if not _TARGET.fullmatch(value) or ".." in parts or "." in parts or "" in parts:
        raise ValueError(f"{value!r}: a mount target is a path inside the container (relative to its root, e.g. "
                         "srv/data), without '..' or empty segments")
    return value


class Mount(Strict):
    """`lxc.mount.entry = SOURCE TARGET TYPE OPTIONS 0 0`. A bind mount's source is a path on
    the node (absolute, normal form; the node's /, /etc, /proc, /dev, and /sys unless
    read-only, only where the node's policy allows); another type's source is a word
    (proc, tmpfs, …) or a device path."""

    source: AbsolutePath | Annotated[str, StringConstraints(pattern=MOUNT_WORD)] = Field(
        description="a path on the node (bind mounts), a device, or a word such as proc or tmpfs")
    target: Annotated[str, AfterValidator(_mount_target)] = Field(
        description="where inside the container, relative to its root, e.g. srv/data")
    type: Annotated[str, StringConstraints(pattern=MOUNT_WORD)] = Field("none", description="none for a bind mount")
    options: Annotated[list[Annotated[str, StringConstraints(pattern=MOUNT_OPTION)]], Field(min_length=1)] = \
        Field(default_factory=lambda: ["bind"], description="e.g. [bind, ro], [bind, create=dir]")

    def is_bind(self) -> bool:
        return any(o in ("bind", "rbind") for o in self.options)

    def line(self) -> str:
        return f"{self.source} {self.target} {self.type} {','.join(self.options)} 0 0"


MOUNT_AUTO = r"^(proc|sys|cgroup|cgroup-full)(:(mixed|rw|ro|force|mixed:force|rw:force|ro:force))?$"
HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$"
CONFIG_LINE = r"^lxc\.[a-z0-9_]+(\.[A-Za-z0-9_-]+)* ?=( .*)?$"


def _config_line(value: str) -> str:
    if not re.fullmatch(CONFIG_LINE, value):
        raise ValueError(f"{value!r}: a config line is `lxc.KEY = VALUE` (or `lxc.KEY =`, which clears the key)")
    key, _, rest = value.partition("=")
    rest = rest.strip()
    if rest and (rest[0] in "'\"" or rest != value.partition("=")[2][1:]):
        raise ValueError(f"{value!r}: write `{key.strip()} = VALUE` with one blank around '=', the value without "
                         "quotes and without blanks at its end")
    return value


ConfigLine = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_config_line)]
"""A further LXC key as its line: `lxc.sysctl.net.ipv4.ip_forward = 1`, `lxc.tty.max = 4`."""


class ContainerSpec(Placement):
    """An LXC system container on each node it lands on (or, with spec.cluster, where Pacemaker runs it)."""

    template: Literal["busybox", "download", "local"] | None = Field(
        None, description="how reconcile creates it; leave it out only with adopt: true")
    adopt: bool = Field(False, description="a container made outside reconcile (e.g. by lxc-create, then "
                                           "`reconcile import lxc`): managed from now on, never created nor "
                                           "destroyed by reconcile")
    download: Download | None = Field(None, description="The image, for template download.")
    local: LocalImage | None = Field(None, description="The tarballs, for template local.")
    state: Literal["running", "stopped", "frozen"] = Field("running", description="What it should be doing.")
    autostart: bool = Field(False, description="lxc.start.auto: started by lxc-autostart when the node boots")
    startOrder: Annotated[int, Field(ge=0, le=1000)] | None = Field(None, description="lxc.start.order")
    limits: Limits = Field(default_factory=Limits)
    network: Network | None = Field(None, description="the first interface (default: loopback only)")
    networks: list[Network] | None = Field(None, description="every interface, in order (instead of network)")
    init: Annotated[list[InitArg], Field(min_length=1)] | None = Field(
        None, description="command run as the container's init (lxc.init.cmd)")
    hostname: Annotated[str, StringConstraints(pattern=HOSTNAME)] | None = Field(None, description="lxc.uts.name")
    rootfs: AbsolutePath | None = Field(
        None, description="where an adopted container's root file system is (default LXCPATH/NAME/rootfs)")
    idmap: list[IdMap] = Field(default_factory=list, description="unprivileged: the container's ids on the node, "
                                                                 "e.g. u 0 100000 65536 and g 0 100000 65536")
    subordinateIds: bool = Field(True, description="with idmap: give root the host ranges in /etc/subuid and "
                                                   "/etc/subgid (what LXC's tools check)")
    apparmor: AppArmor | None = Field(None, description="AppArmor profile and nesting (left out: the template's)")
    devices: list[DeviceRule] | None = Field(None, description="device rules, in order (lxc.cgroup[2].devices.*)")
    capabilities: Capabilities | None = Field(None, description="lxc.cap.drop / lxc.cap.keep (left out: the "
                                                              "template's)")
    mounts: list[Mount] | None = Field(None, description="lxc.mount.entry lines reconcile adds")
    mountAuto: list[Annotated[str, StringConstraints(pattern=MOUNT_AUTO)]] | None = Field(
        None, description="lxc.mount.auto, e.g. [proc:mixed, sys:ro, cgroup:mixed]")
    environment: dict[EnvName, or_secret(LxcValue)] | None = Field(  # type: ignore[valid-type]
        None, description="lxc.environment: variables of the init; a secret by reference")
    config: list[ConfigLine] = Field(default_factory=list, description="further LXC keys, one line each")
    files: dict[FilePath, FileContent] = Field(
        default_factory=dict,
        description="files written into the container's root file system (path inside → content), "
                    "e.g. a web server's document; changing one needs no restart")
    fileModes: dict[FilePath, FileMode] = Field(
        default_factory=dict, description="mode and owner of files: {mode: '0640', owner: 0, group: 0}; owner "
                                          "and group as the container sees them (mapped with idmap)")
    restartPolicy: Literal["onChange", "never"] = Field(
        "onChange", description="may apply restart a running container for a change that needs it "
                                "(limits, network, init, …)? never: the change waits for its next start")
    stopTimeout: Duration = Field("10s", description="how long a stop waits for the init to end before killing it")
    lxcPath: AbsolutePath = Field("/var/lib/lxc", description="The LXC path holding it (Pacemaker-placed "
                                  "containers: LXC's default path, which the lxc agent uses).")

    @model_validator(mode="after")
    def _template_options(self) -> "ContainerSpec":
        if self.template is None and not self.adopt:
            raise ValueError("give template (busybox, download or local), or adopt: true for a container made "
                             "outside reconcile")
        if (self.template == "download") != (self.download is not None):
            raise ValueError("template download needs spec.download, and only it takes one")
        if (self.template == "local") != (self.local is not None):
            raise ValueError("template local needs spec.local, and only it takes one")
        if self.network is not None and self.networks is not None:
            raise ValueError("give network (one interface) or networks (several), not both")
        return self

    def interfaces(self) -> list[Network]:
        if self.networks is not None:
            return list(self.networks)
        return [self.network or Network()]


class Container(Manifest):
    kind: Literal["Container"]
    spec: ContainerSpec

    def claims(self) -> list[tuple[str, str]]:
        out = [(f"container:{self.spec.lxcPath}:{self.metadata.name}", "metadata.name")]
        for i, net in enumerate(self.spec.interfaces()):
            for address in net.ipv4():
                out.append((f"ip:{address.split('/')[0]}", self._net_path(i, "address" if address == net.address
                                                                            else "addresses")))
        return out

    def _net_path(self, i: int, field: str) -> str:
        return f"spec.network.{field}" if self.spec.networks is None else f"spec.networks.{i}.{field}"

    def check(self, tree) -> list[tuple[str, str]]:
        spec = self.spec
        problems: list[tuple[str, str]] = self._placed_by_pacemaker(tree) if spec.cluster else []
        for i, net in enumerate(spec.interfaces()):
            problems += self._interface(i, net)
        if any(net.bridgeAddress for net in spec.interfaces()):
            problems.extend(self._bridge_agrees(tree))
        problems += self._idmap()
        problems += [(f"spec.config.{i}", why) for i, line in enumerate(spec.config) for why in [config_problem(line)]
                     if why]
        for i, mount in enumerate(spec.mounts or []):
            if mount.is_bind() and not mount.source.startswith("/"):
                problems.append((f"spec.mounts.{i}.source", f"{mount.source!r}: a bind mount's source is an absolute "
                                                            "path on the node"))
        for path in spec.fileModes:
            if path not in spec.files:
                problems.append((f"spec.fileModes.{path}", f"{path} is not one of spec.files"))
        if spec.adopt and spec.cluster:
            problems.append(("spec.adopt", "a container Pacemaker places is created by reconcile on every node of its "
                                           "cluster: it cannot be adopted"))
        return problems

    def _interface(self, i: int, net: Network) -> list[tuple[str, str]]:
        problems = []
        if net.address and net.bridgeAddress:
            mine = ipaddress.IPv4Interface(net.address)
            bridge = ipaddress.IPv4Interface(net.bridgeAddress)
            if mine.network != bridge.network:
                problems.append((self._net_path(i, "address"), f"{net.address} is not in the bridge's subnet "
                                 f"{bridge.network} (bridgeAddress {net.bridgeAddress})"))
            elif mine.ip == bridge.ip:
                problems.append((self._net_path(i, "address"), f"{mine.ip} is the node's own address on "
                                 f"{net.bridge} (bridgeAddress): give the container another one"))
        if net.address:
            iface = ipaddress.IPv4Interface(net.address)
            if iface.network.prefixlen < 31 and iface.ip in (iface.network.network_address,
                                                             iface.network.broadcast_address):
                problems.append((self._net_path(i, "address"), f"{iface.ip} is the network or broadcast address "
                                 f"of {iface.network}"))
        if net.gateway not in (None, "auto", "dev"):
            subnets = [ipaddress.IPv4Interface(a.split()[0]).network for a in net.ipv4()]
            gateway = ipaddress.IPv4Address(net.gateway)
            if not any(gateway in s for s in subnets):
                problems.append((self._net_path(i, "gateway"), f"{gateway} is not on this interface's subnet"
                                 + (f" ({', '.join(map(str, subnets))})" if subnets else " (it has no IPv4 address)")
                                 + ": a gateway must be reachable without a route"))
        if net.gateway == "auto" and net.type != "bridge":
            problems.append((self._net_path(i, "gateway"), "auto takes the bridge's address: only for type bridge"))
        return problems

    def _idmap(self) -> list[tuple[str, str]]:
        idmap = self.spec.idmap
        if not idmap:
            return []
        problems = []
        for kind in ("u", "g"):
            ranges = [(i, m) for i, m in enumerate(idmap) if m.type == kind]
            if not any(m.container == 0 for _, m in ranges):
                problems.append(("spec.idmap", f"no {kind} range maps the container's root ({kind} 0 …): an "
                                               "unprivileged container maps both its root user and group"))
            for i, m in ranges:
                if m.host == 0:
                    problems.append((f"spec.idmap.{i}.host", "0 is root on the node: an unprivileged container's ids "
                                                             "are never the node's root"))
                for j, other in ranges:
                    if j > i and (_overlap(m.container, m.count, other.container, other.count)
                                  or _overlap(m.host, m.count, other.host, other.count)):
                        problems.append((f"spec.idmap.{j}", f"overlaps idmap {i} ({kind} ids can map only once)"))
        return problems

    def _placed_by_pacemaker(self, tree) -> list[tuple[str, str]]:
        """Pacemaker starts and stops a container placed with spec.cluster: reconcile only
        defines it on the cluster's nodes, so nothing here may ask reconcile to run it."""
        spec, name = self.spec, self.metadata.name
        problems: list[tuple[str, str]] = []
        owner = tree.get("Cluster", spec.cluster)
        if owner is not None and owner.spec.stack != "pacemaker":
            problems.append(("spec.cluster", f"cluster {spec.cluster!r} has stack: {owner.spec.stack}: no Pacemaker "
                             "runs there to place this container; say stack: pacemaker in that Cluster, or place "
                             "the container with spec.nodes"))
        if spec.state == "frozen":
            problems.append(("spec.state", "a container Pacemaker places cannot be frozen: the lxc agent's monitor "
                             "would find it not running and Pacemaker would recover it; say running or stopped"))
        if spec.autostart:
            problems.append(("spec.autostart", "Pacemaker starts a container placed with spec.cluster: autostart "
                             "stays off so that a node that boots does not start a second copy; leave it out"))
        if spec.startOrder is not None:
            problems.append(("spec.startOrder", "only for autostart, which a container placed with spec.cluster "
                             "does not have (Pacemaker starts it): leave it out"))
        if "restartPolicy" in spec.model_fields_set and spec.restartPolicy == "onChange":
            problems.append(("spec.restartPolicy", "Pacemaker starts and stops a container placed with spec.cluster: "
                             "reconcile never restarts it; a change that needs a restart is reported until you run "
                             f"crm_resource --restart -r {name}. Leave restartPolicy out"))
        return problems

    def _bridge_agrees(self, tree) -> list[tuple[str, str]]:
        """Containers that share a node and name the same bridge must give it one address
        (the bridge is one interface of the node), and two bridges of a node must not share
        a subnet (the node could not tell where to send it). Reported once, on the later
        name; looked up per node in `_bridges_by_node`, so the check stays linear."""
        index = tree.memo(_bridges_by_node)
        nodes = sorted(tree.nodes_of(self))
        for i, net in enumerate(self.spec.interfaces()):
            if not net.bridgeAddress:
                continue
            for node in nodes:
                first = index.first.get((node, net.bridge))
                if first is not None and first[0].metadata.name < self.metadata.name \
                        and first[1].bridgeAddress != net.bridgeAddress:
                    return [(self._net_path(i, "bridgeAddress"),
                             f"bridge {net.bridge} gets {net.bridgeAddress} here but {first[1].bridgeAddress} "
                             f"from Container {first[0].metadata.name!r} on a common node: one bridge, one address")]
        for node in nodes:
            found = index.overlaps.get((node, self.metadata.name))
            if found is not None:
                (other, onet), net, i = found
                return [(self._net_path(i, "bridgeAddress"),
                         f"{net.bridgeAddress} on bridge {net.bridge} overlaps {onet.bridgeAddress} on bridge "
                         f"{onet.bridge} (Container {other.metadata.name!r}) on a common node: give each bridge "
                         "its own subnet")]
        return []


@dataclasses.dataclass
class _BridgeIndex:
    # (node, bridge) → (container, interface) of the smallest name that gives the bridge an address
    first: dict[tuple[str, str | None], tuple["Container", Network]] = dataclasses.field(default_factory=dict)
    # (node, container name) → ((earlier container, its interface), the later's interface, its index)
    overlaps: dict[tuple[str, str], tuple] = dataclasses.field(default_factory=dict)


def _bridges_by_node(tree) -> _BridgeIndex:
    index = _BridgeIndex()
    with_address = sorted(((c, i, n) for c in tree.of_kind("Container") for i, n in enumerate(c.spec.interfaces())
                           if n.bridgeAddress), key=lambda x: (x[0].metadata.name, x[1]))
    per_node: dict[str, list[tuple["Container", int, Network]]] = {}
    for c, i, n in with_address:
        for node in tree.nodes_of(c):
            if (node, n.bridge) not in index.first:
                index.first[(node, n.bridge)] = (c, n)
                per_node.setdefault(node, []).append((c, i, n))
    # One bridge per node from here on: sorted by where its subnet starts, a subnet that
    # starts before the furthest end seen so far overlaps the one that reached it.
    for node, bridges in per_node.items():
        spans = sorted(((ipaddress.IPv4Interface(n.bridgeAddress).network, c, i, n) for c, i, n in bridges),
                       key=lambda span: (span[0].network_address, -span[0].prefixlen))
        reach: tuple | None = None
        for subnet, c, i, n in spans:
            if reach is not None and subnet.network_address <= reach[0].broadcast_address:
                earlier, later = sorted(((reach[1], reach[2], reach[3]), (c, i, n)), key=lambda x: x[0].metadata.name)
                index.overlaps.setdefault((node, later[0].metadata.name), ((earlier[0], earlier[2]), later[2], later[1]))
            if reach is None or subnet.broadcast_address > reach[0].broadcast_address:
                reach = (subnet, c, i, n)
    return index


def _overlap(a: int, n: int, b: int, m: int) -> bool:
    return a < b + m and b < a + n


# LXC keys a typed field writes, and the field; legacy keys (LXC 2) and what LXC 3 calls them.
TYPED_KEYS = {
    "lxc.start.auto": "spec.autostart", "lxc.start.order": "spec.startOrder", "lxc.init.cmd": "spec.init",
    "lxc.idmap": "spec.idmap", "lxc.apparmor.profile": "spec.apparmor.profile",
    "lxc.apparmor.allow_nesting": "spec.apparmor.allowNesting",
    "lxc.apparmor.allow_incomplete": "spec.apparmor.allowIncomplete", "lxc.cap.drop": "spec.capabilities.drop",
    "lxc.cap.keep": "spec.capabilities.keep", "lxc.mount.entry": "spec.mounts", "lxc.mount.auto": "spec.mountAuto",
    "lxc.environment": "spec.environment", "lxc.uts.name": "spec.hostname", "lxc.rootfs.path": "spec.rootfs",
    "lxc.cgroup.devices.allow": "spec.devices", "lxc.cgroup.devices.deny": "spec.devices",
    "lxc.cgroup2.devices.allow": "spec.devices", "lxc.cgroup2.devices.deny": "spec.devices",
    "lxc.cgroup.memory.limit_in_bytes": "spec.limits.memory", "lxc.cgroup2.memory.max": "spec.limits.memory",
    "lxc.cgroup.cpuset.cpus": "spec.limits.cpus", "lxc.cgroup2.cpuset.cpus": "spec.limits.cpus",
    "lxc.cgroup.cpu.shares": "spec.limits.cpuWeight", "lxc.cgroup2.cpu.weight": "spec.limits.cpuWeight",
}
LEGACY_KEYS = {
    "lxc.utsname": "lxc.uts.name", "lxc.rootfs": "lxc.rootfs.path", "lxc.id_map": "lxc.idmap", "lxc.pts": "lxc.pty.max",
    "lxc.tty": "lxc.tty.max", "lxc.devttydir": "lxc.tty.dir", "lxc.aa_profile": "lxc.apparmor.profile",
    "lxc.aa_allow_incomplete": "lxc.apparmor.allow_incomplete", "lxc.se_context": "lxc.selinux.context",
    "lxc.mount": "lxc.mount.fstab", "lxc.seccomp": "lxc.seccomp.profile", "lxc.console": "lxc.console.path",
    "lxc.haltsignal": "lxc.signal.halt", "lxc.rebootsignal": "lxc.signal.reboot", "lxc.stopsignal": "lxc.signal.stop",
    "lxc.syslog": "lxc.log.syslog", "lxc.loglevel": "lxc.log.level", "lxc.logfile": "lxc.log.file",
    "lxc.init_cmd": "lxc.init.cmd", "lxc.init_uid": "lxc.init.uid", "lxc.init_gid": "lxc.init.gid",
    "lxc.limit": "lxc.prlimit", "lxc.network": "lxc.net",
}
DROPPED_KEYS = ("lxc.rootfs.backend", "lxc.pivotdir", "lxc.kmsg")  # LXC 3 has no such key


def config_problem(line: str) -> str | None:
    """Why a `config` line may not stand there, or None."""
    key, _, value = (part.strip() for part in line.partition("="))
    if key in LEGACY_KEYS or any(key.startswith(old + ".") for old in LEGACY_KEYS if old in ("lxc.limit", "lxc.network")):
        new = next((LEGACY_KEYS[k] + key[len(k):] for k in LEGACY_KEYS if key == k or key.startswith(k + ".")), "")
        return f"{key} is LXC 2's name, which LXC 3 and later refuse: write {new} (reconcile import translates them)"
    if key in DROPPED_KEYS:
        return f"{key} no longer exists in LXC 3: leave it out"
    if not value:
        return None  # clearing any key (what an include set) is fine
    if key in TYPED_KEYS:
        return f"{key} is written by {TYPED_KEYS[key]}: set it there"
    if key == "lxc.net" or key.startswith("lxc.net."):
        return f"{key}: interfaces are spec.network / spec.networks (their options for further keys)"
    if key.startswith("lxc.rootfs."):
        return None if key in ("lxc.rootfs.options", "lxc.rootfs.mount", "lxc.rootfs.managed") else \
            f"{key}: the root file system is where reconcile created it (or spec.rootfs for an adopted container)"
    return None
