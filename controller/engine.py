"""The engine: plan one node against one validated tree, and converge it.

Per run: select the manifests that land on the node, ask each kind's reconciler what it
desires and what it observes, diff, order the changes across kinds, and (unless dry-run)
apply them; then observe again and repeat until nothing differs or `max_passes` ran. A
change that fails skips only what depends on it. Dry-run never calls `apply`, and the
runner it uses refuses any command not declared read-only. What a run reports
(ObjectResult, RunRecord) is in controller/record.py.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from controller.health import DEFAULT_TIMEOUT, HealthChecks, HealthResults
from controller.loader import Tree
from controller.plan import _ABSENT, create_fields, diff_kind, field_changes, state_hash
from controller.record import ObjectResult, RunRecord
from controller.state import Inventory, StateError, check_state
from reconcilers import CONSUMES, REGISTRY, NotInstalled, faults, reconciler_class
from reconcilers.base import (
    ApplyError, Background, Change, CommandError, Deferred, Desired, Health, Held, Interrupted, Node, NodeNote,
    PerObject, Reconciler, UNFINISHED, Skipped, Snapshot, TempJournal, read_units, systemd_running,
)

log = logging.getLogger("reconcile")
PENDING = {"create", "update", "delete"}
# (tree digest, node, reconciler) whose rendered output the native validators accepted, in this process.
_VALIDATED: set[tuple[str, str, str]] = set()


def _internal(err: Exception) -> str:
    """A reconciler's bug, for people: what and where, with the traceback in the debug log."""
    log.debug("internal error", exc_info=err)
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"internal error ({type(err).__name__}: {err}{at}); please report it, with `reconcile -v` output"


