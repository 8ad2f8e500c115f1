"""Cluster: a Corosync 3 + Pacemaker 2 cluster, or a plain group of nodes (`stack: none`).

A Cluster names its nodes and their addresses; other kinds place themselves on "all nodes
of cluster X" through `spec.cluster`. With `stack: pacemaker` the Cluster reconciler also
writes corosync.conf (and the authkey), starts Corosync (and corosync-qdevice) and
Pacemaker; the cluster-wide part of the CIB (properties, resource and operation defaults,
alerts, fencing levels, tags, node attributes, constraints over several resources) is
declared here too and written with the resources, in one CIB update.

Corosync: knet links with per-node addresses (IPv4 or IPv6) and link options, totem
timers, votequorum options and a quorum device (corosync-qdevice talking to a
corosync-qnetd server). Crypto is on by default: a Pacemaker cluster needs `authkey` (a
secret made by corosync-keygen) unless it says `crypto: none`. Any other corosync.conf key
goes in `corosync` (section → key → value), so an imported file keeps every key.
"""
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from schemas.common import (
    duplicates, Duration, IPv4Prefix, Manifest, NodeName, Port, PropertyName, PropertyValue, SecretRef, Strict,
)
from schemas.rollout import RolloutPolicy
from schemas.pacemaker import (
    Alert, Constraint, FencingLevel, NVSets, NVSet, Tag, set_values,
)


# Written by Pacemaker itself (or by spec.stonithEnabled): a manifest may not set them.
RESERVED_PROPERTIES = {
    "stonith-enabled": "set it with spec.stonithEnabled",
    "dc-version": "Pacemaker maintains it",
    "cluster-infrastructure": "Pacemaker maintains it",
    "cluster-name": "it comes from metadata.name",
    "have-watchdog": "Pacemaker maintains it",
    "last-lrm-refresh": "Pacemaker maintains it",
}


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


IPAddress = Annotated[str, AfterValidator(_ip)]
HostOrAddress = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$")]


class ClusterNode(Strict):
    """One member of the cluster: its name (the node's host name), Corosync id and addresses."""

    name: NodeName = Field(description="The node's name: its host name (a node is the machine it runs on).")
    id: Annotated[int, Field(ge=1, le=65535)] = Field(description="Corosync nodeid, unique in the cluster")
    address: IPv4Prefix = Field(description="the node's address with prefix, e.g. 192.0.2.11/24 (ring0 by default)")
    links: list[IPAddress] | None = Field(
        None, description="the node's address on each knet link (ring0_addr, ring1_addr, ...), IPv4 or IPv6; "
                          "default: [address]")
    votes: Annotated[int, Field(ge=0, le=255)] | None = Field(None, description="quorum_votes of this node")
    attributes: NVSets | None = Field(None, description="permanent node attributes (rules and constraints read them)")
    utilization: NVSets | None = Field(None, description="capacities for placement-strategy (cpu, memory, ...)")

    def link_addresses(self) -> list[str]:
        return list(self.links) if self.links is not None else [self.address.split("/")[0]]


class Link(Strict):
    """Options of one knet link (`totem.interface` with its linknumber)."""

    number: Annotated[int, Field(ge=0, le=7)] | None = Field(None, description="linknumber; default: its position")
    priority: Annotated[int, Field(ge=0, le=255)] | None = Field(None, description="knet_link_priority (passive mode)")
    transport: Literal["udp", "sctp"] | None = Field(None, description="knet_transport: udp (default) or sctp")
    mcastport: Port | None = Field(None, description="The link's UDP port (default 5405)")
    pingInterval: Annotated[int, Field(ge=1)] | None = Field(None, description="knet_ping_interval, ms")
    pingTimeout: Annotated[int, Field(ge=1)] | None = Field(None, description="knet_ping_timeout, ms")
    pingPrecision: Annotated[int, Field(ge=1)] | None = Field(None, description="knet_ping_precision")
    pongCount: Annotated[int, Field(ge=1)] | None = Field(
        None, description="knet_pong_count: pongs before a link counts as up")


