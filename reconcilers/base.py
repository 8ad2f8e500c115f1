"""The reconciler contract. Its tools live beside it and are re-exported here: the one
command runner (reconcilers/runner.py), the atomic file writer and the native-validator
cache (reconcilers/files.py), systemd units and boot notes (reconcilers/services.py).

The contract
============

A reconciler owns one or more kinds (`kinds`) on one node: usually one, several when they
share one artifact (Frontend and Backend share haproxy.cfg and its HAProxy process). The
engine drives it; it never drives itself. Per run the engine makes one fresh instance per
reconciler and calls, in this order:

``desired(tree, node) -> {kind: {name: Desired}}``
    Pure: from the validated manifests that land on this node (and the whole tree, for
    cross-kind facts such as a Cluster's node addresses), compute what this node should
    run, as one normalized, JSON-able dict per object. No command, no file read, no host
    lookup. The reconciler may keep what it computed on `self`: `apply` is called on the
    same instance and often needs the whole desired set (one HAProxy file holds every
    backend). Raise `ApplyError`/`ValueError` when it cannot be computed: the engine then
    plans nothing for this reconciler's kinds (never a delete) and reports why.

``observe(node) -> {kind: {name: dict}}``
    Read-only and batched: one `ip -j addr`, one `show servers state`, one `lxc-ls`, one
    `cibadmin --query` for all objects of the kinds, never a process per object. Return the
    same normalized shape as `desired` for every object it can see that it may own (an
    object it did not create may be returned; the engine only deletes objects in its
    inventory). Never raise for "not there": an absent object is simply absent. Raise when
    the node cannot be read (a daemon hung, a tool missing): the engine then reports the
    objects as "cannot observe", never as absent, and deletes nothing.
    The engine observes all reconcilers at the same time, each in its own thread (a plan
    waits for the slowest, not for the sum): read your own daemons and files, keep what
    you found on `self` only, and share no mutable state with another reconciler. In a
    plan the same thread runs `validate` just before. Name the systemd units observe and
    health read in `units`: a plan asks systemd about all of them at once (unit_states
    answers from that), and a read several reconcilers make is marked `shared` (Runner).
    Anything that changes at run time and is not drift (VRRP MASTER/BACKUP, fail counts,
    an operator's drain where declared) is left out, or named in `ignore`.
    Where one object lives in two places that an apply changes one after the other (a file
    and the running daemon), observe compares both, and an object whose two places differ
    (a run stopped between them) carries `UNFINISHED: "what differs"`: it then differs
    from desired, and the engine applies it as pending work, never as drift. An object
    that is only in one of the places is returned too (with UNFINISHED), never left out.

``apply(changes, node) -> Outcomes``
    All of one pass's changes of this reconciler's kinds at once (creates, updates and
    deletes, in dependency order), so that objects sharing one artifact are converged
    together: render once, validate natively once, install once, then one runtime-API
    batch and at most one reload or restart per artifact per pass. Report an outcome per
    change: `None` applied, `Deferred` another node applies it (with `owner=` that node:
    pending unless it is known to do so, see `Deferred`), `Held` the node's operator holds
    part of it back (a service unit masked or disabled by hand: the rest is applied, the
    object stays pending with the reason), any other exception failed (with a message for
    people). A change left out of the outcomes counts as failed.
    If the native validator refuses the batch, nothing of it is installed: the refusal is
    attributed to the objects it names (`haproxy -c` names the section) and the rest is
    tried again without them (`install_batch` does this), so one bad object does not block
    the others. Objects that do not share anything subclass `PerObject` and implement
    `apply_one(change, node)` instead: it is called once per change, and an exception fails
    only that change. Idempotent: applying a change that is already in place does nothing
    harmful. Never apply in dry-run: the engine does not call `apply` then, and the runner
    refuses mutating commands in dry-run as a second guard.

``validate(node) -> list[Refusal | Skipped | str]`` (optional)
    Native validation of what `desired` rendered (`haproxy -c`, `keepalived -t`,
    `crm_verify`, `visudo -c`) on temp files, before anything is applied and by
    `reconcile validate`. Read-only: temp files only. A `Refusal` names the objects it is
    about: those (and what depends on them) are not applied and keep their last good
    version, the rest of the revision lands. A refusal that names no object (a plain
    string) refuses the whole revision: nothing is applied. Use `native_check` so an
    unchanged rendering is not checked again (the result is cached on disk by content
    digest, validator version and node). `reconcile validate` runs it for every node of
    the tree on one machine (CI): when `node.local` is false, a check that depends on the
    machine returns a `Skipped` saying what it could not check and why, instead of a
    refusal; a validator that is not installed here is reported as skipped by the engine.

``explain(change, node) -> list[str]`` (optional)
    Extra lines for the plan, such as "restart required" or Pacemaker's simulated
    transition ("vip: start on lb1"). Read-only. A line about the node rather than this
    object ("keepalived will be reloaded": one reload for every change) is a `NodeNote`:
    it is shown once per run, not under each object.

``health(node, desired, observed) -> {kind: {name: Health}}`` (optional)
    Whether what this reconciler manages *works*, which sync cannot say: an object can
    match git exactly while its cluster has no quorum, its servers are DOWN or its VIP is
    held by two nodes. Sync asks "does the node match git?" (Ready / Reconciling /
    Stalled, the engine's verdict); health asks "does the service work?" (`Health`:
    Healthy / Degraded / Unknown, each with a CamelCase reason and a message for people).
    `desired` is this reconciler's part of the engine's desired set and `observed` the
    last observation of this run (the dicts the plan diffed), both `{kind: {name: ...}}`.
    Return a `Health` for each desired object it can judge (one it leaves out has no
    health: shown as "not reported"); node-wide facts (Pacemaker's quorum, a shared
    daemon) go under the pseudo-kind `NODE`, keyed by a short facet name ("pacemaker"),
    and are shown once per node rather than on every object.
    The rules that keep a plan fast and a health check harmless:
    - read-only: the engine hands it a node whose runner is in dry-run mode, also during
      `apply`, so a mutating command raises `DryRunViolation`;
    - batched and cheap: one `crm_mon`, one `show stat`, one ARP burst for all objects,
      never a process per object; judge from parsed outputs with pure functions (tested
      on recorded outputs), as `observe` does;
    - bounded in time: the engine runs each reconciler's health in its own thread, started
      as soon as that reconciler has observed (so it overlaps the rest of the plan), and
      waits for it at most `health_timeout` seconds (3 by default; the runner's default
      command timeout is set to it too). A reconciler that has not answered by then has
      its objects Unknown (`HealthTimeout`); an exception makes them Unknown
      (`HealthCheckFailed`) with its message;
    - concurrent: it may run while `explain` runs on the same instance: read what
      `desired`/`observe` left on `self`, never write it;
    - honest right after a change: where a daemon judges a change later (HAProxy's checks
      keep a changed server's old state for fall × interval), report Unknown with a reason
      such as `ChecksPending` until that judgement is due, so that `apply --wait` never
      returns on a verdict about the previous state. `apply` runs on the same instance
      `apply --wait` asks again, so it may remember when it changed what.
    - started early where it waits: `prepare_health(node)` (optional) is called with the
      health node before the reconciler validates and observes (a plan, each round of
      `apply --wait`), to start in the background what needs no observation, such as the
      VIPs' link probe with its window for a second holder; `health` then collects it
      (and starts it itself when it was not prepared);
    `--dry-run` and `apply` compute health by default; `--no-health` skips it;
    `apply --wait` observes and asks it again until every object is Healthy. Never change
    anything because of health: a Degraded object is reported, not "fixed" by the agent.

``render(node) -> {path: content}`` (optional)
    The files this node would get from `desired` (called after it), by absolute path,
    content as text or bytes: what `reconcile render` writes, touching nothing on the
    node; an artifact that is no file of its own is named by a relative path (the CIB's
    configuration section: "pacemaker/cib-configuration.xml"). Secrets may be read (never
    written anywhere but the caller's output folder); Pacemaker's stay `lrm://`.

``drain(node, force=False, timeout=None, grace=None) -> str | None``, ``undrain(node) -> str | None`` (optional)
    Take this node out of service for what this reconciler runs, and put it back, at run
    time and without touching the configuration (keepalived: its instances go to FAULT
    through a track file, peers take the addresses over, nothing is reloaded), so that a
    drained node stays in sync. `grace`: seconds the connections open here get to finish
    before they move (None: the reconciler's default). Returns a line for people, or None when nothing of this
    reconciler runs here. Raises ApplyError when draining would leave a service nowhere
    (undoing what it did), unless `force`. `reconcile drain|undrain` calls every
    reconciler that offers it, on this machine only; rollouts build on it.

``disruption(change, node) -> str | None`` (optional)
    Whether applying `change` may interrupt what this node serves: a short reason ("reload
    HAProxy: section changed"), or None when the change is provably hitless (HAProxy server
    weight, maxconn, state and removals over the runtime API). An `Unproven` reason says
    the mechanism drops no connection (HAProxy's master-worker reload) and only the new
    configuration is a risk: once a peer passed its health gate with the same desired
    state, a rollout applies it in place, without a drain. A rollout drains the node before
    any other disruptive change (controller/rollout.py). Without the hook every change of
    the reconciler counts as disruptive.

``serving(node) -> list[str] | None`` (optional)
    What a drain would take away from this node right now, for people ("keepalived: VI_1
    holds 192.0.2.100/24"; Pacemaker resources running here); [] when it serves nothing,
    None when nothing of this reconciler runs here. Rollouts go through nodes that serve
    nothing first and apply a proven `Unproven` change in place on the ones that do.

``connections(node) -> int | None`` (optional)
    Client connections the daemon holds on this node now (HAProxy: every worker's
    CurrConns, old workers' included), None when it does not run here. After a drain that
    moved addresses away, a rollout waits (bounded) until it is 0.

``coordinator(tree, node)`` (optional, static)
    The rollout coordinator of the cluster `node` belongs to when the tree asks for
    coordinated rollouts there, else None: an object with `policy` (the Cluster's rollout
    policy as a plain dict, `order` filled in), `addresses` (node → address), `view()`
    ({"turn": {...}, "nodes": {name: {online, revision, health, phase, heartbeat}}}),
    `update_turn(change)` (compare-and-set: `change(view)` returns the new turn or None)
    and `publish(facts)` (this node's facts). Pacemaker's: reconcilers/pacemaker/rollout.py;
    the generic rollout is controller/rollout.py. ``rollout_view(node)`` (static) returns
    that view without a tree, for `reconcile status --cluster` (None: no cluster here).

``watch(node) -> Iterator[str]`` (optional)
    Blocks and yields a short reason whenever something this reconciler manages may have
    drifted (netlink address events, inotify on owned files, HAProxy state). Better a
    spurious event than a missed one: the engine re-plans everything on any event. The
    agent drops events caused by its own runs (`OwnWrites`: a file whose content is what
    reconcile last wrote, or an event inside its own apply window), so that one commit
    gives one run.

``ignore``: JSON pointers (into each object's dict) that change at run time and are not
    drift. `Desired.ignore` adds pointers for one object (an operator's drain, where the
    manifest allows it).

``consumes``: other kinds whose manifests this reconciler also turns into objects (the
    ClusterResource reconciler makes IPaddr2 primitives of Pacemaker VirtualIPs): the
    engine runs it whenever the node has manifests of its kinds or of these.

``after``: kinds whose changes must be applied before this reconciler's (VirtualIP before
    Frontend). Deletes run in the reverse order. `Desired.depends` names single objects
    this one needs: if one of those fails, this one is skipped.

Values in generated files: every value a renderer writes into a line goes through that file
format's one quoting function, kept beside the renderer (`haproxy_word`, `keepalived_word`,
`corosync_value`, `lxc_value`, `sssd_value`, `pam_argument`, `sudoers_escape`, `cib_value`).
It returns the value as the format reads it back as one value, quoted where the format allows,
or raises `UnsafeValue`: whatever the schema let through, a value never ends a line, opens a
block or section, or starts another key.

Secrets never enter `Desired`, observed dicts, plans, logs or argv: read them at apply time
with `read_secret`, pass them on stdin (`Runner.run(..., input=..., secrets=[...])`), and
compare them inside the reconciler, exposing only a token such as "<secret: in sync>".
"""
from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence

