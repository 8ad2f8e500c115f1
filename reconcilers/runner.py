"""The one command runner: every command reconcile runs on a node goes through `Runner.run`
(argv lists only, never a shell), which refuses in a dry-run any command not declared
read-only, redacts registered secrets from what it logs and records, and, within one plan,
answers repeated reads from a snapshot (`Runner.snapshot`).

Part of the reconciler contract (reconcilers/base.py re-exports these names).
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from reconcilers import faults
from reconcilers.base import CommandError, DryRunViolation

log = logging.getLogger("reconcile")

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


class Snapshot:
    """The answers of `shared` reads during one look at the node (a plan, one round of
    health checks): the first asker runs the command, every later or concurrent asker of
    the same argv gets that answer. Reconcilers read some node-wide state each for itself
    (`systemctl show` of the same units, `crm_mon`, `ip -j addr`); inside one look nothing
    is changed by reconcile, so one read is the node as the plan shows it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[tuple, "_Answer"] = {}
        # systemd's view of every reconciler's `units`, asked once at the start of a plan
        # (see unit_states): a Background giving {unit: UnitState}, or None.
        self.units: "Background | None" = None


@dataclass
class _Answer:
    done: threading.Event = field(default_factory=threading.Event)
    result: "Result | None" = None
    error: BaseException | None = None


class Runner:
    """The one way product code runs external commands.

    argv lists only (never a shell), a timeout on every call, secrets redacted from what is
    logged and raised, and every call recorded when `recording` is on. In dry-run mode a
    call not declared `read_only=True` raises `DryRunViolation` before anything runs.
    Other channels that change state (a daemon's runtime socket) report through `guard()`.
    A read declared `shared=True` is run once per `snapshot` (when the engine set one: a
    plan, a round of health checks), whoever asks: see Snapshot. Never mark a read shared
    that a caller polls until it changes.
    """

    def __init__(self, dry_run: bool = False, recording: bool = False, default_timeout: float = 60.0):
        self.dry_run = dry_run
        self.recording = recording
        self.records: list[Record] = []
        self.default_timeout = default_timeout
        self.snapshot: Snapshot | None = None
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
        if not read_only and channel not in ("write", "remove"):  # AtomicWriter names its own steps
            faults.step(f"{channel}:{self.redact(' '.join(detail))}")

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
        shared: bool = False,
    ) -> Result:
        """Run `argv`. `input` goes to stdin (the place for passwords); `secrets` are
        extra strings to redact. Raises CommandError on a non-zero exit when `check`.
        `shared` (read-only calls only): within a `snapshot`, one run answers every asker."""
        if isinstance(argv, (str, bytes)):
            raise TypeError("Runner.run takes an argv list, never a string")
        argv = [str(a) for a in argv]
        snapshot = self.snapshot
        if shared and read_only and snapshot is not None and not secrets and input is None:
            key = (tuple(argv), tuple(sorted(env.items())) if env else (), str(cwd or ""))
            with snapshot.lock:
                answer = snapshot.answers.get(key)
                mine = answer is None
                if mine:
                    answer = snapshot.answers[key] = _Answer()
            assert answer is not None
            if mine:
                try:
                    answer.result = self.run(argv, read_only=True, timeout=timeout, check=False, env=env, cwd=cwd)
                except BaseException as err:
                    answer.error = err
                finally:
                    answer.done.set()
            else:
                answer.done.wait()
                log.debug("reused %s (one read per look at the node)", shlex.join(argv))
            if answer.error is not None:
                raise answer.error
            result = answer.result
            assert result is not None
            if check and result.rc != 0:
                raise CommandError(argv, result.rc, result.stderr, result.stdout)
            return result
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
        if not read_only:
            faults.step(f"exec:{shlex.join(argv[:2])}")
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


class Background:
    """`fn()` in a daemon thread started now; `wait()` gives what it returned, or raises
    what it raised. For `prepare_health`: a read that needs no observation runs while the
    engine observes, and `health` collects it."""

    def __init__(self, fn: Callable[[], Any]):
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="background-read", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except BaseException as err:  # handed to whoever waits
            self._error = err

    def wait(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result