class Crypto(Strict):
    cipher: Literal["aes256", "aes192", "aes128"] = Field("aes256", description="crypto_cipher")
    hash: Literal["sha256", "sha384", "sha512", "sha1", "md5"] = Field("sha256", description="crypto_hash")
    model: Literal["nss", "openssl"] | None = Field(
        None, description="crypto_model: nss or openssl (default: Corosync's)")


class Totem(Strict):
    """Totem timers and knobs (milliseconds where Corosync counts them)."""

    consensus: Duration | None = Field(None, description="default 1.2 x token")
    join: Duration | None = Field(None, description="join timeout")
    tokenRetransmitsBeforeLossConst: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="token_retransmits_before_loss_const")
    tokenCoefficient: Duration | None = Field(
        None, description="token_coefficient: added to token per node beyond two")
    maxMessages: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        None, description="max_messages a node may send per token")
    linkMode: Literal["passive", "active", "rr"] | None = Field(
        None, description="knet link_mode: passive (one link at a time, by priority), active or rr")
    ipVersion: Literal["ipv4", "ipv6", "ipv4-6", "ipv6-4"] | None = Field(
        None, description="ip_version: how node names resolve (ipv6-4 by default)")
    clusterUuid: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        None, description="cluster_uuid (32 hex digits)")


class QuorumDeviceNet(Strict):
    host: HostOrAddress = Field(description="the corosync-qnetd server")
    port: Port | None = Field(None, description="qnetd's port (default 5403)")
    algorithm: Literal["ffsplit", "lms"] = Field(
        "ffsplit", description="ffsplit (50:50 splits) or lms (last man standing)")
    tieBreaker: Annotated[str, StringConstraints(pattern=r"^(lowest|highest|[0-9]{1,5})$")] | None = Field(
        None, description="Which half wins a tie: lowest, highest or a node id")
    tls: Literal["on", "off", "required"] = Field(
        "on", description="off: no NSS certificates (a lab); on/required need the qnetd CA on every node")
    connectTimeout: Duration | None = Field(None, description="How long qdevice waits for qnetd")
    forceIpVersion: Literal["0", "4", "6"] | None = Field(None, description="0 (any), 4 or 6")


class QuorumDevice(Strict):
    """A quorum device: corosync-qdevice on each node votes as the corosync-qnetd server
    tells it, so half the nodes plus the device keep quorum."""

    model: Literal["net"] = Field("net", description="net: a corosync-qnetd server")
    votes: Annotated[int, Field(ge=1, le=255)] | None = Field(
        None, description="The device's votes (default: Corosync's; ffsplit needs 1)")
    timeout: Duration | None = Field(None, description="How often qdevice polls qnetd")
    syncTimeout: Duration | None = Field(None, description="The poll interval while the membership changes")
    net: QuorumDeviceNet = Field(description="The qnetd server and its algorithm")


class Quorum(Strict):
    """Corosync votequorum options."""

    twoNode: bool | None = Field(None, description="default: true for exactly two nodes without a quorum device")
    waitForAll: bool | None = Field(None, description="default: Corosync's (on with twoNode)")
    lastManStanding: bool | None = Field(
        None, description="last_man_standing: recompute expected votes as nodes leave")
    lastManStandingWindow: Duration | None = Field(None, description="last_man_standing_window")
    autoTieBreaker: bool | None = Field(
        None, description="auto_tie_breaker: in an even split the half with the tie-breaker node keeps quorum")
    autoTieBreakerNode: Annotated[str, StringConstraints(pattern=r"^(lowest|highest|[0-9 ]{1,255})$")] | None = Field(
        None, description="auto_tie_breaker_node: lowest, highest or node ids")
    expectedVotes: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="expected_votes (default: the sum of the nodes' votes)")
    provider: Literal["corosync_votequorum", "none"] = Field(
        "corosync_votequorum", description="corosync_votequorum, or none (no quorum at all)")
    device: QuorumDevice | None = Field(
        None, description="A quorum device (corosync-qdevice with a corosync-qnetd server)")


_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def corosync_problem(value: str) -> str | None:
    """Why `value` cannot be the value of a corosync.conf `key: value` line: Corosync reads
    any line holding '{' or '}' as a section's start or end, '#' starts a comment, blanks
    around a value are dropped, and a long line is cut."""
    if not value or value != value.strip():
        return "may not be empty or start or end with a blank"
    if any(c in value for c in "{}#"):
        return "may not hold '{', '}' or '#'"
    if len(value) > 255:
        return "is longer than 255 characters"
    return None


