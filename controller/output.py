"""Rendering a run for people (coloured, one line per object) and for machines (JSON)."""
from __future__ import annotations

import json
import os
import sys
from typing import IO

from controller.engine import RunRecord
from controller.plan import show_value

SYMBOL = {
    "create": "+", "update": "~", "delete": "-", "in-sync": "=", "not-installed": "!", "failed": "x",
    "skipped": "»", "not-converging": "↻", "deferred": "…",
}
COLOUR = {"+": "32", "~": "33", "-": "31", "=": "2", "!": "35", "x": "1;31", "»": "33", "↻": "1;33", "…": "36"}
APPLIED = {"changed": "applied", "drift-corrected": "drift corrected"}


def use_colour(stream: IO[str], mode: str = "auto") -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def render_text(record: RunRecord, colour: bool = False) -> str:
    def c(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    lines = []
    what = "plan" if record.mode == "dry-run" else "apply"
    lines.append(c("1", f"reconcile {what} for node {record.node}") + f" · revision {record.revision[:12]} · {record.repo}")
    for o in record.objects:
        if o.status in ("pending",) and o.action:
            sym = SYMBOL[o.action]
        elif o.status in APPLIED:
            sym = SYMBOL[o.action or "update"]
        else:
            sym = SYMBOL.get(o.status, "?")
        label = f"{o.kind} {o.name}"
        tail = ""
        if o.status in APPLIED:
            tail = f" ({APPLIED[o.status]}: {o.action})"
        elif o.status not in ("pending", "in-sync"):
            tail = f" ({o.status})"
        lines.append(f"  {c(COLOUR[sym], sym)} {label}{tail}")
        for field, before, after in o.fields:
            lines.append(f"      {field}: {c('31', show_value(before))} → {c('32', show_value(after))}")
        for note in o.notes:
            lines.append(f"      {c('36', note)}")
        if o.error:
            lines.append(f"      {c('31', o.error)}")
    for err in record.errors:
        lines.append(c("1;31", f"error: {err}"))
    counts = record.counts()
    order = ["create", "update", "delete", "changed", "drift-corrected", "in-sync", "failed", "skipped",
             "not-converging", "not-installed", "deferred"]
    words = {"create": "to create", "update": "to update", "delete": "to delete"}
    summary = ", ".join(f"{counts[k]} {words.get(k, k)}" for k in order if counts.get(k))
    lines.append(f"{'Plan' if record.mode == 'dry-run' else 'Result'}: {summary or 'nothing on this node'} "
                 f"({record.result}, {record.seconds:.2f}s)")
    return "\n".join(lines)


def emit(record: RunRecord, fmt: str, colour_mode: str = "auto", stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    if fmt == "json":
        json.dump(record.to_dict(), stream, indent=2, default=str)
        stream.write("\n")
    else:
        stream.write(render_text(record, use_colour(stream, colour_mode)) + "\n")