@contextlib.contextmanager
def _gc_paused():
    """A run allocates many small objects and makes few reference cycles: with a large
    tree in memory, each pass of the cyclic collector walked the whole tree, so a plan grew
    faster than the number of objects. Collected once at the end instead."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _registered(kind: str) -> type[Reconciler] | None:
    try:
        return reconciler_class(kind)
    except NotInstalled:
        return None


def _label(rec: Reconciler) -> str:
    return "+".join(rec.kinds)


def _jsonable(value: Any) -> Any:
    return None if value is _ABSENT else value


ALLOW_TRAILER = "Reconcile-Allow"


def revision_allowances(tree: Tree, node: Node) -> frozenset[str]:
    """What the commit being applied allows by its `Reconcile-Allow:` trailer (e.g.
    `Reconcile-Allow: disruption`): an allowance that holds for that revision only, for an
    agent no operator stands behind. Nothing for a tree that is not a git commit."""
    revision = tree.revision
    if len(revision) != 40 or not all(c in "0123456789abcdef" for c in revision):
        return frozenset()
    try:
        result = node.run(["git", "-C", str(tree.root), "log", "-1", f"--format=%(trailers:key={ALLOW_TRAILER},"
                           "valueonly)", revision], read_only=True, check=False, timeout=10)
    except CommandError:
        return frozenset()
    if result.rc != 0:
        return frozenset()
    return frozenset(w.strip().lower() for line in result.stdout.splitlines() for w in line.split(",") if w.strip())


def owner_order(owners: list[Reconciler]) -> list[Reconciler]:
    """Reconcilers in dependency order (one after those owning the kinds in its `after`),
    ties in registry order."""
    pending = list(owners)
    done: list[Reconciler] = []
    while pending:
        for rec in pending:
            others = [o for o in pending if o is not rec]
            if not any(set(rec.after) & set(o.kinds) for o in others):
                done.append(rec)
                pending.remove(rec)
                break
        else:  # a cycle: keep registry order rather than fail
            done.extend(pending)
            break
    return done


class Engine:
    def __init__(
        self,
        tree: Tree,
        node: Node,
        *,
        inventory: Inventory | None = None,
        max_passes: int = 4,
        allow_mass_prune: bool = False,
        max_prune_fraction: float = 0.5,
        hold: dict[tuple[str, str], str] | None = None,
        stop: Callable[[], bool] | None = None,
        progress: Callable[[str, list[ObjectResult]], None] | None = None,
        health: bool = True,
        health_timeout: float = DEFAULT_TIMEOUT,
    ):
        self.tree = tree
        self.node = node
        self.inventory = inventory if inventory is not None else Inventory(node.state_dir)
        self.max_passes = max_passes
        self.allow_mass_prune = allow_mass_prune
        self.max_prune_fraction = max_prune_fraction
        # Objects the caller (the agent's backoff) does not want touched this run: (kind,
        # name) → why. They are skipped like a failure, and so are their dependents.
        self.hold = dict(hold or {})
        # Asked between two changes: True means finish here (the agent got SIGTERM).
        self.stop = stop
        if stop is not None and node.stop is None:
            node.stop = stop
        self.owners: list[Reconciler] = []  # in dependency order
        self.reconcilers: dict[str, Reconciler] = {}  # kind → its owner
        self.desired: dict[str, dict[str, Desired]] = {}
        self.results: dict[tuple[str, str], ObjectResult] = {}
        self.order: list[str] = []  # kinds, in dependency order
        self.refused: dict[tuple[str, str], str] = {}  # objects a native validator refused
        # Told as objects are applied ("applying" before a reconciler's batch, "done" per
        # object after it), so that the CLI shows each one as it happens.
        self.progress = progress
        # Health beside sync (controller/health.py): asked after the last observation.
        self.check_health = health
        self.health_timeout = health_timeout
        self.observed: dict[str, dict[str, dict[str, Any]]] = {}  # kind → the last observation
        self.unobserved: dict[str, str] = {}  # kind → why it could not be observed

    # --- preparing ---------------------------------------------------------------------

    def _prepare(self, record: RunRecord) -> None:
        if self.node.allow_from is None:  # read when a reconciler first asks (one `git log`)
            self.node.allow_from = lambda: revision_allowances(self.tree, self.node)
        items = self.tree.for_node(self.node.name)
        present = {i.kind for i in items}
        wanted = present | self.inventory.kinds()
        classes: list[type[Reconciler]] = []
        for kind, target in REGISTRY.items():
            consumed = CONSUMES.get(target)
            if kind not in wanted and consumed is not None and not present & set(consumed):
                continue  # nothing on this node for it: not even imported
            try:
                cls = reconciler_class(kind)
            except NotInstalled as err:
                for item in items:
                    if item.kind == kind:
                        self._result(ObjectResult(kind, item.name, "not-installed", notes=[str(err)],
                                                  source=item.where()))
                continue
            # A class runs for the kinds the registry gives it that this node has (or consumes).
            if cls in classes or not (kind in wanted or present & set(cls.consumes)):
                continue
            # One owner per kind: a reconciler that claims a kind the registry gives to
            # another (a test or a plug-in replaced one of its kinds) must not run at all,
            # or two reconcilers would both write that kind's artifact.
            others = {k: _registered(k) for k in cls.kinds if k != kind}
            foreign = sorted(k for k, owner in others.items() if owner is not cls)
            if foreign:
                record.errors.append(f"{cls.__name__} owns {', '.join(cls.kinds)}, but the registry gives "
                                     f"{', '.join(foreign)} to another reconciler: not run")
                for item in items:
                    if item.kind == kind:
                        self._result(ObjectResult(kind, item.name, "failed", source=item.where(),
                                                  error="its reconciler's kinds are split between reconcilers"))
                continue
            classes.append(cls)
        self.owners = owner_order([cls() for cls in classes])
        self.order = [k for rec in self.owners for k in rec.kinds]
        self.reconcilers = {k: rec for rec in self.owners for k in rec.kinds}
        sources = {(i.kind, i.name): i.where() for i in items}
        for rec in list(self.owners):
            started = time.monotonic()
            try:
                desired = rec.desired(self.tree, self.node)
                unknown = set(desired) - set(rec.kinds)
                if unknown:
                    raise TypeError(f"desired() returned kinds it does not own: {', '.join(sorted(unknown))}")
            except Exception as err:
                # Nothing can be planned for these kinds, and above all no delete: an
                # empty desired set would prune everything they own.
                why = err if isinstance(err, (ApplyError, CommandError, ValueError)) else _internal(err)
                record.errors.append(f"{'/'.join(rec.kinds)}: cannot compute the desired state: {why}")
                self.owners.remove(rec)
                for item in items:
                    if item.kind in rec.kinds:
                        self._result(ObjectResult(item.kind, item.name, "failed", source=item.where(),
                                                  error=f"cannot compute the desired state: {why}"))
                continue
            for kind in rec.kinds:
                objects = desired.get(kind, {})
                for name, d in objects.items():
                    d.source = d.source or sources.get((kind, name), "")
                self.desired[kind] = objects
            record.timings[f"desired.{_label(rec)}"] = round(time.monotonic() - started, 4)

    def _validate(self, record: RunRecord) -> None:
        for rec in self.owners:
            self._take_validation(record, rec, self._validate_one(rec))

    def _validate_one(self, rec: Reconciler) -> tuple[list[Any], float] | None:
        """`rec.validate` (its problems and how long it took), or None when there is
        nothing to check: no object, or this tree already checked in this process."""
        if not any(self.desired.get(k) or self.inventory.names(k) for k in rec.kinds):
            return None
        # What a reconciler renders is a function of the tree and the node: a long-
        # running agent re-plans the same tree on every drift event and need not
        # render and check it again (across processes, `native_check` remembers).
        if self.tree.digest and self._validated_key(rec) in _VALIDATED:
            return None
        started = time.monotonic()
        try:
            problems = list(rec.validate(self.node))
        except CommandError as err:
            if err.rc == 127 and not self.node.local:  # a tool this machine lacks: the node has it
                problems = [Skipped(f"{'/'.join(rec.kinds)}: {err.argv[0]} is not installed on this machine: "
                                    f"not checked for {self.node.name}")]
            else:
                problems = [str(err)]
        except ApplyError as err:  # a value no renderer may write
            problems = [str(err)]
        except Exception as err:
            problems = [_internal(err)]
        return problems, time.monotonic() - started

    def _validated_key(self, rec: Reconciler) -> tuple[str, str, str]:
        cls = type(rec)
        return self.tree.digest, self.node.name, f"{cls.__module__}.{cls.__qualname__}"

    def _take_validation(self, record: RunRecord, rec: Reconciler, outcome: tuple[list[Any], float] | None) -> None:
        """Record what `_validate_one` found: refused objects fail, other problems are the run's errors."""
        if outcome is None:
            return
        problems, seconds = outcome
        skipped = [p for p in problems if isinstance(p, Skipped)]
        record.skipped += [str(p) for p in skipped]
        problems = [p for p in problems if not isinstance(p, Skipped)]
        for problem in problems:
            objects = [k for k in getattr(problem, "objects", ()) if k[1] in self.desired.get(k[0], {})]
            if not objects:
                record.errors.append(f"{'/'.join(rec.kinds)}: {problem}")
            for key_ in objects:
                self.refused[key_] = f"refused by the native validator: {problem}"
                self._fail(*key_, self.refused[key_])
        record.timings[f"validate.{_label(rec)}"] = round(seconds, 4)
        if not problems and not skipped:
            if len(_VALIDATED) >= 512:
                _VALIDATED.clear()
            _VALIDATED.add(self._validated_key(rec))

    def _observe_all(self, timings: dict[str, float], node: Node,
                     observed_hook: Callable[[Reconciler], None] | None = None,
                     first: Callable[[Reconciler], None] | None = None) -> None:
        """Every reconciler's `observe`, at the same time (each in its own thread: they
        read different daemons and wait on their commands, so a plan waits for the slowest
        one rather than for all of them in turn). Each observation is stored as it arrives
        (`self.observed`, or why not in `self.unobserved`) and `observed_hook` is called
        with its reconciler then, in the calling thread: health starts there. `first(rec)`
        runs in the reconciler's thread before its observe (a plan validates there)."""
        results: queue.SimpleQueue[tuple[Reconciler, Any, BaseException | None, float]] = queue.SimpleQueue()

        def observe(rec: Reconciler) -> None:
            if first is not None:
                first(rec)
            started = time.monotonic()
            try:
                observed, error = rec.observe(node), None
            except BaseException as err:  # reported below, in the calling thread
                observed, error = None, err
            results.put((rec, observed, error, time.monotonic() - started))

        owners = list(self.owners)
        if len(owners) == 1:
            observe(owners[0])
        else:
            for rec in owners:
                threading.Thread(target=observe, args=(rec,), name=f"observe-{_label(rec)}", daemon=True).start()
        for _ in owners:
            rec, observed, error, seconds = results.get()
            tk = f"observe.{_label(rec)}"
            timings[tk] = round(timings.get(tk, 0) + seconds, 4)
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not a failed observation
            if error is not None:
                why = error if isinstance(error, (ApplyError, CommandError, OSError)) else _internal(error)
                for kind in rec.kinds:
                    self.observed.pop(kind, None)
                    self.unobserved[kind] = f"cannot observe {kind}: {why}"
                continue
            for kind in rec.kinds:
                self.observed[kind] = observed.get(kind, {})
                self.unobserved.pop(kind, None)
            if observed_hook is not None:
                observed_hook(rec)

    def _observe_and_diff(self, record: RunRecord, observed_hook: Callable[[Reconciler], None] | None = None,
                          validate: bool = False, checks: HealthChecks | None = None) -> list[Change]:
        """Observe every reconciler and diff. `validate`: each reconciler's native
        validation runs first in its own thread (a plan: one reconciler's `crm_verify` or
        CIB query does not hold up the others' observations); its refusals are taken
        before the diff, in dependency order, as `_validate` takes them. `checks`: health
        is prepared there first (prepare_health)."""
        validated: dict[int, tuple[list[Any], float] | None] = {}

        def first(rec: Reconciler) -> None:
            if checks is not None:
                self._prepare_health(checks, rec)
            if validate:
                validated[id(rec)] = self._validate_one(rec)

        self._observe_all(record.timings, self.node, observed_hook, first if validate or checks else None)
        for rec in self.owners if validate else ():
            self._take_validation(record, rec, validated.get(id(rec)))
        changes: list[Change] = []
        for rec in self.owners:  # in dependency order, whatever order the observations came in
            if any(kind in self.unobserved for kind in rec.kinds):
                for kind in rec.kinds:
                    for name in self.desired.get(kind, {}):
                        if (kind, name) not in self.refused:
                            self._fail(kind, name, self.unobserved[kind])
                continue
            observed = {kind: self.observed[kind] for kind in rec.kinds}
            for kind in rec.kinds:
                desired, seen = self.desired.get(kind, {}), observed.get(kind, {})
                owned = self.inventory.names(kind)
                # Owned but neither wanted nor there: it is gone (a create that never
                # happened, a container destroyed by hand). Forget it, delete nothing.
                for name in owned - set(desired) - set(seen):
                    self.inventory.forget(kind, name)
                kind_changes, in_sync = diff_kind(kind, desired, seen, owned & set(seen), rec.ignore)
                for name in in_sync:
                    res = self.results.get((kind, name))
                    if res is None:
                        self._result(ObjectResult(kind, name, "in-sync", source=desired[name].source))
                    elif res.status in ("pending", "not-converging"):
                        res.status = "drift-corrected" if res.drift else "changed"
                    elif res.status == "deferred":  # the node that applies it has: nothing differs
                        res.status, res.action = "in-sync", None
                changes.extend(c for c in kind_changes if c.key not in self.refused)
        return changes

    # --- the entry points --------------------------------------------------------------

    def validate(self) -> list[str]:
        """Native validation of what this node would render; messages, empty when good."""
        return self.validate_report()[0]

    def validate_report(self) -> tuple[list[str], list[str]]:
        """(problems, what was skipped and why) of the native validation for this node."""
        record = self._new_record("dry-run")
        self._prepare(record)
        self._validate(record)
        problems = record.errors + [f"{k}/{n}: {why}" for (k, n), why in self.refused.items()]
        return problems, record.skipped

    def differs(self) -> bool:
        """Whether anything on the node differs from the tree: observe and diff only (no
        native validation, no preview). The agent asks this before it calls an event drift."""
        with _gc_paused():
            return self._differs()

    def _differs(self) -> bool:
        record = self._new_record("dry-run")
        self._prepare(record)
        changes = self._observe_and_diff(record)
        return bool(changes) or any(r.status == "failed" for r in self.results.values())

    def pending(self) -> list[tuple[Reconciler, Change]]:
        """What an apply would change now, each change with its reconciler (which has seen
        desired and observed): observe and diff only, read-only. Rollouts ask each
        reconciler whether its changes disrupt service."""
        with _gc_paused():
            record = self._new_record("dry-run")
            self._prepare(record)
            return [(self.reconcilers[c.kind], c) for c in self._ordered(self._observe_and_diff(record))]

    def plan(self) -> RunRecord:
        """Dry-run: what would change. Calls no `apply`."""
        with _gc_paused(), self._one_look():
            return self._plan()

    def _ask_systemd(self) -> None:
        """Every reconciler's systemd units in one `systemctl show`, in the background, for
        this look's unit_states (instead of one call per reconciler)."""
        snapshot = self.node.runner.snapshot
        units = sorted({u for rec in self.owners for u in rec.units})
        if snapshot is None or not units or not systemd_running():
            return
        node = self.node
        snapshot.units = Background(lambda: read_units(node, units))

    @contextlib.contextmanager
    def _one_look(self) -> Iterator[None]:
        """A plan looks at the node once: a read several reconcilers make (`shared`: the
        same `systemctl show`, `crm_mon`) is run once for all of them, health included."""
        runner = self.node.runner
        before, runner.snapshot = runner.snapshot, Snapshot()
        try:
            yield
        finally:
            runner.snapshot = before

    def _plan(self) -> RunRecord:
        record = self._new_record("dry-run")
        started = time.monotonic()
        self._prepare(record)
        self._ask_systemd()
        # Health starts as soon as each reconciler has observed, and runs while the rest of
        # the plan (other observes, explain's previews) goes on.
        checks = HealthChecks(self.node, self.health_timeout) if self.check_health else None
        dropped = self._dropped()
        changes = self._observe_and_diff(record, checks and (lambda rec: self._start_health(checks, rec)),
                                         validate=True, checks=checks)
        for change in self._ordered(changes):
            res = self._pending(change)
            if self._leave_drift(change, res):
                continue
            blocker = self._blocked_by(change)
            if blocker:
                res.notes.append(f"waits for {blocker[0]}/{blocker[1]}, which fails")
            try:
                for note in self.reconcilers[change.kind].explain(change, self.node):
                    if isinstance(note, NodeNote):
                        if note not in record.notes:
                            record.notes.append(str(note))
                    elif note not in res.notes:
                        res.notes.append(note)
            except (CommandError, ApplyError) as err:
                res.notes.append(f"(no preview: {err})")
            except Exception as err:
                res.notes.append(f"(no preview: {_internal(err)})")
        self._guard_prune(changes, record, dropped)
        record.passes = 1
        if checks is not None:
            self._take_health(checks.results(), record)
        return self._finish(record, started)

    def apply(self) -> RunRecord:
        """Converge: apply, observe again, repeat until nothing differs or max_passes."""
        with _gc_paused():
            return self._apply()

    def _apply(self) -> RunRecord:
        record = self._new_record("apply")
        started = time.monotonic()
        self._prepare(record)
        self._validate(record)
        if record.errors:  # transactional: what cannot be pinned on objects applies nothing
            record.refused = "ValidationFailed"
            return self._finish(record, started)
        # Before anything changes: temp files a killed run left are removed, the state
        # files this run updates can be read, and the state folder has room for them (a
        # full disk stops the run here, not half-way through a change).
        journal = TempJournal(self.node.state_dir)
        journal.sweep()
        self.node.temp_journal = journal
        try:
            check_state(self.node.state_dir, self.inventory)
        except StateError as err:
            record.errors.append(f"nothing was changed: {err}")
            return self._finish(record, started)
        done_with: set[tuple[str, str]] = set()
        changes: list[Change] = []
        stopped = False
        dropped = self._dropped()
        for n in range(1, self.max_passes + 1):
            if n > 1 and self._stopping():
                stopped = True  # what was applied is checked by the next run
                break
            record.passes = n
            changes = [c for c in self._observe_and_diff(record) if c.key not in done_with]
            if n == 1 and not self._guard_prune(changes, record, dropped):
                # Transactional, as a refused validation: a revision that would prune most
                # of the node applies nothing at all (its creates and updates neither).
                record.refused = "PruneRefused"
                for change in changes:
                    if change.action != "delete":
                        self._pending(change).notes.append("not applied: the revision was refused (mass prune)")
                return self._finish(record, started)
            if not changes or n == self.max_passes:
                break
            for rec, batch in self._batches(changes):
                self._apply_batch(rec, batch, record, done_with)
        for change in changes if not stopped else ():
            res = self.results[change.key]
            if res.status in ("pending", "changed", "drift-corrected") and change.key not in done_with:
                res.status = "not-converging"
                res.error = f"still differs after {record.passes} passes: {', '.join(f for f, _, _ in field_changes(change)[:5])}"
        for (kind, name), res in self.results.items():
            if res.status in ("in-sync", "changed", "drift-corrected") and name in self.desired.get(kind, {}):
                entry = self.inventory.get(kind, name)
                h = state_hash(self.desired[kind][name].state)
                if entry is None or entry.get("hash") != h or entry.get("revision") != self.tree.revision:
                    self.inventory.record(kind, name, self.tree.revision, h)
        self._save_inventory(record)
        if self.check_health:
            checks = HealthChecks(self.node, self.health_timeout)
            for rec in self.owners:
                self._start_health(checks, rec)
            self._take_health(checks.results(), record)
        return self._finish(record, started)

    def _save_inventory(self, record: RunRecord) -> str:
        """Save the inventory; a failure (a full disk) is the run's error, not a crash:
        returns its message ("" when saved). What was created is in the inventory already
        (recorded before its create), so a failed save after an apply loses at most a hash,
        which the next run records again."""
        try:
            self.inventory.save()
            return ""
        except StateError as err:
            message = f"the inventory could not be saved: {err}"
            if message not in record.errors:
                record.errors.append(message)
            return message

    # --- health ------------------------------------------------------------------------

    def recheck_health(self, record: RunRecord) -> RunRecord:
        """Observe again (read-only) and ask every reconciler's health again, for
        `apply --wait`: the record's health is replaced, its sync is left as the run ended."""
        checks = HealthChecks(self.node, self.health_timeout)
        self._observe_all({}, checks.node, lambda rec: self._start_health(checks, rec),
                          lambda rec: self._prepare_health(checks, rec))
        self._take_health(checks.results(), record)
        return record

    def _prepare_health(self, checks: HealthChecks, rec: Reconciler) -> None:
        if not rec.reports_health():
            return
        try:
            rec.prepare_health(checks.node)
        except Exception:  # health itself then does all of it
            log.debug("prepare_health failed", exc_info=True)

    def _start_health(self, checks: HealthChecks, rec: Reconciler) -> None:
        if any(kind in self.unobserved for kind in rec.kinds):
            return  # its objects are Unknown (NotObserved), see _take_health
        desired = {k: self.desired.get(k, {}) for k in rec.kinds}
        observed = {k: self.observed.get(k, {}) for k in rec.kinds}
        checks.start(rec, desired, observed)

    def _take_health(self, found: HealthResults, record: RunRecord) -> None:
        record.health_checked = True
        record.timings.update(found.timings)
        record.node_health = {facet: h.to_dict() for facet, h in sorted(found.node.items())}
        for (kind, name), res in self.results.items():
            if name not in self.desired.get(kind, {}):
                res.health = None  # deleted or never desired: nothing to judge
                continue
            health = found.objects.get((kind, name))
            if health is None and kind in self.unobserved:
                health = Health.unknown("NotObserved", self.unobserved[kind])
            res.health = health.to_dict() if health is not None else None

    def _batches(self, changes: list[Change]) -> list[tuple[Reconciler, list[Change]]]:
        """One batch per reconciler in dependency order. Its deletes join its batch unless a
        later reconciler also deletes (those must go first: a frontend before the VIP it
        binds); such deletes form batches of their own, in reverse order, at the end."""
        forward: dict[int, list[Change]] = {}
        deletes: dict[int, list[Change]] = {}
        position = {id(rec): i for i, rec in enumerate(self.owners)}
        for change in self._ordered(changes):
            i = position[id(self.reconcilers[change.kind])]
            (deletes if change.action == "delete" else forward).setdefault(i, []).append(change)
        batches: list[tuple[Reconciler, list[Change]]] = []
        for i, rec in enumerate(self.owners):
            batch = list(forward.get(i, []))
            if i in deletes and not any(j > i for j in deletes):
                batch += deletes.pop(i)
            if batch:
                batches.append((rec, batch))
        for i in sorted(deletes, reverse=True):
            batches.append((self.owners[i], deletes[i]))
        return batches

    def _apply_batch(self, rec: Reconciler, batch: list[Change], record: RunRecord,
                     done_with: set[tuple[str, str]]) -> None:
        ready: list[Change] = []
        for change in batch:
            res = self._pending(change)
            if self._stopping():
                res.status, res.error = "skipped", "not applied: the agent is stopping"
            elif change.key in self.hold:
                res.status, res.error = "skipped", self.hold[change.key]
            elif self._leave_drift(change, res):
                pass
            elif blocker := self._blocked_by(change):
                res.status, res.error = "skipped", f"skipped: {blocker[0]}/{blocker[1]} failed"
            else:
                ready.append(change)
                continue
            done_with.add(change.key)
        if self.progress is not None and batch:
            ready_keys = {c.key for c in ready}
            self.progress("done", [self.results[c.key] for c in batch if c.key not in ready_keys])
        if not ready:
            return
        # Owned from before it exists: a run killed in the middle of a create must not
        # leave an object that a later removal from git would not prune.
        new = [c for c in ready if c.action == "create" and self.inventory.get(*c.key) is None]
        for change in new:
            self.inventory.record(change.kind, change.name, self.tree.revision, None)
        unsaved = self._save_inventory(record) if new else ""
        if unsaved:
            # Not owned on disk, so not created: an object the inventory does not hold
            # would never be pruned.
            for change in new:
                self.inventory.forget(*change.key)
                res = self.results[change.key]
                res.status, res.error = "failed", f"not created, since it could not be recorded as ours first: {unsaved}"
                done_with.add(change.key)
            if self.progress is not None:
                self.progress("done", [self.results[c.key] for c in new])
            ready = [c for c in ready if c not in new]
            if not ready:
                return
        for change in new:
            faults.step(f"engine:owned {change.kind}/{change.name}")
        # Objects that share nothing are applied (and shown) one by one; a shared artifact
        # is one batch. PerObject.apply of one change is exactly its apply_one.
        groups = [[c] for c in ready] if isinstance(rec, PerObject) else [ready]
        for group in groups:
            self._apply_group(rec, group, record, done_with)
        self._save_inventory(record)

    def _apply_group(self, rec: Reconciler, group: list[Change], record: RunRecord,
                     done_with: set[tuple[str, str]]) -> None:
        if self.progress is not None:
            self.progress("applying", [self.results[c.key] for c in group])
        t = time.monotonic()
        try:
            outcomes = rec.apply(group, self.node)
        except Exception as err:  # a reconciler's bug fails its batch, not the run
            why = err if isinstance(err, (ApplyError, CommandError, OSError, ValueError, Held)) else _internal(err)
            outcomes = {c.key: (why if isinstance(why, Exception) else ApplyError(why)) for c in group}
        finally:
            tk = f"apply.{_label(rec)}"
            record.timings[tk] = round(record.timings.get(tk, 0) + time.monotonic() - t, 4)
        faults.step(f"engine:applied {_label(rec)}")
        for change in group:
            res = self.results[change.key]
            outcome = outcomes.get(change.key, ApplyError("the reconciler reported no outcome (a bug)"))
            if outcome is None:
                self._applied(change)
                continue
            done_with.add(change.key)
            if isinstance(outcome, Deferred) and outcome.owner and not outcome.assured:
                # Nothing on this node will make it happen, and its owner is not known to:
                # pending (exit 2), not success. Settled if a later pass sees it done.
                res.status = "pending"
                res.notes = res.notes + [f"not applied yet: {outcome}"]
            elif isinstance(outcome, Deferred):
                res.status, res.notes = "deferred", res.notes + [str(outcome)]
            elif isinstance(outcome, Held):  # the rest is applied; the node's operator holds this part back
                res.status, res.notes = "pending", res.notes + [str(outcome)]
            elif isinstance(outcome, Interrupted):
                res.status, res.error = "skipped", str(outcome)
            elif isinstance(outcome, (ApplyError, CommandError, OSError, ValueError)):
                res.status, res.error = "failed", str(outcome)
            else:
                res.status, res.error = "failed", _internal(outcome)
        if self.progress is not None:
            self.progress("done", [self.results[c.key] for c in group])

    # --- helpers -----------------------------------------------------------------------

    def _new_record(self, mode: str) -> RunRecord:
        return RunRecord(node=self.node.name, revision=self.tree.revision, repo=str(self.tree.root), mode=mode,
                         started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def _finish(self, record: RunRecord, started: float) -> RunRecord:
        for (kind, name), res in self.results.items():
            desired = self.desired.get(kind, {}).get(name)
            if desired is not None and desired.shown_as:
                res.shown_as = desired.shown_as
        rank = {k: i for i, k in enumerate(self.order)}
        record.objects = sorted(self.results.values(), key=lambda r: (rank.get(r.kind, 99), r.kind, r.name))
        record.seconds = round(time.monotonic() - started, 4)
        return record

    def _result(self, res: ObjectResult) -> ObjectResult:
        desired = self.desired.get(res.kind, {}).get(res.name)
        if desired is not None and desired.shown_as:
            res.shown_as = desired.shown_as
        self.results[(res.kind, res.name)] = res
        return res

    def _fail(self, kind: str, name: str, error: str) -> None:
        self._result(ObjectResult(kind, name, "failed", error=error, source=self.desired.get(kind, {}).get(name, Desired({})).source))

    def _pending(self, change: Change) -> ObjectResult:
        res = self.results.get((change.kind, change.name))
        entry = self.inventory.get(change.kind, change.name)
        # A difference the reconciler calls unfinished (a file and its daemon disagree: a run
        # stopped half-way) is reconcile's own pending work, not a change made outside git.
        unfinished = (change.observed or {}).get(UNFINISHED)
        drift = change.action != "delete" and entry is not None and change.desired is not None \
            and entry.get("hash") == state_hash(change.desired) and not unfinished
        if res is None or res.status == "in-sync":
            res = self._result(ObjectResult(change.kind, change.name, "pending", source=change.source))
        res.action = res.action or change.action
        if change.action == "update":
            res.fields = field_changes(change)
        elif change.action == "create" and change.desired is not None and not res.fields:
            res.fields = create_fields(change.desired)
        res.notes = list(dict.fromkeys(res.notes + change.notes))
        if unfinished and f"pending work, not drift: {unfinished}" not in res.notes:
            res.notes.append(f"pending work, not drift: {unfinished}")
        res.drift = res.drift or drift
        if drift and "drift: changed outside git" not in res.notes:
            res.notes.append("drift: changed outside git")
        return res

    def _applied(self, change: Change) -> None:
        res = self.results[change.key]
        res.status = "drift-corrected" if res.drift else "changed"
        if change.action == "delete":
            self.inventory.forget(change.kind, change.name)
        elif change.desired is not None:
            entry = self.inventory.get(change.kind, change.name)
            if entry is None or entry.get("hash") is None:
                self.inventory.record(change.kind, change.name, self.tree.revision, state_hash(change.desired))

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop()

    def _leave_drift(self, change: Change, res: ObjectResult) -> bool:
        """True when this change only undoes a change made outside git and the object's
        `metadata.drift` says not to: `warn` leaves it pending, `ignore` reports it in sync."""
        if not res.drift:
            return False
        manifest = self.tree.get(change.kind, change.name)
        policy = getattr(getattr(manifest, "metadata", None), "drift", "correct")
        if policy in ("correct", "enforce"):
            return False
        if policy == "warn":
            res.status = "pending"
            note = "drift not corrected: metadata.drift is warn (fix it by hand or change it in git)"
        else:
            res.status, res.action = "in-sync", None
            note = "drift ignored: metadata.drift is ignore"
        if note not in res.notes:
            res.notes.append(note)
        return True

    def _blocked_by(self, change: Change) -> tuple[str, str] | None:
        desired = self.desired.get(change.kind, {}).get(change.name)
        for dep in (desired.depends if desired else ()):
            res = self.results.get(dep)
            if res is not None and res.status in ("failed", "skipped", "not-installed"):
                return dep
        return None

    def _ordered(self, changes: list[Change]) -> list[Change]:
        rank = {k: i for i, k in enumerate(self.order)}
        forward = sorted((c for c in changes if c.action != "delete"), key=lambda c: (rank[c.kind], c.name))
        backward = sorted((c for c in changes if c.action == "delete"), key=lambda c: (-rank[c.kind], c.name))
        return forward + backward

    def _dropped(self) -> set[tuple[str, str]]:
        """Owned objects the tree no longer wants (whether or not they are still there),
        for the kinds whose desired state is known. Taken before the first observation,
        which forgets those already gone."""
        return {(kind, name) for rec in self.owners for kind in rec.kinds
                for name in self.inventory.names(kind) - set(self.desired.get(kind, {}))}

    def _guard_prune(self, changes: list[Change], record: RunRecord, dropped: set[tuple[str, str]]) -> bool:
        """Refuse a tree that gives up more than a share of what reconcile owns at once (a
        broken checkout, a commit that deletes every manifest, must not wipe a node). What
        counts is what the tree drops from the inventory, also objects already destroyed
        by hand: otherwise deleting them first would let an empty tree through. True when
        the deletes may go ahead."""
        deletes = [c for c in changes if c.action == "delete"]
        total = len(self.inventory) + len({k for k in dropped if self.inventory.get(*k) is None})
        n = len(dropped | {c.key for c in deletes})
        if self.allow_mass_prune or n <= 1 or not total or n / total <= self.max_prune_fraction:
            return True
        msg = (f"refusing to prune {n} of {total} managed objects at once "
               f"(more than {self.max_prune_fraction:.0%}); pass --allow-mass-prune if this is intended")
        record.errors.append(msg)
        for c in deletes:
            res = self._pending(c)
            res.status, res.error = "skipped", "mass prune refused"
        return False
