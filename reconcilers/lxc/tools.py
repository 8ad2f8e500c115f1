"""LXC's command-line tools: what they print (parsed), LXC's own config parser run on a
scratch LXC path, and starting and stopping a container.

We use the CLI rather than the python3-lxc bindings: every call then goes through the
Runner (argv, timeout, the dry-run guard and the recorder see it), the parsers are tested
on recorded output, and nothing depends on the bindings existing for the interpreter the
agent runs under (they are built for /usr/bin/python3 only).
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from reconcilers.base import ApplyError, AtomicWriter, CommandError, Node


def parse_lxc_ls(text: str) -> dict[str, str]:
    """`lxc-ls -f -F NAME,STATE[,PID]` → {name: state}, state lower-cased (running, stopped, frozen…)."""
    return {name: state for name, (state, _) in parse_lxc_ls_pids(text).items()}


def parse_lxc_ls_pids(text: str) -> dict[str, tuple[str, int | None]]:
    """`lxc-ls -f -F NAME,STATE,PID` → {name: (state, PID of its init or None)}."""
    out: dict[str, tuple[str, int | None]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) not in (2, 3) or cols[0] == "NAME":
            continue
        pid = cols[2] if len(cols) == 3 else ""
        out[cols[0]] = (cols[1].lower(), int(pid) if pid.isdigit() else None)
    return out


def instance_of(pid: int | None, proc: str = "/proc") -> str | None:
    """"PID:start time" of a running container's init: names one run of the container (a
    PID alone could be reused by a later run)."""
    if pid is None:
        return None
    try:
        stat_line = Path(proc, str(pid), "stat").read_text()
        return f"{pid}:{stat_line.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None



def parse_monitor_line(line: str) -> tuple[str, str] | None:
    """`'app1' changed state to [STOPPED]` (lxc-monitor) → ("app1", "STOPPED")."""
    m = re.match(r"^'([^']+)' (?:changed state to|exited with status) \[([^\]]+)\]", line.strip())
    if not m:
        return None
    what = m.group(2) if "changed state" in line else f"exited with status {m.group(2)}"
    return m.group(1), what




def why_invalid(stderr: str, name: str) -> str:
    """LXC's own words about a config it refuses, for people: the reason it logged (with
    `-l ERROR`) just before `Failed to parse config file ".../NAME/config" at line "..."`."""
    reasons = []
    previous = ""
    for line in stderr.splitlines():
        if f"/{name}/config" in line:
            at = line[line.index(" at line "):].strip() if " at line " in line else line.strip()
            why = previous.split(" - ", 1)[1].strip() if " - " in previous and "/config" not in previous else ""
            reasons.append(f"{why}, {at}" if why else at)
        previous = line
    return " | ".join(dict.fromkeys(reasons)) or "it does not load (lxc-ls skips it)"




# --- LXC's own parser, on a scratch LXC path -------------------------------------------------

LXC_LOCK_DIR = Path("/run/lxc/lock")
"""Where LXC, run as root, makes a lock folder for every LXC path it opens a container in
(/run/lxc/lock/<lxcpath>/.<name>), even only to read its config: one per scratch path."""


@contextlib.contextmanager
def scratch_lxc_path(lock_dir: Path = LXC_LOCK_DIR) -> Iterator[Path]:
    """A temporary LXC path for checking configs with LXC's own parser, removed afterwards
    together with exactly what LXC made for it under `lock_dir`: the lock folder named
    after this (unique) path, and the folders above it that did not exist before, if they
    are empty (another LXC user may have put something there since). A dry-run and
    `validate` leave nothing behind."""
    tmp = Path(tempfile.mkdtemp(prefix="reconcile-lxc-check-"))
    lock = lock_dir / str(tmp).lstrip("/")
    made = [d for d in [lock.parent, *lock.parent.parents] if d.is_relative_to(lock_dir.parent) and not d.exists()]
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(lock, ignore_errors=True)
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break




# --- running the tools ---------------------------------------------------------------------


def list_states(node: Node, lxc_path: str) -> tuple[dict[str, tuple[str, int | None]], str]:
    """One `lxc-ls` for every container of an LXC path → ({name: (state, PID)}, its stderr,
    which says why a container whose config does not load was skipped)."""
    r = node.run(["lxc-ls", "-f", "-F", "NAME,STATE,PID", "-P", lxc_path, "-l", "ERROR"], read_only=True)
    return parse_lxc_ls_pids(r.stdout), r.stderr


def check_config(node: Node, name: str, candidate: Path) -> None:
    """LXC's own parser on a new config (a temp copy), before it replaces the old one."""
    with scratch_lxc_path() as tmp:
        (tmp / name).mkdir()
        shutil.copyfile(candidate, tmp / name / "config")
        r = node.run(["lxc-info", "-P", str(tmp), "-n", name, "-c", "lxc.uts.name", "-l", "ERROR"],
                     read_only=True, check=False)
    if r.rc != 0:
        raise ApplyError(f"LXC refuses the new config of {name}: {why_invalid(r.stderr, name)}")


def check_configs(node: Node, rendered: dict[str, str]) -> dict[str, str]:
    """LXC's parser on several configs at once (one `lxc-ls` over a scratch LXC path) →
    {name: why LXC refuses it} for those it skips."""
    with scratch_lxc_path() as tmp:
        for name, text in rendered.items():
            (tmp / name).mkdir()
            (tmp / name / "config").write_text(text)
        r = node.run(["lxc-ls", "-1", "-P", str(tmp), "-l", "ERROR"], read_only=True, check=False)
    listed = set(r.stdout.split())
    return {name: why_invalid(r.stderr, name) for name in rendered if name not in listed}


def start(node: Node, name: str, lxc_path: str) -> None:
    """`lxc-start`, with LXC's own error lines in the message when it fails."""
    logfile = Path(lxc_path) / name / "reconcile-start.log"
    AtomicWriter(node).remove(logfile)
    try:
        node.run(["lxc-start", "-n", name, "-P", lxc_path, "-l", "ERROR", "-o", str(logfile)])
    except CommandError as err:
        try:
            lines = [ln.split(" - ", 1)[-1] for ln in logfile.read_text().splitlines() if " ERROR " in ln]
        except OSError:
            lines = []
        why = " | ".join(lines[:3]) or str(err)
        raise ApplyError(f"container {name} did not start: {why} (log: {logfile})") from None


def stop(node: Node, name: str, lxc_path: str, seconds: int | None) -> None:
    """`lxc-stop`: ask the init to end for `seconds`, then kill it (0: kill at once)."""
    seconds = 10 if seconds is None else seconds
    how = ["-k"] if seconds == 0 else ["-t", str(seconds)]
    r = node.run(["lxc-stop", "-n", name, "-P", lxc_path, *how], check=False, timeout=seconds + 60)
    if r.rc not in (0, 2):  # 2: it was not running
        raise CommandError(r.argv, r.rc, r.stderr, r.stdout)