from schemas.common import unsafe_character

log = logging.getLogger("reconcile")

Action = Literal["create", "update", "delete"]


class CommandError(Exception):
    """An external command failed. The message is redacted and fit for people."""

    def __init__(self, argv: Sequence[str], rc: int | None, stderr: str, stdout: str = ""):
        self.argv, self.rc, self.stderr, self.stdout = list(argv), rc, stderr, stdout
        detail = (stderr or stdout).strip().splitlines()
        tail = " | ".join(detail[-5:]) if detail else "(no output)"
        status = "timed out" if rc is None else f"exited {rc}"
        super().__init__(f"`{shlex.join(argv)}` {status}: {tail}")


class ApplyError(Exception):
    """A change could not be applied; the message says why and what to do."""


class UnsafeValue(ApplyError):
    """A value that cannot be written into a generated file without changing what the file
    says: it would end the line, open a block or section, or start another key. Raised by
    each file format's quoting function (beside its renderer); the schema refuses such
    values first, so this is the second line of defence."""


def one_line(value: str, where: str, max_length: int = 1024) -> str:
    """`value` unchanged when it can stand inside one line of `where` (a file format):
    no control character, line separator or invisible format character, and not longer
    than `max_length` (some parsers cut long lines in two). Raises UnsafeValue."""
    found = unsafe_character(value)
    if found is not None:
        raise UnsafeValue(f"{where}: refused to write {value!r}: it holds {found[1]}, which would break the line")
    if len(value) > max_length:
        raise UnsafeValue(f"{where}: refused to write a value of {len(value)} characters (at most {max_length})")
    return value