def _sections(value: Any, where: str = "corosync") -> Any:
    """Check extra corosync.conf content: section → key → value, a value being a string or
    a list of subsections (`logger_subsys: [{subsys: QUORUM, debug: "on"}]`)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a section is a mapping of keys")
    for key, item in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"{where}: {key!r} is not a corosync.conf key (lower-case letters, digits, '_')")
        if isinstance(item, list):
            for i, sub in enumerate(item):
                _sections(sub, f"{where}.{key}.{i}")
        elif isinstance(item, str):
            why = corosync_problem(item)
            if why:
                raise ValueError(f"{where}.{key}: the value {why}")
        else:
            raise ValueError(f"{where}.{key}: write the value as a string (quote numbers and yes/no)")
    return value


def _extra(value: Any) -> Any:
    for name, section in value.items():
        if not isinstance(name, str) or not _KEY.fullmatch(name):
            raise ValueError(f"{name!r} is not a corosync.conf section name")
        _sections(section, f"corosync.{name}")
    return value


CorosyncExtra = Annotated[dict[str, dict[str, Any]], AfterValidator(_extra)]


PACEMAKER_ONLY = ("authkey", "stonithEnabled", "crypto", "resourceDefaults", "operationDefaults", "alerts",
                  "fencingLevels", "tags", "constraints")


def _stonith_stated(schema: dict) -> None:
    # As the tree check says: a Pacemaker cluster states stonithEnabled; a group of nodes
    # takes none of the Pacemaker fields.
    schema["if"] = {"properties": {"stack": {"const": "none"}}, "required": ["stack"]}
    schema["then"] = {"not": {"anyOf": [{"required": [f]} for f in PACEMAKER_ONLY]}}
    # ... and has crypto on (an authkey) unless it says crypto: none
    schema["else"] = {"required": ["stonithEnabled"], "anyOf": [
        {"required": ["authkey"]}, {"required": ["crypto"], "properties": {"crypto": {"const": "none"}}}]}


class ClusterSpec(Strict):
    """The members of the cluster and, with stack pacemaker, how Corosync and Pacemaker run."""

    model_config = ConfigDict(json_schema_extra=_stonith_stated)

    nodes: Annotated[list[ClusterNode], Field(min_length=1)] = Field(description="The members, in order.")
    stack: Literal["pacemaker", "none"] = Field("pacemaker", description="pacemaker: run Corosync and Pacemaker; "
                                                "none: only a named group of nodes that other kinds place on.")
    transport: Literal["knet", "udpu", "udp"] = Field("knet", description="Corosync's transport: knet (encryption, "
                                                      "several links), udpu or udp (one link, no encryption).")
    links: list[Link] | None = Field(None, description="knet link options, one per link (every node has an "
                                                       "address on each)")
    crypto: Literal["none"] | Crypto | None = Field(
        None, description="knet encryption, on by default (aes256/sha256, needs authkey); say none to turn it off")
    authkey: SecretRef | None = Field(
        None, description="Corosync authkey (as written by corosync-keygen); required unless crypto: none"
    )
    token: Duration | None = Field(
        "1000ms", description="totem token timeout; a dead node is noticed after token + consensus (1.2 x token); "
                              "null: Corosync's default (3000 ms)"
    )
    totem: Totem = Field(default_factory=Totem, description="Totem timers and knobs beyond token.")
    quorum: Quorum = Field(default_factory=Quorum, description="Corosync votequorum options and quorum device.")
    corosync: CorosyncExtra = Field(
        default_factory=dict, description="any other corosync.conf content: section → key → value, e.g. "
                                          "{logging: {debug: \"on\"}, totem: {netmtu: \"1200\"}}")
    stonithEnabled: bool | None = Field(
        None, description="required with stack: pacemaker; say false only where no shared data can be corrupted"
    )
    properties: dict[PropertyName, PropertyValue] | list[NVSet] = Field(
        default_factory=dict, description="Pacemaker cluster properties (crm_config), e.g. no-quorum-policy"
    )
    resourceDefaults: NVSets | None = Field(None, description="rsc_defaults, e.g. {resource-stickiness: \"100\"}")
    operationDefaults: NVSets | None = Field(None, description="op_defaults, e.g. {timeout: 120s}")
    alerts: list[Alert] | None = Field(None, description="Alert agents Pacemaker runs on cluster events")
    fencingLevels: list[FencingLevel] | None = Field(None, description="fencing topology")
    tags: list[Tag] | None = Field(
        None, description="Tags: names for sets of resources (crm_resource, pcs, constraints)")
    constraints: list[Constraint] | None = Field(
        None, description="constraints over several resources (sets, patterns), or any constraint kept at the "
                          "cluster level (an import puts every constraint here, in the CIB's order)")
    rollout: RolloutPolicy | None = Field(
        None, description="how a new revision reaches the nodes: one turn at a time, drained, health-gated "
                          "(needs stack: pacemaker; without it every agent applies at once)")


class Cluster(Manifest):
    kind: Literal["Cluster"]
    spec: ClusterSpec

    def claims(self) -> list[tuple[str, str]]:
        # A node belongs to one cluster only.
        return [(f"cluster-member:{n.name}", f"spec.nodes.{i}.name") for i, n in enumerate(self.spec.nodes)]

    def check(self, tree) -> list[tuple[str, str]]:
        spec = self.spec
        nodes = spec.nodes
        problems = (duplicates([n.name for n in nodes], "spec.nodes.{}.name", "node name")
                    + duplicates([n.id for n in nodes], "spec.nodes.{}.id", "node id")
                    + duplicates([n.address.split("/")[0] for n in nodes], "spec.nodes.{}.address", "node address"))
        if spec.rollout is not None:
            problems += spec.rollout.problems([n.name for n in nodes], spec.stack)
        if spec.stack == "none":
            for field in PACEMAKER_ONLY:
                if getattr(spec, field) is not None:
                    problems.append((f"spec.{field}", "only for stack: pacemaker"))
            if spec.properties:
                problems.append(("spec.properties", "only for stack: pacemaker"))
            for kind, m in _derived_resources(tree, self.metadata.name):
                what = "manager: pacemaker" if kind == "VirtualIP" else "spec.cluster"
                problems.append(("spec.stack", f"{kind} {m.metadata.name!r} ({what}) needs Pacemaker in this "
                                 "cluster: say stack: pacemaker, or place it with nodes"))
            return problems
        if spec.stonithEnabled is None:
            problems.append(("spec.stonithEnabled", "must be stated explicitly (true or false) for a Pacemaker "
                             "cluster: true needs a stonith ClusterResource, false is only safe without shared data"))
        for name, value in set_values(spec.properties).items():
            where = f"spec.properties.{name}" if isinstance(spec.properties, dict) else "spec.properties"
            if name == "stonith-enabled" and value == ("true" if spec.stonithEnabled else "false"):
                continue  # stated twice, the same way (an import keeps the CIB's explicit value)
            if name in RESERVED_PROPERTIES:
                problems.append((where, f"{name} is not allowed here: {RESERVED_PROPERTIES[name]}"))
        problems += _corosync_problems(spec)
        if not self.metadata.name[0].isalpha():
            problems.append(("metadata.name", "a Pacemaker cluster name must start with a letter"))
        problems += _cib_problems(self, tree)
        problems += _resource_name_clashes(self, tree)
        return problems


def _resource_name_clashes(cluster: Cluster, tree) -> list[tuple[str, str]]:
    """Pacemaker resources made from other kinds (a VirtualIP with manager pacemaker, a
    Container with spec.cluster) are named after their manifest: two of them with one name
    in this cluster would be one CIB id. (A ClusterResource checks its own name.)"""
    seen: dict[str, str] = {}
    problems = []
    for kind, manifest in _derived_resources(tree, cluster.metadata.name):
        name = manifest.metadata.name
        if name in seen and seen[name] != kind:
            problems.append(("metadata.name", f"{seen[name]} {name!r} and {kind} {name!r} would both be Pacemaker "
                             f"resource {name!r} in this cluster: rename one of them"))
        seen.setdefault(name, kind)
        if not name[0].isalpha():
            problems.append(("metadata.name", f"{kind} {name!r} becomes a Pacemaker resource in this cluster, and a "
                             "Pacemaker id must start with a letter: rename it"))
    return problems


def _derived_resources(tree, cluster: str) -> list[tuple[str, Manifest]]:
    return tree.memo(_derived_by_cluster).get(cluster, [])


def _derived_by_cluster(tree) -> dict[str, list[tuple[str, Manifest]]]:
    """Cluster name → the VirtualIPs (manager pacemaker) and Containers it places."""
    out: dict[str, list[tuple[str, Manifest]]] = {}
    for vip in tree.of_kind("VirtualIP"):
        if getattr(vip.spec, "manager", None) == "pacemaker" and getattr(vip.spec, "cluster", None) is not None:
            out.setdefault(vip.spec.cluster, []).append(("VirtualIP", vip))
    for ct in tree.of_kind("Container"):
        if getattr(ct.spec, "cluster", None) is not None:
            out.setdefault(ct.spec.cluster, []).append(("Container", ct))
    return out


TYPED_COROSYNC_KEYS = {
    "totem": {"version", "cluster_name", "transport", "crypto_cipher", "crypto_hash", "crypto_model", "keyfile",
              "token", "consensus", "join", "token_retransmits_before_loss_const", "token_coefficient",
              "max_messages", "link_mode", "ip_version", "cluster_uuid", "interface"},
    "quorum": {"provider", "two_node", "wait_for_all", "last_man_standing", "last_man_standing_window",
               "auto_tie_breaker", "auto_tie_breaker_node", "expected_votes", "device"},
}


def two_node(spec: ClusterSpec) -> bool:
    """Whether votequorum's two_node applies: stated, or two nodes without a quorum device."""
    if spec.quorum.twoNode is not None:
        return spec.quorum.twoNode
    return len(spec.nodes) == 2 and spec.quorum.device is None


