"""Which dangerous directives this node allows: a setting of the node, never of a manifest.

A manifest comes from git; whether keepalived on this node may run programs the manifests
name (vrrp_script, notify scripts, MISC_CHECK, FIFO readers, start-up scripts) or read other
files (`include`) is the node owner's decision, written on the node:

    # /etc/reconcile/policy.yaml
    keepalived:
      allow: [scripts, notify, include, files]

`policy_allows(node, tool, what)` is the one question the keepalived package asks, so that
a generic node-policy module (issue 13's) can replace this one without touching callers.
Anything not listed is refused; an unreadable or malformed file allows nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from reconcilers.base import Node

POLICY_FILE = Path("/etc/reconcile/policy.yaml")
WHAT = {
    "scripts": "run the programs of vrrp_script, MISC_CHECK, FIFO readers and start-up/shut-down scripts",
    "notify": "run notify scripts (notify_*, notify_up/down, quorum_up/down)",
    "include": "read other configuration files (include)",
    "files": "write, truncate or remove the files a manifest names (reload_file, reload_time_file, "
             "config_save_dir, tmp_config_directory, a track file's init_file … overwrite)",
}
# Directives that make keepalived write, truncate or remove a file of the manifest's choosing.
WRITES_FILES = frozenset({"reload_file", "reload_time_file", "config_save_dir", "tmp_config_directory"})


def policy_file() -> Path:
    return Path(os.environ.get("RECONCILE_POLICY", POLICY_FILE))


def _load(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def policy_allows(node: Node, tool: str, what: str) -> bool:
    """Whether this node lets `tool` (e.g. "keepalived") do `what` (e.g. "scripts")."""
    section = _load(policy_file()).get(tool)
    allowed = section.get("allow", []) if isinstance(section, dict) else []
    return isinstance(allowed, list) and what in allowed


def refusal_text(tool: str, what: str) -> str:
    """The end of an error message: what the policy would have to say."""
    return (f"this node's policy does not allow {tool} to {WHAT.get(what, what)}; the node's owner allows it in "
            f"{policy_file()} ({tool}: {{allow: [{what}]}})")
