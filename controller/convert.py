"""`reconcile import TOOL FILE | --live` and `reconcile render`: between a tool's own
configuration files and manifests.

import: the manifests that reproduce a configuration file (or the one the tool runs on
this node), from the tool's importer (`reconcilers/<tool>/importer.py`, see
reconcilers/importing.py); passwords found inline go to files (0600) under the secrets
folder, never into the manifests.

render: the files reconcile would install on a node, from every reconciler that offers
`render(node)`, written under a folder (or printed, secrets redacted); nothing on the
node changes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import socket
import sys
from pathlib import Path

import yaml


def _placement(args: argparse.Namespace) -> dict[str, str]:
    if args.cluster:
        return {"cluster": args.cluster}
    return {"node": args.node or socket.gethostname().split(".")[0]}


def main_import(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile import", description="manifests from a tool's configuration file")
    p.add_argument("tool", help="haproxy, …")
    p.add_argument("file", nargs="?", type=Path, help="the configuration file")
    p.add_argument("--live", action="store_true", help="the configuration the tool runs on this node")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="place the manifests on this node (default: this host's name)")
    where.add_argument("--cluster", help="place the manifests on every node of this Cluster")
    p.add_argument("-o", "--output", type=Path, help="folder to write TOOL.yaml into (default: print)")
    p.add_argument("--secrets-dir", type=Path, default=Path("/etc/reconcile/secrets"),
                   help="where passwords found inline are written, 0600 (default: /etc/reconcile/secrets/TOOL)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", args.tool):
        p.error(f"{args.tool!r} is not a tool name")
    if (args.file is None) == (not args.live):
        p.error("give FILE or --live")
    from reconcilers.importing import ImportProblem

    try:
        importer = importlib.import_module(f"reconcilers.{args.tool}.importer")
    except ModuleNotFoundError:
        print(f"reconcile import: no importer for {args.tool!r}", file=sys.stderr)
        return 1
    secrets_dir = args.secrets_dir if args.secrets_dir != Path("/etc/reconcile/secrets") else \
        args.secrets_dir / args.tool
    try:
        if args.live:
            source, text = importer.live(_placement(args).get("node", ""))
        else:
            source, text = str(args.file), args.file.read_text()
        imported = importer.import_text(text, source, _placement(args), secrets_dir.resolve())
    except ImportProblem as err:
        print(f"reconcile import: {err}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as err:
        print(f"reconcile import: {args.file}: cannot read: {err}", file=sys.stderr)
        return 1
    for path, value in imported.secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    header = f"# Imported by `reconcile import {args.tool}` from {source}.\n"
    body = yaml.safe_dump_all(imported.documents, sort_keys=False, default_flow_style=False, width=1000,
                              allow_unicode=True)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        target = args.output / f"{args.tool}.yaml"
        target.write_text(header + body)
        print(f"{target}: {len(imported.documents)} manifests")
    else:
        sys.stdout.write(header + body)
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def main_render(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile render",
                                description="the files reconcile would install on a node; changes nothing")
    p.add_argument("--repo", type=Path, help="folder of manifests (default: the embedded desired-state/)")
    p.add_argument("--node", help="the node to render for (default: this host's name)")
    p.add_argument("-o", "--output", type=Path, help="write the files under this folder (default: print them)")
    args = p.parse_args(argv)
    from controller.cli import DEFAULT_REPO
    from controller.loader import TreeError, load_tree
    from reconcilers import REGISTRY, NotInstalled, reconciler_class
    from reconcilers.base import ApplyError, Node, Runner

    repo = args.repo or DEFAULT_REPO
    node = Node(args.node or socket.gethostname().split(".")[0], Runner(dry_run=True))
    try:
        tree = load_tree(repo)
    except TreeError as err:
        print(f"reconcile render: {repo}: the tree is invalid:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    present = {i.kind for i in tree.for_node(node.name)}
    files: dict[str, str | bytes] = {}
    done: list[type] = []
    for kind in REGISTRY:
        try:
            cls = reconciler_class(kind)
        except NotInstalled:
            continue
        if cls in done or getattr(cls, "render", None) is None or not (kind in present or present & set(cls.consumes)):
            continue
        done.append(cls)
        rec = cls()
        try:
            rec.desired(tree, node)
            files.update(rec.render(node))
        except (ApplyError, ValueError) as err:
            print(f"reconcile render: {'/'.join(cls.kinds)}: {err}", file=sys.stderr)
            return 1
    for path, content in sorted(files.items()):
        if args.output:
            target = args.output / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a rendered file may hold secrets
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
            print(target)
        else:
            text = content if isinstance(content, str) else content.decode(errors="replace")
            sys.stdout.write(f"# ==> {path} <==\n{node.runner.redact(text)}\n")
    return 0
