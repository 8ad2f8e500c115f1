"""The agent's status: written to the state folder, shown by `reconcile status`.

Three JSON files, each replaced atomically:

- `agent.json`: the agent's view (written after every cycle): which revision is applied,
  the newest one seen and why it was refused if it was, Flux-style conditions (Ready,
  Stalled) with a reason and a message, objects in backoff, drift counters.
- `status.json`: the last run, object by object (controller.state.save_run).
- `history.json`: the last runs, newest first, idle resyncs folded into one entry, refused
  revisions included.

`reconcile status [-o json]` prints them for people or machines. Exit code: 0 the node
matches git, 2 changes pending (drift left alone by policy, a kind not installed), 1 not
ready, refused, failing, or the agent is not running.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from controller.state import DEFAULT_STATE_DIR, StateError, read_history, read_json, read_last_run, write_json

AGENT_FILE = "agent.json"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _age(stamp: str | None, now: float | None = None) -> str:
    if not stamp:
        return "?"
    try:
        then = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        return stamp
    seconds = max((now or time.time()) - then, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


class StatusWriter:
    """Reads and writes agent.json in the state folder."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / AGENT_FILE

    def read_agent(self) -> dict[str, Any] | None:
        """agent.json; None before the first agent. StateError if it is damaged."""
        return read_json(self.path, None, shape=dict, what="the agent writes it again at its next cycle")

    def write_agent(self, data: dict[str, Any]) -> None:
        write_json(self.path, data)


def agent_document(agent: Any) -> dict[str, Any]:
    """agent.json from a running controller.agent.Agent."""
    cfg = agent.config
    good = agent.good[0].sha if agent.good else None
    latest = agent.latest
    rejected = agent.rejected.get(latest) if latest else None
    record = agent.last_record
    stalled = False
    if agent.source_error is not None:
        ready, reason = False, agent.source_error.reason
        message = f"{agent.source_error}" + (f"; {good[:12]} stays applied" if good else "")
        stalled = True
    elif getattr(agent, "error", ""):  # the node's state folder or the agent itself, not a run
        ready, reason = False, "AgentError"
        message = agent.error + (f"; {good[:12]} stays applied" if good else "")
    elif rejected is not None:
        ready, reason, stalled = False, rejected.reason, True
        message = f"revision {latest[:12]} refused, nothing of it applied: {rejected.message}" + (
            f"; {good[:12]} stays applied" if good else "; no revision applied yet")
    elif record is None:
        ready, reason, message = False, "Progressing", "no run yet"
    elif record.result == "failed":
        bad = [o for o in record.objects if o.status in ("failed", "skipped", "not-converging")]
        ready, reason = False, "ReconciliationFailed"
        first = next((f"{o.kind}/{o.name}: {o.error}" for o in bad if o.error), "; ".join(record.errors[:1]))
        message = f"{len(bad)} object{'s' if len(bad) != 1 else ''} not converged" + (f"; {first}" if first else "")
        if record.errors and not bad:
            message = "; ".join(record.errors[:3])
    elif record.result == "pending":
        ready, reason = False, "Pending"
        message = "the node differs from git: " + ", ".join(
            f"{o.kind}/{o.name} ({o.status})" for o in record.objects if o.status in ("pending", "not-installed"))
    else:
        ready, reason = True, "ReconciliationSucceeded"
        message = f"applied revision {good[:12] if good else '?'}"
    health: dict[str, Any] = {"status": None, "reason": "NoRunYet", "message": ""}
    if record is not None:
        summary = record.health_summary()
        sick = [f"{o.label}: {o.health['status']} ({o.health['reason']})" for o in record.objects
                if o.health and o.health["status"] != "Healthy"]
        sick += [f"node {f}: {h['status']} ({h['reason']})" for f, h in record.node_health.items()
                 if h["status"] != "Healthy"]
        health = {"status": summary["status"], "reason": summary["reason"], "message": "; ".join(sick[:5])}
    last = None
    if record is not None:
        last = {"started": record.started, "seconds": record.seconds, "result": record.result,
                "trigger": agent.last_trigger, "counts": record.counts(), "passes": record.passes}
    return {
        "version": 1,
        "node": cfg.node,
        "pid": os.getpid(),
        "started": iso(agent.started),
        "updated": iso(time.time()),
        "source": {"repo": agent.source.describe(), "path": cfg.path, "verifyCommits": cfg.verify_keyring is not None,
                   "signer": agent.latest_signer or None},
        "revision": good,
        "latestRevision": latest,
        "latestError": None if rejected is None else {
            "reason": rejected.reason, "message": rejected.message, "problems": rejected.problems},
        "sourceError": None if agent.source_error is None else {
            "reason": agent.source_error.reason, "message": str(agent.source_error)},
        "ready": ready,
        "reason": reason,
        "message": message,
        "conditions": [
            {"type": "Ready", "status": str(ready), "reason": reason, "message": message},
            {"type": "Stalled", "status": str(stalled), "reason": reason if stalled else "",
             "message": message if stalled else ""},
            # Health beside sync: does what the node runs work (not only match git)?
            {"type": "Healthy", "status": {"Healthy": "True", None: "Unknown"}.get(health["status"], "False"),
             "reason": health["reason"], "message": health["message"]},
        ],
        "health": health,
        "lastRun": last,
        "runs": agent.runs,
        "backoff": agent.backoff.to_dict(),
        "driftEvents": agent.drift_events,
        "nextResync": iso(time.time() + max(agent.next_resync - time.monotonic(), 0)),
        "rollout": dict(agent.rollout.state) or None,
    }


