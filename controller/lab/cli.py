"""`reconcile lab up | down | status | exec`: the lab from the command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from controller.lab import config
from controller.lab.lab import Lab, LabError


LAB_EXIT_CODES = """\
exit codes:
  0  done
  1  error: bad arguments, not root, the lab could not do it
  exec: the command's own exit code"""


def _parser() -> argparse.ArgumentParser:
    from controller.cli import Parser

    p = Parser(prog="reconcile lab", epilog=LAB_EXIT_CODES, description=(
        "Lab nodes on this machine: network, mount, UTS, IPC and PID namespaces joined by a "
        "bridge, for the integration tests and the demo. Needs root."))
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    default = os.environ.get("RECONCILE_LAB", config.DEFAULT_NAME)

    def named(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help, epilog=LAB_EXIT_CODES)
        s.add_argument("--name", default=default,
                       help=f"lab name (default: $RECONCILE_LAB or {config.DEFAULT_NAME!r}; now {default!r})")
        return s

    up = named("up", "build the lab (a stale lab of the same name is removed first)")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes lb1..lbN (default 2)")
    up.add_argument("--domain-controller", action="store_true",
                    help=f"add {config.DC_NODE}, a Samba AD DC for {config.DOMAIN}")
    up.add_argument("--systemd", action="store_true",
                    help="nodes lb1..lbN boot a real systemd as PID 1 (LXC system containers over the host's "
                         "file system), with the Debian packages' services as on a fresh install")
    up.add_argument("--sftp", action="store_true",
                    help=f"run an SFTP server (user {config.SFTP_USER}) in the last lb node, for the Mount examples")
    dn = named("down", "end every process of the lab, delete its namespaces and files; the shared folder "
                       "(and what you put there) is kept unless --purge")
    dn.add_argument("--purge", action="store_true", help="delete the shared folder too")
    st = named("status", "nodes, addresses, holder PIDs, whether they run, whether the DC answers")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ex = named("exec", "run a command in a node (exit code, stdin, stdout, stderr pass through)")
    ex.add_argument("node")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("reconcile lab: needs root (namespaces, mounts, veth)", file=sys.stderr)
        return 1
    try:
        lab = Lab(args.name)
        if args.command == "up":
            started = time.monotonic()
            lab.up(nodes=args.nodes, domain_controller=args.domain_controller, systemd=args.systemd,
                   sftp=args.sftp)
            _print_status(lab.status())
            print(f"lab {lab.name!r} ready in {time.monotonic() - started:.1f}s; "
                  f"`reconcile lab exec --name {lab.name} lb1 -- CMD` enters a node, "
                  f"`reconcile lab down --name {lab.name}` removes it")
        elif args.command == "down":
            lab.down(purge=args.purge)
            kept = f"; its shared folder {lab.shared} is kept (--purge removes it)" if lab.shared.is_dir() else ""
            print(f"lab {lab.name!r} is down{kept}")
        elif args.command == "status":
            if not lab.exists():
                print(f"lab {lab.name!r} is not up", file=sys.stderr)
                return 1
            status = lab.status()
            if args.output == "json":
                print(json.dumps(status, indent=2))
            else:
                _print_status(status)
        elif args.command == "exec":
            cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmd:
                print("reconcile lab exec: NODE -- CMD ...", file=sys.stderr)
                return 1
            cwd = os.getcwd()
            enter = lab.enter_argv(args.node, cwd if lab.sees(args.node, cwd) else "/")
            os.execvpe(enter[0], enter + cmd, lab.env())
    except LabError as e:
        print(f"reconcile lab: {e}", file=sys.stderr)
        return 1
    return 0


def _print_status(status: dict) -> None:
    print(f"lab {status['name']} ({status['state']}), shared folder {status['shared']}")
    print(f"  {'NODE':6} {'ADDRESS':12} {'PID':>8}  {'STATE':8} {'INIT':8} NETNS")
    for n in status["nodes"]:
        init = n.get("init", "holder")
        if "bootSeconds" in n:
            init += f" (booted in {n['bootSeconds']:.1f}s)"
        print(f"  {n['name']:6} {n['address']:12} {n['pid']:>8}  {'running' if n['alive'] else 'DEAD':8} "
              f"{init:8} {n['netns']}")
    dc = status.get("domain_controller")
    if dc is not None:
        says = ", ".join(f"{k} {'answers' if v else 'DOWN'}" for k, v in dc.items())
        print(f"  {config.DC_NODE}: Samba AD DC for {config.DOMAIN}: {says}")
    sftp = status.get("sftp")
    if sftp is not None:
        print(f"  {sftp['node']}: SFTP server for user {sftp['user']} on {sftp['address']}:22")
