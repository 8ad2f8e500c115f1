"""`reconcile agent install`: the agent as a systemd service on this node.

    reconcile agent install --repo URL|PATH [agent options] [--watchdog 2min] [--no-start]

writes /etc/systemd/system/reconcile-agent.service with ExecStart set to this
installation's `reconcile agent` and the given options (validated by the agent's own
parser first), reloads systemd, enables the unit and starts it; `systemctl start`
returns once the agent sent READY=1, i.e. after its first run. Run again with other
options, it rewrites the unit and restarts the agent; with the same ones it changes
nothing. contrib/reconcile-agent.service is this unit rendered with example options
(a unit test keeps the two the same), for hosts that install it by hand.

Why a command rather than scripts/install.sh: the install script prepares a development
machine and must never start a service there; the agent belongs on the nodes, and this
command runs on the node itself, knows where its own `reconcile` lives and refuses
options the agent would refuse.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from reconcilers.base import AtomicWriter, CommandError, Node, Runner, systemd_running

UNIT_NAME = "reconcile-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / UNIT_NAME
EXAMPLE_ARGS = ["--repo", "https://git.example.test/ops/ha-manifests.git", "--ref", "main", "--path", "desired-state"]

UNIT = """\
# reconcile agent: continuous GitOps on this node.
#
# Installed by `reconcile agent install --repo ...` (which writes this file with its own
# path and your options, then enables and starts it); to install by hand, copy it to
# /etc/systemd/system/, set --repo (and --ref/--path/--verify-commits) in ExecStart, then
# `systemctl daemon-reload && systemctl enable --now reconcile-agent`.
# `systemctl reload reconcile-agent` reconciles now (SIGHUP); `systemctl stop` lets the agent
# finish the change it is applying (SIGTERM) and exit. `reconcile status` shows its state;
# `journalctl -u reconcile-agent RECONCILE_OBJECT=Kind/name` its log for one object.
[Unit]
Description=reconcile agent: keep this node converged with its git repository
Wants=network-online.target
After=network-online.target
# The daemons it configures are managed as their own units (systemctl reload haproxy, …),
# so the agent may start before or after them.

[Service]
# READY=1 after the first cycle (clone, verify, apply); WATCHDOG=1 while the loop is alive.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM to the agent only: a command it runs (haproxy -c, cibadmin) is not cut in half.
# What is still running after TimeoutStopSec gets SIGKILL.
KillMode=mixed
TimeoutStopSec=5min
# The first start clones the repository and applies it before READY=1.
TimeoutStartSec=10min
# The agent feeds the watchdog while its main loop made progress within 10 minutes (one
# run of slow commands may take minutes); a hung agent is killed and restarted.
WatchdogSec={watchdog}
# A crash, a watchdog kill or a SIGKILL: started again, and it converges from git.
Restart=on-failure
RestartSec={restart_sec}
# Another agent (or `reconcile apply`) holding the node lock makes it exit 1: retried.
StateDirectory=reconcile
StateDirectoryMode=0700
Environment=RECONCILE_STATE_DIR=/var/lib/reconcile
# Runs as root: it configures addresses, HAProxy, keepalived, Pacemaker, LXC and AD joins.
# Metrics listen on 127.0.0.1:9358 only (--metrics-address to change that).
# Logs go to the journal with RECONCILE_REVISION and RECONCILE_OBJECT fields.

[Install]
WantedBy=multi-user.target
"""


def systemd_quote(arg: str) -> str:
    """One ExecStart argument as systemd.service(5) parses it: `$` and `%` doubled
    (variable and specifier expansion), quoted when it has blanks, quotes or backslashes."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(reconcile: str, agent_args: list[str], watchdog: str = "2min", restart_sec: str = "5s") -> str:
    # An option and its value stay on one line, wrapped at 80 columns: readable in `systemctl cat`.
    groups: list[str] = []
    for arg in map(systemd_quote, agent_args):
        if groups and groups[-1].startswith("--") and " " not in groups[-1] and not arg.startswith("--"):
            groups[-1] += " " + arg
        else:
            groups.append(arg)
    lines, line = [], f"{systemd_quote(reconcile)} agent"
    for group in groups:
        if len(line) + len(group) > 80:
            lines.append(line)
            line = "    " + group
        else:
            line = f"{line} {group}"
    exec_start = " \\\n".join(lines + [line])
    return UNIT.format(exec_start=exec_start, watchdog=watchdog, restart_sec=restart_sec)


def example_unit() -> str:
    """contrib/reconcile-agent.service: the unit for the usual install path and an example repo."""
    return render_unit("/usr/local/bin/reconcile", EXAMPLE_ARGS)


def reconcile_path() -> str:
    """The `reconcile` console script of this installation (the venv's, in the lab)."""
    here = Path(sys.executable).parent / "reconcile"
    if here.exists():
        return str(here)
    return shutil.which("reconcile") or "/usr/local/bin/reconcile"


def parser() -> argparse.ArgumentParser:
    from controller.cli import Parser

    p = Parser(
        prog="reconcile agent install",
        description="Install the agent as a systemd service on this node: write /etc/systemd/system/"
                    f"{UNIT_NAME} with these agent options, enable it and start it (systemctl start returns "
                    "after the first run). Any `reconcile agent` option is accepted (see `reconcile agent -h`).")
    p.add_argument("--watchdog", default="2min", help="WatchdogSec= of the unit (default 2min)")
    p.add_argument("--restart-sec", default="5s", help="RestartSec= of the unit (default 5s)")
    p.add_argument("--no-start", action="store_true", help="write and enable the unit, do not start it")
    p.add_argument("--unit-dir", type=Path, default=UNIT_DIR, help=argparse.SUPPRESS)
    return p


def main(argv: list[str]) -> int:
    from controller.agent import parser as agent_parser

    # Bad arguments raise controller.cli.UsageError: `reconcile` prints it and exits 1.
    args, agent_args = parser().parse_known_args(argv)
    agent_parser().parse_args(agent_args)  # the agent's own checks, with its message
    for value, name in ((args.watchdog, "--watchdog"), (args.restart_sec, "--restart-sec")):
        if not value.replace(".", "").isalnum():
            print(f"reconcile agent install: {name} {value!r}: a systemd time span such as 30s or 2min",
                  file=sys.stderr)
            return 1
    if not systemd_running():
        print("reconcile agent install: systemd is not running on this machine (no /run/systemd/system); "
              "run `reconcile agent --repo ...` under your own supervisor instead", file=sys.stderr)
        return 1
    node = Node("localhost", Runner())
    unit = args.unit_dir / UNIT_NAME
    text = render_unit(reconcile_path(), agent_args, args.watchdog, args.restart_sec)
    try:
        changed = AtomicWriter(node).write(unit, text, mode=0o644)
        if changed:
            node.run(["systemctl", "daemon-reload"])
        node.run(["systemctl", "enable", UNIT_NAME])
        if not args.no_start:
            active = node.run(["systemctl", "is-active", UNIT_NAME], read_only=True, check=False).stdout.strip()
            if active == "active" and changed:
                node.run(["systemctl", "restart", UNIT_NAME], timeout=660)
            elif active != "active":
                node.run(["systemctl", "start", UNIT_NAME], timeout=660)
    except CommandError as err:
        print(f"reconcile agent install: {err}", file=sys.stderr)
        return 1
    state = "written" if changed else "unchanged"
    started = "" if args.no_start else "; running (first run done): `reconcile status` shows it"
    print(f"{unit} {state}, enabled{started}")
    return 0
