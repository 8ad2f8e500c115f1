"""`reconcile drain [NODE]` and `reconcile undrain [NODE]`: take this machine out of service
for maintenance, and back, without changing its configuration.

Each reconciler that offers `drain`/`undrain` (the contract's optional hooks, reconcilers/
base.py) does its part: keepalived moves the node's addresses to its peers through a track
file, with no reload. A drained node stays in sync (a drain is not drift). A drain that
would leave a service nowhere is undone and refused (exit 1) unless `--force`.

Acts on this machine only, like `apply`. Follows every command's conventions
(controller/cli.py): usage errors exit 1, `-o json` answers with the one envelope.
`RECONCILE_RECORD=FILE` writes every command and write it made, as JSON (to prove, say,
that a drain reloads nothing).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXIT_CODES = """\
exit codes:
  0  done
  1  error: bad arguments, another node than this machine, nothing here to drain, a drain
     refused (no peer took over) or failed"""


def main(argv: list[str], command: str = "drain") -> int:
    from controller.cli import Parser, _print_json, envelope, problem
    from controller.identity import this_host
    from controller.state import DEFAULT_STATE_DIR
    from reconcilers import installed
    from reconcilers.base import ApplyError, Node, Runner

    what = ("Take this machine out of service without changing its configuration: each reconciler that can "
            "does its part\n(e.g. keepalived's peers take this node's addresses over, no reload).") \
        if command == "drain" else "Put this machine back in service after a drain."
    p = Parser(prog=f"reconcile {command}", epilog=EXIT_CODES, description=what)
    p.add_argument("node", nargs="?", help="this machine's node name (default: its host name); it acts only here")
    p.add_argument("--state-dir", type=Path, default=None, help=f"default: {DEFAULT_STATE_DIR}")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    if command == "drain":
        p.add_argument("--force", action="store_true", help="drain even if no peer takes over")
        p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="how long to wait for a peer (default: each VRRP instance's master-down time)")
        p.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                       help="how long the connections open on a moving address get to finish first, new ones "
                            "held back meanwhile (default: 5)")
    args = p.parse_args(argv)
    json_out = args.output == "json"

    def fail(message: str) -> int:
        if json_out:
            _print_json(envelope(command, "error", 1, [problem(message)]))
        else:
            print(f"reconcile {command}: {message}", file=sys.stderr)
        return 1

    here = this_host()
    if args.node and args.node != here:
        return fail(f"{command} acts on this machine only: this host is {here!r}, not {args.node!r}; run it on "
                    f"{args.node}")
    record_to = os.environ.get("RECONCILE_RECORD")
    node = Node(here, Runner(recording=bool(record_to)), args.state_dir or DEFAULT_STATE_DIR)
    said: dict[str, str] = {}
    try:
        for cls in installed():
            if getattr(cls, command, None) is None:
                continue
            rec = cls()
            answer = rec.drain(node, force=args.force, timeout=args.timeout, grace=args.grace) if command == "drain" \
                else rec.undrain(node)
            if answer is not None:
                said["/".join(cls.kinds)] = answer
    except ApplyError as err:
        return fail(str(err))
    finally:
        if record_to:
            Path(record_to).write_text(json.dumps([vars(r) for r in node.runner.records], indent=1))
    if not said:
        return fail(f"nothing to {command} on {here}: reconcile runs nothing here that can be drained")
    result = "drained" if command == "drain" else "undrained"
    if json_out:
        _print_json(envelope(command, result, 0, node=here, results=said))
    else:
        print(f"{here}: {result} ({'; '.join(said.values())})")
    return 0


def main_undrain(argv: list[str]) -> int:
    return main(argv, "undrain")
