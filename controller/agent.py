"""`reconcile agent`: continuous GitOps on one node.

The agent follows one git repository (controller.source), and converges the node with the
engine whenever something may have changed:

- a new commit: a local repository is watched and reacted to at once; a remote one is
  polled with jitter (a cheap `ls-remote` before any fetch);
- drift: each reconciler's optional `watch(node)` runs in a thread and yields when
  something it manages may have changed;
- a wake from another node: a watch may yield a `Wake` (the Pacemaker DC's watch does
  when a node that owes it a CIB change asks): the source is looked at, then the node runs;
- a periodic full resync, a retry of objects in backoff, and SIGHUP ("reconcile now").

Triggers are level-based hints ("look again"): they coalesce, and each run re-plans the
whole node (controller-runtime's model). Per revision the agent is transactional (Flux's
model): a commit that is unsigned (under --verify-commits), does not load, or that the
native validators refuse applies nothing; the last good revision stays applied and keeps
being enforced, and the status says why. A newer commit always supersedes a failing one
and clears every backoff. A failing object backs off exponentially (in memory and in the
status) and only its dependents are skipped with it.

The last good revision is kept in `<state>/applied.json` and enforced from the first cycle
after a restart. A revision that is refused — invalid, unsigned, refused by the native
validators, or one that would prune most of the node — never replaces it: nothing of it
is applied, and the last good revision is enforced in the same cycle. The agent survives
any error of a run or of its state folder (a full disk, a damaged file): it logs it, says
it in the status where it can, and keeps enforcing at the next trigger.

One agent per node (NodeLock: an flock, released by the kernel when the holder dies).
SIGTERM finishes the change being applied, applies no more and exits 0. Status and
history are JSON files in the state folder (`reconcile status` shows them); Prometheus
metrics are served on 127.0.0.1; under systemd (Type=notify) readiness and the watchdog
are sent over $NOTIFY_SOCKET. Triggers, the backoff and sd_notify are in
controller/agent_parts.py; this module is the loop.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from controller import status as agent_status
from controller.agent_parts import Backoff, Notifier, Triggers
from controller.engine import Engine, RunRecord
from controller.journal import journal_handler
from controller.loader import Tree, TreeError, load_tree
from controller.tree_cache import TreeCache
from controller.metrics import AgentMetrics
from controller.rollout import POLL_SECONDS, Rollout
from controller.source import GitSource, Revision, SourceError, safe_url
from controller.state import (
    DEFAULT_STATE_DIR, LockHeld, NodeLock, StateError, append_history, read_json, save_run, write_json,
)
from reconcilers.base import Node, Runner, Wake

log = logging.getLogger("reconcile.agent")

DEFAULT_METRICS_PORT = 9358
# The last good revision, kept across restarts: {"version": 1, "revision": sha, "applied": time}.
APPLIED_FILE = "applied.json"
# Triggers that ask for the repository to be looked at; drift and retries only re-run.
SOURCE_TRIGGERS = {"startup", "commit", "resync", "signal", "wake"}
# A watch() that keeps firing (on the agent's own changes, or on churn that is not drift)
# must not keep the agent busy: a drift run that found nothing doubles the time the next
# drift run waits after the previous one, up to the cap. A drift event after a quiet second
# runs at once: sporadic real drift is never delayed by earlier, unrelated events.
QUIET_DRIFT_GAP = (0.1, 10.0)
QUIET_RESET_SECONDS = 1.0
# The watchdog is fed while the main loop waits for triggers or is in a cycle that began
# less than this long ago (one run of many slow commands can legitimately take minutes; a
# hung one is restarted).
STALL_SECONDS = 600.0


def parse_duration(text: str) -> float:
    """Seconds of '500ms', '30s', '5m', '1h' or a plain number of seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


# --- the agent -----------------------------------------------------------------------------


@dataclass
class Config:
    repo: str
    ref: str | None = None
    path: str = "."
    node: str = ""
    state_dir: Path = DEFAULT_STATE_DIR
    interval: float = 30.0  # poll of a remote repository
    resync: float = 300.0  # full resync, whatever happened
    verify_keyring: Path | None = None
    metrics_address: str = "127.0.0.1"
    metrics_port: int = DEFAULT_METRICS_PORT
    allow_mass_prune: bool = False
    max_passes: int = 4
    backoff_base: float = 5.0
    backoff_max: float = 300.0
    once: bool = False