UNFINISHED = "unfinished"
"""The observed field that says an object's places disagree (see observe in the contract)."""


class Deferred(Exception):
    """This node does not apply the change; another does (the Pacemaker DC writes the CIB),
    or another reconciler of this node does (a Pacemaker VirtualIP is a CIB primitive).

    Without `owner` it is not a failure: the object is reported deferred with the reason.
    `owner` names another node that owes the change: then "deferred" is success only when
    that node is known to apply it (`assured`, e.g. its agent was woken and confirmed, or
    the change is already there); otherwise the object stays pending (exit code 2) with the
    reason, since nothing on this node will make it happen.
    """

    def __init__(self, message: str, *, owner: str | None = None, assured: bool = False):
        super().__init__(message)
        self.owner = owner
        self.assured = assured


class Wake(str):
    """What a `watch` yields when another node asks this node's agent to run now (the
    Pacemaker DC, asked by a node whose CIB change it owes): unlike drift, the agent looks
    at its source first, so that it runs the newest revision."""


class Unproven(str):
    """A `disruption` whose mechanism drops no connection (HAProxy's master-worker reload
    hands the listening sockets to the new workers; the old ones finish their
    connections): only the new configuration is untried. A rollout drains before it until
    a peer passed its health gate with the same desired state, and applies it in place
    after that (controller/rollout.py)."""


