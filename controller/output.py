"""Rendering a run for people (coloured, one line per object) and for machines (JSON).

Text is rendered from the run's JSON form (`RunRecord.to_dict()`), so that `reconcile
status` shows a recorded run exactly as the run showed itself. Per object: a symbol for
what happens to it (+ create, ~ update, - delete, = in sync, …), what it is, and its
health; below it the values a create sets (terraform-style), an update's fields
(`observed → desired`, lists element by element), notes and errors. Then the node: its
sync and health, the node-wide health facets and the notes that concern the whole node
once. `Progress` streams one line per object while an apply runs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Iterable

from controller.plan import list_changes, show_value

SYMBOL = {
    "create": "+", "update": "~", "delete": "-", "in-sync": "=", "not-installed": "!", "failed": "x",
    "skipped": "»", "not-converging": "↻", "deferred": "…",
}
COLOUR = {"+": "32", "~": "33", "-": "31", "=": "2", "!": "35", "x": "1;31", "»": "33", "↻": "1;33", "…": "36"}
APPLIED = {"changed": "applied", "drift-corrected": "drift corrected"}
HEALTH_COLOUR = {"Healthy": "32", "Degraded": "1;31", "Unknown": "33"}
SYNC_COLOUR = {"Ready": "32", "Reconciling": "33", "Stalled": "1;31"}
LABEL_WIDTH = 44  # the health column starts here (longer labels push it right)


def use_colour(stream: IO[str], mode: str = "auto") -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


class _Paint:
    def __init__(self, on: bool):
        self.on = on

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on and code else text


def symbol(o: dict[str, Any]) -> str:
    status = o.get("status")
    if status == "pending" and o.get("action"):
        return SYMBOL[o["action"]]
    if status in APPLIED:
        return SYMBOL[o.get("action") or "update"]
    return SYMBOL.get(status or "", "?")


def label(o: dict[str, Any]) -> str:
    return o.get("shown_as") or f"{o['kind']} {o['name']}"


def health_text(h: dict[str, Any] | None, c: _Paint) -> str:
    """`Degraded  NoQuorum: partition without quorum` (empty when not reported)."""
    if not h:
        return ""
    status = h.get("status") or "Unknown"
    text = c(HEALTH_COLOUR.get(status, ""), f"{status:8}") + f"  {h.get('reason', '')}"
    return text + (f": {h['message']}" if h.get("message") else "")


def head(o: dict[str, Any]) -> str:
    """What the object is and, unless plainly pending or in sync, what became of it."""
    status = o.get("status")
    if status in APPLIED:
        return f"{label(o)} ({APPLIED[status]}: {o.get('action')})"
    if status not in ("pending", "in-sync"):
        return f"{label(o)} ({status})"
    return label(o)


def object_line(o: dict[str, Any], c: _Paint, width: int = LABEL_WIDTH) -> str:
    sym = symbol(o)
    head_ = head(o)
    health = health_text(o.get("health"), c)
    line = f"  {c(COLOUR.get(sym, ''), sym)} {head_}"
    return f"{line}{' ' * max(2, width - len(head_))}{health}" if health else line


def field_lines(o: dict[str, Any], c: _Paint, indent: str = "      ") -> list[str]:
    """A create's values, an update's changes (lists element by element)."""
    out: list[str] = []
    creating = o.get("action") == "create"
    for f in o.get("fields", []):
        name, before, after = f["field"], f.get("observed"), f.get("desired")
        if creating:
            if isinstance(after, list) and after and len(show_value(after, 10_000)) > 100:
                out.append(f"{indent}{c('32', '+')} {name}:")
                out += [f"{indent}    {c('32', '- ' + show_value(x, 200))}" for x in after]
            else:
                out.append(f"{indent}{c('32', '+')} {name}: {c('32', show_value(after))}")
            continue
        elements = list_changes(before, after)
        if elements is not None:
            out.append(f"{indent}{name}:")
            for mark, value in elements:
                if mark != " ":
                    out.append(f"{indent}  {c('31' if mark == '-' else '32', mark)} {show_value(value, 200)}")
            continue
        out.append(f"{indent}{name}: {c('31', show_value(before))} → {c('32', show_value(after))}")
    return out


def object_lines(o: dict[str, Any], c: _Paint, width: int = LABEL_WIDTH, details: bool = True) -> list[str]:
    lines = [object_line(o, c, width)]
    if o.get("error"):  # first: what went wrong matters more than what was to be set
        lines.append(f"      {c('31', o['error'])}")
    if details:
        lines += field_lines(o, c)
        lines += [f"      {c('36', note)}" for note in o.get("notes", [])]
    return lines


def _quiet_keeps(o: dict[str, Any]) -> bool:
    """--quiet shows only what needs a look: not Ready, or not Healthy."""
    sync = (o.get("sync") or {}).get("status")
    health = (o.get("health") or {}).get("status")
    return sync != "Ready" or health not in (None, "Healthy")


def condition(summary: dict[str, Any] | None, c: _Paint, colours: dict[str, str]) -> str:
    if not summary or not summary.get("status"):
        return {"NotChecked": "not checked"}.get((summary or {}).get("reason", ""), "nothing reported")
    status = summary["status"]
    return f"{c(colours.get(status, ''), status)} ({summary.get('reason')})"


def node_lines(data: dict[str, Any], c: _Paint, quiet: bool = False, width: int = LABEL_WIDTH) -> list[str]:
    lines = [f"node {data.get('node')}: sync {condition(data.get('sync'), c, SYNC_COLOUR)} · "
             f"health {condition(data.get('health'), c, HEALTH_COLOUR)}"]
    for facet, h in (data.get("node_health") or {}).items():
        if quiet and h.get("status") == "Healthy":
            continue
        lines.append(f"    {facet}{' ' * max(2, width - len(facet))}{health_text(h, c)}")
    return lines


def revision_text(revision: str | None) -> str:
    """The revision as people read it: 12 digits of the commit, `-dirty` kept."""
    rev = str(revision or "?")
    sha, dash, rest = rev.partition("-")
    return sha[:12] + dash + rest


def render_run(data: dict[str, Any], colour: bool = False, quiet: bool = False, header: bool = True) -> str:
    """A run (plan or apply) from its JSON form."""
    c = _Paint(colour)
    lines: list[str] = []
    what = "plan" if data.get("mode") == "dry-run" else "apply"
    if header:
        lines.append(c("1", f"reconcile {what} for node {data.get('node')}") +
                     f" · revision {revision_text(data.get('revision'))} · {data.get('repo')}")
    lines += [c("33", f"note: {n}") for n in data.get("identity_notes", [])]
    objects = [o for o in data.get("objects", []) if not quiet or _quiet_keeps(o)]
    width = min(LABEL_WIDTH, max([len(head(o)) + 2 for o in objects] + [0]))
    for o in objects:
        lines += object_lines(o, c, width, details=not quiet)
    lines += node_lines(data, c, quiet, width)
    notes = data.get("notes") or []
    if notes and not quiet:
        lines.append("for the whole node:")
        lines += [f"  {c('36', n)}" for n in notes]
    for err in data.get("errors", []):
        lines.append(c("1;31", f"error: {err}"))
    lines.append(summary_line(data))
    return "\n".join(lines)


ORDER = ["create", "update", "delete", "changed", "drift-corrected", "in-sync", "failed", "skipped",
         "not-converging", "not-installed", "deferred"]
WORDS = {"create": "to create", "update": "to update", "delete": "to delete"}


def summary_line(data: dict[str, Any]) -> str:
    counts = data.get("counts") or {}
    text = ", ".join(f"{counts[k]} {WORDS.get(k, k)}" for k in ORDER if counts.get(k))
    return (f"{'Plan' if data.get('mode') == 'dry-run' else 'Result'}: {text or 'nothing on this node'} "
            f"({data.get('result')}, {float(data.get('seconds') or 0):.2f}s)")


def render_text(record: Any, colour: bool = False, quiet: bool = False) -> str:
    return render_run(record.to_dict(), colour, quiet)


def emit(record: Any, fmt: str, colour_mode: str = "auto", stream: IO[str] | None = None, *,
         quiet: bool = False, envelope: dict[str, Any] | None = None) -> None:
    stream = stream or sys.stdout
    if fmt == "json":
        data = dict(envelope or {})
        data.update(record.to_dict())
        json.dump(data, stream, indent=2, default=str)
        stream.write("\n")
    else:
        data = record.to_dict()
        data.update({k: v for k, v in (envelope or {}).items() if k == "identity_notes"})
        stream.write(render_run(data, use_colour(stream, colour_mode), quiet) + "\n")


class Progress:
    """One line per object as an apply converges it.

    On a terminal the batch being applied is shown on a live line (`… applying VirtualIP
    web-vip`), replaced by each object's result line as it comes; elsewhere (a pipe, a
    log) each result is one line, written and flushed when it is known."""

    def __init__(self, stream: IO[str] | None = None, colour_mode: str = "auto"):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.c = _Paint(use_colour(self.stream, colour_mode))
        self.started: dict[tuple[str, str], float] = {}
        self.shown = 0

    def __call__(self, event: str, objects: list[Any]) -> None:
        if event == "applying":
            now = time.monotonic()
            for o in objects:
                self.started[(o.kind, o.name)] = now
            if self.live:
                names = ", ".join(o.label for o in objects)
                self.stream.write(f"\r\x1b[K  {self.c('36', '…')} applying {names[:200]}")
                self.stream.flush()
            return
        for o in objects:
            self._done(o)

    def _done(self, o: Any) -> None:
        started = self.started.pop((o.kind, o.name), None)
        took = f" {time.monotonic() - started:.2f}s" if started is not None else ""
        data = {"kind": o.kind, "name": o.name, "status": o.status, "action": o.action, "shown_as": o.shown_as}
        line = object_line(data, self.c) + took
        if o.error:
            line += f": {self.c('31', o.error)}"
        elif o.status == "deferred" and o.notes:
            line += f": {o.notes[-1]}"
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(prefix + line + "\n")
        self.stream.flush()
        self.shown += 1

    def finish(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        if self.shown:
            self.stream.write("\n")


def short(items: Iterable[str], limit: int = 6) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
