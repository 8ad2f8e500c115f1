"""The agent's parts that are not its loop: triggers (level-based hints that coalesce),
the per-object backoff of failing objects, and systemd's notify protocol (READY, STATUS,
WATCHDOG) spoken on $NOTIFY_SOCKET. controller/agent.py imports them.
"""
from __future__ import annotations

import logging
import os
import queue
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from controller import status as agent_status
from controller.engine import RunRecord

log = logging.getLogger("reconcile.agent")

# A burst of events (an address removed then re-added, many files written) is one run.
SETTLE_SECONDS = 0.02


# --- triggers ------------------------------------------------------------------------------


class Triggers:
    """Reasons to run, from threads and signal handlers; a burst is drained as one.

    A SimpleQueue because its put() is safe in a signal handler (it never blocks on a lock
    the interrupted main thread may hold).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def put(self, kind: str, detail: str = "") -> None:
        self._queue.put((kind, detail))

    def wait(self, timeout: float | None, settle: float = SETTLE_SECONDS) -> dict[str, str]:
        """Block up to `timeout` for a trigger, then gather what else arrives within
        `settle`. Returns {kind: first detail}; empty on timeout."""
        try:
            first = self._queue.get(timeout=None if timeout is None else max(timeout, 0.0))
        except queue.Empty:
            return {}
        got = {first[0]: first[1]}
        deadline = time.monotonic() + settle
        while True:
            try:
                kind, detail = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return got
            got.setdefault(kind, detail)


# --- backoff -----------------------------------------------------------------------------


@dataclass
class Failing:
    failures: int
    until: float  # time.time() of the next try
    error: str


@dataclass
class Backoff:
    """Per-object exponential backoff: base · 2^(failures−1), capped, ±10 % jitter."""

    base: float = 5.0
    cap: float = 300.0
    objects: dict[tuple[str, str], Failing] = field(default_factory=dict)

    def holds(self, now: float) -> dict[tuple[str, str], str]:
        """Objects not to touch in a run starting `now`, with the reason for people."""
        return {key: (f"backing off after {f.failures} failure{'s' if f.failures > 1 else ''}; "
                      f"next try in {f.until - now:.0f}s (last error: {f.error})")
                for key, f in self.objects.items() if f.until > now}

    def update(self, record: RunRecord, now: float) -> None:
        seen = set()
        for o in record.objects:
            key = (o.kind, o.name)
            seen.add(key)
            held = key in self.objects and self.objects[key].until > now
            if o.status in ("failed", "not-converging") or (o.status == "skipped" and held):
                if held:
                    continue  # not tried this run
                failures = self.objects[key].failures + 1 if key in self.objects else 1
                delay = min(self.base * 2 ** (failures - 1), self.cap) * random.uniform(0.9, 1.1)
                self.objects[key] = Failing(failures, now + delay, o.error or o.status)
            elif o.status != "skipped":
                self.objects.pop(key, None)
        for key in list(self.objects):
            if key not in seen:  # gone from git and from the node
                del self.objects[key]

    def next_try(self) -> float | None:
        return min((f.until for f in self.objects.values()), default=None)

    def clear(self) -> None:
        self.objects.clear()

    def to_dict(self) -> dict[str, Any]:
        return {f"{k}/{n}": {"failures": f.failures, "retryAt": agent_status.iso(f.until), "error": f.error}
                for (k, n), f in sorted(self.objects.items())}


# --- systemd -------------------------------------------------------------------------------


class Notifier:
    """sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (a path, or '@' for the
    abstract namespace). Does nothing when not started by systemd with Type=notify."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and mine else None

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), address)
            return True
        except OSError as err:
            log.debug("sd_notify to %s failed: %s", self.address, err)
            return False
