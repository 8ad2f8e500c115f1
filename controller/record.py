"""What a run of the engine reports: one ObjectResult per object and the RunRecord of the
run (plan or apply), with their JSON form: what `-o json`, the status file, the history and
the agent's status are made of.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from controller.health import RANK, SYNC_RANK, summary, sync_of
from controller.plan import _ABSENT


@dataclass
class ObjectResult:
    kind: str
    name: str
    status: str  # in-sync | pending | changed | drift-corrected | failed | skipped | not-installed | not-converging | deferred
    action: str | None = None  # create | update | delete
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    source: str = ""
    drift: bool = False
    health: dict[str, str] | None = None  # {status, reason, message}; None: not reported
    shown_as: str = ""  # how people know it, when "kind name" would mislead

    @property
    def sync(self) -> dict[str, str]:
        return sync_of(self.status, self.action)

    @property
    def label(self) -> str:
        return self.shown_as or f"{self.kind} {self.name}"


@dataclass
class RunRecord:
    node: str
    revision: str
    repo: str
    mode: str  # dry-run | apply
    started: str
    seconds: float = 0.0
    passes: int = 0
    objects: list[ObjectResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    node_health: dict[str, dict[str, str]] = field(default_factory=dict)  # facet → {status, reason, message}
    skipped: list[str] = field(default_factory=list)  # native checks that could not run here, and why
    notes: list[str] = field(default_factory=list)  # about the node, shown once (NodeNote)
    health_checked: bool = False  # False with --no-health
    # Why the revision itself was refused and nothing of it applied (ValidationFailed,
    # PruneRefused); empty when it was tried. An agent keeps its last good revision then.
    refused: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            key = o.action if o.status == "pending" and o.action else o.status
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def result(self) -> str:
        statuses = {o.status for o in self.objects}
        if self.errors or statuses & {"failed", "skipped", "not-converging"}:
            return "failed"
        if statuses & {"pending", "not-installed"}:
            return "pending"
        return "in-sync" if self.mode == "dry-run" or statuses <= {"in-sync", "deferred"} else "converged"

    def exit_code(self) -> int:
        """0 nothing (left) to change, 2 changes pending, 1 error: as terraform plan -detailed-exitcode."""
        return {"failed": 1, "pending": 2}.get(self.result, 0)

    def sync_summary(self) -> dict[str, Any]:
        """The node's sync: the worst of its objects' (Stalled too when the run had errors)."""
        statuses = [o.sync["status"] for o in self.objects] + (["Stalled"] if self.errors else [])
        return summary(statuses, SYNC_RANK)

    def health_summary(self) -> dict[str, Any]:
        """The node's health: the worst of its objects' and its node-wide facets'."""
        if not self.health_checked:
            return {"status": None, "reason": "NotChecked", "counts": {}}
        statuses = [o.health["status"] for o in self.objects if o.health] + \
            [h["status"] for h in self.node_health.values()]
        return summary(statuses, RANK)

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready data. Built field by field rather than with
        `dataclasses.asdict`, whose deep copy of every changed field's values was a quarter
        of a second at 1,000 created objects, for data that is only serialized. Lists and
        dicts are copied one level (their items are strings or plain JSON values)."""
        data = {name: _copied(getattr(self, name)) for name in _RECORD_FIELDS}
        data["objects"] = [_object_dict(o) for o in self.objects]
        data["node_health"] = {facet: dict(h) for facet, h in self.node_health.items()}
        data["result"] = self.result
        data["counts"] = self.counts()
        data["sync"] = self.sync_summary()
        data["health"] = self.health_summary()
        return data


_RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))  # in order: the JSON keeps asdict's key order
_OBJECT_FIELDS = tuple(f.name for f in fields(ObjectResult))


def _copied(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def _object_dict(o: ObjectResult) -> dict[str, Any]:
    obj = {name: _copied(getattr(o, name)) for name in _OBJECT_FIELDS}
    obj["fields"] = [{"field": f, "observed": None if a is _ABSENT else a, "desired": None if b is _ABSENT else b}
                     for f, a, b in o.fields]
    obj["sync"] = o.sync
    return obj