# --- is the agent running? -------------------------------------------------------------------


def lock_holder(state_dir: Path) -> int | None:
    """The PID written in the node lock if a process holds the lock now, else None (-1
    when it is held but its PID cannot be read).

    Read from /proc/locks (by inode of the state folder, which is what NodeLock locks, or of
    the lock file, which older versions locked), so that asking never takes the lock itself.
    """
    path = Path(state_dir) / "lock"
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    devices = set()
    for target in (Path(state_dir), path):
        try:
            st = target.stat()
        except OSError:
            continue
        devices.add(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
    for line in locks.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] in devices:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return -1
    return None


# --- reconcile status ------------------------------------------------------------------------


def collect(state_dir: Path, history: int = 10) -> dict[str, Any]:
    """What `reconcile status` shows. A damaged state file is listed in `stateErrors`
    (naming the file and what to do) and the rest is still shown."""
    state_dir = Path(state_dir)
    errors: list[str] = []

    def read(reader: Any, default: Any) -> Any:
        try:
            return reader()
        except StateError as err:
            errors.append(str(err))
            return default

    agent = read(StatusWriter(state_dir).read_agent, None)
    holder = lock_holder(state_dir)
    return printable({
        "stateDir": str(state_dir),
        "agent": agent,
        "running": holder is not None and (agent is None or holder in (agent.get("pid"), -1)),
        "lockHolder": holder,
        "lastRun": read(lambda: read_last_run(state_dir), None),
        "history": read(lambda: read_history(state_dir), [])[:history],
        "stateErrors": errors,
    })


def printable(data: Any) -> Any:
    """`data` with every string on one printable line: a NUL, an escape sequence or a
    newline that reached a state file (from git's messages, a commit's signer, a damaged
    file) is shown escaped, never sent to the terminal."""
    from controller.tree_files import escape

    if isinstance(data, str):
        return escape(data, backslash=False)
    if isinstance(data, dict):
        return {printable(k): printable(v) for k, v in data.items()}
    if isinstance(data, list):
        return [printable(v) for v in data]
    return data


def exit_code(data: dict[str, Any]) -> int:
    if data.get("stateErrors"):
        return 1
    agent = data.get("agent")
    if agent is not None:
        if not data["running"]:
            return 1
        if agent.get("ready"):
            return 0
        return 2 if agent.get("reason") == "Pending" else 1
    run = data.get("lastRun")
    if not run:
        return 1
    return {"failed": 1, "pending": 2}.get(run.get("result", "failed"), 0)


