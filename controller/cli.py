"""Command line: `reconcile --dry-run | apply | validate | schema | status | lab | agent`.

Exit codes: 0 nothing (left) to change, 2 changes pending, 1 error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

DEFAULT_REPO = Path(__file__).resolve().parent.parent / "desired-state"


def _common(p: argparse.ArgumentParser, root: bool = False) -> None:
    # Options may stand before or after the sub-command. A sub-parser's defaults would
    # overwrite what the root parsed, so only the root has defaults.
    def d(value):
        return value if root else argparse.SUPPRESS

    p.add_argument("--repo", type=Path, default=d(None), help="folder of manifests (default: the embedded desired-state/)")
    p.add_argument("--node", default=d(None), help="the node to plan for (default: this host's name)")
    p.add_argument("-o", "--output", choices=["text", "json"], default=d("text"))
    p.add_argument("--color", choices=["auto", "always", "never"], default=d("auto"))
    p.add_argument("--state-dir", type=Path, default=d(None), help="default: /var/lib/reconcile")
    p.add_argument("-v", "--verbose", action="store_true", default=d(False), help="log every command run")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reconcile",
        description="GitOps for Linux HA: plan and converge this node against manifests in git.",
        epilog="exit codes: 0 nothing to change, 2 changes pending, 1 error",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    _common(p, root=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("plan", help="same as --dry-run")
    _common(s)
    s = sub.add_parser("apply", help="converge this node")
    _common(s)
    s.add_argument("--allow-mass-prune", action="store_true", help="allow deleting more than half of what was created")
    s.add_argument("--allow-disruption", action="store_true",
                   help="let a Pacemaker change stop or move resources it does not change (the blast-radius guard)")
    s.add_argument("--max-passes", type=int, default=4)
    p.set_defaults(allow_mass_prune=False, allow_disruption=False, max_passes=4, no_native=False, kind=None)
    s = sub.add_parser("validate", help="validate the whole tree (and, for --node, the rendered configs)")
    _common(s)
    s.add_argument("--no-native", action="store_true", help="skip the native validators (haproxy -c, …)")
    s = sub.add_parser("schema", help="print JSON Schema for editors")
    s.add_argument("kind", nargs="?", help="one kind; default: every manifest")
    sub.add_parser("lab", help="the lab of namespaces for tests and the demo (see `reconcile lab -h`)", add_help=False)
    sub.add_parser("agent", help="run continuously (see `reconcile agent -h`)", add_help=False)
    sub.add_parser("status", help="the agent's last runs (see `reconcile status -h`)", add_help=False)
    s = sub.add_parser("render", help="write the files (and CIB) a node would get, touching nothing")
    _common(s)
    s.add_argument("--out", type=Path, help="write them below this folder (default: print them)")
    sub.add_parser("import", help="manifests from a tool's configuration (`reconcile import pacemaker -h`)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first == "import":
        return cmd_import(argv[argv.index(first) + 1:])
    if first in ("lab", "agent", "status"):
        i = argv.index(first)
        rest = argv[:i] + argv[i + 1:]
        if first == "lab":
            from controller.lab.cli import main as sub_main
        elif first == "agent":
            from controller.agent import main as sub_main  # type: ignore[no-redef]
        else:
            from controller.status import main as sub_main  # type: ignore[no-redef]
        return sub_main(rest)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        if args.command == "schema":
            return cmd_schema(args.kind)
        if args.command == "render":
            return cmd_render(args)
        if args.command is None and not args.dry_run:
            parser().print_help()
            return 1
        return run(args)
    except KeyboardInterrupt:
        return 130


def cmd_schema(kind: str | None) -> int:
    from schemas import KINDS
    from schemas.export import json_schema

    if kind is not None and kind not in KINDS:
        print(f"reconcile: unknown kind {kind!r} (known: {', '.join(KINDS)})", file=sys.stderr)
        return 1
    json.dump(json_schema(kind), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_import(argv: list[str]) -> int:
    """`reconcile import TOOL ...`: the tool package's importer (reconcilers/TOOL/importer.py)."""
    import importlib

    if not argv or argv[0].startswith("-"):
        print("usage: reconcile import TOOL [options]   (TOOL: pacemaker)", file=sys.stderr)
        return 1
    tool = argv[0]
    try:
        module = importlib.import_module(f"reconcilers.{tool}.importer")
    except ModuleNotFoundError:
        print(f"reconcile import: no importer for {tool!r}", file=sys.stderr)
        return 1
    return module.main(argv[1:])


