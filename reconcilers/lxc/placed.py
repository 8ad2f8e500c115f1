"""Containers Pacemaker places (`spec.cluster`), and the interface to reconcilers/pacemaker.

The ClusterResource reconciler makes an `ocf:heartbeat:lxc` primitive of such a Container,
and Pacemaker starts it on at most one node. The Container reconciler defines it on every
node of the cluster (create, config, files, bridge) so that Pacemaker can start it on any of
them, and leaves its run state to Pacemaker:

- `state` is not desired here (running on this node or not is not drift), autostart is off
  (a node that boots must not start a second copy), and apply never starts, stops, freezes
  or thaws it while an lxc primitive for it is in the CIB.
- Once it is defined here, the transient node attribute `reconcile-container-NAME=1` tells
  Pacemaker that this node can run it (the primitive's location rule keeps it off other
  nodes): Pacemaker never tries a node where it is not there yet.
- A change that needs a restart is written to the config on every node, so that the next
  start anywhere takes it; where Pacemaker runs it, our block remembers what the running
  instance runs with (`# reconcile-running:` lines, valid for that instance only), observe
  reports those values, and the object stays `deferred` with "restart it through
  Pacemaker: crm_resource --restart -r NAME" until Pacemaker has restarted it.
- Removal: the primitive goes first (ClusterResource applies after Container, so its
  deletes come before ours; on the DC it stops the container through Pacemaker, then
  removes the primitive). A container Pacemaker still runs here under a primitive is never
  destroyed: the delete is `deferred` until the primitive is gone. A stopped copy loses its
  node attribute first, so that Pacemaker does not start it while it is being destroyed.

The interface between the two packages, in both directions, is small on purpose:
- Pacemaker's side uses `config_path(lxc_path, name)` and `stop_seconds(spec)` (from
  reconcilers.lxc) for the primitive's `config` parameter and stop timeout;
- this side uses, from the Pacemaker package, only what this module imports below: the
  node attribute's name and value, one `cibadmin --query --local`, the lxc primitives and
  this node's transient attributes in it, and waiting for a DC.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reconcilers.pacemaker import tools as pacemaker
from reconcilers.base import ApplyError, Node
from reconcilers.lxc.config import (
    CLUSTER_TAG, END_MARKER, LIVE_KEYS, MARKER, RUNNING_INSTANCE_TAG, RUNNING_TAG, config_path, marker_name,
    restart_settings_of, tag_value,
)

ATTRIBUTE_WAIT = 10.0  # seconds for attrd to write a node attribute to the CIB
container_attribute = pacemaker.container_attribute
ALLOWED = pacemaker.CONTAINER_ATTRIBUTE_VALUE


def running_view(text: str, instance: str | None) -> str:
    """The config as the running instance `instance` has it: in our block, the restart keys
    replaced by the `# reconcile-running:` lines, when the block holds them for that very
    instance (written while Pacemaker ran it with older settings); else the config unchanged."""
    if instance is None or tag_value(text, RUNNING_INSTANCE_TAG) != instance:
        return text
    out, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(MARKER):
            inside = True
        elif stripped == END_MARKER:
            inside = False
        elif inside and stripped.startswith(RUNNING_TAG):
            line = stripped[len(RUNNING_TAG):]
        elif inside and _is_restart_setting(stripped):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _is_restart_setting(stripped: str) -> bool:
    return bool(stripped) and not stripped.startswith("#") and "=" in stripped \
        and stripped.partition("=")[0].strip() not in LIVE_KEYS


def running_settings(existing: str, instance: str) -> list[tuple[str, str]]:
    """The restart keys the running instance `instance` has: the `# reconcile-running:`
    lines when our block holds them for it, else the keys of the config as it is (the
    config it was started with)."""
    return restart_settings_of(running_view(existing, instance))


def read_cib(node: Node) -> tuple[dict[str, str] | None, dict[str, str]]:
    """One `cibadmin --query --local` → ({container: its lxc primitive}, this node's
    transient attributes). Without a running Pacemaker: (None, {})."""
    try:
        cib = pacemaker.query_cib(node, local=True)
    except pacemaker.CibUnavailable:
        return None, {}
    return pacemaker.lxc_primitives(cib), pacemaker.node_attributes(cib, node.name)


def may_run_here(attributes: dict[str, str], name: str) -> bool:
    return attributes.get(container_attribute(name)) == ALLOWED


def allow_here(node: Node, name: str) -> None:
    """Tell Pacemaker this node can run the container: its node attribute, through this
    node's own attrd (a transient attribute of this node only, not the configuration,
    which the DC alone writes). Waits until the CIB shows it, so the next observe does."""
    attribute = container_attribute(name)
    argv = ["attrd_updater", "-n", attribute, "-U", ALLOWED]
    r = node.run(argv, check=False, timeout=30)
    if r.rc != 0:  # Pacemaker may have just been started here (by the Cluster): wait for it once
        pacemaker.wait_for_dc(node)
        r = node.run(argv, check=False, timeout=30)
    if r.rc != 0:
        why = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exited {r.rc}"]
        raise ApplyError(f"{name} is defined here, but Pacemaker did not take the node attribute {attribute} "
                         f"(attrd_updater: {why[0]}): Pacemaker does not start {name} on {node.name} until it "
                         "does. Is Pacemaker running here (the Cluster manifest starts it)?")
    _wait_attribute(node, attribute, present=True)


def forbid_here(node: Node, name: str) -> None:
    """Take the node attribute away (before the container goes), if Pacemaker has it."""
    attribute = container_attribute(name)
    if attribute not in read_cib(node)[1]:
        return
    node.run(["attrd_updater", "-n", attribute, "-D"], timeout=30)
    _wait_attribute(node, attribute, present=False)


def _wait_attribute(node: Node, attribute: str, present: bool, seconds: float = ATTRIBUTE_WAIT) -> None:
    """attrd writes the CIB a moment after it took the value: wait (bounded) for it."""
    deadline = time.monotonic() + seconds
    while (attribute in read_cib(node)[1]) != present and time.monotonic() < deadline:
        time.sleep(0.2)


def placed_by_pacemaker(paths: list[str], name: str) -> bool:
    """Whether our block of the container's config says Pacemaker places it (for watch(),
    which runs without `desired`)."""
    for lxc_path in paths:
        try:
            text = Path(config_path(lxc_path, name)).read_text(errors="replace")
        except OSError:
            continue
        if marker_name(text) == name and tag_value(text, CLUSTER_TAG):
            return True
    return False


def cluster_of(want: dict[str, Any]) -> str | None:
    return (want.get("pacemaker") or {}).get("cluster")


def lxc_path_problem(name: str, lxc_path: str, default: str) -> str | None:
    """Why a Pacemaker-placed container cannot live in `lxc_path` on a node whose LXC
    default path is `default`: ocf:heartbeat:lxc has no lxcpath parameter, so it runs
    lxc-start, lxc-info and lxc-stop in the default path."""
    if lxc_path.rstrip("/") == default.rstrip("/"):
        return None
    return (f"{name}: spec.lxcPath is {lxc_path}, but ocf:heartbeat:lxc starts, watches and stops containers in "
            f"LXC's default path only ({default}, from lxc-config lxc.lxcpath on this node): leave lxcPath out "
            f"or make it {default}")


def attribute_note(name: str) -> str:
    return (f"tells Pacemaker this node can run it: node attribute {container_attribute(name)}="
            f"{pacemaker.CONTAINER_ATTRIBUTE_VALUE} (the primitive's location rule needs it)")


def restart_through_pacemaker(name: str, fields: list[str]) -> str:
    return (f"restart required ({', '.join(fields)}): Pacemaker runs it here and owns its start and stop, so "
            f"reconcile does not restart it; the new config is written on every node and taken at the next start: "
            f"restart it through Pacemaker when it suits you: crm_resource --restart -r {name}")