class Held(Exception):
    """The node's operator holds this change back (a service unit masked, or disabled
    although its package enables it): apply did the rest of the change, not this part.
    Reported as pending with the reason, never fought, unless the manifest says
    `metadata.drift: enforce`. Not retried within the run."""


class Interrupted(Exception):
    """Not applied because the run is stopping (the agent got SIGTERM between two changes)."""


class DryRunViolation(Exception):
    """Something tried to change the node during a dry-run. This is a bug."""


@dataclass
class Node:
    """The node a run acts on: its name, the runner, and the agent's state folder.

    `stopping()` is true once the run should apply nothing more (the agent got SIGTERM):
    a reconciler that applies many independent changes asks it between two of them.
    `allows(what)` says whether the operator allowed something for this run
    (`--allow-disruption` → `allow`, or a `Reconcile-Allow:` trailer on the commit being
    applied, read once through `allow_from` when first asked): e.g. "disruption" lets the
    Pacemaker guard pass a change that stops or moves resources it does not change.
    `local` is false when the run is about another node than this machine (`validate` and
    `--dry-run --node` for another node, e.g. in CI): a native check that depends on the
    machine (its interfaces, its live CIB) must then say what it skipped (`Skipped`)
    rather than report this machine's facts as the node's.
    """

    name: str
    runner: Runner
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("RECONCILE_STATE_DIR", "/var/lib/reconcile")))
    stop: Callable[[], bool] | None = None
    local: bool = True
    temp_journal: "TempJournal | None" = None  # set by the engine for runs that change the node
    allow: frozenset[str] = frozenset()
    allow_from: Callable[[], frozenset[str]] | None = None

    def allows(self, what: str) -> bool:
        if what in self.allow:
            return True
        if self.allow_from is not None:
            self.allow, self.allow_from = frozenset(self.allow | self.allow_from()), None
        return what in self.allow

    def stopping(self) -> bool:
        return self.stop is not None and self.stop()

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    @property
    def systemd(self) -> bool:
        """Whether systemd runs this node (units then start the daemons, and whether they
        start at boot is part of what git wants): a fact of this machine, so False for a
        plan about another node. desired() asks the node this, never the host directly."""
        from reconcilers import services  # a module that imports this one

        return self.local and services.systemd_running()

    def run(self, argv: Sequence[str], **kw: Any) -> Result:
        return self.runner.run(argv, **kw)


