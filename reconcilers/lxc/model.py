"""The Container's normalized state: what a manifest asks for (`desired_state`), what a
config file says (`observed_from_config`), and the LXC keys of a state (`render_settings`).

Both sides have the same shape, so that the plan is a plain diff. Run state, files and the
subordinate ids are filled in by the reconciler (they are not in the config file).

Which lines a field answers for: the keys reconcile always writes (autostart, limits, the
interfaces, init) and single-valued keys as LXC reads the whole file (its last value);
list keys (mounts, devices, capabilities, environment, idmap) and the `config` lines in
reconcile's block — or, in a config without our block (a container adopted as it was made),
in the whole file. A field the manifest leaves out is not reconcile's: it is not compared
(`unmanaged` lists its pointer) and the template's lines for it stay as they are.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Callable

from reconcilers.lxc.config import (
    CLUSTER_TAG, LIMIT_KEYS, SOURCE_TAG, CgroupLayout, always_owned, canonical_cpus, canonical_memory, collect,
    is_list_key, last_value, lxc_init_cmd, marker_name, parse_config, scope_lines, shares_of_weight, tag_value,
    weight_of_shares,
)
from reconcilers.lxc.network import veth_pair_name
from reconcilers.lxc.rootfs import canonical_rootfs, created_rootfs
from schemas.common import SecretRef, duration_ms
from schemas.container import TYPED_KEYS

INVALID = "invalid-config"  # observed state of a container whose config LXC refuses to load
# What only takes effect when the container starts again (everything in the config but autostart).
RESTART_FIELDS = ("limits", "network", "networks", "init", "hostname", "idmap", "apparmor", "devices",
                  "capabilities", "mounts", "mountAuto", "environment", "config")
OPTIONAL_FIELDS = ("hostname", "apparmor", "devices", "capabilities", "mounts", "mountAuto", "environment")
_LIMIT_CONTROLLER = {"memory": "memory", "cpus": "cpuset", "cpuWeight": "cpu"}
INTERFACE_DEFAULTS: dict[str, Any] = {
    "type": "none", "bridge": None, "link": None, "name": None, "mac": None, "mtu": None, "up": None, "address": None,
    "gateway": None, "ipv6": None, "ipv6Gateway": None, "bridgeAddress": None, "options": {}}
_LXC_TYPE = {"none": "empty", "host": "none"}  # our interface types that LXC names otherwise
_OUR_TYPE = {"empty": "none", "none": "host"}


def source_of(spec: Any) -> str | None:
    """Where the root file system came from: fixed at creation, recorded in our block."""
    if spec.template == "download":
        d = spec.download
        return f"download {d.distribution}/{d.release}/{d.architecture}"
    if spec.template == "local":
        return f"local rootfs={spec.local.rootfs} metadata={spec.local.metadata}"
    return spec.template


# --- the manifest's side ------------------------------------------------------------------------


def our_pair(name: str, i: int) -> str:
    """The host end of interface i's veth, fixed by reconcile on a bridge it made, so that
    apply can put it back on a bridge deleted and made again."""
    return veth_pair_name(name) if i == 0 else veth_pair_name(f"{name}-{i}")


def interface_state(net: Any, i: int = 0, name: str = "") -> dict[str, Any]:
    addresses = net.ipv4()
    options = dict(net.options)
    if net.type == "bridge" and net.bridgeAddress and name:
        options["veth.pair"] = our_pair(name, i)
    return {"type": net.type, "bridge": net.bridge, "link": net.link, "name": _name(net.name, net.type, i),
            "mac": net.mac, "mtu": net.mtu,
            "up": net.up if net.type not in ("none", "host") else None,
            "address": ",".join(addresses) if addresses else None, "gateway": net.gateway,
            "ipv6": ",".join(net.ipv6) if net.ipv6 else None, "ipv6Gateway": net.ipv6Gateway,
            "bridgeAddress": net.bridgeAddress, "options": options}


def desired_state(name: str, spec: Any) -> dict[str, Any]:
    """The normalized state a manifest asks for (files as digests, limits canonical,
    secrets as tokens)."""
    placed = spec.cluster is not None
    nets = [interface_state(n, i, name) for i, n in enumerate(spec.interfaces())]
    caps = spec.capabilities
    return {
        "managed": True,
        "lxcPath": spec.lxcPath,
        "source": source_of(spec),
        # Pacemaker decides where it runs: no run state here (the reconciler ignores it),
        # and never started at boot (a second copy); the schema refuses autostart then.
        "state": None if placed else spec.state,
        "autostart": False if placed else spec.autostart,
        "startOrder": None if placed else spec.startOrder,
        "limits": {"memory": canonical_memory(spec.limits.memory),
                   "cpus": canonical_cpus(spec.limits.cpus), "cpuWeight": spec.limits.cpuWeight},
        "network": nets[0],
        "networks": nets[1:],
        "init": list(spec.init) if spec.init else None,
        "hostname": spec.hostname,
        "idmap": [f"{m.type} {m.container} {m.host} {m.count}" for m in spec.idmap],
        "apparmor": None if spec.apparmor is None else {
            "profile": spec.apparmor.profile, "allowNesting": spec.apparmor.allowNesting,
            "allowIncomplete": spec.apparmor.allowIncomplete},
        "devices": None if spec.devices is None else
        [f"allow {r.allow}" if r.allow else f"deny {r.deny}" for r in spec.devices],
        "capabilities": None if caps is None else {"drop": sorted(caps.drop), "keep": sorted(caps.keep)},
        "mounts": None if spec.mounts is None else [m.line() for m in spec.mounts],
        "mountAuto": None if spec.mountAuto is None else " ".join(spec.mountAuto),
        "environment": None if spec.environment is None else {
            k: f"<secret: {v.describe()}>" if isinstance(v, SecretRef) else v for k, v in spec.environment.items()},
        "config": [normal_line(line) for line in spec.config],
        "rootfs": canonical_rootfs(spec.rootfs) if spec.rootfs else created_rootfs(spec.lxcPath, name),
        "files": {path: file_state(content.encode(), spec.fileModes.get(path))
                  for path, content in sorted(spec.files.items())},
        "pacemaker": {"cluster": spec.cluster, "mayRunHere": True} if placed else None,
    }


def unmanaged(spec: Any) -> tuple[str, ...]:
    """Pointers of the fields this manifest leaves to the template (not compared), and of
    what an adopted container was not created with."""
    out = [f"/{f}" for f in OPTIONAL_FIELDS if getattr(spec, f) is None]
    if spec.adopt:
        out += ["/managed", "/source"]  # no block yet (made by hand), or `adopted` in it
    return tuple(out)


def file_state(data: bytes | None, mode: Any = None, owner: tuple[int, int] | None = None,
               actual_mode: int | None = None) -> str | None:
    """A file in the root file system for the plan: its digest, and mode and owner (as the
    container sees them) where the manifest says them."""
    if data is None:
        return None
    text = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    if mode is not None:
        text += f" mode {int(mode.mode, 8):04o} owner {mode.owner}:{mode.group}"
    elif actual_mode is not None and owner is not None:
        text += f" mode {actual_mode:04o} owner {owner[0]}:{owner[1]}"
    return text


def file_digest(data: bytes | None) -> str | None:
    return file_state(data)


def normal_line(line: str) -> str:
    key, _, value = (part.strip() for part in line.partition("="))
    return f"{key} = {value}" if value else f"{key} ="


# --- the config's side ---------------------------------------------------------------------------


def observed_from_config(name: str, lxc_path: str, text: str, state: str) -> dict[str, Any]:
    """The normalized state of one container from its config file and its run state.

    `network.bridgeAddress`, `files` and `pacemaker.mayRunHere` are filled in by the caller
    (they are not in the config file)."""
    values = parse_config(text)
    scope = scope_lines(text)
    ours = collect(scope)  # list keys: what reconcile answers for
    cluster = tag_value(text, CLUSTER_TAG)
    memory = last_value(values, LIMIT_KEYS["memory"][1], LIMIT_KEYS["memory"][0])
    cpus = last_value(values, LIMIT_KEYS["cpus"][1], LIMIT_KEYS["cpus"][0])
    weight_v2 = last_value(values, LIMIT_KEYS["cpuWeight"][1])
    shares_v1 = last_value(values, LIMIT_KEYS["cpuWeight"][0])
    cpu_weight: Any = None
    if weight_v2 is not None:
        cpu_weight = int(weight_v2) if weight_v2.isdigit() else weight_v2
    elif shares_v1 is not None:
        cpu_weight = weight_of_shares(int(shares_v1)) if shares_v1.isdigit() else f"cpu.shares {shares_v1}"
    order = last_value(values, "lxc.start.order")
    init = last_value(values, "lxc.init.cmd")
    indices = sorted({int(m.group(1)) for k in values for m in [re.match(r"^lxc\.net\.([0-9]+)\.", k)]
                      if m and values[k]})
    nets = [_network_of(values, i) for i in (indices or [0])]
    if indices and indices[0] != 0:
        nets.insert(0, _network_of(values, 0))
    profile = last_value(values, "lxc.apparmor.profile")
    nesting = last_value(values, "lxc.apparmor.allow_nesting")
    incomplete = last_value(values, "lxc.apparmor.allow_incomplete")
    devices = [f"{kind} {v}" for k, v in scope if re.fullmatch(r"lxc\.cgroup2?\.devices\.(allow|deny)", k) and v
               for kind in [k.rsplit(".", 1)[1]]]
    auto = last_value(values, "lxc.mount.auto")
    return {
        "managed": marker_name(text) == name,
        "lxcPath": lxc_path,
        "source": tag_value(text, SOURCE_TAG),
        "state": state,
        "autostart": last_value(values, "lxc.start.auto") == "1",
        "startOrder": int(order) if order is not None and order.isdigit() else order,
        "limits": {"memory": canonical_memory(memory), "cpus": canonical_cpus(cpus), "cpuWeight": cpu_weight},
        "network": nets[0],
        "networks": nets[1:],
        "init": init.split() if init else None,
        "hostname": last_value(values, "lxc.uts.name"),
        "idmap": [" ".join(v.split()) for v in ours.get("lxc.idmap", [])],
        "apparmor": {"profile": profile, "allowNesting": _flag(nesting), "allowIncomplete": _flag(incomplete)},
        "devices": devices,
        "capabilities": {"drop": sorted(w for v in ours.get("lxc.cap.drop", []) for w in v.split()),
                         "keep": sorted(w for v in ours.get("lxc.cap.keep", []) for w in v.split())},
        "mounts": [" ".join(v.split()) for v in ours.get("lxc.mount.entry", [])],
        "mountAuto": " ".join(auto.split()) if auto else None,
        "environment": dict(v.split("=", 1) if "=" in v else (v, "") for v in ours.get("lxc.environment", [])),
        "config": [normal_line(f"{k} = {v}") for k, v in scope if not _typed(k) or v == ""],
        "rootfs": canonical_rootfs(last_value(values, "lxc.rootfs.path")),
        "files": {},
        "pacemaker": {"cluster": cluster, "mayRunHere": False} if cluster else None,
    }


def _name(name: str | None, kind: str, i: int) -> str | None:
    """The interface's name inside: LXC's default (the kernel's eth0, eth1, …) when unset."""
    if kind in ("none", "host"):
        return None
    return name or f"eth{i}"


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.strip() == "1"


def _typed(key: str) -> bool:
    """A key a typed field (or reconcile itself) writes, not a `config` line."""
    return key in TYPED_KEYS or always_owned(key)


def _network_of(values: dict[str, list[str]], i: int) -> dict[str, Any]:
    def get(sub: str) -> str | None:
        return last_value(values, f"lxc.net.{i}.{sub}")

    lxc_type = get("type")
    kind = "none" if lxc_type is None else _OUR_TYPE.get(lxc_type, lxc_type)
    link = get("link")
    if kind == "veth":
        kind = "bridge" if link else "veth"
    mtu = get("mtu")
    addresses = [" ".join(a.split()) for a in values.get(f"lxc.net.{i}.ipv4.address", [])]
    ipv6 = values.get(f"lxc.net.{i}.ipv6.address", [])
    prefix = f"lxc.net.{i}."
    typed = {"type", "link", "name", "hwaddr", "mtu", "flags", "ipv4.address", "ipv4.gateway", "ipv6.address",
             "ipv6.gateway"}
    options = {k[len(prefix):]: v[-1] for k, v in values.items() if k.startswith(prefix) and v
               and k[len(prefix):] not in typed}
    return {
        "type": kind,
        "bridge": link if kind == "bridge" else None,
        "link": link if kind not in ("bridge", "none", "host") else None,
        "name": _name(get("name"), kind, i),
        "mac": get("hwaddr"),
        "mtu": int(mtu) if mtu and mtu.isdigit() else mtu,
        "up": (get("flags") == "up") if kind not in ("none", "host") else None,
        "address": ",".join(addresses) if addresses else None,
        "gateway": get("ipv4.gateway"),
        "ipv6": ",".join(ipv6) if ipv6 else None,
        "ipv6Gateway": get("ipv6.gateway"),
        "bridgeAddress": None,
        "options": options,
    }


# --- the keys of a state --------------------------------------------------------------------------


def render_settings(name: str, state: dict[str, Any], layout: CgroupLayout,
                    secret: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
    """The LXC config keys of one container's normalized desired state, in file order: the
    `config` lines first (a line that clears a key comes before what reconcile adds to
    it), then the typed fields. `secret(name)` gives an environment secret's value (apply);
    without it the token stands in its place (plans, checks)."""
    out = [tuple(part.strip() for part in line.partition("=")[::2]) for line in state.get("config", [])]
    out.append(("lxc.start.auto", "1" if state["autostart"] else "0"))
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
    for i, net in enumerate([state["network"], *state.get("networks", [])]):
        out += _interface_keys(name, i, net)
    if state["init"]:
        out.append(("lxc.init.cmd", lxc_init_cmd(state["init"])))
    if state.get("hostname"):
        out.append(("lxc.uts.name", state["hostname"]))
    if state.get("source", "") is None and state.get("rootfs"):  # adopted: the manifest is its whole config
        out.append(("lxc.rootfs.path", state["rootfs"]))
    out += [("lxc.idmap", m) for m in state.get("idmap") or []]
    apparmor = state.get("apparmor") or {}
    if apparmor.get("profile"):
        out.append(("lxc.apparmor.profile", apparmor["profile"]))
    for field_name, key in (("allowNesting", "allow_nesting"), ("allowIncomplete", "allow_incomplete")):
        if apparmor.get(field_name) is not None:
            out.append((f"lxc.apparmor.{key}", "1" if apparmor[field_name] else "0"))
    prefix = "lxc.cgroup2.devices" if layout.v2("devices") else "lxc.cgroup.devices"
    out += [(f"{prefix}.{rule.split(' ', 1)[0]}", rule.split(" ", 1)[1]) for rule in state.get("devices") or []]
    caps = state.get("capabilities") or {}
    out += [("lxc.cap.drop", c) for c in caps.get("drop", [])] + [("lxc.cap.keep", c) for c in caps.get("keep", [])]
    if state.get("mountAuto"):
        out.append(("lxc.mount.auto", state["mountAuto"]))
    out += [("lxc.mount.entry", m) for m in state.get("mounts") or []]
    for var, value in (state.get("environment") or {}).items():
        if value.startswith("<secret:") and secret is not None:
            value = secret(var)
        out.append(("lxc.environment", f"{var}={value}"))
    return out  # type: ignore[return-value]


def _interface_keys(name: str, i: int, net: dict[str, Any]) -> list[tuple[str, str]]:
    net = {**INTERFACE_DEFAULTS, **net}  # a state written before some keys existed
    key = f"lxc.net.{i}"
    out = [(f"{key}.type", _LXC_TYPE.get(net["type"], "veth" if net["type"] == "bridge" else net["type"]))]
    if net["type"] in ("none", "host"):
        return out
    link = net["bridge"] if net["type"] == "bridge" else net["link"]
    if link:
        out.append((f"{key}.link", link))
    if net["up"]:
        out.append((f"{key}.flags", "up"))
    if net["name"]:
        out.append((f"{key}.name", net["name"]))
    options = dict(net["options"])
    if "veth.pair" in options:  # where reconcile has always written it
        out.append((f"{key}.veth.pair", options.pop("veth.pair")))
    if net["mac"]:
        out.append((f"{key}.hwaddr", net["mac"]))
    if net["mtu"]:
        out.append((f"{key}.mtu", str(net["mtu"])))
    out += [(f"{key}.ipv4.address", a) for a in (net["address"] or "").split(",") if a]
    if net["gateway"]:
        out.append((f"{key}.ipv4.gateway", net["gateway"]))
    out += [(f"{key}.ipv6.address", a) for a in (net["ipv6"] or "").split(",") if a]
    if net["ipv6Gateway"]:
        out.append((f"{key}.ipv6.gateway", net["ipv6Gateway"]))
    out += [(f"{key}.{k}", v) for k, v in options.items()]
    return out


def owned_by(state: dict[str, Any], adopt: bool) -> Callable[[str, str], bool]:
    """Which lines outside our block reconcile removes when it writes the block: the keys
    it always writes, the single-valued keys the manifest sets, and, for an adopted
    container (whose manifest is its whole config), every key the manifest sets."""
    keys = {k for k, _ in render_settings("x", state, CgroupLayout())}
    keys |= {k.replace("lxc.cgroup2.", "lxc.cgroup.") for k in keys} | {k.replace("lxc.cgroup.", "lxc.cgroup2.")
                                                                      for k in keys}

    def owned(key: str, value: str) -> bool:
        if always_owned(key):
            return True
        if key not in keys:
            return False
        return adopt or not is_list_key(key)

    return owned


def create_argv(name: str, lxc_path: str, spec: Any, config_file: str) -> list[str]:
    argv = ["lxc-create", "-n", name, "-P", lxc_path, "-B", "dir", "-t", spec.template, "-f", config_file]
    if spec.template == "download":
        d = spec.download
        argv += ["--", "--dist", d.distribution, "--release", d.release, "--arch", d.architecture]
    elif spec.template == "local":
        argv += ["--", "--metadata", spec.local.metadata, "--fstree", spec.local.rootfs]
    return argv


def restart_changes(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The fields that differ and only take effect when the container starts again (a field
    the manifest leaves to the template is not compared)."""
    out = []
    for path in RESTART_FIELDS:
        a, b = have.get(path), want.get(path)
        if b is None and path in OPTIONAL_FIELDS:
            continue
        if path == "limits":
            out += [f"limits.{k}" for k in b if (a or {}).get(k) != b.get(k)]
        elif path == "network":
            out += [f"network.{k}" for k in b if k != "bridgeAddress" and (a or {}).get(k) != b.get(k)]
        elif a != b:
            out.append(path)
    return out


def stop_seconds(spec: Any) -> int:
    """spec.stopTimeout in whole seconds (lxc-stop -t takes seconds)."""
    return math.ceil(duration_ms(spec.stopTimeout) / 1000)