def render(data: dict[str, Any], colour: bool = False) -> str:
    def c(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    lines: list[str] = [c("1;31", f"State file problem: {problem}") for problem in data.get("stateErrors", [])]
    agent = data.get("agent")
    run = data.get("lastRun")
    if agent is None and run is None:
        return "\n".join(lines + [f"No runs recorded in {data['stateDir']} (is the agent running with this --state-dir?)"])
    if agent is not None:
        state = c("1;32", "Ready") if agent.get("ready") else c("1;31", "Not ready")
        alive = (f"running, pid {agent.get('pid')}, up since {agent.get('started')}" if data["running"]
                 else c("1;31", f"NOT RUNNING: last seen pid {agent.get('pid')}, {_age(agent.get('updated'))}"))
        lines.append(f"Agent on {agent.get('node')}: {state} — {agent.get('reason')} ({alive})")
        lines.append(f"  {agent.get('message')}")
        h = agent.get("health") or {}
        if h.get("status"):
            from controller.output import HEALTH_COLOUR

            lines.append(f"  health    {c(HEALTH_COLOUR.get(h['status'], ''), h['status'])} ({h.get('reason')})"
                         + (f": {h['message']}" if h.get("message") else ""))
        src = agent.get("source") or {}
        signed = ", signed commits only" + (f" (last signer: {src['signer']})" if src.get("signer") else "") \
            if src.get("verifyCommits") else ""
        lines.append(f"  source    {src.get('repo')} (path {src.get('path')}){signed}")
        lines.append(f"  applied   {(agent.get('revision') or 'none')[:12]}")
        latest = agent.get("latestRevision")
        if latest and latest != agent.get("revision"):
            lines.append(f"  latest    {latest[:12]}")
        error = agent.get("latestError")
        if error:
            lines.append(c("31", f"  refused   {error['reason']}: {error['message']}"))
            for problem in error.get("problems", [])[:20]:
                lines.append(c("31", f"    {problem}"))
        if agent.get("sourceError"):
            lines.append(c("31", f"  source    {agent['sourceError']['message']}"))
        for key, entry in (agent.get("backoff") or {}).items():
            lines.append(c("33", f"  backoff   {key}: {entry['failures']} failure(s), next try at {entry['retryAt']}: "
                                 f"{entry['error']}"))
        ro = agent.get("rollout") or {}
        if ro:
            said = ro.get("waiting") or ro.get("reason") or ro.get("message") or ""
            if ro.get("how") and not ro.get("waiting"):  # drained first, or in place and why
                said = f"{said} ({ro['how']})" if said else ro["how"]
            tint = "31" if ro.get("phase") == "failed" else ("33" if ro.get("phase") == "waiting" else "")
            text = f"  rollout   {ro.get('phase')} at {str(ro.get('revision'))[:12]}" + (f": {said}" if said else "")
            lines.append(c(tint, text) if tint else text)
        lines.append(f"  runs      {agent.get('runs')} since start, {agent.get('driftEvents')} drift events, "
                     f"next resync at {agent.get('nextResync')}")
    if run is not None:
        from controller.output import LABEL_WIDTH, _Paint, head, node_lines, object_lines, revision_text

        paint = _Paint(colour)
        trigger = f", trigger {run['trigger']}" if run.get("trigger") else ""
        lines.append(f"Last run: {run.get('result')} at {run.get('started')} ({_age(run.get('started'))}) in "
                     f"{run.get('seconds', 0):.2f}s, revision {revision_text(run.get('revision'))}{trigger}")
        objects = run.get("objects", [])
        width = min(LABEL_WIDTH, max([len(head(o)) + 2 for o in objects] + [0]))
        for o in objects:
            lines += object_lines(o, paint, width)
        lines += node_lines(run, paint, width=width)
        wait = run.get("wait")
        if wait:
            lines.append(f"  apply --wait: {wait.get('summary')}")
        for err in run.get("errors", []):
            lines.append(c("1;31", f"  error: {err}"))
    if data.get("history"):
        lines.append("History (newest first):")
        for h in data["history"]:
            try:
                counts = ", ".join(f"{n} {k}" for k, n in sorted((h.get("counts") or {}).items()))
                repeats = f" ×{h['repeats']} since {h.get('first')}" if h.get("repeats", 1) > 1 else ""
                line = (f"  {h.get('started')}  {str(h.get('revision'))[:12]:12}  {h.get('result', '?'):10} "
                        f"{h.get('seconds') or 0:6.2f}s  {h.get('trigger') or '-':8} {counts}{repeats}")
            except (TypeError, ValueError, AttributeError):  # a field of the wrong type: shown, not fatal
                line = c("31", f"  (a damaged entry: {json.dumps(h, default=str)[:200]})")
            lines.append(line.rstrip())
            if h.get("result") in ("refused", "failed") and h.get("errors"):
                lines.append(c("31", f"      {h['errors'][0]}"))
    return "\n".join(lines)


STATUS_EXIT_CODES = """\
exit codes:
  0  the node matches git (the agent is ready, or the last run converged)
  1  the agent is not running, or the last run failed; bad arguments
  2  changes pending"""


def main(argv: list[str] | None = None) -> int:
    from controller.cli import Parser

    p = Parser(prog="reconcile status", description="The agent's state on this node, its last runs and their health.",
               epilog=STATUS_EXIT_CODES)
    p.add_argument("--state-dir", type=Path, default=None, help=f"default: {DEFAULT_STATE_DIR}")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument("--history", type=int, default=10, metavar="N", help="how many past runs to show (default 10)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--cluster", action="store_true",
                   help="the rollout in this node's cluster: every node's revision, health, phase and turn "
                        "(exit 0 complete, 2 progressing, 1 stalled or unknown)")
    args = p.parse_args(argv)
    if args.cluster:
        return cluster_main(args)
    data = collect(args.state_dir or DEFAULT_STATE_DIR, args.history)
    out: IO[str] = sys.stdout
    if args.output == "json":
        json.dump(dict(data, exitCode=exit_code(data)), out, indent=2, default=str)
        out.write("\n")
    else:
        from controller.output import use_colour

        out.write(render(data, use_colour(out, args.color)) + "\n")
    return exit_code(data)


def cluster_main(args: argparse.Namespace) -> int:
    """`reconcile status --cluster`: the rollout as the cluster's own store says it, from
    any node (read-only)."""
    from controller.identity import this_host
    from controller.rollout_view import cluster_view, render_cluster
    from reconcilers.base import Node, Runner

    node = Node(this_host(), Runner(dry_run=True), args.state_dir or DEFAULT_STATE_DIR)
    data = cluster_view(node) or {"error": "no cluster store answers on this node (a rollout needs a Cluster with "
                                           "stack: pacemaker)"}
    code = 1 if data.get("error") else {"Complete": 0, "None": 0, "Progressing": 2}.get(data.get("state", ""), 1)
    if args.output == "json":
        json.dump(dict(data, exitCode=code), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_cluster(data) + "\n")
    return code