@dataclass
class Rejected:
    reason: str  # VerificationFailed | ArtifactFailed | ValidationFailed | GitOperationFailed
    message: str
    problems: list[str] = field(default_factory=list)
    retry: bool = False  # native validation depends on the node: try again on resync


class Agent:
    """The loop: wait for triggers, pick the revision, run the engine, record."""

    def __init__(self, config: Config, *, metrics: AgentMetrics | None = None, notifier: Notifier | None = None):
        self.config = config
        self.source = GitSource(config.repo, config.state_dir, ref=config.ref, path=config.path,
                                keyring=config.verify_keyring)
        self.metrics = metrics or AgentMetrics()
        self.notifier = notifier or Notifier()
        self.triggers = Triggers()
        self.stop_requested = False  # set by the SIGTERM handler: a plain flag, safe there
        self.stopping = threading.Event()  # set by the main thread, for the other threads
        self.backoff = Backoff(config.backoff_base, config.backoff_max)
        self.good: tuple[Revision, Tree] | None = None  # the last applied revision
        self.latest: str | None = None  # the newest commit the ref named
        self.latest_signer = ""
        self.rejected: dict[str, Rejected] = {}
        self.source_error: SourceError | None = None
        self.last_record: RunRecord | None = None
        self.last_trigger = ""
        self.runs = 0
        self.drift_events = 0  # watch events that were drift (the node differed)
        self.drift_kinds: set[str] = set()  # reconcilers whose watch fired since the last check
        self.started = time.time()
        self.busy_since: float | None = None  # when the cycle in progress began
        self.next_resync = time.monotonic() + config.resync
        self.quiet_gap = 0.0
        self.last_run_end = 0.0
        self.watchers: dict[str, threading.Thread | None] = {}
        self.status = agent_status.StatusWriter(config.state_dir)
        self.applied_file = Path(config.state_dir) / APPLIED_FILE
        self.error = ""  # the last cycle's error that is no run's (a damaged state file, ...)
        self._persisted = self._read_applied()
        self.last_engine: Engine | None = None  # the last run's engine (a rollout's health gate asks it again)
        self.rollout = Rollout(self)
        self.waiting: tuple[Revision, Tree] | None = None  # a revision loaded, waiting for its rollout turn

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM (or one cycle with --once). Returns the exit code."""
        try:
            self.source.open()
        except SourceError as err:
            self._source_failed(err)
            self._write_status()
            # A local path that is not a repository is a mistake to fix, not to wait out; an
            # unreachable remote may come back (and a mirror from an earlier run is enough).
            if self.config.once or not self.source.remote:
                return 1
        self._start_source_watch()
        self.triggers.put("startup")
        ready_sent = False
        while not self.stop_requested:
            reasons = self.triggers.wait(self._timeout())
            if self.stop_requested or "stop" in reasons:
                break
            now = time.monotonic()
            if not reasons:
                if now >= self.next_resync:
                    reasons = {"resync": "periodic"}
                elif self.waiting is not None:
                    reasons = {"rollout": "waiting for a turn"}
                elif (self.backoff.next_try() or float("inf")) <= time.time() + 0.01:
                    reasons = {"retry": "backoff expired"}
                else:
                    continue
            if set(reasons) == {"drift"} and not self._drift_may_run(now):
                continue
            if "resync" in reasons or "startup" in reasons or "signal" in reasons:
                self.next_resync = now + self.config.resync
            self.busy_since = time.monotonic()
            try:
                self.cycle(reasons)
            except Exception as err:  # the agent outlives any one run: the node stays enforced
                self._cycle_failed(err)
            finally:
                self.busy_since = None
            if not ready_sent:
                self.notifier.send("READY=1", f"STATUS={self._summary()}")
                ready_sent = True
            else:
                self.notifier.send(f"STATUS={self._summary()}")
            if self.config.once:
                break
        self.notifier.send("STOPPING=1")
        self.stopping.set()
        self._write_status()
        return 0 if not self.config.once else self._once_exit_code()

    def _cycle_failed(self, err: Exception) -> None:
        message = str(err) if isinstance(err, (StateError, OSError)) else f"{type(err).__name__}: {err}"
        log.error("this cycle failed, the agent goes on: %s", message, exc_info=not isinstance(err, StateError))
        self.error = message
        self._write_status()

    def _timeout(self) -> float:
        deadline = self.next_resync
        retry = self.backoff.next_try()
        if retry is not None:
            deadline = min(deadline, time.monotonic() + (retry - time.time()))
        if self.waiting is not None:  # ask again for the rollout's turn
            deadline = min(deadline, time.monotonic() + POLL_SECONDS)
        return max(deadline - time.monotonic(), 0.0)

    def drift_delay(self, now: float) -> float:
        """How long a drift-only trigger seen at `now` waits before its run."""
        since = now - self.last_run_end
        if since > QUIET_RESET_SECONDS:
            self.quiet_gap = 0.0
        return max(self.quiet_gap - since, 0.0)

    def _drift_may_run(self, now: float) -> bool:
        """Wait out the quiet gap (SIGTERM ends the wait); True when the run may go ahead."""
        wait = self.drift_delay(now)
        deadline = time.monotonic() + wait
        while wait > 0 and not self.stop_requested:
            time.sleep(min(wait, 0.1))  # short sleeps: the SIGTERM flag is seen at once
            wait = deadline - time.monotonic()
        return not self.stop_requested

    # --- one cycle -----------------------------------------------------------------------

    def cycle(self, reasons: dict[str, str]) -> RunRecord | None:
        """Look at the source if asked, choose the revision to apply, run it."""
        trigger = _trigger_name(reasons)
        self.last_trigger = trigger
        if set(reasons) == {"drift"} and not self._is_drift(reasons["drift"]):
            return None
        self.error = ""
        if SOURCE_TRIGGERS & set(reasons):
            self._sync_source()
        record = None
        candidate = self.latest
        enforce_good = bool(set(reasons) - {"commit", "rollout"})
        if candidate and (self.good is None or candidate != self.good[0].sha):
            rejected = self.rejected.get(candidate)
            retry = rejected is not None and rejected.retry and bool({"resync", "signal", "startup"} & set(reasons))
            if rejected is None or retry:
                loaded = self.waiting if self.waiting and self.waiting[0].sha == candidate else \
                    self._load(candidate, trigger)
                # A cluster with a rollout policy applies a new revision one turn at a time
                # (controller/rollout.py): this node may have to wait for its turn.
                outcome = self.rollout.attempt(loaded, trigger) if loaded is not None else None
                if outcome is not None and outcome.kind != "free":
                    self.metrics.rollout(self.rollout.state.get("phase", "idle"),
                                         None if outcome.kind == "waiting" else outcome.kind, outcome.figures)
                if outcome is not None and outcome.kind == "waiting":
                    self.waiting = loaded
                elif loaded is not None and outcome is not None:
                    self.waiting = None
                    self.backoff.clear()  # a newer revision supersedes whatever was failing
                    record = self._run(loaded, trigger) if outcome.kind == "free" else outcome.record
                    if record.refused:
                        # Refused whole (nothing of it applied): the last good revision stays
                        # the one enforced, at once, also after a restart.
                        self._reject(candidate, _refusal(record), trigger, record)
                        enforce_good = True
                    else:
                        if record.passes and outcome.kind != "rolled-back":  # rolled back: the last good stays
                            self._applied(loaded)
                        enforce_good = False  # (no pass: the node's state folder is unusable, said in the run)
                    if outcome.kind == "free":
                        self.rollout.after_run(loaded[1], record)
        else:
            self.waiting = None
        if enforce_good:
            # Drift, a resync, a retry, a signal, or the newest revision refused: enforce the
            # last good revision (the node keeps what was last applied).
            good = self.good or self._restore_good()
            if good is not None:
                record = self._run(good, trigger)
                self.rollout.after_run(good[1], record)
        self._write_status()
        return record

    def _is_drift(self, detail: str) -> bool:
        """A watch event is drift only if the node now differs from the revision enforced:
        the agent's own writes, reloads and the addresses keepalived takes after a run fire
        watches too, and must not count or cause a run (one commit, one run). Read-only:
        observe and diff, no native validation, nothing recorded."""
        kinds, self.drift_kinds = sorted(self.drift_kinds) or ["?"], set()
        good = self.good or self._restore_good()
        if good is None:
            return True
        node = Node(self.config.node, Runner(dry_run=True), self.config.state_dir)
        try:
            differs = Engine(good[1], node).differs()
        except Exception as err:  # when in doubt it is drift: better a run too many
            log.debug("drift check failed: %s", err)
            differs = True
        if not differs:
            log.debug("watch event, node still in sync (not drift): %s", detail)
            self.quiet_gap = min(max(self.quiet_gap * 2, QUIET_DRIFT_GAP[0]), QUIET_DRIFT_GAP[1])
            self.last_run_end = time.monotonic()
            return False
        log.info("drift: %s", detail)
        self.drift_events += 1
        for kind in kinds:
            self.metrics.drift_events.labels(kind=kind).inc()
        return True

    def _sync_source(self) -> None:
        try:
            sha = self.source.sync()
        except SourceError as err:
            self._source_failed(err)
            return
        self.source_error = None
        if sha != self.latest:
            if self.latest is not None:
                log.info("new revision %s (was %s)", sha[:12], self.latest[:12])
            self.latest = sha
            self.rejected = {k: v for k, v in self.rejected.items() if k == sha}

    def _source_failed(self, err: SourceError) -> None:
        if str(err) != str(self.source_error):
            log.error("%s", err)
        self.source_error = err
        self.metrics.source_errors.labels(reason=err.reason).inc()

    def _tree_cache(self) -> TreeCache:
        """Validated trees, shared with `reconcile --dry-run` on this node."""
        return TreeCache(self.config.state_dir)

    def _load(self, sha: str, trigger: str) -> tuple[Revision, Tree] | None:
        """Verify, export and load one commit; None (and recorded why) if it is refused."""
        try:
            self.latest_signer = self.source.verify(sha)
            revision = self.source.export(sha)
            cache = self._tree_cache()
            tree = load_tree(revision.root, cache)
            cache.put(tree)  # the agent applies what it loads: a plan of it need not validate it again
        except OSError as err:  # the node's problem (a full disk), not the commit's: tried again
            self.error = f"cannot export revision {sha[:12]}: {err}"
            log.error("%s", self.error)
            return None
        except SourceError as err:  # git failing is tried again at the next resync; a bad commit is not
            self._reject(sha, Rejected(err.reason, str(err), retry=err.reason == "GitOperationFailed"), trigger)
            return None
        except TreeError as err:
            self._reject(sha, Rejected("ArtifactFailed", f"the manifests are invalid ({len(err.problems)} "
                                       f"problem{'s' if len(err.problems) > 1 else ''})",
                                       [str(p) for p in err.problems]), trigger)
            return None
        tree.revision = sha
        return revision, tree

    def _reject(self, sha: str, why: Rejected, trigger: str, record: RunRecord | None = None) -> None:
        first = sha not in self.rejected
        self.rejected[sha] = why
        if first:
            log.error("revision %s refused, nothing applied: %s%s", sha[:12], why.message,
                      "".join(f"\n  {p}" for p in why.problems), extra={"revision": sha, "status": why.reason})
            self.metrics.revision_failures.labels(reason=why.reason).inc()
        if record is None:  # a run's refusal is in its own history entry
            try:
                append_history(self.config.state_dir, {
                    "revision": sha, "mode": "apply", "started": agent_status.iso(time.time()), "seconds": 0,
                    "result": "refused", "counts": {}, "errors": [why.message, *why.problems], "trigger": trigger,
                    "reason": why.reason}, collapse=True)
            except StateError as err:  # the refusal stands; only its history line is lost
                log.error("the refusal is not recorded in the history: %s", err)
                self.error = f"the history is not saved: {err}"

    def _applied(self, loaded: tuple[Revision, Tree]) -> None:
        revision = loaded[0]
        self.good = loaded
        self.rejected.pop(revision.sha, None)
        self.source.forget({revision.sha})
        self.metrics.applied(revision.sha, self.source.describe())
        try:
            write_json(self.applied_file, {"version": 1, "revision": revision.sha,
                                           "applied": agent_status.iso(time.time())})
        except StateError as err:  # kept in memory; lost only if the agent restarts before a save
            log.error("the last good revision is not saved: %s", err)
            self.error = f"the last good revision is not saved: {err}"

    def _read_applied(self) -> dict[str, Any] | None:
        """The last good revision saved by an earlier agent (applied.json; before it
        existed, agent.json's revision). A damaged file is said, not taken for none."""
        try:
            data = read_json(self.applied_file, None, shape=dict,
                             what="the agent then enforces the newest valid commit only")
            if data is None:
                return self.status.read_agent()
            if not isinstance(data.get("revision"), str) or not re.fullmatch(r"[0-9a-f]{40}", data["revision"]):
                raise StateError(self.applied_file, "is damaged: no commit id in \"revision\"",
                                 "move it aside (the agent then enforces the newest valid commit only)")
            return data
        except StateError as err:
            log.error("%s", err)
            self.error = str(err)
            return None

    def _restore_good(self) -> tuple[Revision, Tree] | None:
        """After a restart the last applied revision comes from applied.json, so a broken
        or refused head does not leave the node unenforced."""
        sha = self._persisted.get("revision") if self._persisted else None
        self._persisted = None
        if not sha:
            return None
        try:
            revision = self.source.export(sha)
            tree = load_tree(revision.root, self._tree_cache())
        except (SourceError, TreeError) as err:
            log.warning("cannot restore the last applied revision %s: %s", sha[:12], err)
            return None
        tree.revision = sha
        self.good = (revision, tree)
        self.metrics.applied(sha, self.source.describe())
        return self.good

    def _run(self, loaded: tuple[Revision, Tree], trigger: str) -> RunRecord:
        revision, tree = loaded
        node = Node(self.config.node, Runner(), self.config.state_dir)
        now = time.time()
        engine: Engine | None = None
        try:
            engine = Engine(tree, node, max_passes=self.config.max_passes,
                            allow_mass_prune=self.config.allow_mass_prune, hold=self.backoff.holds(now),
                            stop=lambda: self.stop_requested)
            record = engine.apply()
            self.last_engine = engine
        except StateError as err:  # a damaged inventory: nothing can be planned safely
            record = RunRecord(node=node.name, revision=tree.revision, repo="", mode="apply",
                               started=agent_status.iso(now), errors=[f"nothing was changed: {err}"])
        record.repo = self.source.describe()
        self.backoff.update(record, time.time())
        self.runs += 1
        self.last_record = record
        self.last_run_end = time.monotonic()
        changed = any(o.status not in ("in-sync",) for o in record.objects) or bool(record.errors)
        if trigger == "drift" and not changed:
            self.quiet_gap = min(max(self.quiet_gap * 2, QUIET_DRIFT_GAP[0]), QUIET_DRIFT_GAP[1])
        else:
            self.quiet_gap = 0.0
        data = record.to_dict()
        data["trigger"] = trigger
        try:
            save_run(self.config.state_dir, data, collapse=True)
        except StateError as err:
            log.error("this run is not recorded in the status: %s", err)
            self.error = f"the last run is not recorded: {err}"
        self.metrics.run(record, trigger)
        self.metrics.in_backoff.set(len(self.backoff.objects))
        # An idle run is not worth a line, except one an operator asked for (SIGHUP,
        # `systemctl reload`): they look for its outcome.
        level = logging.INFO if changed or trigger == "signal" else logging.DEBUG
        # One entry per run and one per object that did not stay in sync, each with the
        # revision (and the object) as journal fields (controller/journal.py).
        log.log(level, "revision %s (%s): %s in %.2fs", revision.sha[:12], trigger, record.result, record.seconds,
                extra={"revision": revision.sha, "trigger": trigger, "status": record.result})
        for o in record.objects:
            if o.status != "in-sync":
                log.log(logging.WARNING if o.status in ("failed", "not-converging") else level,
                        "  %s/%s: %s%s", o.kind, o.name, o.status, f" ({o.error})" if o.error else "",
                        extra={"revision": revision.sha, "object": f"{o.kind}/{o.name}", "status": o.status,
                               "trigger": trigger})
        if engine is not None:
            self._ensure_watchers(engine)
        return record

    # --- watching --------------------------------------------------------------------------

    def _start_source_watch(self) -> None:
        if self.config.once:
            return
        if self.source.remote:
            gen: Callable[[], Any] = lambda: self.source.poll(self.stopping, self.config.interval)  # noqa: E731
        else:
            gen = lambda: self.source.changes(self.stopping)  # noqa: E731
        self._thread("source", gen, "commit")

    def _ensure_watchers(self, engine: Engine) -> None:
        """One watch per reconciler (Frontend and Backend share one: one file, one event)."""
        if self.config.once:
            return
        for reconciler in engine.owners:
            label = "+".join(reconciler.kinds)
            if label in self.watchers:
                continue
            cls = type(reconciler)
            if getattr(cls, "watch", None) is None:
                self.watchers[label] = None  # nothing to watch: resyncs only
                continue
            node = Node(self.config.node, Runner(dry_run=True), self.config.state_dir)  # watching only reads
            self._thread(f"watch-{label}", lambda cls=cls, node=node: cls().watch(node), "drift", label)

    def _thread(self, name: str, make: Callable[[], Any], trigger: str, kind: str = "") -> None:
        def loop() -> None:
            delay = 1.0
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    for reason in make():
                        if self.stopping.is_set():
                            return
                        if isinstance(reason, Wake):  # another node asks for a run: not drift
                            self.triggers.put("wake", f"{kind}: {reason}")
                            continue
                        if kind:
                            self.drift_kinds.add(kind)
                        self.triggers.put(trigger, f"{kind}: {reason}" if kind else str(reason))
                except Exception as err:  # a broken watch must not end the agent
                    log.warning("%s stopped: %s; restarting", name, err)
                delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 60.0)
                if self.stopping.wait(delay):
                    return

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        if kind:
            self.watchers[kind] = thread

    # --- status --------------------------------------------------------------------------

    def _write_status(self) -> None:
        data = agent_status.agent_document(self)
        self.metrics.ready.set(1 if data["ready"] else 0)
        try:
            self.status.write_agent(data)
        except StateError as err:  # a full disk: the agent goes on; the log says it
            log.error("the agent's status is not saved: %s", err)

    def _summary(self) -> str:
        good = self.good[0].sha[:12] if self.good else "none"
        result = self.last_record.result if self.last_record else "no run yet"
        return f"revision {good}: {result}" + (f"; latest {self.latest[:12]} refused" if
                                                self.latest in self.rejected and self.latest else "")

    def _once_exit_code(self) -> int:
        data = agent_status.agent_document(self)
        return 0 if data["ready"] else (2 if data["reason"] == "Pending" else 1)

    # --- signals ---------------------------------------------------------------------------

    def install_signals(self) -> None:
        def hup(signum: int, _frame: Any) -> None:
            self.triggers.put("signal", "SIGHUP")

        def term(signum: int, _frame: Any) -> None:
            self.stop_requested = True
            self.triggers.put("stop", signal.Signals(signum).name)

        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, term)

    def watchdog(self) -> None:
        """Feed systemd's watchdog while the main loop is alive and not stuck."""
        period = self.notifier.watchdog_seconds
        if not period:
            return

        def feed() -> None:
            while not self.stopping.wait(period / 2):
                busy = self.busy_since
                if busy is None or time.monotonic() - busy < max(STALL_SECONDS, 3 * period) or self.stop_requested:
                    self.notifier.send("WATCHDOG=1")

        threading.Thread(target=feed, name="watchdog", daemon=True).start()


