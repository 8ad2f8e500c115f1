"""The Container's normalized state: what a manifest asks for (`desired_state`), what a
config file says (`observed_from_config`), and the LXC keys of a state (`render_settings`).

Both sides have the same shape, so that the plan is a plain diff. Run state and files
are filled in by the reconciler (they are not in the config file).
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from reconcilers.lxc.config import (
    CLUSTER_TAG, LIMIT_KEYS, SOURCE_TAG, CgroupLayout, canonical_cpus, canonical_memory, last_value, lxc_init_cmd,
    marker_name, parse_config, shares_of_weight, tag_value, weight_of_shares,
)
from reconcilers.lxc.network import veth_pair_name
from reconcilers.lxc.rootfs import canonical_rootfs, created_rootfs
from schemas.common import duration_ms

INVALID = "invalid-config"  # observed state of a container whose config LXC refuses to load
RESTART_FIELDS = ("limits", "network.type", "network.bridge", "network.address", "init")
_LIMIT_CONTROLLER = {"memory": "memory", "cpus": "cpuset", "cpuWeight": "cpu"}


def source_of(spec: Any) -> str:
    """Where the root file system came from: fixed at creation, recorded in our block."""
    if spec.template == "download":
        d = spec.download
        return f"download {d.distribution}/{d.release}/{d.architecture}"
    if spec.template == "local":
        return f"local rootfs={spec.local.rootfs} metadata={spec.local.metadata}"
    return spec.template




def desired_state(name: str, spec: Any) -> dict[str, Any]:
    """The normalized state a manifest asks for (files as digests, limits canonical)."""
    placed = spec.cluster is not None
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
        "network": {"type": spec.network.type, "bridge": spec.network.bridge,
                    "address": spec.network.address, "bridgeAddress": spec.network.bridgeAddress},
        "init": list(spec.init) if spec.init else None,
        "rootfs": created_rootfs(spec.lxcPath, name),
        "files": {path: file_digest(content.encode()) for path, content in sorted(spec.files.items())},
        "pacemaker": {"cluster": spec.cluster, "mayRunHere": True} if placed else None,
    }


def observed_from_config(name: str, lxc_path: str, text: str, state: str) -> dict[str, Any]:
    """The normalized state of one container from its config file and its run state.

    `network.bridgeAddress`, `files` and `pacemaker.mayRunHere` are filled in by the caller
    (they are not in the config file)."""
    values = parse_config(text)
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
    return {
        "managed": marker_name(text) == name,
        "lxcPath": lxc_path,
        "source": tag_value(text, SOURCE_TAG),
        "state": state,
        "autostart": last_value(values, "lxc.start.auto") == "1",
        "startOrder": int(order) if order is not None and order.isdigit() else order,
        "limits": {"memory": canonical_memory(memory), "cpus": canonical_cpus(cpus), "cpuWeight": cpu_weight},
        "network": _network_of(values),
        "init": init.split() if init else None,
        "rootfs": canonical_rootfs(last_value(values, "lxc.rootfs.path")),
        "files": {},
        "pacemaker": {"cluster": cluster, "mayRunHere": False} if cluster else None,
    }




def _network_of(values: dict[str, list[str]]) -> dict[str, Any]:
    lxc_type = last_value(values, "lxc.net.0.type")
    link = last_value(values, "lxc.net.0.link")
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




def stop_seconds(spec: Any) -> int:
    """spec.stopTimeout in whole seconds (lxc-stop -t takes seconds)."""
    return math.ceil(duration_ms(spec.stopTimeout) / 1000)


