"""The reconciler contract, the one command runner, and the atomic file writer.

The contract
============

A reconciler owns one kind (`kind`) on one node. The engine drives it; it never drives
itself. Per run the engine makes a fresh instance and calls, in this order:

``desired(tree, node) -> dict[name, Desired]``
    Pure: from the validated manifests that land on this node (and the whole tree, for
    cross-kind facts such as a Cluster's node addresses), compute what this node should
    run, as one normalized, JSON-able dict per object. No command, no file read. The
    reconciler may keep what it computed on `self`: `apply` is called on the same instance
    and often needs the whole desired set (one HAProxy file holds every backend).

``observe(node) -> dict[name, dict]``
    Read-only and batched: one `ip -j addr`, one `show servers state`, one `lxc-ls`, one
    `cibadmin --query` for all objects of the kind, never a process per object. Return the
    same normalized shape as `desired` for every object the kind can see that it may own
    (an object it did not create may be returned; the engine only deletes objects in its
    inventory). Never raise for "not there": an absent object is simply absent.
    Anything that changes at run time and is not drift (VRRP MASTER/BACKUP, fail counts,
    an operator's drain where declared) is left out, or named in `ignore`.

``apply(change, node) -> None``
    Perform one change (create, update or delete) so that a following `observe` matches
    `change.desired`. Idempotent: applying a change that is already in place does nothing
    harmful. Raise `ApplyError` (or let `CommandError` through) with a message for people
    when it cannot be done; the engine marks the object failed and skips only what depends
    on it. Validate generated files with the native validator before they are installed
    (`AtomicWriter`). Never apply in dry-run: the engine does not call `apply` then, and
    the runner refuses mutating commands in dry-run as a second guard.

``validate(node) -> list[str]`` (optional)
    Native validation of what `desired` rendered (`haproxy -c`, `keepalived -t`,
    `crm_verify`, `visudo -c`) on temp files: called by `reconcile validate` and before
    any apply. Read-only: temp files only. Return messages for people; empty means good.

``explain(change, node) -> list[str]`` (optional)
    Extra lines for the plan, such as "restart required" or Pacemaker's simulated
    transition ("vip: start on lb1"). Read-only.

``watch(node) -> Iterator[str]`` (optional)
    Blocks and yields a short reason whenever something this kind manages may have
    drifted (netlink address events, inotify on owned files, HAProxy state). Better a
    spurious event than a missed one: the engine re-plans everything on any event.

``ignore``: JSON pointers (into each object's dict) that change at run time and are not
    drift. `Desired.ignore` adds pointers for one object (an operator's drain, where the
    manifest allows it).

``consumes``: other kinds whose manifests this reconciler also turns into objects (the
    ClusterResource reconciler makes IPaddr2 primitives of Pacemaker VirtualIPs): the
    engine runs it whenever the node has manifests of its kind or of these.

``after``: kinds whose changes must be applied before this kind's (VirtualIP before
    Frontend). Deletes run in the reverse order. `Desired.depends` names single objects
    this one needs: if one of those fails, this one is skipped.

Secrets never enter `Desired`, observed dicts, plans, logs or argv: read them at apply time
with `read_secret`, pass them on stdin (`Runner.run(..., input=..., secrets=[...])`), and
compare them inside the reconciler, exposing only a token such as "<secret: in sync>".
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence

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


class Deferred(Exception):
    """This node does not apply the change; another does (the Pacemaker DC writes the CIB).

    Not a failure: the object is reported as deferred with the reason.
    """


class Held(Exception):
    """The node's operator holds this change back (a service unit masked, or disabled
    although its package enables it): apply did the rest of the change, not this part.
    Reported as pending with the reason, never fought, unless the manifest says
    `metadata.drift: enforce`. Not retried within the run."""


class DryRunViolation(Exception):
    """Something tried to change the node during a dry-run. This is a bug."""


@dataclass
class Result:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Record:
    """One thing the runner did or was asked to do, for the recorder."""

    what: str  # "exec" or another channel, e.g. "haproxy-api"
    argv: list[str]
    read_only: bool
    rc: int | None = None


class Runner:
    """The one way product code runs external commands.

    argv lists only (never a shell), a timeout on every call, secrets redacted from what is
    logged and raised, and every call recorded when `recording` is on. In dry-run mode a
    call not declared `read_only=True` raises `DryRunViolation` before anything runs.
    Other channels that change state (a daemon's runtime socket) report through `guard()`.
    """

    def __init__(self, dry_run: bool = False, recording: bool = False, default_timeout: float = 60.0):
        self.dry_run = dry_run
        self.recording = recording
        self.records: list[Record] = []
        self.default_timeout = default_timeout
        self._secrets: set[str] = set()

    def add_secret(self, value: str) -> None:
        if value:
            self._secrets.add(value)
            self._secrets.update(line for line in value.splitlines() if len(line) >= 4)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
        return text

    def guard(self, channel: str, detail: Sequence[str], read_only: bool) -> None:
        """Record a non-exec action; refuse it in dry-run unless it is read-only."""
        if self.recording:
            self.records.append(Record(channel, [self.redact(d) for d in detail], read_only))
        if self.dry_run and not read_only:
            raise DryRunViolation(f"dry-run must not {channel}: {self.redact(' '.join(detail))}")

    def run(
        self,
        argv: Sequence[str],
        *,
        read_only: bool = False,
        input: str | None = None,
        secrets: Sequence[str] = (),
        timeout: float | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> Result:
        """Run `argv`. `input` goes to stdin (the place for passwords); `secrets` are
        extra strings to redact. Raises CommandError on a non-zero exit when `check`."""
        if isinstance(argv, (str, bytes)):
            raise TypeError("Runner.run takes an argv list, never a string")
        argv = [str(a) for a in argv]
        for s in secrets:
            self.add_secret(s)
        if any(s and s in a for a in argv for s in self._secrets):
            raise ValueError(f"a secret would appear in argv of {argv[0]}: pass it on stdin")
        record = Record("exec", argv, read_only)
        if self.recording:
            self.records.append(record)
        if self.dry_run and not read_only:
            raise DryRunViolation(f"dry-run must not run `{self.redact(shlex.join(argv))}`")
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout or self.default_timeout,
                env=full_env, cwd=cwd, check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise CommandError(argv, None, self.redact(_text(err.stderr))) from None
        except FileNotFoundError:
            raise CommandError(argv, 127, f"{argv[0]}: command not found (is its package installed?)") from None
        seconds = time.monotonic() - started
        record.rc = proc.returncode
        stdout, stderr = self.redact(proc.stdout), self.redact(proc.stderr)
        log.debug("ran %s rc=%s in %.3fs", shlex.join(argv), proc.returncode, seconds)
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, stderr, stdout)
        return Result(argv, proc.returncode, stdout, stderr, seconds)


    def stream(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a long-running, read-only monitor (`ip -j monitor address`, …) for `watch()`.

        The caller reads `proc.stdout` line by line (text) and must `terminate()` it.
        Allowed in dry-run: a monitor only reads.
        """
        argv = [str(a) for a in argv]
        if self.recording:
            self.records.append(Record("exec", argv, True))
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


@dataclass
class Node:
    """The node a run acts on: its name, the runner, and the agent's state folder."""

    name: str
    runner: Runner
    state_dir: Path = Path("/var/lib/reconcile")

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    def run(self, argv: Sequence[str], **kw: Any) -> Result:
        return self.runner.run(argv, **kw)


@dataclass
class Desired:
    """What one object should be, in the same normalized shape `observe` returns."""

    state: dict[str, Any]
    ignore: tuple[str, ...] = ()
    depends: tuple[tuple[str, str], ...] = ()  # (kind, name) this object needs
    source: str = ""  # file:line of the manifest, filled in by the engine


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


class Reconciler:
    """Base class of every reconciler. See the module docstring for the contract."""

    kind: ClassVar[str]
    after: ClassVar[tuple[str, ...]] = ()
    consumes: ClassVar[tuple[str, ...]] = ()
    ignore: ClassVar[tuple[str, ...]] = ()

    def desired(self, tree: Any, node: Node) -> dict[str, Desired]:
        raise NotImplementedError

    def observe(self, node: Node) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def apply(self, change: Change, node: Node) -> None:
        raise NotImplementedError

    def validate(self, node: Node) -> list[str]:
        return []

    def explain(self, change: Change, node: Node) -> list[str]:
        return []

    watch: ClassVar[Callable[..., Iterator[str]] | None] = None


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


# --- files -------------------------------------------------------------------------------

GENERATED_HEADER = "Generated by reconcile from git. Local edits are drift and will be reverted."


class AtomicWriter:
    """Write a file atomically, after a native validator accepted the new content.

    The new content goes to a temp file in the same folder (same file system, so the rename
    is atomic), is fsynced, keeps the old file's mode and owner (or takes `mode`), is checked
    by `validate(temp_path)` if given, and only then renamed over the target; the folder is
    fsynced so the rename survives a crash. A reader sees the old file or the new one,
    never half of either. Refused in dry-run.
    """

    def __init__(self, node: Node):
        self.node = node

    def write(
        self,
        path: str | Path,
        content: str | bytes,
        *,
        mode: int | None = None,
        validate: Callable[[Path], None] | None = None,
        owner: tuple[int, int] | None = None,
    ) -> bool:
        """Install `content` at `path`. Returns False when it was already there."""
        path = Path(path)
        data = content.encode() if isinstance(content, str) else content
        try:
            if path.read_bytes() == data and (mode is None or (path.stat().st_mode & 0o7777) == mode):
                return False
        except FileNotFoundError:
            pass
        self.node.runner.guard("write", [str(path)], read_only=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = path.stat()
            keep_mode, keep_owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        except FileNotFoundError:
            keep_mode, keep_owner = 0o644, None
        # Writes happen under the node lock, so a temp file of this target that exists now
        # was left by a writer that died (kill -9) between creating and renaming it.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode if mode is not None else keep_mode)
                if owner or keep_owner:
                    uid, gid = owner or keep_owner  # type: ignore[misc]
                    os.fchown(f.fileno(), uid, gid)
                os.fsync(f.fileno())
            if validate is not None:
                validate(Path(tmp))
            os.rename(tmp, path)
            tmp = ""
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            if tmp:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        return True

    def remove(self, path: str | Path) -> bool:
        path = Path(path)
        if not path.exists():
            return False
        self.node.runner.guard("remove", [str(path)], read_only=False)
        path.unlink()
        return True


def validated_temp(content: str, validate: Callable[[Path], None], suffix: str = ".tmp", dir: str | None = None) -> None:
    """Run a native validator on `content` in a temp file that is removed afterwards.

    For `Reconciler.validate` and dry-run previews: nothing is installed.
    """
    fd, tmp = tempfile.mkstemp(prefix="reconcile-check-", suffix=suffix, dir=dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        validate(Path(tmp))
    finally:
        os.unlink(tmp)


# --- services ----------------------------------------------------------------------------


def systemd_running() -> bool:
    """True when systemd is PID 1 (a normal host, a lab node of `lab up --systemd`). In
    init-less lab nodes and plain containers it is not, and daemons are started directly."""
    return Path("/run/systemd/system").is_dir()


# What `systemctl is-enabled` says of a unit that starts at boot, or that cannot be enabled
# or disabled (started by another unit): nothing to do for reconcile.
ENABLED = ("enabled", "enabled-runtime", "static", "indirect", "generated", "alias")


@dataclass(frozen=True)
class UnitState:
    """What systemd says about one unit (`systemctl show`)."""

    name: str
    load: str = ""  # loaded | masked | not-found
    active: str = ""  # active | inactive | failed | activating | deactivating | reloading
    enabled: str = ""  # UnitFileState: enabled | disabled | masked | static | ...
    preset: str = ""  # UnitFilePreset: what the distribution enables at install

    @property
    def held(self) -> str | None:
        """Why the node's operator holds this unit back, or None: masked, or disabled
        while its vendor preset enables it (Debian enables every packaged daemon at
        install, so on Debian a disabled daemon was disabled by someone)."""
        if self.load == "masked" or self.enabled.startswith("masked"):
            return f"{self.name} is masked on this node"
        if self.enabled == "disabled" and self.preset == "enabled":
            return f"{self.name} is disabled on this node (its package enables it)"
        return None


def unit_states(node: Node, units: Sequence[str]) -> dict[str, UnitState]:
    """One read-only `systemctl show` for several units: name → UnitState."""
    r = node.run(["systemctl", "show", "--property=Id,LoadState,ActiveState,UnitFileState,UnitFilePreset",
                  "--", *units], read_only=True, check=False, timeout=30)
    return parse_unit_states(r.stdout, units)


def parse_unit_states(text: str, units: Sequence[str]) -> dict[str, UnitState]:
    """`systemctl show` output: one block of KEY=value lines per unit, in the order asked."""
    out: dict[str, UnitState] = {}
    for unit, block in zip(units, text.strip().split("\n\n")):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[unit] = UnitState(unit, props.get("LoadState", ""), props.get("ActiveState", ""),
                              props.get("UnitFileState", ""), props.get("UnitFilePreset", ""))
    return out


def unit_field(states: dict[str, UnitState]) -> dict[str, str]:
    """The `units` field of an observed state: short unit name → `systemctl is-enabled`."""
    return {name.removesuffix(".service"): s.enabled or "unknown" for name, s in states.items()}


def enable_unit(node: Node, state: UnitState, enforce: bool) -> None:
    """Make a unit start at boot, as its package does at install. A unit the operator holds
    (see UnitState.held) raises Held, unless `enforce` (metadata.drift: enforce): it is
    then unmasked and enabled."""
    why = state.held
    if why and not enforce:
        raise Held(f"{why}: reconcile leaves it so (an operator's hold); `systemctl unmask`/`enable` it, "
                   "or set metadata.drift: enforce on the manifest to have it done")
    if state.load == "masked" or state.enabled.startswith("masked"):
        node.run(["systemctl", "unmask", state.name])
    if state.enabled not in ENABLED:
        node.run(["systemctl", "enable", state.name])


def unit_notes(node: Node, units: Sequence[str], enforce: bool) -> list[str]:
    """Plan notes for units that do not start at boot: what apply will do about each."""
    notes = []
    for state in unit_states(node, units).values():
        if state.enabled in ENABLED:
            continue
        why = state.held or f"{state.name} is {state.enabled or 'unknown'}"
        if state.held and not enforce:
            notes.append(f"{why}: an operator's hold, reported and left so (metadata.drift: enforce undoes it)")
        else:
            notes.append(f"{why}: {'unmasked and ' if 'masked' in why else ''}enabled by apply")
    return notes


def start_unit(node: Node, unit: str, enforce: bool, timeout: float = 60.0) -> None:
    """`systemctl start` a unit after making sure it is enabled (see `enable_unit`): a unit
    the operator stopped *and* holds (disable --now, mask) is not started again."""
    enable_unit(node, unit_states(node, [unit])[unit], enforce)
    node.run(["systemctl", "start", unit], timeout=timeout)


def pid_alive(pidfile: str | Path) -> int | None:
    """The PID in `pidfile` if that process is alive, else None."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
    return pid