@dataclass
class Desired:
    """What one object should be, in the same normalized shape `observe` returns."""

    state: dict[str, Any]
    ignore: tuple[str, ...] = ()
    depends: tuple[tuple[str, str], ...] = ()  # (kind, name) this object needs
    source: str = ""  # file:line of the manifest, filled in by the engine
    # How people know this object when "Kind name" would mislead: a Pacemaker VirtualIP is
    # a ClusterResource object, shown as "VirtualIP db-vip (IPaddr2 primitive)".
    shown_as: str = ""


Key = tuple[str, str]
"""An object's identity across kinds: (kind, name)."""


@dataclass
class Change:
    """One create / update / delete the plan holds for one object."""

    kind: str
    name: str
    action: Action
    desired: dict[str, Any] | None
    observed: dict[str, Any] | None
    patch: list[dict[str, Any]] = field(default_factory=list)  # RFC 6902, observed → desired
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


class NodeNote(str):
    """A plan note about the node, not one object (a shared daemon reloaded once for all
    the changes): returned by `explain` like any note, shown once per run."""


Outcomes = dict[Key, "Exception | None"]
"""What `apply` reports per change: None applied, `Deferred` another node applies it, any
other exception failed (its message is for people)."""


class Skipped(str):
    """What `validate` could not check here, and why ("keepalived -t: interface eth0 is
    lb2's, not this machine's; the rest was checked"). Not a problem: reported as skipped."""


@dataclass
class Refusal:
    """A native validator refused what was rendered: why, and the objects it names.

    With objects, only those (and what depends on them) are held back; without, nothing of
    the revision can be applied, since nobody can tell which object is wrong.
    """

    message: str
    objects: tuple[Key, ...] = ()

    def __str__(self) -> str:
        return self.message


HealthStatus = Literal["Healthy", "Degraded", "Unknown"]
NODE = "Node"
"""The pseudo-kind under which `health` reports node-wide facets (quorum, a daemon)."""


@dataclass(frozen=True)
class Health:
    """Whether one object (or one node-wide facet) works, kstatus-style.

    `status`: Healthy, Degraded (it runs but not as it should: no quorum, a server DOWN, a
    VIP on two nodes) or Unknown (it could not be told: the tool did not answer).
    `reason`: one CamelCase word machines and alerts can match (HeldOnce, SplitBrain,
    NoQuorum, ServersDown). `message`: for people, e.g. "held by lb1".
    """

    status: HealthStatus
    reason: str
    message: str = ""

    @classmethod
    def healthy(cls, reason: str, message: str = "") -> "Health":
        return cls("Healthy", reason, message)

    @classmethod
    def degraded(cls, reason: str, message: str = "") -> "Health":
        return cls("Degraded", reason, message)

    @classmethod
    def unknown(cls, reason: str, message: str = "") -> "Health":
        return cls("Unknown", reason, message)

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason, "message": self.message}


HealthReport = dict[str, dict[str, Health]]
"""What `health` returns: kind (or `NODE`) → name (or facet) → Health."""


