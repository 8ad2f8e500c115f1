"""`reconcile import TOOL FILE | --live` and `reconcile render`: between a tool's own
configuration files and manifests.

import: the manifests that reproduce a configuration file (or the one the tool runs on
this node), from the tool's importer (`reconcilers/<tool>/importer.py`, see
reconcilers/importing.py); passwords found inline go to files (0600) under the secrets
folder, never into the manifests.

render: the files reconcile would install on a node, from every reconciler that offers
`render(node)`, written under a folder (or printed, secrets redacted); nothing on the
node changes.

Both follow the conventions of every command (controller/cli.py): a usage error exits 1,
`-o json` answers with the one JSON envelope (errors included), the result goes to a
folder with `--output-dir`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

IMPORT_EXIT_CODES = """\
exit codes:
  0  imported
  1  error: bad arguments, no importer for TOOL, a file that cannot be read or imported (file:line)"""
RENDER_EXIT_CODES = """\
exit codes:
  0  rendered
  1  error: bad arguments, an invalid tree, an unknown node, a file that cannot be rendered"""


def _placement(args: argparse.Namespace) -> dict[str, str]:
    from controller.identity import this_host

    if args.cluster:
        return {"cluster": args.cluster}
    return {"node": args.node or this_host()}


def _fail(command: str, json_out: bool, message: str, problems: list[dict[str, Any]] | None = None,
          **more: Any) -> int:
    """An error: on stderr, or as the JSON envelope on stdout."""
    from controller.cli import _print_json, envelope, problem

    if json_out:
        _print_json(envelope(command, "error", 1, problems or [problem(message)], **more))
    else:
        print(f"reconcile {command}: {message}", file=sys.stderr)
    return 1


def _import_problem(message: str) -> dict[str, Any]:
    """{file, line, field, message} of an importer's `file:line: message`."""
    from controller.cli import problem

    m = re.match(r"(?P<where>[^\s:]+(?::[0-9]+)?): (?P<message>.*)", message, re.S)
    if m and ":" in m["where"]:
        return problem(m["message"], m["where"])
    if m:
        return problem(m["message"]) | {"file": m["where"]}
    return problem(message)


