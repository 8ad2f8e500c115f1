"""The node's policy: what manifests may make this node do beyond plain configuration.

Some directives run code or open control paths on the node (HAProxy's `lua-load` or a
runtime API on TCP, keepalived's scripts, LXC hooks). Git may ask for them; only the
node's administrator may allow them, in a file on the node that git never writes:

    # /etc/reconcile/policy.yaml (root-owned; a missing file allows nothing)
    haproxy:
      allow: [lua, stats-socket-tcp]
    keepalived:
      allow: [scripts]
    lxc:
      allow: [hooks]

One section per tool, each with `allow`: the capabilities that tool's reconciler asks for
(each reconciler documents its own). Other keys of a section are the tool's to define.
`RECONCILE_POLICY` names another file (tests, a packaged layout).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconcilers.base import ApplyError

POLICY_FILE = Path("/etc/reconcile/policy.yaml")


def policy_path() -> Path:
    return Path(os.environ.get("RECONCILE_POLICY", str(POLICY_FILE)))


@dataclass
class Policy:
    """A node's policy file, read once."""

    path: Path
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, tool: str) -> dict[str, Any]:
        return self.tools.get(tool, {})

    def allows(self, tool: str, capability: str) -> bool:
        return capability in self.section(tool).get("allow", [])

    def refusal(self, tool: str, capability: str, what: str) -> str:
        """Why `what` is refused, and how an administrator would allow it."""
        where = self.path if self.path.exists() else f"{self.path} (absent)"
        return (f"{what}; refused: this node's policy ({where}) does not allow {tool} capability "
                f"{capability!r} (add it to `{tool}: allow:` there if this node may do it)")


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path` (default: `policy_path()`). A missing file allows nothing; an
    unreadable or malformed one is an error naming the file and line."""
    path = path or policy_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Policy(path)
    except OSError as err:
        raise ApplyError(f"{path}: cannot read the node policy: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ApplyError(f"{path}{line}: the node policy is not valid YAML") from None
    if not isinstance(data, dict):
        raise ApplyError(f"{path}: the node policy must map tool names to sections, e.g. `haproxy: {{allow: [lua]}}`")
    tools: dict[str, dict[str, Any]] = {}
    for tool, section in data.items():
        if not isinstance(section, dict):
            raise ApplyError(f"{path}: {tool}: must be a mapping with `allow: [...]`")
        allow = section.get("allow", [])
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ApplyError(f"{path}: {tool}.allow: must be a list of capability names")
        tools[str(tool)] = section
    return Policy(path, tools)
