"""Container: LXC system containers on this node, reconciled with the lxc-* tools.

observe
    One `lxc-ls -f -F NAME,STATE,PID -P PATH` per LXC path in use (normally one,
    /var/lib/lxc) gives every container's state in one process; each container's
    `PATH/NAME/config` is then read as a file (no process), and one `ip -j -d addr show`
    tells the node-local bridges (and, with Pacemaker-placed containers, one
    `cibadmin --query --local` their primitives and this node's attributes). We use the CLI rather than the python3-lxc bindings: every call then goes
    through the Runner (argv, timeout, the dry-run guard and the recorder see it), the
    parser is tested on recorded output, and nothing depends on the bindings existing for
    the interpreter the agent runs under (they are built for /usr/bin/python3 only).

desired
    Containers placed on this node by `spec.node`/`spec.nodes` (or everywhere), and
    containers placed by Pacemaker (`spec.cluster`) on every node of their cluster.

Pacemaker-placed containers (`spec.cluster`)
    The ClusterResource reconciler makes an `ocf:heartbeat:lxc` primitive of such a
    Container, and Pacemaker starts it on at most one node. This reconciler defines it on
    every node of the cluster (create, config, files, bridge) so that Pacemaker can start
    it on any of them, and leaves its run state to Pacemaker:
    - `state` is not desired here (running on this node or not is not drift), autostart is
      off (a node that boots must not start a second copy), and apply never starts, stops,
      freezes or thaws it while an lxc primitive for it is in the CIB.
    - Once it is defined here, the transient node attribute `reconcile-container-NAME=1`
      tells Pacemaker that this node can run it (the primitive's location rule keeps it off
      other nodes): Pacemaker never tries a node where it is not there yet.
    - A change that needs a restart is written to the config on every node, so that the next
      start anywhere takes it; where Pacemaker runs it, the config's block remembers what
      the running instance runs with (`# reconcile-running:` lines, valid for that instance
      only), observe reports those values, and the object stays `deferred` with "restart it
      through Pacemaker: crm_resource --restart -r NAME" until Pacemaker has restarted it.
    - Removal: the primitive goes first (ClusterResource applies after Container, so its
      deletes come before ours; on the DC it stops the container through Pacemaker, then
      removes the primitive). A container Pacemaker still runs here under a primitive is
      never destroyed: the delete is `deferred` until the primitive is gone (a later run
      then stops what is left and destroys it). A stopped copy loses its node attribute
      first, so that Pacemaker does not start it while it is being destroyed; its config
      stays until then, because the lxc agent's stop needs it.

apply
    create: `lxc-create` (busybox, download or local template, `dir` backing store), our
    block of config keys, the declared files in the root file system, then the state.
    update: rewrite our block of the config, files, then start/stop/freeze/thaw. A change
    of limits, network or init only takes effect when the container starts again: with
    `restartPolicy: onChange` apply stops and starts it; with `never` it leaves the running
    container and its config alone, does the rest, and reports the object `deferred`
    ("restart required") — the change is applied when the container is next found stopped.
    The config on disk therefore always says what the running container runs with.
    delete: stop, `lxc-destroy`; a node-local bridge this reconciler made goes with the
    last container on it.

watch
    `lxc-monitor` on our LXC paths: every state change (a container stopped or frozen by
    hand) makes the agent plan again. Hand edits of a config are found by the next plan.

Ownership: our config block starts with `# reconcile-managed: Container/NAME`. A container
whose config lacks that line for its own name (made by hand, or copied) is never
reconfigured, started, stopped or destroyed: the plan and apply report a conflict. To adopt
one, add the line to its config by hand. A bridge we create carries the link alias
`reconcile-managed`; a bridge without it is only used, never changed.
"""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from reconcilers import pacemaker
from reconcilers.base import (
    GENERATED_HEADER, ApplyError, AtomicWriter, Change, CommandError, Deferred, Desired, HealthReport, Node, PerObject,
    UnsafeValue, one_line, short_diff,
)
from reconcilers.container_health import container_health, init_of
from schemas.common import duration_ms

log = logging.getLogger("reconcile")

DEFAULT_LXC_PATH = "/var/lib/lxc"
MARKER = "# reconcile-managed: Container/"
END_MARKER = "# reconcile-managed: end"
SOURCE_TAG = "# reconcile-source: "
STOP_TAG = "# reconcile-stop-timeout: "
CLUSTER_TAG = "# reconcile-cluster: "  # placed by the Pacemaker of this cluster
RUNNING_INSTANCE_TAG = "# reconcile-running-instance: "  # PID:start time the running lines hold for
RUNNING_TAG = "# reconcile-running: "  # a restart key as the running instance has it
BRIDGE_ALIAS = "reconcile-managed"
PATHS_FILE = "container-lxc-paths.json"  # LXC paths we created containers in, under the state dir
INVALID = "invalid-config"  # observed state of a container whose config LXC refuses to load
ATTRIBUTE_WAIT = 10.0  # seconds for attrd to write a node attribute to the CIB

# Config keys this reconciler owns: set in our block, removed anywhere else in the file.
LIVE_KEYS = ("lxc.start.auto", "lxc.start.order")  # read by lxc-autostart: no restart needed
LIMIT_KEYS = {  # (cgroup v1 key, cgroup v2 key)
    "memory": ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max"),
    "cpus": ("lxc.cgroup.cpuset.cpus", "lxc.cgroup2.cpuset.cpus"),
    "cpuWeight": ("lxc.cgroup.cpu.shares", "lxc.cgroup2.cpu.weight"),
}
_LIMIT_CONTROLLER = {"memory": "memory", "cpus": "cpuset", "cpuWeight": "cpu"}
RESTART_FIELDS = ("limits", "network.type", "network.bridge", "network.address", "init")


def owned_key(key: str) -> bool:
    return (key in LIVE_KEYS or key == "lxc.init.cmd" or key == "lxc.net" or key.startswith("lxc.net.")
            or any(key in pair for pair in LIMIT_KEYS.values()))


def restart_key(key: str) -> bool:
    return owned_key(key) and key not in LIVE_KEYS


# --- host facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupLayout:
    """Which resource controllers sit on cgroup v2 (`lxc.cgroup2.*` keys) and which on a v1
    hierarchy (`lxc.cgroup.*`): a Debian 12 host boots pure v2, hybrid hosts (like this
    project's build machines) keep memory, cpuset and cpu on v1."""

    v1: frozenset[str] = frozenset()

    def v2(self, controller: str) -> bool:
        return controller not in self.v1

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo") -> "CgroupLayout":
        try:
            text = Path(mountinfo).read_text()
        except OSError:
            return cls()
        return cls.parse(text)

    @classmethod
    def parse(cls, mountinfo_text: str) -> "CgroupLayout":
        v1: set[str] = set()
        for line in mountinfo_text.splitlines():
            _, _, after = line.partition(" - ")
            parts = after.split()
            if len(parts) >= 3 and parts[0] == "cgroup":
                v1.update(o for o in parts[2].split(",") if o in ("memory", "cpuset", "cpu"))
        return cls(frozenset(v1))


# --- parsing what LXC and iproute2 print -----------------------------------------------------


def parse_lxc_ls(text: str) -> dict[str, str]:
    """`lxc-ls -f -F NAME,STATE[,PID]` → {name: state}, state lower-cased (running, stopped, frozen…)."""
    return {name: state for name, (state, _) in parse_lxc_ls_pids(text).items()}


def parse_lxc_ls_pids(text: str) -> dict[str, tuple[str, int | None]]:
    """`lxc-ls -f -F NAME,STATE,PID` → {name: (state, PID of its init or None)}."""
    out: dict[str, tuple[str, int | None]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) not in (2, 3) or cols[0] == "NAME":
            continue
        pid = cols[2] if len(cols) == 3 else ""
        out[cols[0]] = (cols[1].lower(), int(pid) if pid.isdigit() else None)
    return out