class Reconciler:
    """Base class of every reconciler. See the module docstring for the contract."""

    kinds: ClassVar[tuple[str, ...]]
    kind: ClassVar[str]  # shorthand for a reconciler of one kind: `kind = "X"` means kinds = ("X",)
    after: ClassVar[tuple[str, ...]] = ()
    consumes: ClassVar[tuple[str, ...]] = ()
    ignore: ClassVar[tuple[str, ...]] = ()
    # The systemd units its observe and health ask about (unit_states): a plan asks systemd
    # about all reconcilers' units in one `systemctl show`, before they observe.
    units: ClassVar[tuple[str, ...]] = ()

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        raise NotImplementedError

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        raise NotImplementedError

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        raise NotImplementedError

    def validate(self, node: Node) -> list[Refusal | str]:
        return []

    def explain(self, change: Change, node: Node) -> list[str]:
        return []

    def prepare_health(self, node: Node) -> None:
        """Start, in the background, what `health` needs that does not depend on observing
        (see the contract). Read-only; the engine ignores what it raises."""

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        return {}

    @classmethod
    def reports_health(cls) -> bool:
        """Whether this reconciler implements `health` (else its objects show none)."""
        return cls.health is not Reconciler.health

    watch: ClassVar[Callable[..., Iterator[str]] | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__ and "kinds" not in cls.__dict__:
            cls.kinds = (cls.kind,)


class PerObject(Reconciler):
    """A reconciler whose objects share no artifact (containers, mounts, a domain join):
    `apply_one` converges one change; a failure fails only that change."""

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        outcomes: Outcomes = {}
        for change in changes:
            if node.stopping():
                outcomes[change.key] = Interrupted("not applied: the agent is stopping")
                continue
            try:
                self.apply_one(change, node)
            except Exception as err:  # the engine turns it into the object's outcome
                outcomes[change.key] = err
            else:
                outcomes[change.key] = None
        return outcomes

    def apply_one(self, change: Change, node: Node) -> None:
        raise NotImplementedError


def install_batch(changes: list[Change], attempt: Callable[[list[Change]], list[Refusal]]) -> Outcomes:
    """Converge objects that share one artifact, isolating the ones its validator refuses.

    `attempt(batch)` renders the artifact with `batch` applied (and every other object as
    it is), validates it natively and, only if that passed, installs it and returns [];
    otherwise it installs nothing and returns the refusals. Refused objects that a refusal
    names fail with its message and the rest is attempted again without them; a refusal
    naming none of the batch fails what is left. An exception from `attempt` (a reload that
    failed) fails what is left with that error.
    """
    outcomes: Outcomes = {}
    batch = list(changes)
    while batch:
        try:
            refusals = attempt(batch)
        except Exception as err:
            outcomes.update({c.key: err for c in batch})
            break
        if not refusals:
            outcomes.update({c.key: None for c in batch})
            break
        keys = {c.key for c in batch}
        named: dict[Key, list[str]] = {}
        for refusal in refusals:
            for key in refusal.objects:
                if key in keys:
                    named.setdefault(key, []).append(refusal.message)
        if not named:
            err = ApplyError("; ".join(dict.fromkeys(r.message for r in refusals)))
            outcomes.update({c.key: err for c in batch})
            break
        for key, messages in named.items():
            outcomes[key] = ApplyError("; ".join(dict.fromkeys(messages)))
        batch = [c for c in batch if c.key not in named]
    return outcomes


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Call `predicate` until it returns something true or `timeout` seconds passed; return
    its last value (falsy on timeout). The one polling loop of the reconcilers."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def short_diff(before: str | None, after: str | None, name: str, limit: int = 14) -> list[str]:
    """A short unified diff of a file's content for a plan note (never for a secret's):
    `--- NAME (on the node)` / `+++ NAME (from git)`, one line of context, at most `limit`
    lines and then how many more."""
    import difflib

    lines = list(difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                      f"{name} (on the node)" if before is not None else "/dev/null",
                                      f"{name} (from git)" if after is not None else "/dev/null",
                                      lineterm="", n=1))
    if len(lines) > limit:
        lines = lines[:limit] + [f"… and {len(lines) - limit} more lines of diff"]
    return lines


# --- secrets -----------------------------------------------------------------------------


def read_secret(ref: Any, node: Node) -> str:
    """Read a `SecretRef` ({file} or {env}) at apply time; register it for redaction."""
    if getattr(ref, "file", None):
        path = Path(ref.file)
        try:
            value = path.read_text().rstrip("\n")
        except FileNotFoundError:
            raise ApplyError(f"secret file {path} does not exist on node {node.name}") from None
        except OSError as err:
            raise ApplyError(f"cannot read secret file {path}: {err.strerror}") from None
    else:
        value = os.environ.get(ref.env, "")
        if not value:
            raise ApplyError(f"environment variable {ref.env} (a secret) is not set for the agent")
    node.runner.add_secret(value)
    return value


# The files and services parts of the contract live in their own modules (each reads in
# one sitting); reconcilers import them from here or from there.
from reconcilers.runner import (  # noqa: E402, F401 (re-exported)
    Background, Record, Result, Runner, Snapshot,
)
from reconcilers.files import (  # noqa: E402, F401 (re-exported)
    GENERATED_HEADER, NATIVE_CACHE_KEEP, AtomicWriter, TempJournal, native_check, tool_fact, validated_temp,
    write_error,
)
from reconcilers.services import (  # noqa: E402, F401 (re-exported)
    ENABLED, NOT_AT_BOOT, UnitState, boot_note, enable_unit, parse_unit_states, pid_alive, read_units, start_unit,
    starts_at_boot, systemd_running, unit_field, unit_notes, unit_states, without_boot_note,
)