def _corosync_problems(spec: ClusterSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    nodes = spec.nodes
    encrypted = spec.crypto != "none"
    if spec.transport != "knet":
        if spec.crypto is not None and spec.crypto != "none":
            problems.append(("spec.crypto", f"Corosync encrypts only the knet transport (this is {spec.transport}): "
                             "use transport: knet, or crypto: none"))
        elif spec.crypto is None:
            problems.append(("spec.crypto", f"Corosync encrypts only the knet transport: with transport: "
                             f"{spec.transport} say crypto: none explicitly (cluster traffic is then unencrypted)"))
        if spec.authkey is not None:
            problems.append(("spec.authkey", "Corosync encrypts only the knet transport; use transport: knet"))
    elif encrypted and spec.authkey is None:
        problems.append(("spec.crypto", "Corosync encryption is on by default: give spec.authkey (a key made by "
                         "corosync-keygen, as {file: /path} or {env: NAME}), or say crypto: none explicitly to run "
                         "the cluster's traffic unencrypted"))
    elif not encrypted and spec.authkey is not None:
        problems.append(("spec.authkey", "crypto: none uses no authkey: remove one of them"))
    counts = {len(n.link_addresses()) for n in nodes}
    if len(counts) > 1:
        problems.append(("spec.nodes", "every node needs an address on each link: the nodes list "
                         f"{', '.join(str(c) for c in sorted(counts))} addresses"))
    count = max(counts)
    if count > 1 and spec.transport != "knet":
        problems.append(("spec.nodes", f"several links need transport: knet (this is {spec.transport})"))
    if count > 8:
        problems.append(("spec.nodes", "knet has at most 8 links"))
    if spec.links is not None and len(spec.links) != count:
        problems.append(("spec.links", f"{len(spec.links)} link options for {count} links (each node has {count} "
                         "addresses)"))
    if spec.links is not None:
        numbers = [lk.number if lk.number is not None else i for i, lk in enumerate(spec.links)]
        problems += duplicates(numbers, "spec.links.{}.number", "link number")
    for i in range(count):
        families = {ipaddress.ip_address(n.link_addresses()[i]).version for n in nodes if len(n.link_addresses()) > i}
        if len(families) > 1:
            problems.append((f"spec.nodes", f"link {i} mixes IPv4 and IPv6 addresses: a link is one address family"))
        problems += duplicates([n.link_addresses()[i] for n in nodes if len(n.link_addresses()) > i],
                               "spec.nodes.{}.links", f"address on link {i}")
    q = spec.quorum
    if q.twoNode and len(nodes) != 2:
        problems.append(("spec.quorum.twoNode", f"two_node is for clusters of exactly two nodes (this has {len(nodes)})"))
    if q.twoNode and q.device is not None:
        problems.append(("spec.quorum.twoNode", "two_node and a quorum device exclude each other: the device breaks "
                         "the tie"))
    if q.lastManStandingWindow is not None and not q.lastManStanding:
        problems.append(("spec.quorum.lastManStandingWindow", "only with lastManStanding: true"))
    if q.autoTieBreakerNode is not None and not q.autoTieBreaker:
        problems.append(("spec.quorum.autoTieBreakerNode", "only with autoTieBreaker: true"))
    if q.device is not None and q.provider != "corosync_votequorum":
        problems.append(("spec.quorum.device", "a quorum device needs provider corosync_votequorum"))
    if q.device is not None and q.device.net.algorithm == "ffsplit" and q.device.votes not in (None, 1):
        problems.append(("spec.quorum.device.votes", "the ffsplit algorithm works only with votes: 1 "
                         "(corosync-qdevice refuses anything else)"))
    for section, keys in spec.corosync.items():
        if section == "nodelist":
            problems.append(("spec.corosync.nodelist", "the nodelist comes from spec.nodes"))
        for key in keys:
            if key in TYPED_COROSYNC_KEYS.get(section, ()):
                problems.append((f"spec.corosync.{section}.{key}", f"{section}.{key} is set by the typed fields of "
                                 "the Cluster (transport, crypto, token, totem, quorum, links)"))
    return problems


def _cib_problems(cluster: Cluster, tree) -> list[tuple[str, str]]:
    """References of the cluster-wide CIB sections: resources, devices, nodes."""
    from schemas.cluster_resource import resolve_problems

    spec, name = cluster.spec, cluster.metadata.name
    nodes = {n.name for n in spec.nodes}
    problems: list[tuple[str, str]] = []

    def ref(field: str, value: str) -> None:
        problems.extend((field, m) for m in resolve_problems(tree, name, value))

    for i, level in enumerate(spec.fencingLevels or []):
        if level.target is not None and level.target not in nodes:
            problems.append((f"spec.fencingLevels.{i}.target", f"node {level.target!r} is not in cluster {name!r}"))
        for j, device in enumerate(level.devices):
            ref(f"spec.fencingLevels.{i}.devices.{j}", device)
            m = tree.get("ClusterResource", device)
            if m is not None and m.spec.agent is not None and not m.spec.agent.startswith("stonith:"):
                problems.append((f"spec.fencingLevels.{i}.devices.{j}", f"{device!r} is not a fencing device "
                                 f"(its agent is {m.spec.agent}, not stonith:...)"))
    problems += duplicates([(lv.target or lv.targetPattern or lv.targetAttribute, lv.targetValue, lv.index)
                            for lv in spec.fencingLevels or []], "spec.fencingLevels.{}", "fencing level (target, index)")
    for i, tag in enumerate(spec.tags or []):
        for j, r in enumerate(tag.refs):
            ref(f"spec.tags.{i}.refs.{j}", r)
    for i, c in enumerate(spec.constraints or []):
        for field in ("resource", "with_", "first", "then"):
            value = getattr(c, field)
            if value is not None:
                ref(f"spec.constraints.{i}.{'with' if field == 'with_' else field}", value)
        for j, s in enumerate(c.sets or []):
            for k, r in enumerate(s.resources):
                ref(f"spec.constraints.{i}.sets.{j}.resources.{k}", r)
        if c.node is not None and c.node not in nodes:
            problems.append((f"spec.constraints.{i}.node", f"node {c.node!r} is not in cluster {name!r}"))
    ids = [c.id for c in spec.constraints or []] + [a.id for a in spec.alerts or []] + [t.id for t in spec.tags or []]
    problems += duplicates(ids, "spec.constraints.{}.id", "id")
    return problems