def instance_of(pid: int | None, proc: str = "/proc") -> str | None:
    """"PID:start time" of a running container's init: names one run of the container (a
    PID alone could be reused by a later run)."""
    if pid is None:
        return None
    try:
        stat_line = Path(proc, str(pid), "stat").read_text()
        return f"{pid}:{stat_line.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


def parse_config(text: str) -> dict[str, list[str]]:
    """An LXC config file → {key: [values in order]}. An empty value clears a key, as LXC
    does; surrounding quotes are removed (templates write `lxc.uts.name = "c1"`)."""
    values: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if value == "":
            values[key] = []
        else:
            values.setdefault(key, []).append(value)
    return values


def _last(values: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        if values.get(key):
            return values[key][-1]
    return None


_SIZE = re.compile(r"^([0-9]+)\s*([KMGT]?)i?B?$", re.I)
_UNITS = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]


def canonical_memory(value: str | None) -> str | None:
    """64M, 65536K and 67108864 are one limit: write it in the largest exact unit."""
    if value is None:
        return None
    m = _SIZE.match(value.strip())
    if not m:
        return value  # unknown form (e.g. "max"): shown as it is
    n = int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    for unit, size in _UNITS:
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def canonical_cpus(value: str | None) -> str | None:
    """0,1,2 and 0-2 are one CPU set: write it as sorted ranges."""
    if value is None:
        return None
    try:
        cpus: set[int] = set()
        for part in value.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return value
    ranges, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
        else:
            if run:
                ranges.append(run)
            run = [cpu]
    if run:
        ranges.append(run)
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in ranges)


def shares_of_weight(weight: int) -> int:
    """cgroup v1 cpu.shares for a v2 cpu.weight (as systemd maps them: 100 ↔ 1024)."""
    return max(2, round(weight * 1024 / 100))


def weight_of_shares(shares: int) -> int:
    return max(1, round(shares * 100 / 1024))


def marker_name(text: str) -> str | None:
    """The container name in our ownership marker, if the config has one."""
    for line in text.splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER):].strip()
    return None


