"""Pacemaker resources made from other kinds: a VirtualIP with `manager: pacemaker` (an
IPaddr2 primitive) and a Container with `spec.cluster` (an ocf:heartbeat:lxc primitive).
Their states have the shape of a ClusterResource's (see cib.py)."""
from __future__ import annotations

from typing import Any

from reconcilers.lxc import config_path, stop_seconds
from reconcilers.pacemaker.tools import CONTAINER_ATTRIBUTE_VALUE, container_attribute

LXC_STOP_MARGIN = 5  # seconds ocf:heartbeat:lxc keeps of its stop timeout for lxc-stop -k


def virtual_ip_state(name: str, spec: Any) -> dict[str, Any]:
    """A VirtualIP with manager pacemaker: an IPaddr2 primitive with a monitor, preferring
    (not pinned to) `pacemaker.preferredNode`: the address may run elsewhere when that
    node is down."""
    ip, prefix = spec.address.split("/")
    options = spec.pacemaker
    interval = options.monitorInterval if options is not None else "10s"
    preferred = options.preferredNode if options is not None else None
    state: dict[str, Any] = {
        "agent": "ocf:heartbeat:IPaddr2",
        "params": {"ip": ip, "cidr_netmask": prefix, "nic": spec.interface},
        "operations": [{"name": "monitor", "interval": interval, "timeout": "20s"},
                       {"name": "start", "interval": "0s", "timeout": "20s"},
                       {"name": "stop", "interval": "0s", "timeout": "20s"}],
    }
    if preferred:
        state["location"] = [{"node": preferred, "score": 100}]
    return state


def placement_rule_id(name: str) -> str:
    return f"{name}-where-defined"


def container_state(name: str, spec: Any) -> dict[str, Any]:
    """A Container with spec.cluster: an ocf:heartbeat:lxc primitive (Pacemaker starts it).

    - params: the container and the config the Container reconciler writes on every node
      (`config_path`); the agent has no lxcpath parameter and runs the lxc tools in LXC's
      default path, which the Container reconciler's validate checks spec.lxcPath against.
    - stop: the agent gives `lxc-stop -t` its operation timeout minus 5 s, so a timeout of
      spec.stopTimeout + 5 s waits as long for a clean stop as the Container reconciler
      does, and then kills the container (never a failed stop, which would block it).
    - a location rule (`NAME-where-defined`) keeps the primitive off every node whose
      Container reconciler has not defined it yet (the node attribute
      reconcile-container-NAME=1), so Pacemaker never starts it where it is not there.
    """
    cid = placement_rule_id(name)
    attribute = container_attribute(name)
    state: dict[str, Any] = {
        "agent": "ocf:heartbeat:lxc",
        "params": {"container": name, "config": config_path(spec.lxcPath, name)},
        "operations": [{"name": "monitor", "interval": "30s", "timeout": "20s"},
                       {"name": "start", "interval": "0s", "timeout": "60s"},
                       {"name": "stop", "interval": "0s", "timeout": f"{stop_seconds(spec) + LXC_STOP_MARGIN}s"}],
        "location": [{"id": cid, "rules": [{
            "score": "-INFINITY", "booleanOp": "or",
            "expressions": [{"id": f"{cid}-rule-undefined", "attribute": attribute, "operation": "not_defined"},
                            {"id": f"{cid}-rule-other", "attribute": attribute, "operation": "ne",
                             "value": CONTAINER_ATTRIBUTE_VALUE}]}]}],
    }
    if getattr(spec, "state", "running") == "stopped":
        state["meta"] = {"target-role": "Stopped"}
    return state
