"""Watching HAProxy for drift: the managed file, and the servers' runtime state.

One watch for both kinds (one file, one event). It polls: one stat() of the file and one
`show servers state`, cheaper than inotify plus a socket subscription HAProxy does not
offer. The agent's own writes are not drift: a file whose content is what reconcile last
installed, and a runtime state equal to what reconcile left after its last apply, yield
nothing (so one commit gives one run, not a second one for the agent's own changes).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterator

from reconcilers.base import ApplyError, AtomicWriter, Node
from reconcilers.haproxy.config import CONFIG
from reconcilers.haproxy.runtime import CHECK_ENABLED, RuntimeAPI, parse_servers_state

Signature = tuple | None


def file_signature(path: Path = CONFIG) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def runtime_signature(api: RuntimeAPI) -> Signature:
    """What a drift of the servers looks like: addresses, weights, admin state, checks."""
    if not api.reachable():
        return None
    try:
        servers = parse_servers_state(api.command("show servers state", read_only=True))
    except ApplyError:
        return None
    return tuple(sorted((s.backend, s.name, s.address, s.port, s.admin, s.weight, s.check_state & CHECK_ENABLED)
                        for by_name in servers.values() for s in by_name.values()))


def _runtime_record(node: Node) -> Path:
    return Path(node.state_dir) / "haproxy" / "runtime-after-apply.json"


def record_runtime(node: Node) -> None:
    """Remember the runtime state an apply left, so that the watch does not report it."""
    signature = runtime_signature(RuntimeAPI(node, timeout=5.0))
    if signature is not None:
        AtomicWriter(node).write(_runtime_record(node), json.dumps(signature), mode=0o600)


def _recorded_runtime(node: Node) -> Signature:
    try:
        return tuple(tuple(row) for row in json.loads(_runtime_record(node).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _own_file(node: Node, path: Path) -> bool:
    """True when `path` holds exactly what reconcile last installed there."""
    written = Path(node.state_dir) / "haproxy" / "haproxy.cfg.written"
    try:
        return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(written.read_bytes()).digest()
    except OSError:
        return False


def watch(node: Node, interval: float = 0.2, path: Path = CONFIG) -> Iterator[str]:
    """Yield a reason when the managed file changes, when HAProxy's server state changes,
    or when HAProxy stops or starts; not for what reconcile itself did."""
    api = RuntimeAPI(node, timeout=2.0)
    last_file = file_signature(path)
    last_state = runtime_signature(api)
    while True:
        time.sleep(interval)
        now_file = file_signature(path)
        if now_file != last_file:
            last_file = now_file
            if not _own_file(node, path):
                yield f"{path} changed"
        now_state = runtime_signature(api)
        if now_state != last_state:
            was_running = last_state is not None
            last_state = now_state
            if now_state is None:
                yield "HAProxy stopped"
            elif not was_running:
                if now_state != _recorded_runtime(node):
                    yield "HAProxy started"
            elif now_state != _recorded_runtime(node):
                yield "HAProxy server state changed"