def _tag(text: str, tag: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(tag):
            return line[len(tag):].strip()
    return None


def observed_from_config(name: str, lxc_path: str, text: str, state: str) -> dict[str, Any]:
    """The normalized state of one container from its config file and its run state.

    `network.bridgeAddress`, `files` and `pacemaker.mayRunHere` are filled in by the caller
    (they are not in the config file)."""
    values = parse_config(text)
    cluster = _tag(text, CLUSTER_TAG)
    memory = _last(values, LIMIT_KEYS["memory"][1], LIMIT_KEYS["memory"][0])
    cpus = _last(values, LIMIT_KEYS["cpus"][1], LIMIT_KEYS["cpus"][0])
    weight_v2 = _last(values, LIMIT_KEYS["cpuWeight"][1])
    shares_v1 = _last(values, LIMIT_KEYS["cpuWeight"][0])
    cpu_weight: Any = None
    if weight_v2 is not None:
        cpu_weight = int(weight_v2) if weight_v2.isdigit() else weight_v2
    elif shares_v1 is not None:
        cpu_weight = weight_of_shares(int(shares_v1)) if shares_v1.isdigit() else f"cpu.shares {shares_v1}"
    order = _last(values, "lxc.start.order")
    init = _last(values, "lxc.init.cmd")
    return {
        "managed": marker_name(text) == name,
        "lxcPath": lxc_path,
        "source": _tag(text, SOURCE_TAG),
        "state": state,
        "autostart": _last(values, "lxc.start.auto") == "1",
        "startOrder": int(order) if order is not None and order.isdigit() else order,
        "limits": {"memory": canonical_memory(memory), "cpus": canonical_cpus(cpus), "cpuWeight": cpu_weight},
        "network": _network_of(values),
        "init": init.split() if init else None,
        "rootfs": canonical_rootfs(_last(values, "lxc.rootfs.path")),
        "files": {},
        "pacemaker": {"cluster": cluster, "mayRunHere": False} if cluster else None,
    }


def running_view(text: str, instance: str | None) -> str:
    """The config as the running instance `instance` has it: its restart keys replaced by
    the `# reconcile-running:` lines, when our block holds them for that very instance
    (written while Pacemaker ran it with older settings); else the config unchanged."""
    if instance is None or _tag(text, RUNNING_INSTANCE_TAG) != instance:
        return text
    kept = [line for line in text.splitlines() if not _is_restart_setting(line)]
    running = [line[len(RUNNING_TAG):] for line in text.splitlines() if line.startswith(RUNNING_TAG)]
    return "\n".join(kept + running) + "\n"


def _is_restart_setting(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#") and "=" in stripped \
        and restart_key(stripped.partition("=")[0].strip())


def _network_of(values: dict[str, list[str]]) -> dict[str, Any]:
    lxc_type = _last(values, "lxc.net.0.type")
    link = _last(values, "lxc.net.0.link")
    addresses = values.get("lxc.net.0.ipv4.address", [])
    if lxc_type in (None, "empty", "none"):
        kind = "none"
    elif lxc_type == "veth" and link:
        kind = "bridge"
    else:
        kind = lxc_type
    more = {k.split(".")[2] for k in values if re.match(r"^lxc\.net\.[1-9][0-9]*\.", k) and values[k]}
    if more:
        kind += f" (+{len(more)} more interface{'s' if len(more) > 1 else ''})"
    return {
        "type": kind,
        "bridge": link if lxc_type == "veth" else None,
        "address": ",".join(addresses) if addresses else None,
        "bridgeAddress": None,
    }


@dataclass
class Link:
    name: str
    kind: str | None  # "bridge", "veth", …
    master: str | None
    up: bool
    ours: bool  # carries our alias
    ipv4: list[str] = field(default_factory=list)  # "a.b.c.d/n"


def parse_links(ip_json: str) -> dict[str, Link]:
    """`ip -j -d addr show` → {ifname: Link}."""
    links: dict[str, Link] = {}
    for entry in json.loads(ip_json or "[]"):
        name = entry.get("ifname")
        if not name:
            continue
        links[name] = Link(
            name=name,
            kind=(entry.get("linkinfo") or {}).get("info_kind"),
            master=entry.get("master"),
            up="UP" in entry.get("flags", []),
            ours=entry.get("ifalias") == BRIDGE_ALIAS,
            ipv4=[f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if a.get("family") == "inet"],
        )
    return links


def parse_monitor_line(line: str) -> tuple[str, str] | None:
    """`'app1' changed state to [STOPPED]` (lxc-monitor) → ("app1", "STOPPED")."""
    m = re.match(r"^'([^']+)' (?:changed state to|exited with status) \[([^\]]+)\]", line.strip())
    if not m:
        return None
    what = m.group(2) if "changed state" in line else f"exited with status {m.group(2)}"
    return m.group(1), what


def observed_bridge_address(links: dict[str, Link], bridge: str, want: str) -> str | None:
    """What the node has where the manifest wants `want` on `bridge`: `want` itself when the
    bridge is up with it, else what is there instead (None: no such bridge)."""
    link = links.get(bridge)
    if link is None:
        return None
    if link.kind != "bridge":
        return f"(not a bridge: {link.kind or 'unknown'})"
    if want in link.ipv4:
        return want if link.up else f"{want} (link down)"
    return ",".join(link.ipv4) or "(no address)"


# --- rendering -------------------------------------------------------------------------------


def lxc_value(value: Any) -> str:
    """The value of a `key = value` line of an LXC config, as it is; refused (UnsafeValue)
    when LXC would read it otherwise: a control character or line separator (a newline
    would start another key), an empty value (it clears the key), blanks at either end
    (LXC drops them) or a leading quote (LXC removes a pair of quotes around a value)."""
    text = one_line(str(value), "an LXC config line", max_length=4096)
    if not text or text != text.strip(" \t") or text[0] in "'\"":
        raise UnsafeValue(f"LXC config: refused to write {text!r}: a value there may not be empty, start or end "
                          "with a blank, or start with a quote")
    return text


def lxc_init_cmd(args: list[str]) -> str:
    """lxc.init.cmd for an argv: LXC splits the value at blanks (a word may be quoted, but
    nothing inside a quote can be escaped), so each argument must be one word without
    blanks that does not start with a quote."""
    for arg in args:
        if not arg or any(c.isspace() for c in arg) or arg[0] in "'\"":
            raise UnsafeValue(f"LXC config: refused init argument {arg!r}: LXC would not read it back as one "
                              "argument (blanks, a leading quote, or empty)")
    return lxc_value(" ".join(args))


def lxc_comment(text: str) -> str:
    """Text after a '#' of an LXC config: anything on one line."""
    return one_line(text, "an LXC config comment", max_length=4096)



def source_of(spec: Any) -> str:
    """Where the root file system came from: fixed at creation, recorded in our block."""
    if spec.template == "download":
        d = spec.download
        return f"download {d.distribution}/{d.release}/{d.architecture}"
    if spec.template == "local":
        return f"local rootfs={spec.local.rootfs} metadata={spec.local.metadata}"
    return spec.template


def veth_pair_name(name: str) -> str:
    """The host side of the container's veth (≤ 15 characters), fixed so that apply can put
    it back on a bridge that was deleted and made again while the container ran."""
    if len(name) <= 12:
        return f"rc-{name}"
    return f"rc-{name[:6]}-{hashlib.sha256(name.encode()).hexdigest()[:5]}"


def render_settings(name: str, state: dict[str, Any], layout: CgroupLayout) -> list[tuple[str, str]]:
    """The LXC config keys of one container's normalized desired state, in file order."""
    out = [("lxc.start.auto", "1" if state["autostart"] else "0")]
    if state["startOrder"] is not None:
        out.append(("lxc.start.order", str(state["startOrder"])))
    limits = state["limits"]
    for field_name, (v1_key, v2_key) in LIMIT_KEYS.items():
        value = limits.get(field_name)
        if value is None:
            continue
        v2 = layout.v2(_LIMIT_CONTROLLER[field_name])
        if field_name == "cpuWeight" and not v2:
            value = shares_of_weight(value)
        out.append((v2_key if v2 else v1_key, str(value)))
    net = state["network"]
    if net["type"] == "bridge":
        out += [("lxc.net.0.type", "veth"), ("lxc.net.0.link", net["bridge"]), ("lxc.net.0.flags", "up"),
                ("lxc.net.0.name", "eth0"), ("lxc.net.0.veth.pair", veth_pair_name(name))]
        if net["address"]:
            out.append(("lxc.net.0.ipv4.address", net["address"]))
        # no lxc.net.0.ipv4.gateway: a container never gets a default route from us
    else:
        out.append(("lxc.net.0.type", "empty"))
    if state["init"]:
        out.append(("lxc.init.cmd", lxc_init_cmd(state["init"])))
    return out


def render_block(name: str, source: str, stop_seconds: int, settings: list[tuple[str, str]],
                 cluster: str | None = None, running: tuple[str, list[tuple[str, str]]] | None = None) -> str:
    """Our block of a container's config. `cluster`: Pacemaker of that cluster places it.
    `running`: (instance, restart keys) the instance Pacemaker runs here has, while the
    settings above already say what its next start takes."""
    c = lxc_comment
    lines = [f"{MARKER}{c(name)}", f"# {GENERATED_HEADER}", f"{SOURCE_TAG}{c(source)}", f"{STOP_TAG}{c(str(stop_seconds))}"]
    if cluster:
        lines.append(f"{CLUSTER_TAG}{c(cluster)}")
    lines += [f"{lxc_value(k)} = {lxc_value(v)}" for k, v in settings]
    if running:
        lines.append(f"{RUNNING_INSTANCE_TAG}{c(running[0])}")
        lines += [f"{RUNNING_TAG}{c(k)} = {c(v)}" for k, v in running[1]]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def merge_config(existing: str, block: str) -> str:
    """The config with our block (last, so its keys win) and our keys nowhere else."""
    kept: list[str] = []
    inside = False
    for line in existing.splitlines():
        stripped = line.strip()
        if stripped.startswith(MARKER):
            inside = True
            continue
        if inside:
            if stripped == END_MARKER:
                inside = False
            continue
        if stripped and not stripped.startswith("#") and "=" in stripped:
            if owned_key(stripped.partition("=")[0].strip()):
                continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return ("\n".join(kept) + "\n\n" if kept else "") + block


def restart_settings_of(existing: str) -> list[tuple[str, str]]:
    """The restart-relevant keys as the config has them now (kept while the container runs
    under restartPolicy: never), as LXC reads them: quotes around a value removed, and an
    empty value taking the values before it away, so that each can be written again."""
    out: list[tuple[str, str]] = []
    for raw in existing.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = (part.strip() for part in line.partition("="))
            if not restart_key(key):
                continue
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if value:
                out.append((key, value))
            else:
                out = [kv for kv in out if kv[0] != key]
    return out


def running_settings(existing: str, instance: str) -> list[tuple[str, str]]:
    """The restart keys the running instance `instance` has: the `# reconcile-running:`
    lines when our block holds them for it, else the keys of the config as it is (the
    config it was started with)."""
    return restart_settings_of(running_view(existing, instance))


def config_path(lxc_path: str, name: str) -> str:
    """Where a container's config lives: what lxc-create makes and the lxc primitive's
    `config` parameter names."""
    return f"{lxc_path.rstrip('/') or ''}/{name}/config"


def create_argv(name: str, lxc_path: str, spec: Any, config_file: str) -> list[str]:
    argv = ["lxc-create", "-n", name, "-P", lxc_path, "-B", "dir", "-t", spec.template, "-f", config_file]
    if spec.template == "download":
        d = spec.download
        argv += ["--", "--dist", d.distribution, "--release", d.release, "--arch", d.architecture]
    elif spec.template == "local":
        argv += ["--", "--metadata", spec.local.metadata, "--fstree", spec.local.rootfs]
    return argv


def restart_changes(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The fields that differ and only take effect when the container starts again."""
    out = []
    for path in RESTART_FIELDS:
        a, b = have, want
        for part in path.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        if path == "limits":
            out += [f"limits.{k}" for k in b if a.get(k) != b.get(k)]
        elif a != b:
            out.append(path)
    return out


def file_digest(data: bytes | None) -> str | None:
    return None if data is None else "sha256:" + hashlib.sha256(data).hexdigest()[:16]


# --- files in the root file system, never through a symlink ---------------------------------


def canonical_rootfs(value: str | None) -> str | None:
    """lxc.rootfs.path with its backing store said (`/x` is `dir:/x`), as lxc-create -B dir writes it."""
    if value is None or ":" in value:
        return value
    return f"dir:{value}"


def created_rootfs(lxc_path: str, name: str) -> str:
    """Where `lxc-create -B dir` puts a container's root file system: the only place
    reconcile writes files into or lets `lxc-destroy` delete."""
    return f"dir:{lxc_path.rstrip('/')}/{name}/rootfs"


@dataclass(frozen=True)
class RootFs:
    """A container's root file system where reconcile created it (`LXCPATH/NAME/rootfs`),
    never a path read from its config: a config edited by hand could name /etc. The LXC
    path is the manifest's; NAME and rootfs below it are opened without following a
    symlink, so that nothing there leads out of it."""

    lxc_path: str
    name: str

    def open(self) -> int:
        return _descend(os.open(self.lxc_path, os.O_RDONLY | os.O_DIRECTORY), (self.name, "rootfs"), create=False)

    def __str__(self) -> str:
        return created_rootfs(self.lxc_path, self.name).removeprefix("dir:")


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _descend(fd: int, parts: Iterable[str], create: bool) -> int:
    """Open each folder of `parts` in turn below the open folder `fd`, never through a
    symlink (making missing ones if `create`) → the last one's fd. `fd` is closed."""
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _walk(rootfs: "Path | RootFs", inner: str, create: bool) -> tuple[int, str]:
    """Open the folder holding `inner` below `rootfs` without following any symlink (a
    process in the container controls those) → (dir fd, file name)."""
    parts = [p for p in inner.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise OSError(f"not a file below the root file system: {inner!r}")
    fd = rootfs.open() if isinstance(rootfs, RootFs) else os.open(rootfs, _DIR_NOFOLLOW)
    return _descend(fd, parts[:-1], create), parts[-1]


def read_rootfs_file(rootfs: "Path | RootFs", inner: str) -> bytes | None:
    """The content of a regular file below `rootfs`, or None (absent, not a regular file,
    or reached only through a symlink)."""
    try:
        fd, leaf = _walk(rootfs, inner, create=False)
    except OSError:
        return None
    try:  # O_NONBLOCK: a FIFO planted there must not hang the agent
        f = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(f, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read()


def write_rootfs_file(node: Node, rootfs: "Path | RootFs", inner: str, data: bytes) -> bool:
    """Install `data` at `inner` in the container's root file system: temp file, fsync,
    rename, with no symlink followed on the way. False when it was already there."""
    if read_rootfs_file(rootfs, inner) == data:
        return False
    node.runner.guard("write", [f"{rootfs}{inner}"], read_only=False)
    try:
        fd, leaf = _walk(rootfs, inner, create=True)
    except OSError as err:
        raise ApplyError(f"files: cannot create the folder of {inner} in {rootfs}: {err.strerror} "
                         "(a symlink or a file is in the way)") from None
    tmp = f".{leaf}.reconcile.tmp"
    try:
        f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            os.write(f, data)
            os.fchmod(f, 0o644)
            os.fsync(f)
        finally:
            os.close(f)
        os.rename(tmp, leaf, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
    except OSError as err:
        try:
            os.unlink(tmp, dir_fd=fd)
        except OSError:
            pass
        raise ApplyError(f"files: cannot write {inner} in {rootfs}: {err.strerror}") from None
    finally:
        os.close(fd)
    return True


# --- LXC's own parser, on a scratch LXC path -------------------------------------------------

LXC_LOCK_DIR = Path("/run/lxc/lock")
"""Where LXC, run as root, makes a lock folder for every LXC path it opens a container in
(/run/lxc/lock/<lxcpath>/.<name>), even only to read its config: one per scratch path."""


@contextlib.contextmanager
def scratch_lxc_path(lock_dir: Path = LXC_LOCK_DIR) -> Iterator[Path]:
    """A temporary LXC path for checking configs with LXC's own parser, removed afterwards
    together with exactly what LXC made for it under `lock_dir`: the lock folder named
    after this (unique) path, and the folders above it that did not exist before, if they
    are empty (another LXC user may have put something there since). A dry-run and
    `validate` leave nothing behind."""
    tmp = Path(tempfile.mkdtemp(prefix="reconcile-lxc-check-"))
    lock = lock_dir / str(tmp).lstrip("/")
    made = [d for d in [lock.parent, *lock.parent.parents] if d.is_relative_to(lock_dir.parent) and not d.exists()]
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(lock, ignore_errors=True)
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break


# --- the reconciler --------------------------------------------------------------------------


class ContainerReconciler(PerObject):
    """LXC containers placed on this node: create, configure, run/stop/freeze, destroy; for
    containers Pacemaker places (spec.cluster), everything but their run state."""

    kind = "Container"

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}  # name → ContainerSpec of what lands here
        self.wanted: dict[str, dict[str, Any]] = {}  # name → normalized desired state
        self.cluster_placed: set[str] = set()  # Pacemaker runs them: their run state is not ours
        self.invalid: dict[str, str] = {}  # name → why LXC refuses its config
        self.instances: dict[str, str] = {}  # name → "PID:start" of a running container's init
        self.primitives: dict[str, str] | None = None  # container → its lxc primitive (None: no CIB)
        self._links: dict[str, Link] | None = None
        self._layout: CgroupLayout | None = None

    @property
    def layout(self) -> CgroupLayout:
        if self._layout is None:
            self._layout = CgroupLayout.detect()
        return self._layout

    # --- desired ---------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.cluster_placed = {m.metadata.name for m in tree.of_kind("Container") if m.spec.cluster is not None}
        out: dict[str, Desired] = {}
        for m in tree.on_node("Container", node.name):
            name, spec = m.metadata.name, m.spec
            placed = spec.cluster is not None
            state = {
                "managed": True,
                "lxcPath": spec.lxcPath,
                "source": source_of(spec),
                # Pacemaker decides where it runs: no run state here (ignored below), and
                # never started at boot (a second copy); the schema refuses autostart then.
                "state": None if placed else spec.state,
                "autostart": False if placed else spec.autostart,
                "startOrder": None if placed else spec.startOrder,
                "limits": {"memory": canonical_memory(spec.limits.memory),
                           "cpus": canonical_cpus(spec.limits.cpus), "cpuWeight": spec.limits.cpuWeight},
                "network": {"type": spec.network.type, "bridge": spec.network.bridge,
                            "address": spec.network.address, "bridgeAddress": spec.network.bridgeAddress},
                "init": list(spec.init) if spec.init else None,
                "rootfs": created_rootfs(spec.lxcPath, name),
                "files": {path: file_digest(content.encode()) for path, content in sorted(spec.files.items())},
                "pacemaker": {"cluster": spec.cluster, "mayRunHere": True} if placed else None,
            }
            self.specs[name] = spec
            self.wanted[name] = state
            if placed:
                out[name] = Desired(state, ignore=("/state",), depends=(("Cluster", spec.cluster),))
            else:
                out[name] = Desired(state)
        return {self.kind: out}

    # --- observe ---------------------------------------------------------------------------

    def lxc_paths(self, node: Node) -> list[str]:
        """The LXC paths to look in: the desired ones first, the default, and every path we
        ever created a container in (so a manifest removed from git is still found)."""
        paths = [s.lxcPath for s in self.specs.values()] + [DEFAULT_LXC_PATH]
        try:
            paths += json.loads((node.state_dir / PATHS_FILE).read_text())
        except (OSError, ValueError):
            pass
        return list(dict.fromkeys(p for p in paths if isinstance(p, str)))

    def links(self, node: Node, fresh: bool = False) -> dict[str, Link]:
        if self._links is None or fresh:
            self._links = parse_links(node.run(["ip", "-j", "-d", "addr", "show"], read_only=True).stdout)
        return self._links

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, Any]] = {}
        self.invalid = {}
        for lxc_path in self.lxc_paths(node):
            for name, obs in self._observe_path(node, lxc_path).items():
                out.setdefault(name, obs)
        if any(o["network"]["type"] == "bridge" for o in out.values()) or \
                any(w["network"]["bridgeAddress"] for w in self.wanted.values()):
            links = self.links(node, fresh=True)
            for name, obs in out.items():
                want = self.wanted.get(name)
                if want and want["network"]["bridgeAddress"] and obs["network"]["bridge"]:
                    obs["network"]["bridgeAddress"] = observed_bridge_address(
                        links, obs["network"]["bridge"], want["network"]["bridgeAddress"])
        self.primitives = None
        if any(o["pacemaker"] for o in out.values()) or any(w["pacemaker"] for w in self.wanted.values()):
            attributes = self._read_cib(node)
            for name, obs in out.items():
                if obs["pacemaker"]:
                    value = attributes.get(pacemaker.container_attribute(name))
                    obs["pacemaker"]["mayRunHere"] = value == pacemaker.CONTAINER_ATTRIBUTE_VALUE
        return {self.kind: out}

    def _read_cib(self, node: Node) -> dict[str, str]:
        """One `cibadmin --query --local`: the lxc primitives (`self.primitives`) and this
        node's transient attributes. Without a running Pacemaker: none of either."""
        try:
            cib = pacemaker.query_cib(node, local=True)
        except pacemaker.CibUnavailable:
            self.primitives = None
            return {}
        self.primitives = pacemaker.lxc_primitives(cib)
        return pacemaker.node_attributes(cib, node.name)

    def _observe_path(self, node: Node, lxc_path: str) -> dict[str, dict[str, Any]]:
        root = Path(lxc_path)
        try:
            defined = sorted(e.name for e in os.scandir(root) if e.is_dir() and (root / e.name / "config").is_file())
        except OSError:
            return {}  # no such folder: no containers there
        if not defined:
            return {}
        r = node.run(["lxc-ls", "-f", "-F", "NAME,STATE,PID", "-P", lxc_path, "-l", "ERROR"], read_only=True)
        listed = parse_lxc_ls_pids(r.stdout)
        out: dict[str, dict[str, Any]] = {}
        for name in defined:
            try:
                text = (root / name / "config").read_text(errors="replace")
            except OSError:
                continue
            want = self.wanted.get(name)
            if marker_name(text) != name and (want is None or want["lxcPath"] != lxc_path):
                continue  # not ours, and not in the way of one we want: not our business
            state, pid = listed.get(name, (None, None))
            if state is None:  # lxc-ls skips a container whose config does not load
                state = INVALID
                self.invalid[name] = _why_invalid(r.stderr, name)
            instance = instance_of(pid)
            if instance is not None:
                self.instances[name] = instance
            else:
                self.instances.pop(name, None)
            obs = observed_from_config(name, lxc_path, running_view(text, instance), state)
            if obs["rootfs"] == created_rootfs(lxc_path, name) and not _rootfs_in_place(lxc_path, name):
                obs["rootfs"] += " (reached through a symlink)"
            if want and want["files"] and obs["managed"]:
                if obs["rootfs"] == created_rootfs(lxc_path, name):
                    rootfs = RootFs(lxc_path, name)
                    obs["files"] = {p: file_digest(read_rootfs_file(rootfs, p)) for p in want["files"]}
                else:  # not read from wherever the config points
                    obs["files"] = {p: "(not looked at: root file system elsewhere)" for p in want["files"]}
            out[name] = obs
        return out

    # --- health ------------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """Running as git says, and its init alive and not stopped (from observe's lxc-ls
        and the init's /proc entry: no process of its own)."""
        seen = observed.get(self.kind, {})
        return {self.kind: {name: container_health(d.state, seen.get(name), init_of(self.instances.get(name)))
                            for name, d in desired.get(self.kind, {}).items()}}

    # --- validate and explain ----------------------------------------------------------------

    def validate(self, node: Node) -> list[str]:
        """LXC itself parses every rendered config block: one `lxc-ls` over a temp LXC path.
        A container Pacemaker places must live in LXC's default path (`lxc-config`)."""
        if not self.wanted:
            return []
        problems: list[str] = []
        if any(w["pacemaker"] for w in self.wanted.values()):
            r = node.run(["lxc-config", "lxc.lxcpath"], read_only=True, check=False)
            default = r.stdout.strip() or DEFAULT_LXC_PATH
            problems += [p for name, w in sorted(self.wanted.items()) if w["pacemaker"]
                         for p in [lxc_path_problem(name, w["lxcPath"], default)] if p]
        rendered: dict[str, str] = {}
        for name, state in sorted(self.wanted.items()):
            try:
                rendered[name] = f"lxc.uts.name = {lxc_value(name)}\n" + \
                    render_block(name, state["source"], 0, render_settings(name, state, self.layout))
            except UnsafeValue as err:
                problems.append(f"{name}: {err}")
        if not rendered:
            return problems
        with scratch_lxc_path() as tmp:
            for name, text in rendered.items():
                (tmp / name).mkdir()
                (tmp / name / "config").write_text(text)
            r = node.run(["lxc-ls", "-1", "-P", str(tmp), "-l", "ERROR"], read_only=True, check=False)
        listed = set(r.stdout.split())
        return problems + [f"{name}: LXC refuses the rendered config: {_why_invalid(r.stderr, name)}"
                           for name in rendered if name not in listed]

    def explain(self, change: Change, node: Node) -> list[str]:
        have, want = change.observed or {}, change.desired or {}
        name = change.name
        notes: list[str] = []
        if have and not have.get("managed"):
            return [_conflict(name, have.get("lxcPath", "?"))]
        if have and have.get("rootfs") != created_rootfs(have.get("lxcPath", "?"), name):
            return [_rootfs_conflict(name, have.get("lxcPath", "?"), have.get("rootfs"))]
        if name in self.invalid:
            notes.append(f"its config does not load: {self.invalid[name]}")
        running = have.get("state") in ("running", "frozen")
        primitive = (self.primitives or {}).get(name)
        if change.action == "create":
            if want["pacemaker"]:
                cluster = want["pacemaker"]["cluster"]
                notes.append(f"create from {want['source']} in {want['lxcPath']}, not started: Pacemaker of cluster "
                             f"{cluster} starts it on one node (ocf:heartbeat:lxc primitive {name})")
                notes.append(_attribute_note(name))
            else:
                notes.append(f"create from {want['source']} in {want['lxcPath']}, then {want['state']}")
        elif change.action == "delete":
            if have.get("pacemaker") and primitive and running:
                notes.append(f"destroy waits: Pacemaker runs it here (primitive {primitive}); it is destroyed once "
                             "the DC has stopped it through Pacemaker and removed that primitive (on the DC in "
                             "this run, elsewhere on a later one)")
            elif have.get("pacemaker") and primitive:
                notes.append(f"destroy: node attribute {pacemaker.container_attribute(name)} is removed first "
                             "(Pacemaker no longer starts it here), then lxc-destroy (its root file system is deleted)")
            else:
                notes.append("destroy: stop it, then lxc-destroy (its root file system is deleted)")
            return notes
        else:
            if have.get("lxcPath") != want["lxcPath"] or have.get("source") != want["source"]:
                return notes + [_immovable(name, have, want)]
            notes += self._file_diffs(name, have, want)
            fields = restart_changes(have, want)
            if want["pacemaker"]:
                if not have.get("pacemaker"):
                    notes.append(f"from now on Pacemaker of cluster {want['pacemaker']['cluster']} starts and stops "
                                 "it: its run state here is left to Pacemaker")
                if fields and running:
                    notes.append(_restart_through_pacemaker(name, fields))
                elif fields:
                    notes.append(f"{', '.join(fields)}: taken when Pacemaker next starts it here")
                if not (have.get("pacemaker") or {}).get("mayRunHere"):
                    notes.append(_attribute_note(name))
                notes += self._bridge_note(want)
                return notes
            if have.get("pacemaker") and primitive:
                notes.append(f"waits until the lxc primitive {primitive} is gone from the CIB: until then its run "
                             "state is Pacemaker's")
            if fields and running and want["state"] != "stopped":
                policy = self.specs[name].restartPolicy
                if policy == "onChange":
                    notes.append(f"restart required ({', '.join(fields)}): restartPolicy onChange, "
                                 "apply stops and starts the container")
                else:
                    notes.append(f"restart required ({', '.join(fields)}): restartPolicy never, the running "
                                 "container is left alone; the change waits for its next start")
            elif fields and want["state"] != "stopped":
                notes.append(f"{', '.join(fields)}: taken at the next start")
        return notes + self._bridge_note(want)

    def _file_diffs(self, name: str, have: dict[str, Any], want: dict[str, Any]) -> list[str]:
        """What changes in each file written into the container: a short unified diff (the
        content is in git, never a secret), read from its root file system."""
        seen = have.get("files") or {}
        changed = [path for path, digest in (want.get("files") or {}).items() if seen.get(path) != digest]
        spec = self.specs.get(name)
        if not changed or spec is None:
            return []
        rootfs = RootFs(want["lxcPath"], name)  # only where reconcile created it, never through a symlink
        try:
            os.close(rootfs.open())
        except OSError:
            return []  # no root file system of ours to compare with
        out: list[str] = []
        for path in changed:
            data = read_rootfs_file(rootfs, path)
            before = data.decode(errors="replace") if data is not None else None
            out += short_diff(before, spec.files[path], path)
        return out

    def _bridge_note(self, want: dict[str, Any]) -> list[str]:
        net = want.get("network") or {}
        if net.get("bridgeAddress") and self._links is not None:
            got = observed_bridge_address(self._links, net["bridge"], net["bridgeAddress"])
            if got is None:
                return [f"bridge {net['bridge']} with {net['bridgeAddress']} is created on this node"]
        return []

    # --- apply -------------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        if change.action == "delete":
            self._destroy(change, node)
            return
        spec = self.specs[change.name]
        config = Path(spec.lxcPath) / change.name / "config"
        if change.observed is None and not config.exists():
            self._create(change, node)
        else:
            self._update(change, node)

    def _create(self, change: Change, node: Node) -> None:
        name, want, spec = change.name, change.desired or {}, self.specs[change.name]
        self._ensure_bridge(node, name)
        settings = render_settings(name, want, self.layout)
        fd, seed = tempfile.mkstemp(prefix=f"reconcile-lxc-{name}-", suffix=".conf")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(render_block(name, want["source"], stop_seconds(spec), settings, _cluster_of(want)))
            node.run(create_argv(name, spec.lxcPath, spec, seed),
                     timeout=900 if spec.template == "download" else 300)
        finally:
            os.unlink(seed)
        self._remember_path(node, spec.lxcPath)
        self._write_config(node, name, settings)
        self._write_files(node, name)
        if want["pacemaker"]:
            self._allow_here(node, name)  # complete here: from now on Pacemaker may start it on this node
        else:
            self._set_state(node, name, "stopped", want["state"])

    def _update(self, change: Change, node: Node) -> None:
        name, want, spec = change.name, change.desired or {}, self.specs[change.name]
        have = change.observed or self._observe_one(node, name)
        if not have.get("managed"):
            raise ApplyError(_conflict(name, have.get("lxcPath", spec.lxcPath)))
        if have.get("lxcPath") == want["lxcPath"] and have.get("rootfs") != want["rootfs"]:
            raise ApplyError(_rootfs_conflict(name, want["lxcPath"], have.get("rootfs")))
        if have.get("lxcPath") != want["lxcPath"] or have.get("source") != want["source"]:
            raise ApplyError(_immovable(name, have, want))
        if want["pacemaker"]:
            self._update_placed(node, name, have, want)
            return
        if have.get("pacemaker"):  # placed by Pacemaker until now
            primitive = self._primitive_for(node, name)
            if primitive:
                raise Deferred(f"the lxc primitive {primitive} is still in the CIB: {name}'s run state stays "
                               "Pacemaker's until the DC has removed it; applied on a later run")
            self._forbid_here(node, name)
        if have["state"] == INVALID:  # fix our part of the config first, then look again
            self._write_config(node, name, render_settings(name, want, self.layout))
            have = self._observe_one(node, name)
        self._ensure_bridge(node, name)
        now = have["state"]
        fields = restart_changes(have, want)
        running = now in ("running", "frozen")
        if running and (want["state"] == "stopped" or (fields and spec.restartPolicy == "onChange")):
            self._stop(node, name)
            now = "stopped"
        deferred = None
        if fields and now in ("running", "frozen"):
            # restartPolicy never: keep what the running container runs with
            live = [kv for kv in render_settings(name, want, self.layout) if kv[0] in LIVE_KEYS]
            existing = (Path(spec.lxcPath) / name / "config").read_text()
            self._write_config(node, name, live + restart_settings_of(existing))
            deferred = (f"restart required ({', '.join(fields)}), restartPolicy: never: the running container "
                        f"was left alone; the change is applied when it is next found stopped "
                        f"(e.g. lxc-stop -n {name} -P {spec.lxcPath}) or with restartPolicy: onChange")
        else:
            self._write_config(node, name, render_settings(name, want, self.layout))
        self._write_files(node, name)
        self._set_state(node, name, now, want["state"])
        self._drop_old_bridge(node, have)
        if deferred:
            raise Deferred(deferred)

    def _update_placed(self, node: Node, name: str, have: dict[str, Any], want: dict[str, Any]) -> None:
        """A container Pacemaker places: its config, files, bridge and node attribute, never
        its run state. Settings that need a restart go into the config at once (the next
        start, on any node, takes them); where Pacemaker runs it now, our block also keeps
        what that instance runs with, and the change is reported deferred until Pacemaker
        restarts it."""
        if have["state"] == INVALID:
            self._write_config(node, name, render_settings(name, want, self.layout))
            have = self._observe_one(node, name)
        self._ensure_bridge(node, name)
        fields = restart_changes(have, want)
        held = None
        if fields and have["state"] not in ("stopped", INVALID):
            self._observe_one(node, name)  # the instance running now (Pacemaker may have restarted it)
            instance = self.instances.get(name)
            if instance is not None:
                existing = Path(config_path(want["lxcPath"], name)).read_text()
                held = (instance, running_settings(existing, instance))
        self._write_config(node, name, render_settings(name, want, self.layout), running=held)
        self._write_files(node, name)
        if not (have.get("pacemaker") or {}).get("mayRunHere"):
            self._allow_here(node, name)
        self._drop_old_bridge(node, have)
        if held:
            raise Deferred(_restart_through_pacemaker(name, fields))

    def _destroy(self, change: Change, node: Node) -> None:
        have, name = change.observed or {}, change.name
        lxc_path = have.get("lxcPath", DEFAULT_LXC_PATH)
        config = Path(lxc_path) / name / "config"
        try:
            text = config.read_text(errors="replace")
        except FileNotFoundError:
            return  # already gone
        if marker_name(text) != name:
            raise ApplyError(_conflict(name, lxc_path))
        # lxc-destroy deletes the root file system its config names: only ever the one we
        # created, reached without a symlink (a config edited to say dir:/etc would empty /etc).
        configured = canonical_rootfs(_last(parse_config(text), "lxc.rootfs.path"))
        if configured != created_rootfs(lxc_path, name) or not _rootfs_in_place(lxc_path, name):
            raise ApplyError(_rootfs_conflict(name, lxc_path, configured))
        state = have.get("state")
        if have.get("pacemaker") or _tag(text, CLUSTER_TAG):
            primitive = self._primitive_for(node, name)
            waits = Deferred(f"Pacemaker runs {name} here (lxc primitive {primitive}): it is destroyed once that "
                             "primitive is gone from the CIB (the DC removes it, stopping it first) and "
                             "Pacemaker has stopped it")
            if primitive and self._state_now(node, name, lxc_path) != "stopped":
                raise waits
            self._forbid_here(node, name)  # Pacemaker must not start it here while it goes
            state = self._state_now(node, name, lxc_path)
            if primitive and state != "stopped":  # Pacemaker started it here just now
                raise waits
        if state != "stopped":
            self._stop(node, name, lxc_path, _stop_tag(config))
        node.run(["lxc-destroy", "-n", name, "-P", lxc_path])
        self._drop_old_bridge(node, have)

    # --- apply helpers -------------------------------------------------------------------------

    def _observe_one(self, node: Node, name: str) -> dict[str, Any]:
        spec = self.specs[name]
        found = self._observe_path(node, spec.lxcPath).get(name)
        if found is None:
            raise ApplyError(f"container {name} is not in {spec.lxcPath} any more")
        return found

    def _write_config(self, node: Node, name: str, settings: list[tuple[str, str]],
                      running: tuple[str, list[tuple[str, str]]] | None = None) -> None:
        spec, want = self.specs[name], self.wanted[name]
        path = Path(spec.lxcPath) / name / "config"
        block = render_block(name, want["source"], stop_seconds(spec), settings, _cluster_of(want), running)
        text = merge_config(path.read_text(), block)
        AtomicWriter(node).write(path, text, validate=lambda tmp: self._check_config(node, name, tmp))

    def _state_now(self, node: Node, name: str, lxc_path: str) -> str:
        r = node.run(["lxc-ls", "-f", "-F", "NAME,STATE,PID", "-P", lxc_path, "-l", "ERROR"], read_only=True)
        return parse_lxc_ls(r.stdout).get(name, INVALID)

    def _drop_old_bridge(self, node: Node, have: dict[str, Any]) -> None:
        """A bridge we made goes once no container wants it (moved off it, or destroyed)."""
        bridge = (have.get("network") or {}).get("bridge")
        if bridge and not any(w["network"]["bridge"] == bridge for w in self.wanted.values()):
            self._drop_bridge(node, bridge)

    # --- apply helpers: Pacemaker ----------------------------------------------------------------

    def _primitive_for(self, node: Node, name: str) -> str | None:
        """The id of an lxc primitive in the CIB that runs this container (ours or made by
        hand), read now; None when there is none or Pacemaker does not run here."""
        self._read_cib(node)
        return (self.primitives or {}).get(name)

    def _allow_here(self, node: Node, name: str) -> None:
        """Tell Pacemaker this node can run the container: its node attribute, through this
        node's own attrd (a transient attribute of this node only, not the configuration,
        which the DC alone writes). Waits until the CIB shows it, so the next observe does."""
        attribute = pacemaker.container_attribute(name)
        argv = ["attrd_updater", "-n", attribute, "-U", pacemaker.CONTAINER_ATTRIBUTE_VALUE]
        r = node.run(argv, check=False, timeout=30)
        if r.rc != 0:  # Pacemaker may have just been started here (by the Cluster): wait for it once
            pacemaker.wait_for_dc(node)
            r = node.run(argv, check=False, timeout=30)
        if r.rc != 0:
            why = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exited {r.rc}"]
            raise ApplyError(f"{name} is defined here, but Pacemaker did not take the node attribute {attribute} "
                             f"(attrd_updater: {why[0]}): Pacemaker does not start {name} on {node.name} until it "
                             "does. Is Pacemaker running here (the Cluster manifest starts it)?")
        self._wait_attribute(node, attribute, present=True)

    def _forbid_here(self, node: Node, name: str) -> None:
        """Take the node attribute away (before the container goes), if Pacemaker has it."""
        attribute = pacemaker.container_attribute(name)
        if attribute not in self._read_cib(node):
            return
        node.run(["attrd_updater", "-n", attribute, "-D"], timeout=30)
        self._wait_attribute(node, attribute, present=False)

    def _wait_attribute(self, node: Node, attribute: str, present: bool, seconds: float = ATTRIBUTE_WAIT) -> None:
        """attrd writes the CIB a moment after it took the value: wait (bounded) for it."""
        deadline = time.monotonic() + seconds
        while (attribute in self._read_cib(node)) != present and time.monotonic() < deadline:
            time.sleep(0.2)

    def _check_config(self, node: Node, name: str, candidate: Path) -> None:
        """LXC's own parser on the new config (temp copy), before it replaces the old one."""
        with scratch_lxc_path() as tmp:
            (tmp / name).mkdir()
            shutil.copyfile(candidate, tmp / name / "config")
            r = node.run(["lxc-info", "-P", str(tmp), "-n", name, "-c", "lxc.uts.name", "-l", "ERROR"],
                         read_only=True, check=False)
        if r.rc != 0:
            raise ApplyError(f"LXC refuses the new config of {name}: {_why_invalid(r.stderr, name)}")

    def _write_files(self, node: Node, name: str) -> None:
        spec = self.specs[name]
        if not spec.files:
            return
        # The config is read again here, just before writing: what observe saw may be old.
        configured = canonical_rootfs(_last(parse_config(Path(config_path(spec.lxcPath, name)).read_text()),
                                            "lxc.rootfs.path"))
        if configured != created_rootfs(spec.lxcPath, name):
            raise ApplyError(_rootfs_conflict(name, spec.lxcPath, configured))
        rootfs = RootFs(spec.lxcPath, name)
        for inner, content in sorted(spec.files.items()):
            write_rootfs_file(node, rootfs, inner, content.encode())

    def _remember_path(self, node: Node, lxc_path: str) -> None:
        path = node.state_dir / PATHS_FILE
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = []
        if lxc_path != DEFAULT_LXC_PATH and lxc_path not in known:
            AtomicWriter(node).write(path, json.dumps(sorted(set(known) | {lxc_path})) + "\n")

    def _set_state(self, node: Node, name: str, now: str, want: str) -> None:
        lxc_path = self.specs[name].lxcPath
        base = ["-n", name, "-P", lxc_path]
        if now not in ("running", "stopped", "frozen"):  # starting, stopping, thawed…: let it settle
            node.run(["lxc-wait", *base, "-s", "RUNNING|STOPPED|FROZEN", "-t", "30"], check=False)
            now = self._observe_one(node, name)["state"]
        if now == want:
            return
        if want == "stopped":
            self._stop(node, name)
            return
        if now == "stopped":
            self._start(node, name)
            now = "running"
        if now == "frozen" and want == "running":
            node.run(["lxc-unfreeze", *base])
        elif now == "running" and want == "frozen":
            node.run(["lxc-freeze", *base])

    def _start(self, node: Node, name: str) -> None:
        lxc_path = self.specs[name].lxcPath  # its bridge was ensured by the caller (create/update)
        logfile = Path(lxc_path) / name / "reconcile-start.log"
        AtomicWriter(node).remove(logfile)
        try:
            node.run(["lxc-start", "-n", name, "-P", lxc_path, "-l", "ERROR", "-o", str(logfile)])
        except CommandError as err:
            try:
                lines = [ln.split(" - ", 1)[-1] for ln in logfile.read_text().splitlines() if " ERROR " in ln]
            except OSError:
                lines = []
            why = " | ".join(lines[:3]) or str(err)
            raise ApplyError(f"container {name} did not start: {why} (log: {logfile})") from None

    def _stop(self, node: Node, name: str, lxc_path: str | None = None, seconds: int | None = None) -> None:
        if lxc_path is None:
            lxc_path = self.specs[name].lxcPath
            seconds = stop_seconds(self.specs[name])
        seconds = 10 if seconds is None else seconds
        how = ["-k"] if seconds == 0 else ["-t", str(seconds)]
        r = node.run(["lxc-stop", "-n", name, "-P", lxc_path, *how], check=False, timeout=seconds + 60)
        if r.rc not in (0, 2):  # 2: it was not running
            raise CommandError(r.argv, r.rc, r.stderr, r.stdout)

    def _ensure_bridge(self, node: Node, name: str) -> None:
        """The container's bridge exists before it starts: made here (node-local, marked
        ours) when the manifest gives `network.bridgeAddress`, else it must already exist."""
        net = self.specs[name].network
        if net.type != "bridge":
            return
        links = self.links(node, fresh=True)
        link = links.get(net.bridge)
        if net.bridgeAddress is None:
            if link is None or link.kind != "bridge":
                raise ApplyError(f"bridge {net.bridge} does not exist on this node: create it, or give "
                                 f"network.bridgeAddress so that reconcile makes a node-local bridge")
            return
        if link is not None and link.kind != "bridge":
            raise ApplyError(f"{net.bridge} exists on this node but is a {link.kind or 'non-bridge'} link")
        if link is not None and not link.ours and (net.bridgeAddress not in link.ipv4 or not link.up):
            raise ApplyError(f"bridge {net.bridge} exists but was not made by reconcile and lacks "
                             f"{net.bridgeAddress} (or is down): it is left alone; add the address by hand, "
                             "or use another bridge name")
        if link is None or net.bridgeAddress not in link.ipv4:
            subnet = ipaddress.IPv4Interface(net.bridgeAddress).network
            for other in links.values():
                clash = [a for a in other.ipv4 if ipaddress.IPv4Interface(a).network.overlaps(subnet)]
                if other.name != net.bridge and clash:
                    raise ApplyError(f"{net.bridgeAddress} for bridge {net.bridge} overlaps {clash[0]} on "
                                     f"{other.name}: this node could not tell where to send {subnet}; give the "
                                     "bridge its own subnet")
        dev = ["dev", net.bridge]
        if link is None:
            node.run(["ip", "link", "add", "name", net.bridge, "type", "bridge"])
            node.run(["ip", "link", "set", *dev, "alias", BRIDGE_ALIAS])
            link = Link(net.bridge, "bridge", None, False, True)
        if link.ours:
            for addr in link.ipv4:
                if addr != net.bridgeAddress:
                    node.run(["ip", "addr", "del", addr, *dev])
            if net.bridgeAddress not in link.ipv4:
                node.run(["ip", "addr", "add", net.bridgeAddress, *dev])
            if not link.up:
                node.run(["ip", "link", "set", *dev, "up"])
        # a bridge deleted and made again lost its ports: put running containers back on it
        for other, state in self.wanted.items():
            pair = links.get(veth_pair_name(other))
            if state["network"]["bridge"] == net.bridge and pair is not None and pair.master != net.bridge:
                node.run(["ip", "link", "set", "dev", pair.name, "master", net.bridge])
        self._links = None

    def _drop_bridge(self, node: Node, bridge: str) -> None:
        """Delete a bridge we made once nothing is on it any more."""
        links = self.links(node, fresh=True)
        link = links.get(bridge)
        if link is None or not link.ours or link.kind != "bridge":
            return
        if any(other.master == bridge for other in links.values()):
            return
        node.run(["ip", "link", "del", "dev", bridge])

    # --- watch ---------------------------------------------------------------------------------

    def watch(self, node: Node) -> Iterator[str]:
        """Yields on every state change of a container in our LXC paths (`lxc-monitor`),
        except those of containers Pacemaker places: it starts and stops them, and their run
        state is not drift (the watch runs without `desired`: our block's cluster line says so)."""
        paths = [p for p in self.lxc_paths(node) if Path(p).is_dir()]
        if not paths:
            return  # nothing to watch yet; the agent calls again later
        argv = ["lxc-monitor", "-n", ".*"]
        for lxc_path in paths:
            argv += ["-P", lxc_path]
        proc = node.runner.stream(argv)
        try:
            for line in proc.stdout or ():
                event = parse_monitor_line(line)
                if event and event[0] not in self.cluster_placed and not _placed_by_pacemaker(paths, event[0]):
                    yield f"container {event[0]}: {event[1]}"
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _placed_by_pacemaker(paths: list[str], name: str) -> bool:
    for lxc_path in paths:
        try:
            text = Path(config_path(lxc_path, name)).read_text(errors="replace")
        except OSError:
            continue
        if marker_name(text) == name and _tag(text, CLUSTER_TAG):
            return True
    return False


def stop_seconds(spec: Any) -> int:
    """spec.stopTimeout in whole seconds (lxc-stop -t takes seconds)."""
    return math.ceil(duration_ms(spec.stopTimeout) / 1000)


def _stop_tag(config: Path) -> int | None:
    try:
        value = _tag(config.read_text(errors="replace"), STOP_TAG)
        return int(value) if value is not None else None
    except (OSError, ValueError):
        return None


def _why_invalid(stderr: str, name: str) -> str:
    """LXC's own words about a config it refuses, for people: the reason it logged (with
    `-l ERROR`) just before `Failed to parse config file ".../NAME/config" at line "..."`."""
    reasons = []
    previous = ""
    for line in stderr.splitlines():
        if f"/{name}/config" in line:
            at = line[line.index(" at line "):].strip() if " at line " in line else line.strip()
            why = previous.split(" - ", 1)[1].strip() if " - " in previous and "/config" not in previous else ""
            reasons.append(f"{why}, {at}" if why else at)
        previous = line
    return " | ".join(dict.fromkeys(reasons)) or "it does not load (lxc-ls skips it)"


def lxc_path_problem(name: str, lxc_path: str, default: str) -> str | None:
    """Why a Pacemaker-placed container cannot live in `lxc_path` on a node whose LXC
    default path is `default`: ocf:heartbeat:lxc has no lxcpath parameter, so it runs
    lxc-start, lxc-info and lxc-stop in the default path."""
    if lxc_path.rstrip("/") == default.rstrip("/"):
        return None
    return (f"{name}: spec.lxcPath is {lxc_path}, but ocf:heartbeat:lxc starts, watches and stops containers in "
            f"LXC's default path only ({default}, from lxc-config lxc.lxcpath on this node): leave lxcPath out "
            f"or make it {default}")


def _attribute_note(name: str) -> str:
    return (f"tells Pacemaker this node can run it: node attribute {pacemaker.container_attribute(name)}="
            f"{pacemaker.CONTAINER_ATTRIBUTE_VALUE} (the primitive's location rule needs it)")


def _restart_through_pacemaker(name: str, fields: list[str]) -> str:
    return (f"restart required ({', '.join(fields)}): Pacemaker runs it here and owns its start and stop, so "
            f"reconcile does not restart it; the new config is written on every node and taken at the next start: "
            f"restart it through Pacemaker when it suits you: crm_resource --restart -r {name}")


def _cluster_of(want: dict[str, Any]) -> str | None:
    return (want.get("pacemaker") or {}).get("cluster")


def _conflict(name: str, lxc_path: str) -> str:
    return (f"conflict: container {name} in {lxc_path} was not created by reconcile (its config has no "
            f"`{MARKER}{name}` line): it is left alone. Rename the manifest, remove the container by hand, "
            f"or adopt it by adding that line to {lxc_path}/{name}/config")


def _rootfs_in_place(lxc_path: str, name: str) -> bool:
    """Whether LXCPATH/NAME/rootfs is a folder reached without a symlink (or is gone)."""
    try:
        os.close(RootFs(lxc_path, name).open())
    except FileNotFoundError:
        return True  # nothing there to delete in the wrong place
    except OSError:
        return False
    return True


def _rootfs_conflict(name: str, lxc_path: str, configured: str | None) -> str:
    return (f"conflict: the config of container {name} ({lxc_path}/{name}/config) puts its root file system at "
            f"{configured or '(nothing)'}, not at {created_rootfs(lxc_path, name)} where reconcile created it (or "
            f"a symlink is in the way): it was edited outside reconcile, so reconcile neither writes files into it "
            f"nor destroys it. Put lxc.rootfs.path back to {created_rootfs(lxc_path, name)}, or remove the "
            f"container by hand")


def _immovable(name: str, have: dict[str, Any], want: dict[str, Any]) -> str:
    if have.get("lxcPath") != want.get("lxcPath"):
        what = f"it lives in {have.get('lxcPath')}, the manifest says lxcPath {want.get('lxcPath')}"
    else:
        what = f"it was created from {have.get('source')}, the manifest says {want.get('source')}"
    return (f"recreate required: {what}. LXC cannot change that in place and reconcile does not destroy a "
            f"root file system on its own: remove the manifest (apply destroys {name}), then add it back")
