"""Which node a run is for: this machine, unless a lab or a test says otherwise.

The node is named by its host name (a lab node has its own UTS namespace, so inside it the
host name *is* the node). `--node` may name another node for what only reads and renders
(plan, validate), never for what changes a machine: `apply` (and the agent) act on this
machine only, so `apply --node X` is refused unless X is this host. A test that drives
`apply` for a node monkeypatches `this_host` (no product switch exists to pretend).

A name the tree does not know is a typo until proven otherwise: an error that lists the
nodes it knows. A machine that no Cluster lists and no manifest names is told so; only
manifests placed on every node (`nodes: ["*"]`) land on it.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any


def this_host() -> str:
    """This machine's node name: its host name, up to the first dot."""
    return socket.gethostname().split(".")[0]


class IdentityError(Exception):
    """The run cannot go on for this node; the message says why and what to do."""


@dataclass
class NodeChoice:
    name: str
    local: bool  # the node is this machine: what is observed is the node's own state
    notes: list[str] = field(default_factory=list)


def _known(named: frozenset[str]) -> str:
    return ", ".join(sorted(named)) if named else "none"


def choose_node(tree: Any, requested: str | None, mode: str, host: str | None = None, owned: int = 0) -> NodeChoice:
    """The node for `mode` (dry-run, apply, validate, agent, render), or IdentityError. `owned`:
    how many objects this node's inventory holds (a node git no longer names prunes them)."""
    host = host or this_host()
    named: frozenset[str] = tree.named_nodes
    name = requested or host
    if requested and named and requested not in named:
        raise IdentityError(f"unknown node {requested!r}: the tree at {tree.root} names {_known(named)}")
    if mode in ("apply", "agent") and name != host:
        raise IdentityError(
            f"{mode} acts on this machine only: this host is {host!r}, not {name!r}. Run it on {name} (its agent "
            f"does), or see what it would do there with: reconcile --dry-run --node {name}")
    notes: list[str] = []
    if name not in named:
        placed_everywhere = tree.everywhere()
        if not placed_everywhere:
            msg = (f"{'this machine' if name == host else 'node'} {name!r} is in no placement of the tree: no "
                   f"Cluster lists it and no manifest names it (nodes the tree names: {_known(named)})")
            if owned:
                # Taken out of git: what it created is pruned (the mass-prune guard still holds).
                notes.append(msg + f"; the {owned} object(s) reconcile created here are deleted")
            elif mode in ("apply", "agent"):
                raise IdentityError(msg + "; nothing would be applied")
            else:
                notes.append(msg + "; nothing lands here")
        else:
            notes.append(f"{name!r} is named by no Cluster or placement: only the {len(placed_everywhere)} "
                         'manifest(s) placed on every node (nodes: ["*"]) land here')
    if name != host and mode == "render":
        notes.append(f"rendering for {name} on {host}: the secrets and files it names are read on this machine")
    elif name != host:
        notes.append(f"planning for {name} on {host}: what is observed is this machine's state, not {name}'s")
    return NodeChoice(name, local=name == host, notes=notes)
