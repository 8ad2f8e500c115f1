"""Command line: `reconcile --dry-run | plan | apply | validate | schema | explain | status | lab | agent |
import | render | drain | undrain`.

Exit codes (every --help says them): 0 nothing (left) to change, 1 error (an invalid tree,
bad arguments, a failed change, apply for another machine), 2 changes pending, 3 `apply
--wait` saw no health within its timeout, 141 the output was closed early (`| head`).
With `-o json` everything, errors included, is one JSON document (`envelope`).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_REPO = Path(__file__).resolve().parent.parent / "desired-state"
EXIT_CODES = """\
exit codes:
  0    nothing (left) to change; with apply --wait: and every object Healthy
  1    error: invalid tree or arguments, a failed change, apply for another machine
  2    changes pending (plan), or still pending after apply
  3    apply --wait: not every object Healthy within --timeout
  141  the output was closed early (e.g. | head)"""
EXIT_PENDING, EXIT_UNHEALTHY, EXIT_PIPE = 2, 3, 141


class UsageError(Exception):
    """Bad arguments: exit 1 (2 means "changes pending")."""

    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit 1 with a message (argparse's own is exit 2,
    which here means "changes pending"), and every --help ends with the exit codes."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("epilog", EXIT_CODES)
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, self.format_usage())


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("reconcile")
    except Exception:  # not installed as a distribution (a checkout on PYTHONPATH)
        return "unknown"


class _Version(argparse.Action):
    """--version: the distribution's version, looked up only when asked (importlib.metadata
    costs ~8 ms, paid by every command when the parser was built with it)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"reconcile {version()}")
        parser.exit()


def _common(p: argparse.ArgumentParser, root: bool = False) -> None:
    # Options may stand before or after the sub-command. A sub-parser's defaults would
    # overwrite what the root parsed, so only the root has defaults.
    def d(value: Any) -> Any:
        return value if root else argparse.SUPPRESS

    p.add_argument("--repo", type=Path, default=d(None), help="folder of manifests (default: the embedded desired-state/)")
    p.add_argument("--node", default=d(None),
                   help="the node (default: this machine's host name); another node only for plan and validate")
    p.add_argument("-o", "--output", choices=["text", "json"], default=d("text"))
    p.add_argument("--color", choices=["auto", "always", "never"], default=d("auto"))
    p.add_argument("--state-dir", type=Path, default=d(None), help="default: /var/lib/reconcile")
    p.add_argument("-q", "--quiet", action="store_true", default=d(False),
                   help="show only what needs a look (not in sync or not healthy) and the summary")
    p.add_argument("--no-health", action="store_true", default=d(False), help="do not check health (sync only)")
    p.add_argument("--health-timeout", type=float, default=d(3.0), metavar="SECONDS",
                   help="longest wait for each kind's health check (default 3); late ones are Unknown")
    p.add_argument("-v", "--verbose", action="store_true", default=d(False), help="log every command run")


