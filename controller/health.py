"""Health beside sync, kstatus-style: the engine's side of `Reconciler.health`.

Sync says whether the node matches git; health says whether the service works. Both are
reported per object and per node, each as a status with a reason:

- sync: Ready (matches git), Reconciling (a change is pending or another node applies
  it), Stalled (it cannot get there: failed, skipped, not installed, not converging);
- health: Healthy, Degraded, Unknown, as the kind's reconciler judged it.

`HealthChecks` runs each reconciler's `health` in a thread of its own on a read-only node
(its runner refuses anything but read-only commands, also during an apply), started as
soon as the reconciler has observed, and waits for each at most `timeout` seconds: a plan
never waits long for health, and a hung tool makes its objects Unknown, not the plan late.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from reconcilers.base import NODE, Desired, Health, Key, Node, Reconciler, Runner, Snapshot

log = logging.getLogger("reconcile")

DEFAULT_TIMEOUT = 3.0
RANK = {"Healthy": 0, "Unknown": 1, "Degraded": 2}  # worst wins
SYNC_RANK = {"Ready": 0, "Reconciling": 1, "Stalled": 2}

# ObjectResult.status → (sync status, reason)
_SYNC = {
    "in-sync": ("Ready", "InSync"),
    "changed": ("Ready", "Applied"),
    "drift-corrected": ("Ready", "DriftCorrected"),
    "pending": ("Reconciling", "Pending"),
    "deferred": ("Reconciling", "Deferred"),
    "failed": ("Stalled", "Failed"),
    "skipped": ("Stalled", "Skipped"),
    "not-installed": ("Stalled", "NotInstalled"),
    "not-converging": ("Stalled", "NotConverging"),
}


def sync_of(status: str, action: str | None = None) -> dict[str, str]:
    """An object's sync condition from its run status: {status, reason}."""
    cond, reason = _SYNC.get(status, ("Stalled", "Unknown"))
    if status == "pending" and action:
        reason = {"create": "CreatePending", "update": "UpdatePending", "delete": "DeletePending"}[action]
    elif status == "changed" and action == "delete":
        reason = "Deleted"
    return {"status": cond, "reason": reason}


def worst(statuses: Iterable[str], rank: dict[str, int] = RANK) -> str | None:
    found = [s for s in statuses if s in rank]
    return max(found, key=rank.__getitem__) if found else None


def summary(statuses: list[str], rank: dict[str, int]) -> dict[str, Any]:
    """{status: the worst, reason: counts in words} of a node's objects (and facets)."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    top = worst(statuses, rank)
    if top is None:
        return {"status": None, "reason": "NothingReported", "counts": {}}
    if len(counts) == 1:
        reason = f"All{top}"
    else:
        reason = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=rank.__getitem__, reverse=True))
    return {"status": top, "reason": reason, "counts": counts}


@dataclass
class _Check:
    rec: Reconciler
    keys: list[Key]
    started: float
    thread: threading.Thread
    report: Any = None
    error: BaseException | None = None
    seconds: float | None = None


@dataclass
class HealthResults:
    """What the checks found: per object, per node facet, and how long each reconciler took."""

    objects: dict[Key, Health] = field(default_factory=dict)
    node: dict[str, Health] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def read_only_node(node: Node, timeout: float) -> Node:
    """The node as health sees it: same name and state folder, a runner in dry-run mode
    (mutations raise), whose default command timeout is the health budget, and whose
    records go to the run's recorder."""
    runner = Runner(dry_run=True, recording=node.runner.recording, default_timeout=timeout)
    runner.records = node.runner.records
    # One look at the node per round of checks (a plan's own, or a new one after an apply:
    # what an apply changed is read afresh), shared by every reconciler's health.
    runner.snapshot = node.runner.snapshot or Snapshot()
    return Node(node.name, runner, node.state_dir, node.stop)


class HealthChecks:
    """Each reconciler's `health` in its own thread, each waited for at most `timeout`."""

    def __init__(self, node: Node, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.node = read_only_node(node, timeout)
        self._checks: list[_Check] = []

    def start(self, rec: Reconciler, desired: dict[str, dict[str, Desired]],
              observed: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Start `rec.health` now, in the background. Objects: what is desired of its kinds."""
        if not rec.reports_health():
            return
        keys = [(k, n) for k in rec.kinds for n in desired.get(k, {})]
        check = _Check(rec, keys, time.monotonic(), threading.Thread())

        def run() -> None:
            try:
                check.report = rec.health(self.node, desired, observed)
            except BaseException as err:  # reported as Unknown; never kills the run
                check.error = err
            check.seconds = time.monotonic() - check.started

        check.thread = threading.Thread(target=run, name=f"health-{'+'.join(rec.kinds)}", daemon=True)
        self._checks.append(check)
        check.thread.start()

    def results(self) -> HealthResults:
        """Wait for every check (each until its own deadline) and gather what they said."""
        out = HealthResults()
        for check in self._checks:
            check.thread.join(max(0.0, check.started + self.timeout - time.monotonic()))
            label = "+".join(check.rec.kinds)
            if check.thread.is_alive():
                why = Health.unknown("HealthTimeout", f"no answer within {self.timeout:g}s (--health-timeout)")
                out.objects.update({key: why for key in check.keys})
                out.timings[f"health.{label}"] = round(self.timeout, 4)
                continue
            out.timings[f"health.{label}"] = round(check.seconds or 0.0, 4)
            if check.error is not None:
                log.debug("health check failed", exc_info=check.error)
                why = Health.unknown("HealthCheckFailed", _message(check.error))
                out.objects.update({key: why for key in check.keys})
                continue
            self._merge(check, out)
        self._checks.clear()
        return out

    @staticmethod
    def _merge(check: _Check, out: HealthResults) -> None:
        report = check.report if isinstance(check.report, dict) else {}
        wanted = set(check.keys)
        for kind, entries in report.items():
            if not isinstance(entries, dict):
                continue
            for name, health in entries.items():
                if not isinstance(health, Health):
                    health = Health.unknown("HealthCheckFailed", f"health() returned {type(health).__name__}, "
                                                                 "not a Health (a bug)")
                if kind == NODE:
                    have = out.node.get(name)
                    if have is None or RANK[health.status] > RANK[have.status]:
                        out.node[name] = health
                elif (kind, name) in wanted:
                    out.objects[(kind, name)] = health


def _message(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
