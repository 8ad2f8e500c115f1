"""Drain: move this node's virtual addresses away for maintenance, without a reload.

Every VRRP instance reconcile renders tracks one file, `reconcile_drain`
(<state>/keepalived/drain, weight 0): 0 is normal, anything else puts all the node's
instances in FAULT at once. keepalived reads the file when it changes (inotify), so a
drain is a write, not a reload: the master sends a priority-0 advert as it leaves, and a
peer takes over after its skew time (well under a second), whatever the priorities,
`nopreempt` or the advert interval say. Undrain writes 0: the instances leave FAULT and
the priorities decide again.

No request cut (gate.py): before the write, new TCP connections to the addresses that move
are held back (their SYN dropped: the client resends it to the peer) and the open ones are
given `grace` seconds to finish; the gate opens once the peer holds the addresses.

At least once: `drain` listens for the peers' adverts and, if no peer takes over an
instance this node was MASTER for within its skew time (1.5 advert intervals), undrains
again and raises `DrainRefused`: the address must stay somewhere, and it is back on this
node after one master-down interval. `force=True` skips that check.

The API (the rollout work builds on it; `reconcile drain|undrain [NODE]` calls it through
KeepalivedReconciler.drain/undrain, the contract's optional hooks):

    from reconcilers.keepalived.drain import drain, undrain, drained
    result = drain(node)          # DrainResult(moved=["VI_1"], seconds=0.21, held=0.02, cut=0)
    drained(node)                 # True
    undrain(node)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from reconcilers.base import ApplyError, AtomicWriter, Node
from reconcilers.keepalived.conf import parse
from reconcilers.keepalived import gate
from reconcilers.keepalived.daemon import CONFIG, Keepalived, read_config
from reconcilers.keepalived.guard import node_addresses
from reconcilers.keepalived.model import instances_in
from reconcilers.keepalived.render import drain_file
from reconcilers.keepalived.vrrp import MASTER, holders, listen_for_masters
from schemas.keepalived import RESERVED_TRACK


class DrainRefused(ApplyError):
    """No peer took over: draining would leave an address nowhere."""


@dataclass
class DrainResult:
    moved: list[str] = field(default_factory=list)  # instances a peer took over
    seconds: float = 0.0  # from the write to the last peer's first advert
    held: float = 0.0  # new connections held back before the write, while open ones finished
    cut: int = 0  # connections still open when the grace ran out: reset at the switch


def configured_file(node: Node) -> Path:
    """The drain file keepalived.conf tracks here; ApplyError when reconcile does not
    manage keepalived on this node."""
    text = read_config()
    path = drain_file(node.state_dir)
    if text is not None:
        for s in parse(text):
            if s.keyword == "track_file" and s.args == [RESERVED_TRACK]:
                configured = s.value("file")
                if configured:
                    return Path(configured)
    raise ApplyError(f"{CONFIG} has no track file {RESERVED_TRACK}: reconcile does not manage keepalived on "
                     f"node {node.name} (apply a VirtualIP there first); {path} would change nothing")


def manages(node: Node) -> bool:
    """Whether reconcile manages keepalived here (its file tracks the drain file)."""
    try:
        configured_file(node)
    except ApplyError:
        return False
    return True


def drained(node: Node) -> bool:
    """Whether this node is drained (its drain file holds a non-zero number)."""
    try:
        path = configured_file(node)
    except ApplyError:
        return False
    try:
        return int(path.read_text().strip() or "0") != 0
    except (OSError, ValueError):
        return False


def serving(node: Node) -> list[str]:
    """The instances whose addresses this node holds now ("VI_1 holds 192.0.2.100/24"):
    what a drain would move to a peer. [] when it holds none."""
    instances = instances_in(parse(read_config() or ""))
    if not instances:
        return []
    addrs = node_addresses(node)
    out = []
    for inst in instances:
        held = [a for a in inst.addresses + inst.excluded if holders(addrs, a)]
        if held:
            out.append(f"{inst.name} holds {', '.join(held)}")
    return out


def _write(node: Node, path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    AtomicWriter(node).write(path, f"{value}\n", mode=0o644)


def drain(node: Node, force: bool = False, timeout: float | None = None,
          grace: float = gate.DEFAULT_GRACE) -> DrainResult:
    """Put this node's instances in FAULT so that peers take its addresses over, the
    connections open on those addresses first given `grace` seconds to finish."""
    path = configured_file(node)
    daemon = Keepalived(node)
    pid = daemon.pid()
    instances = instances_in(parse(read_config() or ""))
    running = daemon.dump(pid) if pid is not None else None
    mastered = [i for i in instances if running and (live := running.get(i.name)) and live.state == MASTER]
    started = time.monotonic()
    if force or not mastered:
        _write(node, path, 1)
        return DrainResult([], round(time.monotonic() - started, 3))
    node.runner.guard("vrrp-listen", [i.name for i in mastered], read_only=True)
    own = {a.split("/")[0] for a in node_addresses(node)}
    # A backup answers a priority-0 advert after its skew time, at most one advert interval.
    wait = timeout if timeout is not None else max(1.5 * i.advert_interval + 0.3 for i in mastered)
    held = gate.close_gate(node, gate.held_here(mastered, own))
    try:
        gate.wait_closed(held, grace)
        started = time.monotonic()
        taken = listen_for_masters(mastered, own, wait, start=lambda: _write(node, path, 1))
        seconds = round(time.monotonic() - started, 3)
    finally:
        if held.closed:
            gate.open_gate(node)
    if taken != {i.name for i in mastered}:
        _write(node, path, 0)
        left = sorted({i.name for i in mastered} - taken)
        raise DrainRefused(f"no peer took over {', '.join(left)} within {wait:.1f}s: node {node.name} is undrained "
                           "again so that the address stays somewhere (at least once); --force drains anyway")
    return DrainResult(sorted(taken), seconds, held.held, held.still_open)


def undrain(node: Node) -> None:
    """Let this node's instances take part in elections again (and drop a connection gate a
    killed drain left behind)."""
    _write(node, configured_file(node), 0)
    if gate.left_behind(node):
        gate.open_gate(node)