def _refusal(record: RunRecord) -> Rejected:
    """Why a run refused its revision, as the agent reports a refused revision."""
    if record.refused == "PruneRefused":
        return Rejected("PruneRefused", "it would prune most of what reconcile manages on this node (refused; "
                        "restart the agent with --allow-mass-prune if that is intended)", list(record.errors))
    return Rejected(record.refused or "ValidationFailed", "the native validators refused it", list(record.errors),
                    retry=True)


def _trigger_name(reasons: dict[str, str]) -> str:
    for name in ("signal", "commit", "startup", "resync", "wake", "drift", "retry"):
        if name in reasons:
            return name
    return next(iter(reasons), "none")


def end_children() -> None:
    """End the processes this agent started and that still run (watch monitors such as
    `ip monitor`): by PID, children of this process only."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            try:
                os.kill(int(entry.name), signal.SIGTERM)
            except ProcessLookupError:
                pass


# --- command line ----------------------------------------------------------------------------


AGENT_EXIT_CODES = """\
exit codes:
  0  stopped by SIGTERM (or --once: converged)
  1  error: bad arguments, another agent holds the node lock, this machine is not the node
  2  --once: changes still pending"""


def parser() -> argparse.ArgumentParser:
    from controller.cli import Parser

    p = Parser(
        prog="reconcile agent",
        epilog=AGENT_EXIT_CODES,
        description="Follow a git repository and keep this node converged: on every commit, on drift, "
                    "periodically and on SIGHUP. SIGTERM finishes the current change and exits.")
    p.add_argument("--repo", required=True, help="git URL, or the path of a local repository (watched)")
    p.add_argument("--ref", default=None, help="branch, tag or full commit id to follow (default: the repository's HEAD)")
    p.add_argument("--path", default=".", help="folder of manifests inside the repository (default: its root)")
    p.add_argument("--node", default=None, help="this node's name (default: the host name)")
    p.add_argument("--interval", type=parse_duration, default=30.0,
                   help="how often a remote repository is polled, with ±20%% jitter (default 30s)")
    p.add_argument("--resync", type=parse_duration, default=300.0,
                   help="full resync period, whatever happened (default 5m)")
    p.add_argument("--verify-commits", metavar="KEYRING", type=Path, default=None,
                   help="apply only commits signed by a key in KEYRING (exported public keys, or a GnuPG home)")
    p.add_argument("--state-dir", type=Path, default=None, help=f"default: {DEFAULT_STATE_DIR}")
    p.add_argument("--metrics-address", default="127.0.0.1", help="where /metrics listens (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help=f"Prometheus port (default {DEFAULT_METRICS_PORT}; 0 turns metrics off)")
    p.add_argument("--allow-mass-prune", action="store_true", help="allow deleting more than half of what was created")
    p.add_argument("--max-passes", type=int, default=4)
    p.add_argument("--backoff", type=parse_duration, default=5.0,
                   help="first retry delay of a failing object; doubles per failure (default 5s)")
    p.add_argument("--backoff-max", type=parse_duration, default=300.0, help="longest retry delay (default 5m)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (0 converged, 2 pending, 1 failed)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    return p


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["install"]:
        from controller.service import main as install_main

        return install_main(argv[1:])
    args = parser().parse_args(argv)
    from controller.identity import this_host

    if args.node and args.node != this_host():
        print(f"reconcile agent: the agent acts on this machine only: this host is {this_host()!r}, not "
              f"{args.node!r}", file=sys.stderr)
        return 1
    level = logging.DEBUG if args.verbose else logging.INFO
    journal = journal_handler()  # a systemd unit logging to the journal: structured entries
    if journal is not None:
        journal.setFormatter(logging.Formatter("%(message)s"))
        logging.basicConfig(level=level, handlers=[journal])
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("git", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = Config(
        repo=args.repo, ref=args.ref, path=args.path, node=args.node or this_host(),
        state_dir=args.state_dir or DEFAULT_STATE_DIR, interval=args.interval, resync=args.resync,
        verify_keyring=args.verify_commits, metrics_address=args.metrics_address, metrics_port=args.metrics_port,
        allow_mass_prune=args.allow_mass_prune, max_passes=args.max_passes, backoff_base=args.backoff,
        backoff_max=args.backoff_max, once=args.once)
    try:
        lock = NodeLock(config.state_dir).acquire()
    except LockHeld as err:
        print(f"reconcile agent: {err}; only one agent (or apply) may run per node", file=sys.stderr)
        return 1
    except StateError as err:
        print(f"reconcile agent: {err}", file=sys.stderr)
        return 1
    from controller.scratch import use_private_tmp

    use_private_tmp()  # the validators' temp files: none is left behind, even by kill -9
    try:
        agent = Agent(config)
        agent.install_signals()
        if config.metrics_port and not config.once:
            try:
                port = agent.metrics.serve(config.metrics_address, config.metrics_port)
                log.info("metrics on http://%s:%d/metrics", config.metrics_address, port)
            except OSError as err:
                log.error("cannot serve metrics on %s:%d: %s (the agent runs without them)",
                          config.metrics_address, config.metrics_port, err)
        agent.watchdog()
        log.info("agent for node %s following %s (path %s)%s", config.node, safe_url(agent.source.describe()),
                 config.path, ", commits must be signed" if config.verify_keyring else "")
        code = agent.run()
        log.info("agent stopped")
        return code
    finally:
        end_children()
        lock.release()
