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
    s.add_argument("--max-passes", type=int, default=4)
    p.set_defaults(allow_mass_prune=False, max_passes=4, no_native=False, kind=None)
    s = sub.add_parser("validate", help="validate the whole tree (and, for --node, the rendered configs)")
    _common(s)
    s.add_argument("--no-native", action="store_true", help="skip the native validators (haproxy -c, …)")
    s = sub.add_parser("schema", help="print JSON Schema for editors")
    s.add_argument("kind", nargs="?", help="one kind; default: every manifest")
    sub.add_parser("lab", help="the lab of namespaces for tests and the demo (see `reconcile lab -h`)", add_help=False)
    sub.add_parser("agent", help="run continuously (see `reconcile agent -h`)", add_help=False)
    sub.add_parser("status", help="the agent's last runs (see `reconcile status -h`)", add_help=False)
    s = sub.add_parser("render", help="write the files reconcile would install on --node, touching nothing")
    _common(s)
    s.add_argument("--out", type=Path, default=None, help="folder to write them into (default: print them)")
    sub.add_parser("import", help="manifests from a tool's configuration: reconcile import TOOL -h", add_help=False)
    from reconcilers import COMMANDS

    for name, target in COMMANDS.items():
        sub.add_parser(name, help=f"see `reconcile {name} -h` ({target.split(':')[0]})", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
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
    from reconcilers import COMMANDS, IMPORTERS

    if first == "import":
        i = argv.index(first)
        rest = argv[i + 1:]
        tool = rest[0] if rest else None
        if tool not in IMPORTERS:
            print(f"reconcile import: give a tool: {', '.join(IMPORTERS)} (reconcile import TOOL -h)", file=sys.stderr)
            return 1
        import importlib

        module, _, function = IMPORTERS[tool].partition(":")
        return getattr(importlib.import_module(module), function)(argv[:i] + rest[1:])
    if first in COMMANDS:
        import importlib

        module, _, function = COMMANDS[first].partition(":")
        i = argv.index(first)
        return getattr(importlib.import_module(module), function)(argv[:i] + argv[i + 1:])
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


def cmd_render(args: argparse.Namespace) -> int:
    """The files every reconciler would install on the node, from `desired` alone."""
    from controller.loader import TreeError, load_tree
    from reconcilers import REGISTRY, NotInstalled, reconciler_class
    from reconcilers.base import Node, Runner

    repo = args.repo or DEFAULT_REPO
    node = Node(args.node or socket.gethostname().split(".")[0], Runner(dry_run=True),
                Path(args.state_dir or "/var/lib/reconcile"))
    try:
        tree = load_tree(repo)
    except TreeError as err:
        print(f"reconcile: {repo}: the tree is invalid:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    present = {i.kind for i in tree.for_node(node.name)}
    files: dict[str, str] = {}
    seen: list[type] = []
    for kind in REGISTRY:
        try:
            cls = reconciler_class(kind)
        except NotInstalled:
            continue
        if cls in seen or not (set(cls.kinds) | set(cls.consumes)) & present:
            continue
        seen.append(cls)
        rec = cls()
        rec.desired(tree, node)
        files.update(rec.render(node))
    for path, content in sorted(files.items()):
        if args.out is None:
            print(f"==> {path} <==")
            sys.stdout.write(content if content.endswith("\n") else content + "\n")
            continue
        target = args.out / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        print(f"wrote {target}")
    return 0


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
    node = Node(node_name, Runner(dry_run=(mode == "dry-run"), recording=bool(record_to)), Path(state_dir))
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