def cmd_render(args: argparse.Namespace) -> int:
    """`reconcile render`: what each reconciler would write on the node, from git alone."""
    from controller.engine import Engine
    from controller.loader import TreeError, load_tree
    from controller.state import DEFAULT_STATE_DIR, Inventory
    from reconcilers.base import Node, Runner

    repo = args.repo or DEFAULT_REPO
    node_name = args.node or socket.gethostname().split(".")[0]
    try:
        tree = load_tree(repo)
    except TreeError as err:
        print(f"reconcile: {repo}: the tree is invalid:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    node = Node(node_name, Runner(dry_run=True), Path(args.state_dir or DEFAULT_STATE_DIR))
    files, errors = Engine(tree, node, inventory=Inventory(node.state_dir)).render()
    for error in errors:
        print(f"reconcile render: {error}", file=sys.stderr)
    for path, content in sorted(files.items()):
        if args.out:
            target = args.out / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            print(target)
        else:
            print(f"==> {path} <==\n{content}", end="" if content.endswith("\n") else "\n")
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    from controller.engine import Engine
    from controller.loader import TreeError, load_tree
    from controller.output import emit
    from controller.state import DEFAULT_STATE_DIR, Inventory, LockHeld, NodeLock, save_run
    from reconcilers.base import Node, Runner

    repo = args.repo or DEFAULT_REPO
    node_name = args.node or socket.gethostname().split(".")[0]
    state_dir = args.state_dir or DEFAULT_STATE_DIR
    mode = "dry-run" if args.dry_run or args.command == "plan" else args.command
    try:
        tree = load_tree(repo)
    except TreeError as err:
        if args.output == "json":
            json.dump({"result": "invalid", "errors": [str(p) for p in err.problems]}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"reconcile: {repo}: the tree is invalid, nothing was changed:", file=sys.stderr)
            for problem in err.problems:
                print(f"  {problem}", file=sys.stderr)
        return 1
    if mode == "validate":
        return cmd_validate(args, tree, node_name, state_dir)

    # RECONCILE_RECORD=FILE: write every command and runtime-socket action of this run to
    # FILE as JSON, for the recorder tests that prove a dry-run changes nothing.
    record_to = os.environ.get("RECONCILE_RECORD")
    node = Node(node_name, Runner(dry_run=(mode == "dry-run"), recording=bool(record_to)), Path(state_dir),
                allow=frozenset({"disruption"} if args.allow_disruption else ()))
    if mode == "dry-run":
        engine = Engine(tree, node, inventory=Inventory(node.state_dir))
        record = engine.plan()
    else:
        try:
            with NodeLock(node.state_dir):
                engine = Engine(tree, node, allow_mass_prune=args.allow_mass_prune, max_passes=args.max_passes)
                record = engine.apply()
                save_run(node.state_dir, record.to_dict())
        except LockHeld as err:
            print(f"reconcile: {err}", file=sys.stderr)
            return 1
    emit(record, args.output, args.color)
    if record_to:
        Path(record_to).write_text(json.dumps([vars(r) for r in node.runner.records], indent=1))
    return record.exit_code()


def cmd_validate(args: argparse.Namespace, tree, node_name: str, state_dir: Path) -> int:
    from controller.engine import Engine
    from controller.state import Inventory
    from reconcilers.base import Node, Runner

    n = len(tree.items)
    errors: list[str] = []
    if not args.no_native:
        node = Node(node_name, Runner(dry_run=True), Path(state_dir))
        errors = Engine(tree, node, inventory=Inventory(node.state_dir)).validate()
    if args.output == "json":
        json.dump({"result": "invalid" if errors else "valid", "objects": n, "revision": tree.revision,
                   "errors": errors}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif errors:
        print(f"reconcile: {tree.root}: native validation failed for node {node_name}:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
    else:
        print(f"{tree.root}: {n} manifests valid (revision {tree.revision[:12]})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
