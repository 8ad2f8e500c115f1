"""The agent's Prometheus metrics, served on a local port (127.0.0.1 unless told otherwise).

One registry per agent (not the library's global one), so tests can read it directly and
nothing else leaks in. Names follow Prometheus conventions: `_total` counters, `_seconds`
durations, an `_info` gauge carrying the applied revision as a label.
"""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client import start_http_server


class AgentMetrics:
    """Counters and gauges the agent updates after each run and on each event."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total
        self.runs = Counter("reconcile_runs", "Reconcile runs, by result and what triggered them",
                            ["result", "trigger"], registry=r)
        self.run_seconds = Histogram("reconcile_run_duration_seconds", "Duration of one reconcile run",
                                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r)
        self.objects = Gauge("reconcile_objects", "Objects of the last run, by kind and result",
                             ["kind", "result"], registry=r)
        self.drift_events = Counter("reconcile_drift_events", "Drift notifications from the reconcilers' watch()",
                                    ["kind"], registry=r)
        self.drift_objects = Counter("reconcile_drift_objects", "Objects found changed outside git, by what was done",
                                     ["kind", "action"], registry=r)
        self.revision_info = Gauge("reconcile_revision_info", "The revision applied on this node (value 1)",
                                   ["revision", "source"], registry=r)
        self.revision_failures = Counter("reconcile_revision_failures", "Revisions refused, by reason",
                                         ["reason"], registry=r)
        self.source_errors = Counter("reconcile_source_errors", "Failed checks or fetches of the repository",
                                     ["reason"], registry=r)
        self.last_run = Gauge("reconcile_last_run_timestamp_seconds", "When the last run ended", registry=r)
        self.last_converged = Gauge("reconcile_last_converged_timestamp_seconds",
                                    "When a run last ended with the node matching git", registry=r)
        self.in_backoff = Gauge("reconcile_objects_in_backoff", "Failing objects waiting for their next try", registry=r)
        self.ready = Gauge("reconcile_ready", "1 when the node matches the latest revision, else 0", registry=r)
        # Sync and health per object and node, kstatus-style, as state sets (1 for the
        # current status, 0 for the others), so alerts can say which object and why.
        self.object_sync = Gauge("reconcile_object_sync", "Each object's sync: 1 for its status (Ready, "
                                 "Reconciling, Stalled)", ["kind", "name", "status"], registry=r)
        self.object_health = Gauge("reconcile_object_health", "Each object's health: 1 for its status (Healthy, "
                                   "Degraded, Unknown)", ["kind", "name", "status", "reason"], registry=r)
        self.node_health = Gauge("reconcile_node_health", "Node-wide health facets (pacemaker, keepalived, "
                                 "haproxy): 1 for the status", ["facet", "status", "reason"], registry=r)
        self.healthy = Gauge("reconcile_healthy", "1 when every object and facet of the last run is Healthy, "
                             "0 when one is not, -1 when health was not checked", registry=r)

        # Rollouts (controller/rollout.py): this node's phase as a state set, its turns and their parts.
        self.rollout_phase = Gauge("reconcile_rollout_phase", "This node's rollout phase: 1 for the current one "
                                   "(idle, waiting, draining, applying, gating, soaking, failed)", ["phase"],
                                   registry=r)
        self.rollout_turns = Counter("reconcile_rollout_turns", "Rollout turns this node took, by outcome "
                                     "(applied, halted, rolled-back)", ["outcome"], registry=r)
        self.rollout_seconds = Gauge("reconcile_rollout_last_turn_seconds", "The last turn's parts (drain, apply, "
                                     "gate, soak, turn) in seconds", ["part"], registry=r)

    def rollout(self, phase: str, outcome: str | None = None, figures: dict[str, float] | None = None) -> None:
        for p in ("idle", "waiting", "draining", "applying", "gating", "soaking", "failed"):
            self.rollout_phase.labels(phase=p).set(int(p == phase))
        if outcome:
            self.rollout_turns.labels(outcome=outcome).inc()
        for part, value in (figures or {}).items():
            self.rollout_seconds.labels(part=part).set(value)

    def run(self, record: Any, trigger: str) -> None:
        """Account one finished run (an engine RunRecord)."""
        result = record.result
        self.runs.labels(result=result, trigger=trigger).inc()
        self.run_seconds.observe(record.seconds)
        self.objects.clear()
        counts: dict[tuple[str, str], int] = {}
        for o in record.objects:
            counts[(o.kind, o.status)] = counts.get((o.kind, o.status), 0) + 1
            if o.drift:
                action = {"drift-corrected": "corrected", "pending": "warned", "in-sync": "ignored"}.get(o.status, "failed")
                self.drift_objects.labels(kind=o.kind, action=action).inc()
        for (kind, status), n in counts.items():
            self.objects.labels(kind=kind, result=status).set(n)
        self.health(record)
        now = time.time()
        self.last_run.set(now)
        if result in ("in-sync", "converged"):
            self.last_converged.set(now)

    def health(self, record: Any) -> None:
        """Sync and health of the run's objects and the node's facets."""
        for gauge in (self.object_sync, self.object_health, self.node_health):
            gauge.clear()
        for o in record.objects:
            sync = o.sync["status"]
            for status in ("Ready", "Reconciling", "Stalled"):
                self.object_sync.labels(kind=o.kind, name=o.name, status=status).set(int(status == sync))
            if o.health:
                self.object_health.labels(kind=o.kind, name=o.name, status=o.health["status"],
                                          reason=o.health["reason"]).set(1)
        for facet, h in record.node_health.items():
            self.node_health.labels(facet=facet, status=h["status"], reason=h["reason"]).set(1)
        overall = record.health_summary()["status"]
        self.healthy.set(-1 if overall is None else int(overall == "Healthy"))

    def applied(self, revision: str, source: str) -> None:
        self.revision_info.clear()
        self.revision_info.labels(revision=revision, source=source).set(1)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on address:port in a thread; returns the port (0 picks one)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_address[1])
