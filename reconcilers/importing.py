"""What every tool's importer returns (`reconcile import TOOL FILE | --live`).

A tool that can be imported has a module `reconcilers/<tool>/importer.py` with

    import_text(text, source, placement, secrets_dir) -> Imported
        the manifests that reproduce `text` (a configuration file named `source`) on the
        nodes `placement` names ({"node": "lb1"} or {"cluster": "web"}); a secret found
        inline goes to a file under `secrets_dir` and the manifest names it by reference;
    live(node) -> (source, text)            (optional)
        the configuration the tool runs on this node now;
    import_files([(source, text), ...], placement, secrets_dir) -> Imported   (optional)
        for a tool whose configuration is several files (Pacemaker: a CIB and
        corosync.conf): `reconcile import TOOL FILE FILE...` calls it with every file, and
        `live` may then return a list of (source, text).

A file the importer cannot express raises `ImportProblem` naming the line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ImportProblem(Exception):
    """The file cannot be imported as it is; the message names `file:line`."""


@dataclass
class Imported:
    documents: list[dict[str, Any]] = field(default_factory=list)  # manifests, in order
    secrets: dict[Path, str] = field(default_factory=dict)  # written 0600 by the caller
    notes: list[str] = field(default_factory=list)  # what reconcile adds or had to change, and why