def parser() -> Parser:
    p = Parser(
        prog="reconcile",
        description="GitOps for Linux HA: plan and converge this node against manifests in git.\n"
                    "Sync (does the node match git: Ready / Reconciling / Stalled) and health (does it work:\n"
                    "Healthy / Degraded / Unknown) are reported per object and for the node.",
    )
    p.add_argument("--version", action=_Version)
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing (= plan)")
    _common(p, root=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    s = sub.add_parser("plan", help="same as --dry-run: what would change, and health", description=(
        "What apply would change on this node, and each object's health. Changes nothing. Health is\n"
        "checked by default, in the background while the plan is made, each kind bounded by\n"
        "--health-timeout; --no-health skips it."))
    _common(s)
    s = sub.add_parser("apply", help="converge this machine", description=(
        "Converge this machine to the tree: apply, observe again, repeat until nothing differs.\n"
        "One line per object as it is applied. --wait then waits until every object is Healthy."))
    _common(s)
    s.add_argument("--allow-mass-prune", action="store_true", help="allow deleting more than half of what was created")
    s.add_argument("--allow-disruption", action="store_true",
                   help="let a Pacemaker change stop or move resources it does not change (the blast-radius guard)")
    s.add_argument("--max-passes", type=int, default=4)
    s.add_argument("--wait", action="store_true",
                   help="after converging, wait until every object and the node are Healthy (exit 3 if not in time)")
    s.add_argument("--timeout", type=_duration, default=300.0, metavar="DURATION",
                   help="how long --wait waits: 90s, 5m (default 5m)")
    p.set_defaults(allow_mass_prune=False, allow_disruption=False, max_passes=4, no_native=False, wait=False,
                   timeout=300.0)
    s = sub.add_parser("validate", help="validate the tree and natively check what every node would run",
                       description=(
        "Validate the whole tree (schema, references, conflicts), then render what every node of\n"
        "the tree would run and check it with the tools' own validators (haproxy -c, keepalived -t,\n"
        "crm_verify, corosync -t, visudo -c, sssctl, lxc): for one node with --node. A check that\n"
        "needs the node itself (its interfaces) or a tool this machine lacks is reported as skipped."))
    _common(s)
    s.add_argument("--no-native", action="store_true", help="skip the native validators (haproxy -c, …)")
    s = sub.add_parser("schema", help="print JSON Schema for editors")
    s.add_argument("kind", nargs="?", help="one kind; default: every manifest")
    s = sub.add_parser("explain", help="describe a kind or one of its fields: type, default, constraints")
    s.add_argument("what", metavar="KIND[.field[.field…]]")
    sub.add_parser("lab", help="the lab of namespaces for tests and the demo (see `reconcile lab -h`)", add_help=False)
    sub.add_parser("agent", help="run continuously (see `reconcile agent -h`)", add_help=False)
    sub.add_parser("status", help="the agent's last runs and health (see `reconcile status -h`)", add_help=False)
    sub.add_parser("import", help="manifests from a tool's configuration file (see `reconcile import -h`)",
                   add_help=False)
    sub.add_parser("render", help="the files reconcile would install on a node (see `reconcile render -h`)",
                   add_help=False)
    sub.add_parser("drain", help="take this machine out of service, no reload (see `reconcile drain -h`)",
                   add_help=False)
    sub.add_parser("undrain", help="put this machine back in service (see `reconcile undrain -h`)", add_help=False)
    return p


def _duration(text: str) -> float:
    from controller.agent import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _wants_json(argv: list[str]) -> bool:
    return any(a in ("-ojson", "--output=json") for a in argv) or any(
        a in ("-o", "--output") and b == "json" for a, b in zip(argv, argv[1:]))


def envelope(command: str, result: str, exit_code: int, problems: list[dict[str, Any]] | None = None,
             **more: Any) -> dict[str, Any]:
    """The one JSON shape of every command's answer: what ran, how it ended, and problems
    as {file, line, field, message} (file and line null when not about a manifest)."""
    return {"apiVersion": "reconcile/v1", "command": command, "result": result, "exitCode": exit_code,
            "problems": problems or [], **more}


def problem(message: str, source: str = "", field: str | None = None) -> dict[str, Any]:
    file, _, line = source.rpartition(":") if source else ("", "", "")
    return {"file": file or None, "line": int(line) if line.isdigit() else None, "field": field, "message": message}


def main(argv: list[str] | None = None) -> int:
    """The console script: `main()` with the closed-pipe and usage-error handling."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _main(argv)
        sys.stdout.flush()
        # The process ends (as the console script): the interpreter's last collection need
        # not walk everything still alive (~17 ms of a desired-state plan). Called in-process
        # (tests), the next load_tree gives these objects back to the collector.
        gc.freeze()
        return code
    except UsageError as err:
        if _wants_json(argv):
            _print_json(envelope("usage", "usage-error", 1, [problem(str(err))]))
        else:
            sys.stderr.write(err.usage)
            print(f"reconcile: error: {err} (see --help)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `reconcile plan | head`: the reader is gone. No traceback; stdout goes nowhere so
        # that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str]) -> int:
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in ("lab", "agent", "status", "import", "render", "drain", "undrain") and \
            not any(a == "--version" for a in argv):
        i = argv.index(first)
        rest = argv[:i] + argv[i + 1:]
        if first == "lab":
            from controller.lab.cli import main as sub_main
        elif first == "agent":
            from controller.agent import main as sub_main  # type: ignore[no-redef]
        elif first == "import":
            from controller.convert import main_import as sub_main  # type: ignore[no-redef]
        elif first == "render":
            from controller.convert import main_render as sub_main  # type: ignore[no-redef]
        elif first == "drain":
            from controller.drain import main as sub_main  # type: ignore[no-redef]
        elif first == "undrain":
            from controller.drain import main_undrain as sub_main  # type: ignore[no-redef]
        else:
            from controller.status import main as sub_main  # type: ignore[no-redef]
        return sub_main(rest)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.command == "schema":
        return cmd_schema(args.kind)
    if args.command == "explain":
        from controller.reference import cmd_explain

        return cmd_explain(args.what)
    if args.command is None and not args.dry_run:
        parser().print_help()
        return 1
    return run(args)


def cmd_schema(kind: str | None) -> int:
    from schemas import KINDS
    from schemas.export import json_schema

    if kind is not None and kind not in KINDS:
        print(f"reconcile: unknown kind {kind!r} (known: {', '.join(KINDS)})", file=sys.stderr)
        return 1
    json.dump(json_schema(kind), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _print_json(data: dict[str, Any]) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def run(args: argparse.Namespace) -> int:
    from controller.identity import IdentityError, choose_node, this_host
    from controller.loader import TreeError, load_tree

    repo = args.repo or DEFAULT_REPO
    mode = "dry-run" if args.dry_run or args.command == "plan" else args.command
    command = "plan" if mode == "dry-run" else mode
    # A plan or an apply takes a tree validated before (same bytes, same code) from the
    # state folder's cache; an apply stores it once it runs (controller/tree_cache.py).
    cache = None
    if mode in ("dry-run", "apply"):
        from controller.state import DEFAULT_STATE_DIR
        from controller.tree_cache import TreeCache

        cache = TreeCache(args.state_dir or DEFAULT_STATE_DIR)
    try:
        tree = load_tree(repo, cache)
    except TreeError as err:
        if args.output == "json":
            _print_json(envelope(command, "invalid", 1, [vars(p) | {"line": p.line or None} for p in err.problems],
                                 errors=[str(p) for p in err.problems]))
        else:
            print(f"reconcile: {repo}: the tree is invalid, nothing was changed:", file=sys.stderr)
            for p in err.problems:
                print(f"  {p}", file=sys.stderr)
        return 1
    # A command loads one tree and runs once: the tree, the classes built for it and the
    # modules live to the end, so the collector need not walk them again (its first pass
    # after the load walked all of them, ~17 ms of a desired-state plan).
    gc.freeze()
    from controller.scratch import use_private_tmp
    from controller.state import DEFAULT_STATE_DIR, Inventory, StateError

    use_private_tmp()  # the validators' temp files: none is left behind, even by kill -9
    try:
        if mode == "validate":
            return cmd_validate(args, tree)
        host = this_host()
        owned = len(Inventory(args.state_dir or DEFAULT_STATE_DIR)) if (args.node or host) == host else 0
        try:
            choice = choose_node(tree, args.node, mode, host, owned)
        except IdentityError as err:
            if args.output == "json":
                _print_json(envelope(command, "refused", 1, [problem(str(err))], node=args.node or host,
                                     revision=tree.revision))
            else:
                print(f"reconcile: {err}", file=sys.stderr)
            return 1
        return cmd_run(args, tree, choice, mode)
    except StateError as err:  # a damaged state file, a state folder that cannot be written
        if args.output == "json":
            _print_json(envelope(command, "failed", 1, [problem(str(err))]))
        else:
            print(f"reconcile: {err}", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace, tree: Any, choice: Any, mode: str) -> int:
    from controller.engine import Engine
    from controller.output import Progress, emit, render_run, revision_text, use_colour
    from controller.state import DEFAULT_STATE_DIR, Inventory, LockHeld, NodeLock, StateError, save_run
    from controller.tree_cache import TreeCache
    from reconcilers.base import Node, Runner

    state_dir = args.state_dir or DEFAULT_STATE_DIR
    command = "plan" if mode == "dry-run" else mode
    unsaved = ""
    # RECONCILE_RECORD=FILE: write every command and runtime-socket action of this run to
    # FILE as JSON, for the recorder tests that prove a dry-run changes nothing.
    record_to = os.environ.get("RECONCILE_RECORD")
    node = Node(choice.name, Runner(dry_run=(mode == "dry-run"), recording=bool(record_to)), Path(state_dir),
                local=choice.local, allow=frozenset({"disruption"} if args.allow_disruption else ()))
    health = dict(health=not args.no_health, health_timeout=args.health_timeout)
    text = args.output == "text"
    extra = {"identity_notes": choice.notes}
    wait: dict[str, Any] | None = None
    if mode == "dry-run":
        record = Engine(tree, node, inventory=Inventory(node.state_dir), **health).plan()
    else:
        progress = Progress(sys.stdout, args.color) if text and not args.quiet else None
        try:
            with NodeLock(node.state_dir):
                TreeCache(node.state_dir).put(tree)  # the next plan of these bytes need not validate them
                if progress is not None:
                    colour = use_colour(sys.stdout, args.color)
                    title = f"reconcile apply for node {node.name}"
                    sys.stdout.write((f"\x1b[1m{title}\x1b[0m" if colour else title) +
                                     f" · revision {revision_text(tree.revision)} · {tree.root}\n")
                    sys.stdout.flush()
                engine = Engine(tree, node, allow_mass_prune=args.allow_mass_prune, max_passes=args.max_passes,
                                progress=progress, **health)
                record = engine.apply()
                if progress is not None:
                    progress.finish()
                if args.wait and record.exit_code() == 0:
                    wait = wait_for_health(engine, record, args.timeout, text and not args.quiet)
                data = record.to_dict()
                if wait is not None:
                    data["wait"] = wait
                try:
                    save_run(node.state_dir, data)
                except StateError as err:  # the run happened: shown below, and said not recorded
                    unsaved = f"reconcile: this run is not recorded in the status: {err}"
        except LockHeld as err:
            if args.output == "json":
                _print_json(envelope(command, "refused", 1, [problem(str(err))], node=node.name))
            else:
                print(f"reconcile: {err}", file=sys.stderr)
            return 1
    code = record.exit_code()
    if wait is not None and not wait["healthy"]:
        code = EXIT_UNHEALTHY
    if text:
        data = record.to_dict() | extra
        streamed = mode == "apply" and not args.quiet
        sys.stdout.write(render_run(data, use_colour(sys.stdout, args.color), args.quiet, header=not streamed) + "\n")
        if wait is not None:
            sys.stdout.write(wait["summary"] + "\n")
    else:
        problems = [problem(e) for e in record.errors] + [
            problem(f"{o.kind}/{o.name}: {o.error}", o.source) for o in record.objects if o.error]
        emit(record, "json", envelope=envelope(command, record.result, code, problems, **extra,
                                               **({"wait": wait} if wait is not None else {})))
    if unsaved:
        print(unsaved, file=sys.stderr)
        code = 1
    if record_to:
        Path(record_to).write_text(json.dumps([vars(r) for r in node.runner.records], indent=1))
    return code


def wait_for_health(engine: Any, record: Any, timeout: float, show: bool, interval: float = 1.0) -> dict[str, Any]:
    """Observe and ask health again until every object and the node are Healthy, or
    `timeout` passed (like `kubectl rollout status` / `flux --wait`)."""
    started = time.monotonic()
    last = ""
    while True:
        waiting = [f"{o.label}: {o.health['status']} ({o.health['reason']})" for o in record.objects
                   if o.health and o.health["status"] != "Healthy"]
        waiting += [f"node {facet}: {h['status']} ({h['reason']})" for facet, h in record.node_health.items()
                    if h["status"] != "Healthy"]
        took = time.monotonic() - started
        if not waiting or took >= timeout:
            break
        now = f"waiting for health: {'; '.join(waiting[:4])}{' …' if len(waiting) > 4 else ''}"
        if show and now != last:
            print(now, flush=True)
            last = now
        time.sleep(max(0.0, min(interval, timeout - took)))
        engine.recheck_health(record)
    healthy = not waiting
    summary = (f"Healthy after {took:.1f}s" if healthy else
               f"not healthy after {took:.0f}s (--timeout {timeout:g}s): {'; '.join(waiting)}")
    return {"healthy": healthy, "seconds": round(took, 2), "waitingFor": waiting, "summary": summary}


def cmd_validate(args: argparse.Namespace, tree: Any) -> int:
    """The tree is valid (load_tree said so); natively check what each node renders."""
    from controller.engine import Engine
    from controller.identity import IdentityError, choose_node, this_host
    from controller.state import DEFAULT_STATE_DIR, Inventory
    from reconcilers.base import Node, Runner

    host = this_host()
    n = len(tree.items)
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR)
    try:
        nodes = [choose_node(tree, args.node, "validate", host).name] if args.node else \
            sorted(tree.named_nodes) or [host]
    except IdentityError as err:
        if args.output == "json":
            _print_json(envelope("validate", "refused", 1, [problem(str(err))]))
        else:
            print(f"reconcile: {err}", file=sys.stderr)
        return 1
    report: dict[str, dict[str, list[str]]] = {}
    if not args.no_native:
        for name in nodes:
            local = name == host
            node = Node(name, Runner(dry_run=True), state_dir, local=local)
            inventory = Inventory(node.state_dir) if local else Inventory.empty()
            problems, skipped = Engine(tree, node, inventory=inventory, health=False).validate_report()
            report[name] = {"problems": problems, "skipped": skipped}
    bad = {name: r for name, r in report.items() if r["problems"]}
    code = 1 if bad else 0
    if args.output == "json":
        problems = [problem(f"{name}: {p}") for name, r in bad.items() for p in r["problems"]]
        _print_json(envelope("validate", "invalid" if bad else "valid", code, problems, objects=n,
                             revision=tree.revision, nodes=report, native=not args.no_native,
                             errors=[p["message"] for p in problems]))
        return code
    from controller.output import revision_text

    for name, r in report.items():
        for p in r["problems"]:
            print(f"reconcile: {name}: {p}", file=sys.stderr)
        for s in r["skipped"]:
            print(f"{name}: skipped: {s}")
    if bad:
        print(f"reconcile: {tree.root}: native validation failed for {', '.join(bad)}", file=sys.stderr)
        return 1
    checked = f"; rendered and natively checked for {', '.join(report)}" if report else \
        ("; native validators skipped (--no-native)" if args.no_native else "")
    print(f"{tree.root}: {n} manifests valid (revision {revision_text(tree.revision)}){checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