def main_import(argv: list[str]) -> int:
    from controller.cli import Parser, _print_json, envelope

    tool = next((a for a in argv if not a.startswith("-")), None)
    if tool and re.fullmatch(r"[a-z][a-z0-9_]{0,31}", tool):
        try:
            own = importlib.import_module(f"reconcilers.{tool}.importer")
        except ModuleNotFoundError:
            own = None
        if own is not None and hasattr(own, "main"):  # a tool whose import takes arguments of its own
            return own.main(argv[:argv.index(tool)] + argv[argv.index(tool) + 1:])

    p = Parser(prog="reconcile import", epilog=IMPORT_EXIT_CODES,
               description="Manifests that reproduce a tool's configuration file (or, with --live, the one it "
                           "runs on this node).\nPasswords found inline are written to files (0600) under "
                           "--secrets-dir and named by reference.")
    p.add_argument("tool", help="haproxy, keepalived, pacemaker, …")
    p.add_argument("file", nargs="*", type=Path, help="the configuration file (pacemaker: a CIB and corosync.conf)")
    p.add_argument("--live", action="store_true", help="the configuration the tool runs on this node")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="place the manifests on this node (default: this host's name)")
    where.add_argument("--cluster", help="place the manifests on every node of this Cluster")
    p.add_argument("--output-dir", type=Path, metavar="DIR", help="folder to write TOOL.yaml into (default: print it)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text",
                   help="json: the manifests in the JSON envelope")
    p.add_argument("--secrets-dir", type=Path, default=Path("/etc/reconcile/secrets"),
                   help="where passwords found inline are written, 0600 (default: /etc/reconcile/secrets/TOOL)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", args.tool):
        p.error(f"{args.tool!r} is not a tool name")
    if bool(args.file) == args.live:
        p.error("give FILE or --live")
    from reconcilers.importing import ImportProblem

    json_out = args.output == "json"
    try:
        importer = importlib.import_module(f"reconcilers.{args.tool}.importer")
    except ModuleNotFoundError:
        return _fail("import", json_out, f"no importer for {args.tool!r}")
    if args.live and not hasattr(importer, "live"):
        return _fail("import", json_out, f"{args.tool}: --live is not supported (give the FILE)")
    secrets_dir = args.secrets_dir if args.secrets_dir != Path("/etc/reconcile/secrets") else \
        args.secrets_dir / args.tool
    if len(args.file) > 1 and not hasattr(importer, "import_files"):
        return _fail("import", json_out, f"{args.tool}: give one FILE")
    reading = None
    try:
        if args.live:
            found = importer.live(_placement(args).get("node", ""))  # (source, text), or several
            items = found if isinstance(found, list) else [found]
        else:
            items = []
            for reading in args.file:
                items.append((str(reading), reading.read_text()))
        # a tool whose configuration is several files (Pacemaker: the CIB and corosync.conf)
        # imports them together
        if hasattr(importer, "import_files"):
            imported = importer.import_files(items, _placement(args), secrets_dir.resolve())
        else:
            imported = importer.import_text(items[0][1], items[0][0], _placement(args), secrets_dir.resolve())
        source = ", ".join(src for src, _ in items)
    except ImportProblem as err:
        return _fail("import", json_out, str(err), [_import_problem(str(err))])
    except (OSError, UnicodeDecodeError) as err:
        return _fail("import", json_out, f"{reading}: cannot read: {err}")
    for path, value in imported.secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    header = f"# Imported by `reconcile import {args.tool}` from {source}.\n"
    body = yaml.safe_dump_all(imported.documents, sort_keys=False, default_flow_style=False, width=1000,
                              allow_unicode=True)
    target = None
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        target = args.output_dir / f"{args.tool}.yaml"
        target.write_text(header + body)
    if json_out:
        _print_json(envelope("import", "imported", 0, tool=args.tool, source=source, written=target and str(target),
                             secrets=sorted(str(p) for p in imported.secrets), notes=imported.notes,
                             manifests=imported.documents))
        return 0
    if target is not None:
        print(f"{target}: {len(imported.documents)} manifests")
    else:
        sys.stdout.write(header + body)
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def main_render(argv: list[str]) -> int:
    from controller.cli import DEFAULT_REPO, Parser, _print_json, envelope

    p = Parser(prog="reconcile render", epilog=RENDER_EXIT_CODES,
               description="The files reconcile would install on a node (haproxy.cfg, certificates, …), with the "
                           "secrets they hold read on this machine.\nChanges nothing: printed (secrets redacted) "
                           "or written under --output-dir (0600).")
    p.add_argument("--repo", type=Path, help="folder of manifests (default: the embedded desired-state/)")
    p.add_argument("--node", help="the node to render for (default: this machine's host name)")
    p.add_argument("--output-dir", type=Path, metavar="DIR", help="write the files under this folder (default: print them)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text",
                   help="json: the files (secrets redacted) or the paths written, in the JSON envelope")
    args = p.parse_args(argv)
    from controller.identity import IdentityError, choose_node, this_host
    from controller.loader import TreeError, load_tree
    from reconcilers import installed
    from reconcilers.base import ApplyError, Node, Runner

    json_out = args.output == "json"
    repo = args.repo or DEFAULT_REPO
    try:
        tree = load_tree(repo)
    except TreeError as err:
        if not json_out:
            print(f"reconcile render: {repo}: the tree is invalid:", file=sys.stderr)
            for found in err.problems:
                print(f"  {found}", file=sys.stderr)
            return 1
        return _fail("render", True, "the tree is invalid", [vars(x) | {"line": x.line or None} for x in err.problems],
                     errors=[str(x) for x in err.problems])
    try:
        choice = choose_node(tree, args.node, "render", this_host())
    except IdentityError as err:
        return _fail("render", json_out, str(err))
    node = Node(choice.name, Runner(dry_run=True), local=choice.local)
    present = {i.kind for i in tree.for_node(node.name)}
    files: dict[str, str | bytes] = {}
    for cls in installed():
        if getattr(cls, "render", None) is None or not present & {*cls.kinds, *cls.consumes}:
            continue
        rec = cls()
        try:
            rec.desired(tree, node)
            files.update(rec.render(node))
        except (ApplyError, ValueError) as err:
            return _fail("render", json_out, f"{'/'.join(cls.kinds)}: {err}", node=node.name)
    written: list[str] = []
    shown: dict[str, str] = {}
    for path, content in sorted(files.items()):
        if args.output_dir:
            target = args.output_dir / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a rendered file may hold secrets
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
            written.append(str(target))
        else:
            text = content if isinstance(content, str) else content.decode(errors="replace")
            shown[path] = node.runner.redact(text)
    if json_out:
        _print_json(envelope("render", "rendered", 0, node=node.name,
                             revision=tree.revision, notes=choice.notes,
                             **({"written": written} if args.output_dir else {"files": shown})))
        return 0
    for note in choice.notes:
        print(f"note: {note}", file=sys.stderr)
    for target in written:
        print(target)
    for path, text in shown.items():
        sys.stdout.write(f"# ==> {path} <==\n{text}\n")
    return 0
